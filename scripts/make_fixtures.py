#!/usr/bin/env python3
"""Generate small Hugging Face style MoE checkpoints plus reference inputs/outputs for moec's tests.

Each fixture folder holds a tiny but complete causal-LM (or Switch encoder-decoder) checkpoint written
the way checkpoints on the Hub are (config.json + model.safetensors, or shards + index), an input x and
the fp32 output y of the MoE block of one layer, computed by the transformers class itself.

    ~/.venvs/ref/bin/python scripts/make_fixtures.py --family mixtral --hidden 24 --ffn 40 --experts 8 \
        --k 2 --tokens 7 --seed 3 --layers 2 --layer 1 --out Tests/Fixtures/mixtral-h24-f40-e8-k2-s3
    ~/.venvs/ref/bin/python scripts/make_fixtures.py --all            # regenerate the committed set

After writing a fixture the script (1) reloads the folder with `from_pretrained` and checks the reloaded
block reproduces y.npy (rel. err <= 1e-6, no missing/unexpected keys), (2) recomputes y with the
plain-numpy implementation in scripts/moe_reference.py reading the safetensors by Hub names
(rel. err <= 1e-5, same experts chosen), (3) runs the default experts implementation against "eager".
Relative error = max|a - b| / max|y|. Needs torch + transformers (see Tests/Fixtures/README.md).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import safetensors
import safetensors.torch
import transformers
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import moe_reference as ref  # noqa: E402

REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
VOCAB = 32
RELOAD_TOL = 1e-6
NUMPY_TOL = 1e-5
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

torch.set_num_threads(1)  # deterministic reductions


# ----------------------------------------------------------------------------- per-family description

FAMILIES = {
    "mixtral": dict(
        model_class="MixtralForCausalLM", block_class="MixtralSparseMoeBlock",
        module_path="model.layers[{L}].mlp",
        hub_prefix="model.layers.{L}.block_sparse_moe",
        hub_names=["{P}.gate.weight  [E, d]",
                   "{P}.experts.{e}.w1.weight  [ffn, d]  (gate)",
                   "{P}.experts.{e}.w3.weight  [ffn, d]  (up)",
                   "{P}.experts.{e}.w2.weight  [d, ffn]  (down)"],
        formulas=[
            "logits = x · Wgᵀ  (computed in the weights' dtype: F.linear(hidden, gate.weight))",
            "p = softmax(logits.float(), dim=-1)  (softmax always in fp32)",
            "top_p, idx = torch.topk(p, k)  (sorted descending)",
            "w = top_p / top_p.sum(-1)  (renormalise, no epsilon; always on for Mixtral, there is no norm_topk_prob flag)",
            "y_t = Σ_j w[t,j] · (silu(x_t·w1ᵀ) ⊙ x_t·w3ᵀ)·w2ᵀ  for expert idx[t,j]",
            "in-memory layout: experts.gate_up_proj[e] = cat(w1, w3) rows ([2·ffn, d], gate first), experts.down_proj[e] = w2",
            "router_jitter_noise only in training mode (multiplies the input by U(1-eps, 1+eps)); not in eval",
        ]),
    "qwen2_moe": dict(
        model_class="Qwen2MoeForCausalLM", block_class="Qwen2MoeSparseMoeBlock",
        module_path="model.layers[{L}].mlp",
        hub_prefix="model.layers.{L}.mlp",
        hub_names=["{P}.gate.weight  [E, d]",
                   "{P}.experts.{e}.gate_proj.weight  [ffn, d]",
                   "{P}.experts.{e}.up_proj.weight  [ffn, d]",
                   "{P}.experts.{e}.down_proj.weight  [d, ffn]",
                   "{P}.shared_expert.gate_proj.weight  [shared_ffn, d]",
                   "{P}.shared_expert.up_proj.weight  [shared_ffn, d]",
                   "{P}.shared_expert.down_proj.weight  [d, shared_ffn]",
                   "{P}.shared_expert_gate.weight  [1, d]"],
        formulas=[
            "logits = x · Wgᵀ (weights' dtype); p = softmax(logits, dtype=float32)",
            "top_p, idx = torch.topk(p, k) (sorted descending)",
            "if norm_topk_prob: w = top_p / top_p.sum(-1) (no epsilon) else w = top_p; then w is cast to the logits' dtype",
            "routed_t = Σ_j w[t,j] · SwiGLU_{idx[t,j]}(x_t)",
            "shared_t = sigmoid(x_t · shared_expert_gateᵀ) · (silu(x_t·Gsᵀ) ⊙ x_t·Usᵀ)·Dsᵀ  (gate is a per-token scalar)",
            "y_t = routed_t + shared_t",
            "layer L is MoE iff L not in mlp_only_layers and num_experts > 0 and (L+1) % decoder_sparse_step == 0; otherwise a dense Qwen2MoeMLP(intermediate_size)",
        ]),
    "olmoe": dict(
        model_class="OlmoeForCausalLM", block_class="OlmoeSparseMoeBlock",
        module_path="model.layers[{L}].mlp",
        hub_prefix="model.layers.{L}.mlp",
        hub_names=["{P}.gate.weight  [E, d]",
                   "{P}.experts.{e}.gate_proj.weight  [ffn, d]",
                   "{P}.experts.{e}.up_proj.weight  [ffn, d]",
                   "{P}.experts.{e}.down_proj.weight  [d, ffn]"],
        formulas=[
            "logits = x · Wgᵀ (weights' dtype); p = softmax(logits, dtype=float32)",
            "top_p, idx = torch.topk(p, k) (sorted descending)",
            "if norm_topk_prob: w = top_p / top_p.sum(-1) (no epsilon) else w = top_p (OLMoE-1B-7B: false); w cast to logits' dtype",
            "y_t = Σ_j w[t,j] · (silu(x_t·gate_projᵀ) ⊙ x_t·up_projᵀ)·down_projᵀ ; no shared expert",
        ]),
    "deepseek_v3": dict(
        model_class="DeepseekV3ForCausalLM", block_class="DeepseekV3MoE",
        module_path="model.layers[{L}].mlp",
        hub_prefix="model.layers.{L}.mlp",
        hub_names=["{P}.gate.weight  [E, d]",
                   "{P}.gate.e_score_correction_bias  [E]  (kept in fp32 on load: _keep_in_fp32_modules_strict)",
                   "{P}.experts.{e}.gate_proj.weight  [ffn, d]",
                   "{P}.experts.{e}.up_proj.weight  [ffn, d]",
                   "{P}.experts.{e}.down_proj.weight  [d, ffn]",
                   "{P}.shared_experts.gate_proj.weight  [n_shared·ffn, d]",
                   "{P}.shared_experts.up_proj.weight  [n_shared·ffn, d]",
                   "{P}.shared_experts.down_proj.weight  [d, n_shared·ffn]"],
        formulas=[
            "logits = x.float() · Wg.float()ᵀ  (router always in fp32, input and weight upcast)",
            "s = sigmoid(logits)",
            "c = s + e_score_correction_bias   (choice scores; the bias is used for selection only)",
            "group_scores[t,g] = sum of the top-2 values of c[t, g·E/G:(g+1)·E/G]  (G = n_group; needs E/G >= 2)",
            "kept = topk(group_scores, topk_group, sorted=False).indices; experts of the other groups: c := -inf (masked_fill, not 0)",
            "idx = topk(c_masked, k, sorted=False).indices  (order within a row unspecified; topk_idx.npy is re-sorted by descending c)",
            "w = s.gather(idx)   (sigmoid WITHOUT bias)",
            "if norm_topk_prob: w = w / (w.sum(-1) + 1e-20)",
            "w = w · routed_scaling_factor   (applied whether or not norm_topk_prob)",
            "y_t = Σ_j w[t,j] · SwiGLU_{idx[t,j]}(x_t) + SwiGLU_shared(x_t)   (shared experts = ONE MLP of width n_shared_experts·moe_intermediate_size, unscaled, no gate)",
            "layer L is MoE iff L >= first_k_dense_replace; earlier layers are dense DeepseekV3MLP(intermediate_size)",
            "topk weights stay fp32 and are multiplied with the expert output (promotes), then cast to the hidden dtype",
        ]),
    "switch": dict(
        model_class="SwitchTransformersForConditionalGeneration", block_class="SwitchTransformersSparseMLP",
        module_path="encoder.block[{L}].layer[1].mlp",
        hub_prefix="encoder.block.{L}.layer.1.mlp",
        hub_names=["{P}.router.classifier.weight  [E, d]",
                   "{P}.experts.expert_{e}.wi.weight  [d_ff, d]",
                   "{P}.experts.expert_{e}.wo.weight  [d, d_ff]",
                   "(decoder sparse blocks: decoder.block.{L}.layer.2.mlp.…, same suffixes)"],
        formulas=[
            "input cast to router_dtype (config, default float32); classifier cast to router_dtype too",
            "logits = x · Wrᵀ (+ bias if router_bias); p = softmax(logits, dtype=router_dtype), cast back to the input dtype",
            "e_t = argmax_e p[t,e]  (torch.argmax: first maximal index)",
            "capacity: per sequence, in token order: position_t = #{t' <= t : e_t' = e_t} (cumsum of the one-hot over the sequence axis); token kept iff position_t <= expert_capacity. Priority is sequence order, NOT router probability",
            "w_t = max_e p[t,e]  (the un-renormalised top-1 probability)",
            "kept token:    y_t = w_t · (act(x_t·wiᵀ)·woᵀ), act = dense_act_fn (relu)",
            "DROPPED token: y_t = 0 exactly (transformers 5.x). The enclosing SwitchTransformersLayerFF adds the residual, so the layer output of a dropped token is its input h_t",
            "(transformers <= 4.x differed: SparseMLP returned router_prob · x_t for dropped tokens, i.e. the layer output was h_t + p_t·LN(h_t))",
            "sparse blocks: block i is sparse iff i % sparse_step == 1 (or sparse_step == 1), sparse_step = num_layers // num_sparse_encoder_layers",
        ]),
}


# ----------------------------------------------------------------------------- config / model

def build_config(a):
    F = a.family
    tok = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if F == "mixtral":
        return transformers.MixtralConfig(
            **tok, hidden_size=a.hidden, intermediate_size=a.ffn, num_local_experts=a.experts,
            num_experts_per_tok=a.k, num_hidden_layers=a.layers, num_attention_heads=2, num_key_value_heads=1,
            head_dim=4, max_position_embeddings=64, tie_word_embeddings=False, hidden_act="silu")
    if F == "qwen2_moe":
        return transformers.Qwen2MoeConfig(
            **tok, hidden_size=a.hidden, intermediate_size=a.dense_ffn or 2 * a.ffn, moe_intermediate_size=a.ffn,
            shared_expert_intermediate_size=a.shared_ffn or 2 * a.ffn, num_experts=a.experts,
            num_experts_per_tok=a.k, norm_topk_prob=a.norm_topk_prob, num_hidden_layers=a.layers,
            num_attention_heads=2, num_key_value_heads=1, head_dim=4, max_position_embeddings=64,
            mlp_only_layers=a.mlp_only_layers, decoder_sparse_step=1, tie_word_embeddings=False, hidden_act="silu")
    if F == "olmoe":
        if a.hidden % 4 == 0:
            heads = a.hidden // 4
        elif a.hidden % 2 == 0:
            heads = 1
        else:
            raise SystemExit("olmoe: q_norm/k_norm act on num_heads*head_dim == hidden_size; use an even hidden size")
        return transformers.OlmoeConfig(
            **tok, hidden_size=a.hidden, intermediate_size=a.ffn, num_experts=a.experts, num_experts_per_tok=a.k,
            norm_topk_prob=a.norm_topk_prob, num_hidden_layers=a.layers, num_attention_heads=heads,
            num_key_value_heads=heads, max_position_embeddings=64, tie_word_embeddings=False, hidden_act="silu")
    if F == "deepseek_v3":
        if a.experts % a.n_group or a.experts // a.n_group < 2:
            raise SystemExit("deepseek_v3: n_group must divide E and each group needs >= 2 experts (top-2 group score)")
        if a.topk_group * (a.experts // a.n_group) < a.k:
            raise SystemExit("deepseek_v3: topk_group groups must contain at least k experts")
        first_dense = a.first_k_dense if a.first_k_dense is not None else a.layer
        if a.layer < first_dense:
            raise SystemExit("deepseek_v3: --layer must be >= first_k_dense_replace to be an MoE layer")
        return transformers.DeepseekV3Config(
            **tok, hidden_size=a.hidden, intermediate_size=a.dense_ffn or 2 * a.ffn, moe_intermediate_size=a.ffn,
            n_routed_experts=a.experts, num_experts_per_tok=a.k, n_shared_experts=a.n_shared, n_group=a.n_group,
            topk_group=a.topk_group, norm_topk_prob=a.norm_topk_prob, routed_scaling_factor=a.scaling,
            first_k_dense_replace=first_dense, num_hidden_layers=a.layers, num_attention_heads=2,
            num_key_value_heads=2, q_lora_rank=8, kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4,
            v_head_dim=4, max_position_embeddings=64, tie_word_embeddings=False, hidden_act="silu")
    if F == "switch":
        step = a.layers  # one sparse block per stack: block 1 of 2 (as in google/switch-*), or block 0 of 1
        cfg = transformers.SwitchTransformersConfig(
            vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
            d_model=a.hidden, d_ff=a.ffn, d_kv=4, num_heads=2, num_layers=a.layers, num_decoder_layers=a.layers,
            num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, num_experts=a.experts,
            expert_capacity=a.capacity, router_bias=False, router_dtype="float32", dense_act_fn="relu",
            relative_attention_num_buckets=8, relative_attention_max_distance=16, tie_word_embeddings=True)
        assert cfg.encoder_sparse_step == step
        sparse = [i for i in range(a.layers) if (i % step == 1 or step == 1)]
        if a.layer not in sparse:
            raise SystemExit(f"switch: encoder block {a.layer} is dense; sparse blocks are {sparse}")
        return cfg
    raise SystemExit(f"unknown family {F}")


def get_block(model, family, layer):
    if family == "switch":
        return model.encoder.block[layer].layer[-1].mlp
    return model.model.layers[layer].mlp


def init_all(model, seed, bias_std, bias_mean=0.0):
    """Explicit seeded initialisation of every parameter (HF leaves expert weights empty and routers
    zero). Linear weights ~ N(0, 1/fan_in) so activations and outputs stay O(1) and routing is spread;
    norms ~ 1 + N(0, 0.1²); biases ~ N(0, 0.1²); embeddings ~ N(0, 1);
    DeepSeek e_score_correction_bias ~ N(bias_mean, bias_std²)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            z = torch.randn(shape, generator=g, dtype=torch.float32)
            if p.ndim == 1:
                v = 1.0 + 0.1 * z if "norm" in name else 0.1 * z
            elif "embed" in name or name == "shared.weight":
                v = z
            elif "relative_attention_bias" in name:
                v = 0.5 * z
            else:
                v = z / math.sqrt(shape[-1])   # [.., out, in] -> fan_in = last dim (also for stacked experts)
            p.copy_(v.to(p.dtype))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(bias_mean + bias_std * torch.randn(tuple(b.shape), generator=g, dtype=torch.float32))


