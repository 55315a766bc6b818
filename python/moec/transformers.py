"""Running the MoE blocks of a transformers model through moec.

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    moec.transformers.patch(model)                # every sparse MoE block → a moec plan
    model.generate(...)                           # runs with moec
    moec.transformers.stats(model, "stats.json")  # expert loads, for `moec place --load`

With `whole_layers=True`, `patch` replaces each decoder layer with a MoE block instead (families in
`DECODER_LAYERS`) by a `PatchedDecoderLayer`: moec's plan of `graphs/decoder/<model_type>.moe`,
attention and norms included, which decodes through a `moec.Sequence` (its own KV cache).

`patch` replaces each sparse MoE block of a supported family (`FAMILIES`) by a `PatchedMoEBlock`:
moec's plan of `graphs/<model_type>.moe` with `layer=N`, compiled against the folder the model was
loaded from. The replacement returns exactly what the block's forward returned in transformers
5.24 (a tensor; for gpt-oss the tuple (hidden states, router scores)). The block's router stays a
torch submodule: it runs (in torch, on the same input) only when its result is needed, that is
for gpt-oss's router scores and when the model is asked for `output_router_logits` (transformers
records router logits with a hook on the router).
"""
from __future__ import annotations

import json
import os
import re
import warnings
import weakref
from dataclasses import dataclass

import torch

from . import compile as compile_plan
from . import graphs_dir as default_graphs_dir
from ._errors import MoecError
from .torch import MoEBlock

try:  # transformers ≥ 5: outputs such as router_logits are recorded while this collector is set
    from transformers.utils.output_capturing import _active_collector
except ImportError:  # pragma: no cover
    _active_collector = None


@dataclass(frozen=True)
class Family:
    """How a family's sparse MoE block looks in transformers 5.24."""
    block_class: str     # the sparse block's class (dense MLP layers of the same model are left alone)
    router: str = "gate"  # the attribute that holds the block's router module
    returns_router_scores: bool = False   # forward returns (hidden, router scores), not hidden
    graph: str | None = None   # graphs/<graph>.moe; None: the model type
    router_args: tuple = ()    # attributes of the block the block passes to its router after the input
    router_flat: bool = True   # the block passes its router the input as [tokens, hidden] (else as given)


# By model type. Each is checked by python/tests: a tiny model generates the same greedy tokens
# patched and unpatched (test_transformers.py: the first five; test_families.py: the others, on
# scripts/make_family_fixtures.py's configurations). In every one the graph computes exactly the
# block's forward: families whose decoder layer adds to the block's output (granitemoeshared's
# shared MLP), whose block returns something else (llama4, ernie4_5_vl_moe, nllb_moe), or whose
# tiny model transformers cannot generate with (dbrx, longcat_flash, glm4v_moe, qwen3_omni_moe;
# qwen3_vl_moe is saved in a layout other than the Hub's) are not listed.
FAMILIES = {
    "mixtral": Family("MixtralSparseMoeBlock"),
    "olmoe": Family("OlmoeSparseMoeBlock"),
    "qwen3_moe": Family("Qwen3MoeSparseMoeBlock"),
    "deepseek_v3": Family("DeepseekV3MoE"),
    "gpt_oss": Family("GptOssMLP", "router", returns_router_scores=True),
    "afmoe": Family("AfmoeSparseMoeBlock", "router", router_args=("expert_bias",), router_flat=False),
    "aria_text": Family("AriaTextMoELayer", "router", graph="aria"),
    "axk1": Family("AXK1MoE"),
    "bailing_hybrid": Family("BailingHybridMoE"),
    "cohere2_moe": Family("Cohere2MoeSparseMoeBlock"),
    "deepseek_v2": Family("DeepseekV2Moe"),
    "deepseek_v32": Family("DeepseekV32MoE"),
    "dots1": Family("Dots1MoE"),
    "ernie4_5_moe": Family("Ernie4_5_MoeSparseMoeBlock"),
    "exaone_moe": Family("ExaoneMoeSparseMoEBlock"),
    "flex_olmo": Family("FlexOlmoSparseMoeBlock"),
    "glm4_moe": Family("Glm4MoeMoE"),
    "glm4_moe_lite": Family("Glm4MoeLiteMoE"),
    "glm_moe_dsa": Family("GlmMoeDsaMoE"),
    "granitemoe": Family("GraniteMoeMoE", "router"),
    "hunyuan_v1_moe": Family("HunYuanMoEV1Moe"),
    "hy_v3": Family("HYV3MoE", router_args=("e_score_correction_bias",)),
    "hy_v4": Family("HYV4MoE"),
    "jamba": Family("JambaSparseMoeBlock", "router"),
    "jetmoe": Family("JetMoeMoE", "router"),
    "lara_mini": Family("LaraMiniSparseMoeBlock"),
    "lfm2_moe": Family("Lfm2MoeSparseMoeBlock", router_args=("expert_bias",)),
    "mellum": Family("MellumSparseMoeBlock"),
    "mimo_v2_flash": Family("MiMoV2FlashMoE"),
    "minimax": Family("MiniMaxSparseMoeBlock"),
    "minimax_m2": Family("MiniMaxM2SparseMoeBlock", router_args=("e_score_correction_bias",)),
    "mistral4": Family("Mistral4MoE"),
    "nemotron_h": Family("NemotronHMoE"),
    "phimoe": Family("PhimoeSparseMoeBlock", "router"),
    "qwen3_5_moe": Family("Qwen3_5MoeSparseMoeBlock"),
    "qwen3_next": Family("Qwen3NextSparseMoeBlock"),
    "sarvam_moe": Family("Glm4MoeMoE"),
    "solar_open": Family("SolarOpenMoE"),
}

