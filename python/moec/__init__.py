"""moec from Python: compile a Mixture-of-Experts graph (a `.moe` file) against a checkpoint and
run it on numpy arrays, through libMoEC's C API (ctypes; no copies of inputs or outputs).

    import moec, numpy as np
    with moec.compile("mixtral", model="path/to/checkpoint", params={"layer": 1}) as plan:
        x = np.ones(plan.input_shape("x", tokens=4), np.float32)
        y = plan(x=x)["y"]

`moec.torch.MoEBlock` wraps a plan as an `nn.Module`; `moec.transformers.patch(model)` runs the MoE
blocks of a loaded transformers model through moec plans (import those submodules explicitly:
`import moec.transformers`).
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import dataclass

import numpy as np

from . import _native
from ._errors import MoecError
from ._native import library_path

# torch's OpenMP threads (libgomp) spin for milliseconds after each parallel region unless told to
# wait passively, on the very cores moec's worker threads need next (a patched 2-core decode step
# measured 3x slower). libgomp reads this once, when torch is imported: imported before torch,
# moec asks for passive waiting unless the caller chose a policy.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["MoecError", "Plan", "TensorSpec", "compile", "load", "graph_path", "graphs_dir", "version",
           "library_path"]

_DTYPES = {_native.MOEC_F32: np.dtype(np.float32), _native.MOEC_I32: np.dtype(np.int32)}
_CODES = {v: k for k, v in _DTYPES.items()}


def version() -> str:
    """libMoEC's version string."""
    return _native.library().moec_version().decode()


def graphs_dir() -> str:
    """The folder of moec's `.moe` graphs: the copy in the package (pip install), else the checkout's
    `graphs/`."""
    bundled = os.path.join(_native.PACKAGE_DIR, "graphs")
    if os.path.isdir(bundled):
        return bundled
    repo = _native.repository_root()
    if repo:
        return os.path.join(repo, "graphs")
    raise MoecError("moec's graphs are not installed: reinstall the package with 'pip install ./python' "
                    "from a moec checkout, or pass a path to a .moe file")