def state_bytes(model):
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


def save_checkpoint(model, out, a):
    """Hub layout via save_pretrained (transformers 5.x reverts its in-memory expert fusion on save, so
    the files carry per-expert Hub names); or the stacked in-memory layout written by hand."""
    if a.layout == "stacked":
        model.config.save_pretrained(out)
        model.generation_config.save_pretrained(out)
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        return
    if a.shards <= 1:
        model.save_pretrained(out, safe_serialization=True)
        return
    total = state_bytes(model)
    size = total // a.shards + 1
    for _ in range(200):  # greedy splitter: nudge the limit until it yields exactly the requested count
        for f in os.listdir(out):
            if f.endswith(".safetensors") or f.endswith(".index.json"):
                os.remove(os.path.join(out, f))
        model.save_pretrained(out, safe_serialization=True, max_shard_size=size)
        n = len([f for f in os.listdir(out) if f.endswith(".safetensors")])
        if n == a.shards:
            return
        size = int(size * (1.03 if n > a.shards else 0.97))
    raise SystemExit(f"could not split into {a.shards} shards")


# ----------------------------------------------------------------------------- routing through torch

def torch_routing(block, family, x2d, cfg):
    """(router_logits [T,E], topk_idx [T,k] int32, topk_weight [T,k]) as the HF router computes them.
    DeepSeek rows are re-sorted by descending choice score (HF uses topk(sorted=False)).
    Switch: idx = the expert that processed the token, -1 where the capacity dropped it."""
    with torch.no_grad():
        if family == "switch":
            onehot, probs, logits = block.router(x2d[None])
            onehot, probs, logits = onehot[0], probs[0], logits[0]
            kept = onehot.sum(-1) > 0
            idx = torch.where(kept, onehot.argmax(-1), torch.full_like(kept, -1, dtype=torch.long))[:, None]
            return logits.float().numpy(), idx.int().numpy(), probs.float().numpy()
        logits, w, idx = block.gate(x2d)
        if family == "deepseek_v3":
            c = logits.float().sigmoid() + block.gate.e_score_correction_bias.float()
            order = torch.argsort(-c.gather(1, idx), dim=-1, stable=True)
            idx, w = idx.gather(1, order), w.gather(1, order)
        return logits.float().numpy(), idx.int().numpy(), w.float().numpy()