# The families whose whole decoder layer (attention, norms, residuals, MoE block) has a graph in
# graphs/decoder, by model type: the layer's class in transformers 5.24. Checked by
# python/tests/test_transformers.py like FAMILIES (the same greedy tokens patched and unpatched).
DECODER_LAYERS = {
    "mixtral": "MixtralDecoderLayer",
    "olmoe": "OlmoeDecoderLayer",
    "qwen3_moe": "Qwen3MoeDecoderLayer",
    "gpt_oss": "GptOssDecoderLayer",
}

_LAYER = re.compile(r"(?:^|\.)(?:layers|blocks)\.(\d+)\.")


def _router_logits_recorded() -> bool:
    if _active_collector is None:
        return True
    collected = _active_collector.get()
    return collected is not None and "router_logits" in collected


class PatchedMoEBlock(MoEBlock):
    """A transformers sparse MoE block run by a moec plan (see the module's doc)."""

    def __init__(self, plan, family: str, layer: int, name: str, router: torch.nn.Module, router_args=()):
        super().__init__(plan)
        self.family = family
        self.layer = layer
        self.module_name = name
        self.returns_router_scores = FAMILIES[family].returns_router_scores
        setattr(self, FAMILIES[family].router, router)
        self._router_attr = FAMILIES[family].router
        self._router_args = tuple(router_args)
        self._router_flat = FAMILIES[family].router_flat

    def forward(self, hidden_states: torch.Tensor):
        y = super().forward(hidden_states)
        if self.returns_router_scores or _router_logits_recorded():
            # The router in torch, as the block called it: transformers' hook on it records its
            # logits; gpt-oss's block also returns its scores.
            router = getattr(self, self._router_attr)
            h = hidden_states.reshape(-1, hidden_states.shape[-1]) if self._router_flat else hidden_states
            routed = router(h, *self._router_args)
            if self.returns_router_scores:
                return y, routed[1]
        return y

    def extra_repr(self) -> str:
        return f"family={self.family!r}, layer={self.layer}, plan={self.plan.handle}"


