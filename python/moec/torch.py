"""`MoEBlock`: a moec plan as a PyTorch module.

CPU float32 tensors go in and come out without copies: the input's storage and a freshly
allocated output tensor are handed to the plan by address (`Tensor.data_ptr()`). An input that is
not a contiguous CPU float32 tensor is converted first (a copy), and the output is converted back
to the input's dtype. The block is for inference: no gradient flows through it.
"""
from __future__ import annotations

import ctypes
import math
import threading

import numpy as np
import torch
from torch import nn

from . import Plan, _native
from ._errors import MoecError


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.int32): torch.int32}
_CODES = {torch.float32: _native.MOEC_F32, torch.int32: _native.MOEC_I32}


class MoEBlock(nn.Module):
    """Runs `plan` (one float32 input of shape [tokens, hidden], one output) on the last dimension
    of its input: `forward(x)` with x of shape [..., hidden] returns [..., hidden_out].

    `owns_plan`: closing the module (`close()`) or collecting it closes the plan."""

    def __init__(self, plan: Plan, input: str | None = None, output: str | None = None, owns_plan: bool = True):
        super().__init__()
        if len(plan.inputs) != 1 or plan.inputs[0].dtype != np.float32:
            raise MoecError(f"MoEBlock runs plans with one float32 input; this plan has {[s.name for s in plan.inputs]}")
        self.plan = plan
        self.input = input or plan.inputs[0].name
        self.output = output or plan.outputs[0].name
        names = [s.name for s in plan.outputs]
        if self.output not in names:
            raise MoecError(f"the plan has no output {self.output!r}; its outputs: {names}")
        self._output_index = names.index(self.output)
        self._owns_plan = owns_plan
        self._cache: dict[int, tuple] = {}
        self._local = threading.local()

    def output_shape(self, tokens: int) -> tuple[int, ...]:
        return self._outputs(tokens)[0][self._output_index]

    def _outputs(self, tokens: int):
        """The output shapes for `tokens` tokens and their C arrays, asked of moec once per token
        count. (Only immutable things are cached: the same block may run on several threads.)"""
        entry = self._cache.get(tokens)
        if entry is None:
            shapes = [self.plan.output_shape(s.name, tokens) for s in self.plan.outputs]
            dims = [(ctypes.c_int64 * len(shape))(*shape) for shape in shapes]
            entry = (shapes, dims)
            if len(self._cache) >= 64:
                self._cache.pop(next(iter(self._cache)))
            self._cache[tokens] = entry
        return entry

    def _call(self, tokens: int, features: int) -> "_Call":
        """This thread's `_Call` for a run on `tokens` × `features` inputs, made once per thread
        and shape, so that a call only writes two data addresses: a decode step's block call
        spent about 0.1 ms of Python making the C arrays anew. (Per thread: the same block may
        run on several threads at once.)"""
        calls = getattr(self._local, "calls", None)
        if calls is None:
            calls = self._local.calls = {}
        call = calls.get((tokens, features))
        if call is None:
            if len(calls) >= 64:
                calls.pop(next(iter(calls)))
            call = calls[(tokens, features)] = _Call(self, tokens, features)
        return call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, features = x.shape[:-1], x.shape[-1]
        if self.plan.is_sequence and len(lead) > 1 and math.prod(lead[:-1]) > 1:
            # Flattening [batch, seq, hidden] would make the sequences one: the second would attend
            # to the first and start at its end's position.
            raise MoecError(f"this plan reads its tokens as one sequence (rope, attention), so it runs one sequence "
                            f"at a time: got {tuple(x.shape)}, {math.prod(lead[:-1])} sequences")
        # A contiguous CPU float32 input is read where it is, whatever its leading shape; others
        # are converted (a copy), and the output converted back.
        x2 = x
        converted = x.dtype is not torch.float32 or x.device.type != "cpu" or not x.is_contiguous() or not features
        if converted:
            x2 = x.detach().reshape(-1, features).to(device="cpu", dtype=torch.float32).contiguous()
        call = self._call(x2.numel() // features, features)
        y = torch.empty((*lead, call.shape[1]) if call.direct else call.shape, dtype=call.dtype)
        call.ins[0].data = x2.data_ptr()
        call.outs[self._output_index].data = y.data_ptr()
        self._run_tensors(call.ins, 1, call.outs, len(call.outs))   # moec checks the shapes
        if not call.direct:
            y = y.reshape(*lead, y.shape[-1])
        if converted and (y.dtype != x.dtype or y.device != x.device):
            y = y.to(device=x.device, dtype=x.dtype)
        return y

    def _run_tensors(self, inputs, input_count: int, outputs, output_count: int) -> None:
        """Runs the plan on prepared C arrays (a subclass may run them as a sequence's tokens)."""
        self.plan.run_tensors(inputs, input_count, outputs, output_count)

    def close(self) -> None:
        """Closes the plan (when the module owns it)."""
        if self._owns_plan:
            self.plan.close()

    def extra_repr(self) -> str:
        return f"input={self.input!r}, output={self.output!r}"


class _Call:
    """The C arrays of a `MoEBlock` run on one input shape: the input and output `moec_tensor`s
    with their shapes filled in (`data` set per call), scratch tensors for the outputs the block
    does not return, and how the returned output is allocated: in the input's leading shape when
    it is a [tokens, features] matrix (`direct`: the same bytes), else as moec gives it."""
    __slots__ = ("ins", "outs", "keep", "shape", "dtype", "direct")

    def __init__(self, block: MoEBlock, tokens: int, features: int):
        shapes, dims = block._outputs(tokens)
        in_dims = (ctypes.c_int64 * 2)(tokens, features)
        self.ins = (_native.Tensor * 1)()
        self.ins[0].shape, self.ins[0].rank, self.ins[0].dtype = in_dims, 2, _native.MOEC_F32
        self.outs = (_native.Tensor * len(shapes))()
        self.keep = [in_dims]
        for i, (t, shape, d, spec) in enumerate(zip(self.outs, shapes, dims, block.plan.outputs)):
            dtype = _TORCH_DTYPES[spec.dtype]
            t.shape, t.rank, t.dtype = d, len(shape), _CODES[dtype]
            if i != block._output_index:
                scratch = torch.empty(shape, dtype=dtype)
                t.data = scratch.data_ptr()
                self.keep.append(scratch)
        self.shape = tuple(shapes[block._output_index])
        self.dtype = _TORCH_DTYPES[block.plan.outputs[block._output_index].dtype]
        self.direct = len(self.shape) == 2 and self.shape[0] == tokens