def graph_path(graph: str | os.PathLike) -> str:
    """`graph` itself when it is a path to a file; a bare name such as "mixtral" names
    `graphs/mixtral.moe` of `graphs_dir()`."""
    graph = os.fspath(graph)
    if os.sep in graph or graph.endswith(".moe") or os.path.exists(graph):
        return graph
    return os.path.join(graphs_dir(), graph + ".moe")


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of a plan. `shape` has the string "tokens" (or "a*tokens+b") where the
    extent depends on the number of tokens of a run."""
    name: str
    dtype: np.dtype
    shape: tuple

    def __repr__(self):
        return f"TensorSpec({self.name!r}, {self.dtype}, {self.shape})"


def _options(threads: int, record_routing: bool, weights: str | None) -> _native.Options:
    o = _native.Options()
    o.size = ctypes.sizeof(_native.Options)
    o.threads = int(threads)
    o.record_routing = 1 if record_routing else 0
    o.weights = weights.encode() if weights else None
    return o


def _param(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile(graph: str | os.PathLike, model: str | os.PathLike, params: dict | None = None,
            weights: str | None = None, threads: int = 0, record_routing: bool = False) -> "Plan":
    """Compiles `graph` (a `.moe` path, or a name in moec's graphs such as "mixtral") against the
    checkpoint `model` (a folder with config.json and safetensors, or a .gguf file) and loads its
    weights. `params` set the graph's params (`{"layer": 3}`, as `moec compile --set`); `weights`
    stores the expert and shared-expert matrices as "f32", "bf16", "f16", "int8", "int4[:G]" or
    "int4z[:G]" (None: as the checkpoint has them); `threads` worker threads per run (0: one per core); `record_routing`
    makes every run record expert loads for `Plan.stats()`."""
    names = [f"{k}={_param(v)}".encode() for k, v in (params or {}).items()]
    array = (ctypes.c_char_p * max(1, len(names)))(*names)
    options = _options(threads, record_routing, weights)
    handle = _native.call("moec_compile", os.fsencode(graph_path(graph)), os.fsencode(model), array, len(names),
                          ctypes.byref(options))
    return Plan(handle, record_routing=record_routing)


def load(plan_path: str | os.PathLike, threads: int = 0, record_routing: bool = False) -> "Plan":
    """Loads a plan file written by `moec compile` or `Plan.save` (its weight files unchanged)."""
    options = _options(threads, record_routing, None)
    handle = _native.call("moec_load", os.fsencode(plan_path), ctypes.byref(options))
    return Plan(handle, record_routing=record_routing)


class _Handle:
    """A C API handle (`_handle`) that `_FREE` releases: on `close()`, at the end of a `with`, or
    when the object is collected. Closing twice does nothing."""
    _FREE = ""
    _handle = 0
    _closed = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _native.call(self._FREE, self._handle)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handle(self) -> int:
        """The C API's handle."""
        return self._handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed and _native._lib is not None:
                self._closed = True
                error = ctypes.c_void_p()
                getattr(_native._lib, self._FREE)(self._handle, ctypes.byref(error))
                _native.take_string(error.value)
        except Exception:
            pass


class Plan(_Handle):
    """A compiled, loaded plan. Call it with arrays by input name (or in input order); it returns a
    dict of output arrays. Close it (or use it as a context manager) to release its weights."""

    _FREE = "moec_free"

    def __init__(self, handle: int, record_routing: bool = False):
        self._handle = handle
        self._closed = False
        self.record_routing = record_routing
        self.inputs = self._specs("input")
        self.outputs = self._specs("output")
        # Whether the rows of a run are one sequence in order (rope, attention): then a run takes
        # one sequence, never a batch of them flattened.
        self.is_sequence = bool(_native.call("moec_is_sequence", self._handle, failed=lambda r: r < 0))
        self._input_index = {s.name: i for i, s in enumerate(self.inputs)}
        self._output_index = {s.name: i for i, s in enumerate(self.outputs)}

    # ------------------------------------------------------------------ description

    def _specs(self, kind: str) -> list[TensorSpec]:
        """The inputs or outputs, each extent as `per_token · tokens + fixed` (from the shapes at 1
        and 2 tokens), kept in `_affine[kind]` for `tokens_of`."""
        count = _native.call(f"moec_{kind}_count", self._handle, failed=lambda r: r < 0)
        specs, affine = [], []
        for i in range(count):
            n = _native.call(f"moec_{kind}_name", self._handle, i, None, 0, failed=lambda r: r < 0)
            buf = ctypes.create_string_buffer(n + 1)
            _native.call(f"moec_{kind}_name", self._handle, i, buf, n + 1, failed=lambda r: r < 0)
            one, dtype = self._shape(kind, i, 1)
            two, _ = self._shape(kind, i, 2)
            dims, lines = [], []
            for a, b in zip(one, two):
                per_token, fixed = b - a, 2 * a - b
                lines.append((per_token, fixed))
                if per_token == 0:
                    dims.append(a)
                elif fixed == 0:
                    dims.append("tokens" if per_token == 1 else f"{per_token}*tokens")
                else:
                    dims.append(f"{per_token}*tokens+{fixed}")
            specs.append(TensorSpec(buf.value.decode(), _DTYPES.get(dtype, np.dtype(np.float32)), tuple(dims)))
            affine.append(lines)
        self._affine = getattr(self, "_affine", {})
        self._affine[kind] = affine
        return specs

    def _shape(self, kind: str, index: int, tokens: int) -> tuple[tuple[int, ...], int]:
        capacity = 8
        while True:
            dims = (ctypes.c_int64 * capacity)()
            dtype = ctypes.c_int32()
            rank = _native.call(f"moec_{kind}_shape", self._handle, index, tokens, dims, capacity,
                                ctypes.byref(dtype), failed=lambda r: r < 0)
            if rank <= capacity:
                return tuple(dims[:rank]), dtype.value
            capacity = rank

    def input_shape(self, name: str, tokens: int) -> tuple[int, ...]:
        """The shape of input `name` in a run of `tokens` tokens."""
        return self._shape("input", self._input_index[name], tokens)[0]

    def output_shape(self, name: str, tokens: int) -> tuple[int, ...]:
        """The shape of output `name` in a run of `tokens` tokens."""
        return self._shape("output", self._output_index[name], tokens)[0]

    def tokens_of(self, name: str, shape) -> int:
        """The token count an array of `shape` for input `name` implies (1 when no extent depends
        on it; a shape that fits no token count gives the count of its first token-dependent
        extent, and the run reports the mismatch)."""
        for d, (per_token, fixed) in enumerate(self._affine["input"][self._input_index[name]]):
            if per_token == 0 or d >= len(shape):
                continue
            tokens, rest = divmod(int(shape[d]) - fixed, per_token)
            return max(tokens, 0) if rest == 0 else max(int(shape[d]) // per_token, 0)
        return 1

    # ------------------------------------------------------------------ running

    def __call__(self, *args, out: dict | None = None, **inputs) -> dict[str, np.ndarray]:
        """Runs the plan. Inputs by name (`plan(x=a)`) or in order (`plan(a)`): numpy arrays (or
        anything `np.asarray` takes), passed without a copy when they are C-contiguous with the
        input's dtype (float32), converted otherwise. `out` may give output arrays to fill (C-
        contiguous, the output's dtype and shape); the others are allocated. Returns every output
        by name."""
        return self._call(args, out, inputs, self.run_tensors)

    def _call(self, args, out, inputs, run) -> dict[str, np.ndarray]:
        """`__call__`'s work, running the prepared tensors with `run` (`run_tensors`'s signature)."""
        if args:
            if len(args) > len(self.inputs):
                raise TypeError(f"the plan has {len(self.inputs)} inputs, {len(args)} given")
            for spec, a in zip(self.inputs, args):
                if spec.name in inputs:
                    raise TypeError(f"input {spec.name!r} given twice")
                inputs[spec.name] = a
        unknown = sorted(set(inputs) - set(self._input_index))
        if unknown:
            raise TypeError(f"unknown input {unknown[0]!r}; the plan's inputs: {[s.name for s in self.inputs]}")
        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise TypeError(f"missing input {missing[0]!r}; the plan's inputs: {[s.name for s in self.inputs]}")
        arrays = [np.ascontiguousarray(inputs[s.name], dtype=s.dtype) for s in self.inputs]
        tokens = self.tokens_of(self.inputs[0].name, arrays[0].shape) if arrays else 1
        out = dict(out or {})
        unknown = sorted(set(out) - set(self._output_index))
        if unknown:
            raise TypeError(f"unknown output {unknown[0]!r}; the plan's outputs: {[s.name for s in self.outputs]}")
        results = {}
        for i, spec in enumerate(self.outputs):
            if spec.name in out:
                a = out[spec.name]
                if not isinstance(a, np.ndarray) or a.dtype != spec.dtype or not a.flags.c_contiguous \
                        or not a.flags.writeable:
                    raise TypeError(f"output {spec.name!r} must be a writable C-contiguous numpy array of "
                                    f"{spec.dtype}")
                results[spec.name] = a
            else:
                results[spec.name] = np.empty(self._shape("output", i, tokens)[0], dtype=spec.dtype)
        ins, keep = self._tensors([(a.ctypes.data, a.shape, _CODES[a.dtype]) for a in arrays])
        outs, keep2 = self._tensors([(a.ctypes.data, a.shape, _CODES[a.dtype]) for a in results.values()])
        run(ins, len(arrays), outs, len(results))
        return results

    def sequence(self, capacity: int) -> "Sequence":
        """A sequence of at most `capacity` tokens of this plan's runs: each run continues it, so
        a decoder layer's graph (rope, attention) decodes a token at a time with a KV cache. See
        `Sequence`."""
        return Sequence(self, capacity)

    def run_buffers(self, inputs, outputs) -> None:
        """Runs the plan on raw buffers: `inputs` and `outputs` are lists of (address, shape, dtype
        code) in the plan's order; moec checks the shapes before it runs. For wrappers such as
        `moec.torch.MoEBlock`; the buffers must stay alive during the call."""
        ins, keep = self._tensors(inputs)
        outs, keep2 = self._tensors(outputs)
        self.run_tensors(ins, len(inputs), outs, len(outputs))

    def run_tensors(self, inputs, input_count: int, outputs, output_count: int) -> None:
        """moec_run on prepared `moec_tensor` arrays (`_native.Tensor`)."""
        lib = _native._lib
        error = ctypes.c_void_p()
        if not lib.moec_run(self._handle, inputs, input_count, outputs, output_count, ctypes.byref(error)):
            raise MoecError(_native.take_string(error.value) or "moec_run failed without a message")
        if error.value:
            _native.take_string(error.value)

    @staticmethod
    def _tensors(items):
        array = (_native.Tensor * max(1, len(items)))()
        keep = []
        for t, (address, shape, dtype) in zip(array, items):
            dims = (ctypes.c_int64 * max(1, len(shape)))(*shape)
            keep.append(dims)
            t.data = address
            t.shape = dims
            t.rank = len(shape)
            t.dtype = dtype
        return array, keep

    # ------------------------------------------------------------------ statistics, files, lifetime

    def stats(self) -> dict:
        """The routing statistics of every run since the plan was loaded or `reset_stats()` (the
        plan must record routing): the document `moec profile` writes, parsed."""
        address = _native.call("moec_stats_json", self._handle)
        return json.loads(_native.take_string(address))

    def stats_json(self) -> str:
        """`stats()` as moec wrote it."""
        return _native.take_string(_native.call("moec_stats_json", self._handle))

    def reset_stats(self) -> None:
        """Forgets the routing statistics recorded so far."""
        _native.call("moec_stats_reset", self._handle)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the plan as a plan file (for `moec run` or `moec.load`)."""
        _native.call("moec_save", self._handle, os.fsencode(path))

    def close(self) -> None:
        """Releases the plan and its weights. Using the plan afterwards raises MoecError (moec
        reports the freed handle); closing twice does nothing."""
        _Handle.close(self)

    def __repr__(self):
        state = "closed" if self._closed else f"handle {self._handle}"
        return f"<moec.Plan {state} inputs={self.inputs} outputs={self.outputs}>"


class Sequence(_Handle):
    """Runs of a plan that continue one another (`Plan.sequence(capacity)`; the C API's
    `moec_sequence`). Calling it runs the plan as `Plan.__call__` does, on the sequence's next
    tokens: a decoder layer's attentions see every earlier token of the sequence (its KV cache)
    as well as the run's own, and its rotary embeddings rotate by the tokens' positions. A prompt
    run at once or a token at a time gives the same outputs. `len(sequence)` is the number of
    tokens it holds; `rewind(n)` forgets the tokens from position n on; `reserve(n)` makes room
    for n tokens, keeping those held (`capacity` is the room there is). One run at a time per
    sequence; different sequences of one plan may run on different threads at once. The keys
    and values are allocated when the sequence is made; close it (or use it as a context manager)
    to release them. It keeps its plan alive."""

    _FREE = "moec_sequence_free"

    def __init__(self, plan: Plan, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise TypeError(f"capacity must be an int, got {type(capacity).__name__}")
        self.plan = plan
        self._closed = True
        self._handle = _native.call("moec_sequence_new", plan.handle, int(capacity))
        self._closed = False

    @property
    def capacity(self) -> int:
        """The most tokens the sequence can hold now."""
        return _native.call("moec_sequence_capacity", self._handle, failed=lambda r: r < 0)

    def reserve(self, capacity: int) -> None:
        """Makes room for `capacity` tokens, keeping those held (less than the capacity changes
        nothing). The one call that allocates once the sequence is made."""
        _native.call("moec_sequence_reserve", self._handle, int(capacity))

    def __call__(self, *args, out: dict | None = None, **inputs) -> dict[str, np.ndarray]:
        """Runs the plan on the sequence's next tokens (arguments as `Plan.__call__`)."""
        return self.plan._call(args, out, inputs, self._run_tensors)

    def _run_tensors(self, inputs, input_count: int, outputs, output_count: int) -> None:
        _native.call("moec_sequence_run", self._handle, inputs, input_count, outputs, output_count)

    def __len__(self) -> int:
        return _native.call("moec_sequence_length", self._handle, failed=lambda r: r < 0)

    def rewind(self, length: int = 0) -> None:
        """Forgets every token from position `length` on (0: all of them): to start anew, or to
        take back tokens a draft proposed."""
        _native.call("moec_sequence_rewind", self._handle, int(length))

    def close(self) -> None:
        """Releases the keys and values; using the sequence afterwards raises MoecError."""
        _Handle.close(self)

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self)} of {self.capacity} tokens"
        return f"<moec.Sequence {state}>"