class PatchedDecoderLayer(MoEBlock):
    """A transformers decoder layer run by a moec plan of graphs/decoder (see the module's doc).

    The layer's keys and values live in moec: a `moec.Sequence` follows the model's cache object.
    It starts with room for 32 tokens and doubles as needed, up to `capacity` (`max_tokens`). A new cache object (a new generation) starts the sequence anew; a run
    whose first position is before the sequence's end (the cache was cropped, a generation
    restarted) rewinds it. The model's cache gets a one-float key and value per token for this
    layer, so that it still counts the tokens (positions and masks come from that count). One
    generation at a time per model, a batch of one sequence."""

    # The sequence starts with room for this many tokens and doubles as a generation needs more.
    INITIAL_TOKENS = 32

    def __init__(self, plan, family: str, layer: int, name: str, capacity: int):
        super().__init__(plan)
        self.family = family
        self.layer = layer
        self.module_name = name
        self.capacity = capacity
        self.sequence = plan.sequence(min(capacity, self.INITIAL_TOKENS))
        self._followed = None   # a weak reference to the cache object the sequence follows
        self._sequenced = False

    def forward(self, hidden_states: torch.Tensor, *args, position_ids=None, cache=None, past_key_values=None,
                **kwargs) -> torch.Tensor:
        cache = cache if cache is not None else past_key_values
        tokens = hidden_states.shape[-2]
        start = int(position_ids.reshape(-1)[0]) if position_ids is not None and position_ids.numel() else None
        if cache is None:
            if start:
                raise MoecError(f"moec.transformers: decoder layer {self.layer} got tokens from position {start} "
                                "without a cache; run the model with use_cache=True")
            self._sequenced = False
            return super().forward(hidden_states)
        if self._followed is None or self._followed() is not cache:
            self.sequence.rewind(0)
            self._followed = weakref.ref(cache)
        held = len(self.sequence)
        start = held if start is None else start
        if start > held:
            raise MoecError(f"moec.transformers: decoder layer {self.layer} holds {held} tokens of this sequence "
                            f"and got tokens from position {start}")
        if start < held:
            self.sequence.rewind(start)
        if start + tokens > self.capacity:
            raise MoecError(f"moec.transformers: decoder layer {self.layer} keeps at most {self.capacity} tokens; "
                            f"position {start + tokens} needs more (patch with max_tokens=…)")
        if start + tokens > self.sequence.capacity:
            self.sequence.reserve(min(self.capacity, max(start + tokens, 2 * self.sequence.capacity)))
        self._sequenced = True
        y = super().forward(hidden_states)
        # One float per token (a cache layer of no elements reads as empty, whatever its length).
        stand_in = hidden_states.new_zeros((hidden_states.shape[0], 1, tokens, 1))
        cache.update(stand_in, stand_in, self.layer)
        return y

    def _run_tensors(self, inputs, input_count: int, outputs, output_count: int) -> None:
        if self._sequenced:
            self.sequence._run_tensors(inputs, input_count, outputs, output_count)
        else:
            self.plan.run_tensors(inputs, input_count, outputs, output_count)

    def close(self) -> None:
        self.sequence.close()
        super().close()

    def extra_repr(self) -> str:
        return f"family={self.family!r}, layer={self.layer}, plan={self.plan.handle}, capacity={self.capacity}"


def model_folder(model) -> str:
    """The folder `model` was loaded from (`from_pretrained`'s argument, or the Hub cache's
    snapshot of that repository when it was a repository id)."""
    path = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    if not path:
        raise MoecError("moec.transformers.patch: the model does not say which folder it was loaded from "
                        "(name_or_path is empty); pass model_path=")
    if os.path.isdir(path):
        return path
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(path, local_files_only=True)
    except Exception:
        raise MoecError(f"moec.transformers.patch: the model was loaded from {path!r}, which is neither a folder "
                        "nor a repository in the Hub cache; pass model_path=") from None


def sparse_blocks(model):
    """(name, module, layer) of every sparse MoE block of a supported model, in layer order."""
    model_type = getattr(model.config, "model_type", None)
    family = FAMILIES.get(model_type)
    if family is None:
        raise MoecError(f"moec.transformers: model type {model_type!r} is not supported; supported: "
                        f"{', '.join(sorted(FAMILIES))}")
    blocks = []
    for name, module in model.named_modules():
        if type(module).__name__ == family.block_class:
            m = _LAYER.search(name + ".")
            if m is None:
                raise MoecError(f"moec.transformers: cannot tell the layer of {name} ({family.block_class})")
            blocks.append((name, module, int(m.group(1))))
    return sorted(blocks, key=lambda b: b[2])