def rel_err(a, b):
    return ref.rel_err(a, b)


# ----------------------------------------------------------------------------- one fixture

def make_fixture(a):
    out = os.path.abspath(a.out)
    fam = FAMILIES[a.family]
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    cfg = build_config(a)
    cls = getattr(transformers, fam["model_class"])
    torch.manual_seed(a.seed)
    model = cls(cfg)
    init_all(model, a.seed, a.bias_std, a.bias_mean)
    model.eval()
    dtype = DTYPES[a.dtype]
    if dtype != torch.float32:
        model = model.to(dtype)           # round the weights once: these are the file's weights
    save_checkpoint(model, out, a)
    model = model.float()                 # reference output from the same rounded weights, in fp32
    experts_impl = getattr(model.config, "_experts_implementation", None)

    gx = torch.Generator().manual_seed(a.seed * 7919 + 17)
    x = torch.randn(a.tokens, a.hidden, generator=gx, dtype=torch.float32)
    block = get_block(model, a.family, a.layer)
    assert type(block).__name__ == fam["block_class"], type(block).__name__
    grouped_mm_error = None
    try:
        with torch.no_grad():
            y = block(x[None])[0]
    except RuntimeError as e:
        # torch 2.13 CPU grouped_mm requires 16-byte-aligned row strides (fp32: hidden and ffn multiples
        # of 4); transformers' default 'grouped_mm' path does not check this, so odd sizes need 'eager'.
        if "multiple of 16 bytes" not in str(e):
            raise
        grouped_mm_error = f"{type(e).__name__}: {e}"
        model.set_experts_implementation("eager")
        experts_impl = "eager"
        with torch.no_grad():
            y = block(x[None])[0]
    logits, idx, w = torch_routing(block, a.family, x, cfg)

    np.save(os.path.join(out, "x.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(out, "y.npy"), y.numpy().astype(np.float32))
    np.save(os.path.join(out, "router_logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(out, "topk_idx.npy"), idx.astype(np.int32))
    np.save(os.path.join(out, "topk_weight.npy"), w.astype(np.float32))

    # ---- self-check 1: reload with from_pretrained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        re_model, info = cls.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    re_model.eval()
    if grouped_mm_error:
        re_model.set_experts_implementation("eager")
    load_problems = {k: sorted(map(str, v)) for k, v in info.items() if v}
    with torch.no_grad():
        y_reload = get_block(re_model, a.family, a.layer)(x[None])[0]
        ids = (torch.arange(min(a.tokens, 8)) % VOCAB)[None]
        full = re_model(input_ids=ids, decoder_input_ids=ids) if a.family == "switch" else re_model(input_ids=ids)
        full_ok = bool(torch.isfinite(full.logits).all())
    reload_err = rel_err(y_reload.numpy(), y.numpy())

    # ---- self-check 2: eager experts implementation vs the default one
    eager_err = None
    if a.family != "switch" and experts_impl not in (None, "eager"):
        re_model.set_experts_implementation("eager")
        with torch.no_grad():
            y_eager = get_block(re_model, a.family, a.layer)(x[None])[0]
        eager_err = rel_err(y_eager.numpy(), y.numpy())

    # ---- self-check 3: independent numpy implementation from the files
    tensors = ref.load_checkpoint(out)
    cfg_json = json.load(open(os.path.join(out, "config.json")))
    W = ref.layer_weights(tensors, a.family, a.layer, cfg_json)
    y_np, r_np = ref.run_block(a.family, W, cfg_json, x.numpy())
    numpy_err = rel_err(y_np, y.numpy())
    idx_match = bool(np.array_equal(np.sort(r_np.idx, -1), np.sort(idx, -1)))
    # compare combine weights matched by expert id
    order_np = np.argsort(r_np.idx, -1, kind="stable")
    order_t = np.argsort(idx, -1, kind="stable")
    w_err = float(np.max(np.abs(np.take_along_axis(r_np.weights, order_np, -1)
                                - np.take_along_axis(w.astype(np.float64), order_t, -1))))

    # ---- routing statistics (to show the routing is not degenerate)
    E = a.experts
    chosen = idx[idx >= 0]
    counts = np.bincount(chosen, minlength=E).tolist()
    stats = {"tokens_per_expert": counts, "experts_hit": int(np.count_nonzero(counts)),
             "selection_margin_min": r_np.extra.get("margin")}
    if a.family == "deepseek_v3":
        xb = x.numpy().astype(np.float64)
        k = cfg_json["num_experts_per_tok"]
        no_bias = ref.deepseek_v3_route(xb, W["router"], np.zeros(E), k, cfg.n_group, cfg.topk_group,
                                        cfg.norm_topk_prob, cfg.routed_scaling_factor)
        no_group = ref.deepseek_v3_route(xb, W["router"], W["bias"], k, 1, 1,
                                         cfg.norm_topk_prob, cfg.routed_scaling_factor)
        zero_mask = ref.deepseek_v3_route(xb, W["router"], W["bias"], k, cfg.n_group, cfg.topk_group,
                                          cfg.norm_topk_prob, cfg.routed_scaling_factor, mask_value=0.0)
        differ = lambda r2: int(np.sum(np.any(np.sort(r2.idx, -1) != np.sort(r_np.idx, -1), -1)))
        stats["tokens_whose_choice_changes_without_bias"] = differ(no_bias)
        stats["tokens_whose_choice_changes_without_group_limit"] = differ(no_group)
        stats["tokens_whose_choice_changes_with_zero_instead_of_minus_inf_mask"] = differ(zero_mask)
        stats["chosen_choice_scores_min"] = float(np.min(np.take_along_axis(r_np.extra["choice_scores"], r_np.idx, -1)))
        stats["group_margin_min"] = r_np.extra["group_margin"]
        stats["kept_groups"] = r_np.extra["kept_groups"].tolist()
        np.save(os.path.join(out, "kept_groups.npy"), r_np.extra["kept_groups"].astype(np.int32))
    if a.family == "switch":
        dropped = [int(t) for t in np.nonzero(idx[:, 0] < 0)[0]]
        stats["dropped_tokens"] = dropped
        stats["argmax_expert"] = [int(e) for e in np.argmax(logits, -1)]
        stats["dropped_rows_of_y_are_zero"] = bool(np.all(y.numpy()[dropped] == 0.0)) if dropped else None
        # the enclosing SwitchTransformersLayerFF: out = h + SparseMLP(LayerNorm(h)); feed x as h
        ff = model.encoder.block[a.layer].layer[-1]
        with torch.no_grad():
            h = x[None]
            out_ff = ff(h)[0]
            onehot, _, _ = ff.mlp.router(ff.layer_norm(h))
            d = (onehot[0].sum(-1) == 0).numpy()
        stats["layer_ff_check"] = {
            "what": "x fed as h to SwitchTransformersLayerFF (routing then sees LayerNorm(x))",
            "dropped_tokens": [int(t) for t in np.nonzero(d)[0]],
            "layer_output_equals_input_for_dropped": bool(np.array_equal(out_ff.numpy()[d], x.numpy()[d])),
        }

    # ---- tensor names of this layer's MoE block, as stored in the files
    index_file = os.path.join(out, "model.safetensors.index.json")
    weight_map = json.load(open(index_file))["weight_map"] if os.path.exists(index_file) else None
    prefix = ref.moe_prefix(a.family, a.layer, tensors)
    dts = {}
    for fn in os.listdir(out):
        if fn.endswith(".safetensors"):
            dts.update({k: (v, fn) for k, v in ref.safetensors_dtypes(os.path.join(out, fn)).items()})
    names = {k: {"shape": list(tensors[k].shape), "dtype": dts[k][0], "file": dts[k][1]}
             for k in sorted(tensors, key=_natural) if k.startswith(prefix + ".")}

    files = {fn: os.path.getsize(os.path.join(out, fn)) for fn in sorted(os.listdir(out))}
    hyper = _hyper(a, cfg)
    meta = {
        "name": os.path.basename(out),
        "family": a.family,
        "description": a.description or "",
        "model_class": fam["model_class"],
        "block_class": fam["block_class"],
        "module_path": fam["module_path"].format(L=a.layer),
        "checkpoint_prefix": prefix,
        "layer": a.layer,
        "num_layers": a.layers,
        "tokens": a.tokens,
        "seed": a.seed,
        "x_seed": a.seed * 7919 + 17,
        "hyperparameters": hyper,
        "weights_dtype": a.dtype,
        "reference_dtype": "float32",
        "layout": ("stacked (in-memory transformers names, written with safetensors.save_file)"
                   if a.layout == "stacked" else "hub (per-expert tensors, written by save_pretrained)"),
        "shards": max(1, a.shards),
        "experts_implementation_used_for_y": experts_impl or "n/a (SwitchTransformersExperts is a ModuleDict)",
        "default_grouped_mm_error": grouped_mm_error,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "safetensors": safetensors.__version__,
                     "python": platform.python_version()},
        "files": files,
        "size_bytes": sum(files.values()) + 0,
        "tensor_names": names,
        "hub_name_patterns": [s.format(P=prefix, e="{e}", L="{L}") for s in fam["hub_names"]],
        "formulas": fam["formulas"],
        "notes": _notes(a, cfg) + ([
            "the default experts implementation ('grouped_mm') fails on CPU for this shape (%s): torch's CPU "
            "grouped_mm kernel needs 16-byte aligned strides, i.e. hidden and ffn multiples of 4 in fp32. y was "
            "computed with experts_implementation='eager' instead." % grouped_mm_error] if grouped_mm_error else []),
        "routing_stats": stats,
        "parity": {
            "reload_rel_err": reload_err,
            "reload_missing_or_unexpected_keys": load_problems,
            "full_model_forward_finite": full_ok,
            "numpy_rel_err": numpy_err,
            "numpy_same_experts": idx_match,
            "numpy_topk_weight_max_abs_err": w_err,
            "eager_vs_default_experts_rel_err": eager_err,
            "definition": "max|a - y| / max|y| over the [T, hidden] output",
        },
        "arrays": {
            "x.npy": f"float32 [{a.tokens}, {a.hidden}] block input (one sequence)",
            "y.npy": f"float32 [{a.tokens}, {a.hidden}] block output, fp32 torch, eval, no_grad",
            "router_logits.npy": f"float32 [{a.tokens}, {a.experts}] raw router logits x·Wgᵀ",
            "topk_idx.npy": f"int32 [{a.tokens}, {idx.shape[1]}] chosen experts per token"
                            + (" (-1 = dropped by capacity)" if a.family == "switch" else
                               ", descending selection score"),
            "topk_weight.npy": f"float32 [{a.tokens}, {idx.shape[1]}] combine weight of each chosen expert",
        },
    }
    if a.family == "deepseek_v3":
        meta["arrays"]["kept_groups.npy"] = f"int32 [{a.tokens}, {cfg.topk_group}] kept expert groups (ascending), from the numpy reference"
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    meta["size_bytes"] = sum(os.path.getsize(os.path.join(out, fn)) for fn in os.listdir(out))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")

    ok = (reload_err <= RELOAD_TOL and numpy_err <= NUMPY_TOL and idx_match and not load_problems and full_ok)
    print(f"{'ok  ' if ok else 'FAIL'} {meta['name']:<48} reload {reload_err:.1e}  numpy {numpy_err:.1e}  "
          f"eager {eager_err if eager_err is None else f'{eager_err:.1e}'}  "
          f"{meta['size_bytes'] / 1024:.0f} KB  hit {stats['experts_hit']}/{E}"
          + (f"  dropped {stats['dropped_tokens']}" if a.family == "switch" else "")
          + (f"  bias-changes {stats['tokens_whose_choice_changes_without_bias']} "
             f"group-changes {stats['tokens_whose_choice_changes_without_group_limit']}"
             if a.family == "deepseek_v3" else ""), flush=True)
    if load_problems:
        print("   loading info:", load_problems)
    return ok, meta


def _natural(s):
    import re
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _hyper(a, cfg):
    h = {"hidden_size": a.hidden, "ffn": a.ffn, "num_experts": a.experts, "k": a.k, "hidden_act": "silu"}
    if a.family == "qwen2_moe":
        h.update(norm_topk_prob=cfg.norm_topk_prob, shared_expert_intermediate_size=cfg.shared_expert_intermediate_size,
                 mlp_only_layers=cfg.mlp_only_layers, decoder_sparse_step=cfg.decoder_sparse_step)
    if a.family == "olmoe":
        h.update(norm_topk_prob=cfg.norm_topk_prob)
    if a.family == "mixtral":
        h.update(norm_topk_prob="always (renormalised)")
    if a.family == "deepseek_v3":
        h.update(n_group=cfg.n_group, topk_group=cfg.topk_group, norm_topk_prob=cfg.norm_topk_prob,
                 routed_scaling_factor=cfg.routed_scaling_factor, n_shared_experts=cfg.n_shared_experts,
                 shared_ffn=cfg.n_shared_experts * cfg.moe_intermediate_size,
                 first_k_dense_replace=cfg.first_k_dense_replace, e_score_correction_bias_std=a.bias_std,
                 e_score_correction_bias_mean=a.bias_mean)
    if a.family == "switch":
        h.update(k=1, expert_capacity=cfg.expert_capacity, hidden_act="relu", router_dtype=cfg.router_dtype,
                 router_bias=cfg.router_bias, encoder_sparse_step=cfg.encoder_sparse_step)
    return h


def _notes(a, cfg):
    n = []
    if a.dtype != "float32":
        n.append(f"weights stored in {a.dtype}; y is computed in fp32 from the same rounded weights "
                 "(model upcast with .float() after rounding), x is fp32. A bf16/f16 kernel will differ from y "
                 "by its own rounding, not by weight rounding.")
        n.append("config.json 'dtype' records the stored dtype (transformers 5 writes 'dtype', not 'torch_dtype').")
        n.append("in a bf16/f16 model HF computes the Mixtral/Qwen/OLMoE router logits in that dtype and only then "
                 "upcasts for the softmax; the fixture's y uses fp32 logits.")
    if a.layout == "stacked":
        n.append("stacked layout: this file uses transformers 5.x in-memory names "
                 "model.layers.{L}.mlp.experts.gate_up_proj [E, 2*ffn, d] (rows 0..ffn-1 = gate = Hub w1, "
                 "rows ffn..2ffn-1 = up = Hub w3) and model.layers.{L}.mlp.experts.down_proj [E, d, ffn] (= Hub w2); "
                 "the router is model.layers.{L}.mlp.gate.weight (no 'block_sparse_moe'). from_pretrained loads it "
                 "with no missing/unexpected keys; save_pretrained would convert it back to per-expert Hub names.")
    if a.shards > 1:
        n.append(f"sharded by save_pretrained(max_shard_size=...) into {a.shards} files "
                 "model-0000i-of-0000N.safetensors; model.safetensors.index.json maps every tensor name to its shard "
                 "(the MoE block of one layer may span shards).")
    if a.family == "switch":
        n.append("x is fed straight to SwitchTransformersSparseMLP (i.e. after the layer norm); capacity is "
                 "counted over the T tokens of the single sequence.")
    if a.family == "deepseek_v3":
        n.append("e_score_correction_bias was set to a non-zero random vector N(%g, %g²); routing_stats show how many "
                 "tokens' expert sets change if the bias or the group limit were ignored, or if dropped groups were "
                 "masked with 0 (Hub remote code modeling_deepseek.py) instead of -inf (transformers)."
                 % (a.bias_mean, a.bias_std))
        n.append("topk(sorted=False): the order of experts within a token's row is not specified by HF; compare "
                 "expert sets (topk_idx.npy is re-sorted by descending choice score s + bias).")
    if a.family in ("mixtral", "qwen2_moe", "olmoe", "deepseek_v3"):
        n.append("y was produced with the default experts implementation of transformers 5.x "
                 "('grouped_mm' when available); parity.eager_vs_default_experts_rel_err compares with 'eager'.")
    return n


# ----------------------------------------------------------------------------- the committed set

def standard_set():
    S = []

    def add(name, **kw):
        S.append((name, kw))

    # Mixtral: odd sizes, k = 1..4 (incl. k = E), E = 4..16, T = 1..33, multi-layer, shards, bf16, f16, stacked
    add("mixtral-h24-f40-e8-k2-s3", family="mixtral", hidden=24, ffn=40, experts=8, k=2, tokens=7, seed=3,
        layers=2, layer=1, description="the documented example: layer 1 of a 2-layer model")
    add("mixtral-h13-f19-e4-k1-t1-s7", family="mixtral", hidden=13, ffn=19, experts=4, k=1, tokens=1, seed=7,
        description="odd sizes, top-1 (renormalised weight = 1.0), single token")
    add("mixtral-h13-f19-e6-k3-t9-s5", family="mixtral", hidden=13, ffn=19, experts=6, k=3, tokens=9, seed=5,
        description="odd sizes, k = 3")
    add("mixtral-h16-f24-e16-k4-t33-s11", family="mixtral", hidden=16, ffn=24, experts=16, k=4, tokens=33, seed=11,
        description="E = 16, k = 4, T = 33")
    add("mixtral-h8-f12-e4-k4-t5-s17", family="mixtral", hidden=8, ffn=12, experts=4, k=4, tokens=5, seed=17,
        description="k = E: every expert chosen, weights = full softmax")
    add("mixtral-h12-f20-e8-k2-t6-s13-shard3", family="mixtral", hidden=12, ffn=20, experts=8, k=2, tokens=6,
        seed=13, layers=2, layer=0, shards=3, description="3 shards + model.safetensors.index.json")
    add("mixtral-h20-f28-e8-k2-t11-s21-bf16", family="mixtral", hidden=20, ffn=28, experts=8, k=2, tokens=11,
        seed=21, dtype="bfloat16", description="weights stored in bf16; y in fp32 from the rounded weights")
    add("mixtral-h20-f28-e8-k3-t11-s22-f16", family="mixtral", hidden=20, ffn=28, experts=8, k=3, tokens=11,
        seed=22, dtype="float16", description="weights stored in f16; y in fp32 from the rounded weights")
    add("mixtral-h16-f20-e8-k2-t13-s31-stacked", family="mixtral", hidden=16, ffn=20, experts=8, k=2, tokens=13,
        seed=31, layout="stacked", description="stacked expert layout (experts.gate_up_proj / experts.down_proj)")

    # Qwen2-MoE: norm_topk_prob false/true, shared expert with sigmoid gate, E up to 60
    add("qwen2_moe-h16-f12-e8-k2-t9-s41", family="qwen2_moe", hidden=16, ffn=12, experts=8, k=2, tokens=9,
        seed=41, shared_ffn=24, norm_topk_prob=False, description="norm_topk_prob = false (Qwen1.5-MoE default)")
    add("qwen2_moe-h12-f8-e60-k4-t17-s42", family="qwen2_moe", hidden=12, ffn=8, experts=60, k=4, tokens=17,
        seed=42, shared_ffn=16, norm_topk_prob=False, description="E = 60, k = 4 like Qwen1.5-MoE-A2.7B")
    add("qwen2_moe-h16-f16-e4-k3-t5-s43-norm", family="qwen2_moe", hidden=16, ffn=16, experts=4, k=3, tokens=5,
        seed=43, shared_ffn=20, norm_topk_prob=True, layers=2, layer=1, mlp_only_layers=[0],
        description="norm_topk_prob = true; layer 1 of 2, layer 0 dense (mlp_only_layers=[0])")
    add("qwen2_moe-h32-f32-e8-k2-t9-s44-s64", family="qwen2_moe", hidden=32, ffn=32, experts=8, k=2, tokens=9,
        seed=44, shared_ffn=64, norm_topk_prob=False,
        description="rows of 32 and 64 values: int8/int4 groups divide every expert and shared-expert matrix")

    # OLMoE
    add("olmoe-h16-f8-e64-k8-t12-s51", family="olmoe", hidden=16, ffn=8, experts=64, k=8, tokens=12, seed=51,
        norm_topk_prob=False, description="E = 64, k = 8, norm_topk_prob = false like OLMoE-1B-7B")
    add("olmoe-h20-f12-e8-k2-t7-s52-norm", family="olmoe", hidden=20, ffn=12, experts=8, k=2, tokens=7, seed=52,
        norm_topk_prob=True, description="norm_topk_prob = true")
    add("olmoe-h10-f7-e5-k3-t1-s53", family="olmoe", hidden=10, ffn=7, experts=5, k=3, tokens=1, seed=53,
        norm_topk_prob=False, description="odd ffn / E, single token")

    # DeepSeek-V3: sigmoid + bias + groups, scaling, shared experts; layer 1 after one dense layer
    add("deepseek_v3-h16-f8-e16-k4-g4-tg2-t13-s61", family="deepseek_v3", hidden=16, ffn=8, experts=16, k=4,
        tokens=13, seed=61, n_group=4, topk_group=2, norm_topk_prob=True, scaling=2.5, n_shared=1, layers=2,
        layer=1, first_k_dense=1, description="G = 4 groups of 4, keep 2, k = 4, scaling 2.5 (V3 style)")
    add("deepseek_v3-h12-f6-e64-k8-g8-tg3-t9-s62", family="deepseek_v3", hidden=12, ffn=6, experts=64, k=8,
        tokens=9, seed=62, n_group=8, topk_group=3, norm_topk_prob=True, scaling=2.5, n_shared=2, layers=2,
        layer=1, first_k_dense=1, description="E = 64 in 8 groups, keep 3, k = 8, two shared experts")
    add("deepseek_v3-h16-f12-e8-k2-g2-tg1-t11-s63-nonorm", family="deepseek_v3", hidden=16, ffn=12, experts=8,
        k=2, tokens=11, seed=63, n_group=2, topk_group=1, norm_topk_prob=False, scaling=1.5, n_shared=1,
        layers=1, layer=0, first_k_dense=0, description="norm_topk_prob = false, scaling 1.5, only 1 of 2 groups kept")
    add("deepseek_v3-h16-f8-e32-k6-g4-tg2-t17-s65-negbias", family="deepseek_v3", hidden=16, ffn=8, experts=32,
        k=6, tokens=17, seed=65, n_group=4, topk_group=2, norm_topk_prob=True, scaling=2.5, n_shared=1, layers=1,
        layer=0, first_k_dense=0, bias_mean=-1.0, bias_std=0.3,
        description="negative selection bias N(-1, 0.3²): chosen choice scores s + b are < 0, so masking dropped "
                    "groups with 0 (Hub remote code) instead of -inf (transformers) would change the choice")
    add("deepseek_v3-h8-f8-e6-k3-g1-tg1-t5-s64", family="deepseek_v3", hidden=8, ffn=8, experts=6, k=3,
        tokens=5, seed=64, n_group=1, topk_group=1, norm_topk_prob=True, scaling=1.0, n_shared=1, layers=2,
        layer=1, first_k_dense=1, description="no grouping (n_group = topk_group = 1), scaling 1.0")

    # Switch: top-1 with capacity, including dropped tokens
    add("switch-h16-f24-e4-cap2-t11-s71", family="switch", hidden=16, ffn=24, experts=4, k=1, tokens=11, seed=71,
        capacity=2, layers=2, layer=1, description="capacity 2 for 11 tokens over 4 experts: tokens are dropped")
    add("switch-h12-f16-e8-cap64-t9-s72", family="switch", hidden=12, ffn=16, experts=8, k=1, tokens=9, seed=72,
        capacity=64, layers=2, layer=1, description="capacity 64 (switch-base default): nothing dropped")
    add("switch-h8-f8-e64-cap1-t33-s73", family="switch", hidden=8, ffn=8, experts=64, k=1, tokens=33, seed=73,
        capacity=1, layers=1, layer=0, description="E = 64, capacity 1: every repeated expert drops the later token")
    return S


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="regenerate the committed set under Tests/Fixtures")
    p.add_argument("--only", default="", help="with --all: comma-separated substrings of fixture names")
    p.add_argument("--family", choices=sorted(FAMILIES))
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--ffn", type=int, default=16, help="per-expert intermediate size (moe_intermediate_size, d_ff)")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--tokens", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the stored weights")
    p.add_argument("--layout", choices=["hub", "stacked"], default="hub")
    p.add_argument("--norm-topk-prob", dest="norm_topk_prob", type=lambda s: s.lower() in ("1", "true", "yes"),
                   default=None, help="qwen2_moe/olmoe default false, deepseek_v3 default true")
    p.add_argument("--shared-ffn", dest="shared_ffn", type=int, default=0, help="qwen2_moe shared expert width")
    p.add_argument("--dense-ffn", dest="dense_ffn", type=int, default=0, help="width of dense (non-MoE) layers")
    p.add_argument("--mlp-only-layers", dest="mlp_only_layers", type=lambda s: [int(t) for t in s.split(",") if t],
                   default=[])
    p.add_argument("--n-group", dest="n_group", type=int, default=1)
    p.add_argument("--topk-group", dest="topk_group", type=int, default=1)
    p.add_argument("--scaling", type=float, default=2.5, help="deepseek_v3 routed_scaling_factor")
    p.add_argument("--n-shared", dest="n_shared", type=int, default=1)
    p.add_argument("--first-k-dense", dest="first_k_dense", type=int, default=None,
                   help="deepseek_v3 first_k_dense_replace (default: = --layer)")
    p.add_argument("--bias-std", dest="bias_std", type=float, default=0.25,
                   help="std of the random e_score_correction_bias (deepseek_v3)")
    p.add_argument("--bias-mean", dest="bias_mean", type=float, default=0.0,
                   help="mean of the random e_score_correction_bias (deepseek_v3)")
    p.add_argument("--capacity", type=int, default=64, help="switch expert_capacity")
    p.add_argument("--description", default="")
    return p


def finish_args(a):
    if a.norm_topk_prob is None:
        a.norm_topk_prob = a.family == "deepseek_v3"
    if a.family == "switch":
        a.k = 1
    return a


def main():
    p = parser()
    a = p.parse_args()
    if a.all:
        only = [s for s in a.only.split(",") if s]
        results = []
        for name, kw in standard_set():
            if only and not any(s in name for s in only):
                continue
            args = finish_args(p.parse_args([]))
            for key, v in kw.items():
                setattr(args, key, v)
            args = finish_args(args)
            args.out = os.path.join(FIXTURES, name)
            results.append(make_fixture(args))
        if not only:
            write_index([m for _, m in results])
        bad = [m["name"] for ok, m in results if not ok]
        print(f"{len(results) - len(bad)}/{len(results)} fixtures pass;"
              f" total {sum(m['size_bytes'] for _, m in results) / 1024:.0f} KB")
        sys.exit(1 if bad else 0)
    if not a.family or not a.out:
        p.error("--family and --out are required (or --all)")
    ok, _ = make_fixture(finish_args(a))
    sys.exit(0 if ok else 1)


def write_index(metas):
    rows = []
    for m in metas:
        h = m["hyperparameters"]
        rows.append({
            "name": m["name"], "family": m["family"], "hidden": h["hidden_size"], "ffn": h["ffn"],
            "experts": h["num_experts"], "k": h["k"], "tokens": m["tokens"], "layer": m["layer"],
            "num_layers": m["num_layers"], "weights_dtype": m["weights_dtype"], "layout": m["layout"].split()[0],
            "shards": m["shards"], "size_bytes": m["size_bytes"],
            "reload_rel_err": m["parity"]["reload_rel_err"], "numpy_rel_err": m["parity"]["numpy_rel_err"],
            "description": m["description"],
        })
    with open(os.path.join(FIXTURES, "index.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "fixtures": rows}, f,
                  indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