def patched_blocks(model) -> list:
    """The moec modules `patch` put into `model` (`PatchedMoEBlock`s, or `PatchedDecoderLayer`s
    with `whole_layers`), in layer order."""
    return sorted((m for m in model.modules() if isinstance(m, (PatchedMoEBlock, PatchedDecoderLayer))),
                  key=lambda m: m.layer)


def patch(model, weights: str | None = None, threads: int = 0, graphs_dir: str | None = None,
          model_path: str | None = None, record_routing: bool = True, whole_layers: bool = False,
          max_tokens: int | None = None):
    """Replaces every sparse MoE block of `model` (a loaded transformers model of a family in
    `FAMILIES`) with moec's plan for its layer: graph `<graphs_dir>/<model_type>.moe` (default:
    moec's graphs), params `layer=N`, weights from the folder the model was loaded from (or
    `model_path`), stored as `weights` ("bf16", "int8", "int4", …; None: as the checkpoint stores
    them). `threads`: worker threads of each run (0: one per core). `record_routing`: record expert
    loads for `stats(model)`. Returns the model. The plan reads the weights from the files: a
    model whose expert weights were changed after loading must be saved first.

    `whole_layers`: replace each decoder layer that has a sparse MoE block, attention included,
    with moec's plan of `<graphs_dir>/decoder/<model_type>.moe` (families in `DECODER_LAYERS`),
    which keeps its own KV cache, growing as needed up to `max_tokens` tokens (default: the
    model's max_position_embeddings)."""
    model_type = getattr(model.config, "model_type", None)
    if whole_layers:
        return _patch_layers(model, weights, threads, graphs_dir, model_path, record_routing, max_tokens)
    blocks = sparse_blocks(model)
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE" and torch.get_num_threads() > 1 \
            and (threads == 0 or threads > 1):
        warnings.warn("moec.transformers.patch: torch's OpenMP threads spin between operations and take the cores "
                      "moec's threads run on; set OMP_WAIT_POLICY=PASSIVE before importing torch (or import moec "
                      "first) for full speed", RuntimeWarning, stacklevel=2)
    if not blocks:
        already = patched_blocks(model)
        raise MoecError(f"moec.transformers.patch: no {FAMILIES[model_type].block_class} in the model"
                        + (" (it is already patched)" if already else ""))
    folder = model_path or model_folder(model)
    graph = os.path.join(graphs_dir or default_graphs_dir(), f"{FAMILIES[model_type].graph or model_type}.moe")
    if not os.path.exists(graph):
        raise MoecError(f"moec.transformers.patch: no graph for {model_type}: {graph} does not exist")
    hidden = model.config.get_text_config().hidden_size
    replacements = []
    try:
        for name, module, layer in blocks:
            plan = compile_plan(graph, model=folder, params={"layer": layer}, weights=weights, threads=threads,
                                record_routing=record_routing)
            family = FAMILIES[model_type]
            replacements.append((name, PatchedMoEBlock(plan, model_type, layer, name, getattr(module, family.router),
                                                       [getattr(module, a, None) for a in family.router_args])))
            shape = plan.input_shape(plan.inputs[0].name, 1)
            if shape[-1] != hidden:
                raise MoecError(f"moec.transformers.patch: the plan of layer {layer} takes {shape[-1]} features, "
                                f"the model's hidden size is {hidden} (is {folder} the model's folder?)")
    except BaseException:
        for _, block in replacements:
            block.close()
        raise
    return _replace(model, replacements)


def _replace(model, replacements):
    """Puts each (module name, module) of `replacements` into `model` in place of the module of
    that name; returns the model."""
    for name, block in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, torch.nn.ModuleList):
            parent[int(child)] = block
        else:
            setattr(parent, child, block)
    return model


def _patch_layers(model, weights, threads, graphs_dir, model_path, record_routing, max_tokens):
    """`patch(…, whole_layers=True)`."""
    model_type = getattr(model.config, "model_type", None)
    layer_class = DECODER_LAYERS.get(model_type)
    if layer_class is None:
        raise MoecError(f"moec.transformers.patch: whole_layers is for {', '.join(sorted(DECODER_LAYERS))}, "
                        f"not {model_type!r} (graphs/decoder has no layer of it); patch its MoE blocks instead")
    blocks = sparse_blocks(model)
    if not blocks:
        raise MoecError(f"moec.transformers.patch: no {FAMILIES[model_type].block_class} in the model"
                        + (" (it is already patched)" if patched_blocks(model) else ""))
    sparse_layers = {layer for _, _, layer in blocks}
    layers = [(name, m, int(_LAYER.search(name + ".").group(1))) for name, m in model.named_modules()
              if type(m).__name__ == layer_class]
    layers = [entry for entry in layers if entry[2] in sparse_layers]
    if max_tokens is None:
        max_tokens = int(getattr(model.config.get_text_config(), "max_position_embeddings", 4096) or 4096)
    if max_tokens < 1:
        raise MoecError(f"moec.transformers.patch: max_tokens must be at least 1, got {max_tokens}")
    folder = model_path or model_folder(model)
    graph = os.path.join(graphs_dir or default_graphs_dir(), "decoder", f"{model_type}.moe")
    if not os.path.exists(graph):
        raise MoecError(f"moec.transformers.patch: no decoder layer graph for {model_type}: {graph} does not exist")
    replacements = []
    try:
        for name, module, layer in layers:
            plan = compile_plan(graph, model=folder, params={"layer": layer}, weights=weights, threads=threads,
                                record_routing=record_routing)
            replacements.append((name, PatchedDecoderLayer(plan, model_type, layer, name, max_tokens)))
    except BaseException:
        for _, block in replacements:
            block.close()
        raise
    return _replace(model, replacements)


def close(model) -> None:
    """Closes the plans of a patched model (the model cannot run afterwards)."""
    for block in patched_blocks(model):
        block.close()


def reset_stats(model) -> None:
    """Forgets the routing statistics recorded so far in every patched block."""
    for block in patched_blocks(model):
        block.plan.reset_stats()


def merge_stats(documents: list[tuple[str, int, dict]], graph: str, source: str | None = None) -> dict:
    """One statistics document from per-layer ones ((module name, layer, document)), as `moec
    profile` writes it for a graph with several MoE layers: every per-layer array concatenated in
    layer order, the layers' entries named by their module and layer."""
    if not documents:
        raise MoecError("moec.transformers.stats: the model has no patched MoE blocks")
    first = documents[0][2]
    merged: dict = {}
    for key, value in first.items():
        if key == "graph":
            merged[key] = graph
        elif key == "source":
            merged[key] = source or value
        elif key == "layers":
            merged[key] = [dict(entry, name=name, layer=layer) for name, layer, d in documents for entry in d["layers"]]
        elif key == "expert_bytes":
            merged[key] = max(d.get(key, 0) for _, _, d in documents)
        elif isinstance(value, list):
            merged[key] = [v for _, _, d in documents for v in d[key]]
        else:
            merged[key] = value
    if any("fixed_experts" in d for _, _, d in documents):
        merged["fixed_experts"] = [v for _, _, d in documents
                                   for v in d.get("fixed_experts", [[] for _ in d["expert_load"]])]
    return merged


def stats(model, path: str | os.PathLike | None = None) -> dict:
    """The routing statistics of every patched block since it was patched (or `reset_stats`): the
    JSON `moec profile` writes, one layer per MoE block, ready for `moec place --load`. Written to
    `path` when given; returned parsed."""
    blocks = patched_blocks(model)
    if not blocks:
        raise MoecError("moec.transformers.stats: the model is not patched (call moec.transformers.patch first)")
    missing = [b.module_name for b in blocks if not b.plan.record_routing]
    if missing:
        raise MoecError(f"moec.transformers.stats: {missing[0]} does not record routing "
                        "(patch with record_routing=True)")
    source = f"moec.transformers: the patched MoE blocks of {getattr(model, 'name_or_path', '') or 'a model'}"
    doc = merge_stats([(b.module_name, b.layer, b.plan.stats()) for b in blocks], model.config.model_type, source)
    if path is not None:
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    return doc
