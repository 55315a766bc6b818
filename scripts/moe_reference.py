#!/usr/bin/env python3
"""Plain-numpy reference implementations of the MoE blocks in the moec fixtures.

Written from the formulas (see Tests/Fixtures/README.md, "Semantics notes"), not by calling torch or
transformers. Depends on numpy only; reads safetensors files directly (F32, F16, BF16, ...).

Conventions
  x        float array [T, d]   one sequence of T tokens (rows are tokens)
  W        linear weight stored [out, in] as in PyTorch / the Hub, so `x @ W.T`
  returns  y [T, d] and a `Routing` record (logits, chosen experts per token, their weights)

All arithmetic is done in float64 (the fixtures' y.npy is the fp32 PyTorch output; the two agree to
~1e-7 relative). Top-k ties are broken towards the lower expert index (stable sort).

Use as a library (`mixtral_block`, `qwen2_moe_block`, `olmoe_block`, `deepseek_v3_block`,
`switch_block`, `load_checkpoint`, `layer_weights`) or from the command line to check fixtures:

    python scripts/moe_reference.py Tests/Fixtures/*/      # recompute y from the files, compare
"""
from __future__ import annotations

import json
import os
import re
import struct
import sys
from dataclasses import dataclass, field

import numpy as np

# ----------------------------------------------------------------------------- safetensors I/O

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Read every tensor of one .safetensors file into numpy. BF16 is widened exactly to float32."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def safetensors_dtypes(path: str) -> dict[str, str]:
    """name -> safetensors dtype string ('F32', 'BF16', ...) without reading the data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def load_checkpoint(folder: str) -> dict[str, np.ndarray]:
    """All tensors of a Hugging Face checkpoint folder: model.safetensors, or the shards listed in
    model.safetensors.index.json (`weight_map`: tensor name -> shard file)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(folder, shard))
            for k, v in part.items():
                if weight_map.get(k) != shard:
                    raise ValueError(f"{k} found in {shard} but the index maps it to {weight_map.get(k)}")
            tensors.update(part)
        missing = set(weight_map) - set(tensors)
        if missing:
            raise ValueError(f"index lists tensors absent from the shards: {sorted(missing)[:5]}")
        return tensors
    return read_safetensors(os.path.join(folder, "model.safetensors"))


# ----------------------------------------------------------------------------- elementwise helpers

def silu(z):
    return z / (1.0 + np.exp(-z))


def relu(z):
    return np.maximum(z, 0.0)


def gelu_new(z):  # tanh approximation ("gelu_new" / "gelu_pytorch_tanh")
    return 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z ** 3)))


def gelu(z):  # exact erf GELU
    from math import erf
    return 0.5 * z * (1.0 + np.vectorize(erf)(z / np.sqrt(2.0)))


ACT = {"silu": silu, "swish": silu, "relu": relu, "gelu_new": gelu_new, "gelu_pytorch_tanh": gelu_new, "gelu": gelu}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(s, axis=-1):
    m = np.max(s, axis=axis, keepdims=True)
    e = np.exp(s - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def topk(scores, k):
    """Indices [T, k] of the k largest scores per row, descending; ties -> lower index first."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[:, :k]


def selection_margin(scores, k):
    """min over rows of (k-th largest - (k+1)-th largest): how close the top-k choice is to a tie."""
    if k >= scores.shape[-1]:
        return float("inf")
    s = -np.sort(-scores, axis=-1)
    return float(np.min(s[:, k - 1] - s[:, k]))


# ----------------------------------------------------------------------------- experts

def swiglu_expert(x, w_gate, w_up, w_down, act=silu):
    """(act(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ   (Mixtral: w1 = gate, w3 = up, w2 = down)."""
    return (act(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def mlp_expert(x, w_in, w_out, act=relu):
    """act(x·W_iᵀ)·W_oᵀ   (Switch: wi, wo)."""
    return act(x @ w_in.T) @ w_out.T


def combine(x, idx, weights, experts, act=silu):
    """y_t = Σ_j weights[t, j] · expert_{idx[t, j]}(x_t). `experts[e]` = (gate, up, down).
    Rows of idx may contain -1 (no expert: contributes nothing)."""
    y = np.zeros_like(x)
    for e, (wg, wu, wd) in enumerate(experts):
        rows, slots = np.nonzero(idx == e)
        if rows.size == 0:
            continue
        y[rows] += weights[rows, slots][:, None] * swiglu_expert(x[rows], wg, wu, wd, act)
    return y


@dataclass
class Routing:
    logits: np.ndarray            # [T, E] raw router scores x·Wgᵀ
    idx: np.ndarray               # [T, k] chosen experts, in descending selection-score order (-1 = dropped)
    weights: np.ndarray           # [T, k] combine weights applied to each chosen expert's output
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- routers

def softmax_topk_route(x, w_router, k, norm_topk_prob):
    """Mixtral / Qwen2-MoE / OLMoE router.
    p = softmax(x·Wgᵀ) over all E experts (fp32 in HF); choose top-k of p;
    weights = chosen p, divided by their sum if norm_topk_prob (no epsilon)."""
    logits = x @ w_router.T
    p = softmax(logits)
    idx = topk(p, k)
    w = np.take_along_axis(p, idx, axis=-1)
    if norm_topk_prob:
        w = w / w.sum(axis=-1, keepdims=True)
    return Routing(logits, idx, w, {"probs": p, "margin": selection_margin(p, k)})


def deepseek_v3_route(x, w_router, bias, k, n_group, topk_group, norm_topk_prob, routed_scaling_factor,
                      mask_value=-np.inf):
    """DeepSeek-V3 router (noaux_tc).
    s      = sigmoid(x·Wgᵀ)                                  [T, E]  (fp32 in HF)
    c      = s + bias                                        choice scores; bias only affects selection
    group  g = experts [g·E/G, (g+1)·E/G); group score = sum of the top-2 c inside the group
    keep the topk_group groups with the largest group score; c of experts in other groups -> -inf
    chosen = top-k of masked c
    weights = s[chosen] (no bias); if norm_topk_prob: / (sum + 1e-20); then * routed_scaling_factor
    `mask_value=0.0` reproduces the Hub remote code (modeling_deepseek.py), which masks with 0 instead of
    -inf; the two differ when a kept expert's choice score s + bias is <= 0.
    """
    T, E = x.shape[0], w_router.shape[0]
    logits = x @ w_router.T
    s = sigmoid(logits)
    c = s + bias[None, :]
    gs = E // n_group
    cg = c.reshape(T, n_group, gs)
    top2 = -np.sort(-cg, axis=-1)[:, :, :2]
    group_scores = top2.sum(-1)                                  # [T, G]
    kept_groups = topk(group_scores, topk_group)                 # [T, topk_group]
    group_mask = np.zeros((T, n_group), dtype=bool)
    np.put_along_axis(group_mask, kept_groups, True, axis=-1)
    expert_mask = np.repeat(group_mask, gs, axis=-1)             # [T, E]
    c_masked = np.where(expert_mask, c, mask_value)
    idx = topk(c_masked, k)
    w = np.take_along_axis(s, idx, axis=-1)
    if norm_topk_prob:
        w = w / (w.sum(-1, keepdims=True) + 1e-20)
    w = w * routed_scaling_factor
    extra = {
        "scores": s, "choice_scores": c, "group_scores": group_scores, "kept_groups": np.sort(kept_groups, -1),
        "margin": selection_margin(c_masked, k),
        "group_margin": selection_margin(group_scores, topk_group),
    }
    return Routing(logits, idx, w, extra)


def switch_route(x, w_router, expert_capacity, b_router=None):
    """Switch Transformers top-1 router with capacity (one sequence; HF applies it per sequence).
    p = softmax(x·Wgᵀ (+b)) in fp32; e_t = argmax p (first index on ties); weight = max p.
    Token t keeps its expert iff #{t' ≤ t : e_t' = e_t} ≤ expert_capacity (tokens in sequence order,
    NOT by probability). Dropped tokens get idx -1, and (transformers 5.x) an all-zero block output."""
    logits = x @ w_router.T
    if b_router is not None:
        logits = logits + b_router
    p = softmax(logits)
    e = np.argmax(p, axis=-1)
    onehot = np.eye(w_router.shape[0], dtype=np.int64)[e]
    priority = np.cumsum(onehot, axis=0)[np.arange(len(e)), e]   # 1-based position in its expert's queue
    kept = priority <= expert_capacity
    idx = np.where(kept, e, -1)[:, None]
    w = p.max(-1, keepdims=True)
    return Routing(logits, idx, w, {"probs": p, "kept": kept, "argmax": e,
                                    "margin": selection_margin(p, 1)})


# ----------------------------------------------------------------------------- blocks

def mixtral_block(x, W, k, act="silu"):
    """MixtralSparseMoeBlock: softmax -> top-k -> renormalise; SwiGLU experts (w1, w3, w2)."""
    r = softmax_topk_route(x, W["router"], k, norm_topk_prob=True)
    return combine(x, r.idx, r.weights, W["experts"], ACT[act]), r


def olmoe_block(x, W, k, norm_topk_prob, act="silu"):
    """OlmoeSparseMoeBlock: softmax -> top-k (renormalise only if norm_topk_prob); SwiGLU experts."""
    r = softmax_topk_route(x, W["router"], k, norm_topk_prob)
    return combine(x, r.idx, r.weights, W["experts"], ACT[act]), r


def qwen2_moe_block(x, W, k, norm_topk_prob, act="silu"):
    """Qwen2MoeSparseMoeBlock: routed part as OLMoE, plus the always-on shared expert scaled per token
    by sigmoid(x·w_shared_gateᵀ) (w_shared_gate: [1, d])."""
    r = softmax_topk_route(x, W["router"], k, norm_topk_prob)
    y = combine(x, r.idx, r.weights, W["experts"], ACT[act])
    sg, su, sd = W["shared"]
    gate = sigmoid(x @ W["shared_gate"].T)                      # [T, 1]
    y = y + gate * swiglu_expert(x, sg, su, sd, ACT[act])
    r.extra["shared_gate"] = gate
    return y, r


def deepseek_v3_block(x, W, k, n_group, topk_group, norm_topk_prob, routed_scaling_factor, act="silu"):
    """DeepseekV3MoE: grouped sigmoid router with selection bias; SwiGLU experts; shared experts
    (one SwiGLU MLP of width n_shared_experts·moe_intermediate_size) added unscaled."""
    r = deepseek_v3_route(x, W["router"], W["bias"], k, n_group, topk_group, norm_topk_prob,
                          routed_scaling_factor)
    y = combine(x, r.idx, r.weights, W["experts"], ACT[act])
    sg, su, sd = W["shared"]
    return y + swiglu_expert(x, sg, su, sd, ACT[act]), r


def switch_block(x, W, expert_capacity, act="relu"):
    """SwitchTransformersSparseMLP (transformers 5.x): y_t = p_t · expert_{e_t}(x_t) for kept tokens,
    y_t = 0 for tokens dropped by the capacity limit."""
    r = switch_route(x, W["router"], expert_capacity, W.get("router_bias"))
    y = np.zeros_like(x)
    for e, (wi, wo) in enumerate(W["experts"]):
        rows = np.nonzero(r.idx[:, 0] == e)[0]
        if rows.size:
            y[rows] = r.weights[rows] * mlp_expert(x[rows], wi, wo, ACT[act])
    return y, r


# ----------------------------------------------------------------------------- checkpoint -> weights

def _stacked_or_per_expert(t, prefix, E, per_expert_names):
    """Return [(gate, up, down)] for E experts from either per-expert Hub tensors
    `{prefix}.experts.{e}.{gate}/{up}/{down}.weight` or the stacked layout
    `{prefix}.experts.gate_up_proj` [E, 2·ffn, d] (gate rows first) + `{prefix}.experts.down_proj` [E, d, ffn]."""
    g, u, d = per_expert_names
    if f"{prefix}.experts.gate_up_proj" in t:
        gu = t[f"{prefix}.experts.gate_up_proj"]
        dn = t[f"{prefix}.experts.down_proj"]
        ffn = gu.shape[1] // 2
        return [(gu[e, :ffn], gu[e, ffn:], dn[e]) for e in range(E)]
    return [(t[f"{prefix}.experts.{e}.{g}.weight"], t[f"{prefix}.experts.{e}.{u}.weight"],
             t[f"{prefix}.experts.{e}.{d}.weight"]) for e in range(E)]


def moe_prefix(family, layer, tensors=None):
    """Checkpoint name prefix of the MoE block of `layer`."""
    if family == "mixtral":
        # Hub checkpoints use block_sparse_moe; the stacked (in-memory) layout uses mlp
        p = f"model.layers.{layer}.block_sparse_moe"
        if tensors is not None and f"{p}.gate.weight" not in tensors:
            p = f"model.layers.{layer}.mlp"
        return p
    if family in ("qwen2_moe", "olmoe", "deepseek_v3"):
        return f"model.layers.{layer}.mlp"
    if family == "switch":
        return f"encoder.block.{layer}.layer.1.mlp"
    raise ValueError(family)


def layer_weights(tensors, family, layer, cfg):
    """Canonical float64 weights of one MoE block: router [E, d], experts [(gate, up, down)] or
    [(wi, wo)], shared (gate, up, down), shared_gate [1, d], bias [E]."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)
    t = tensors
    p = moe_prefix(family, layer, t)
    W = {}
    if family == "mixtral":
        E = cfg["num_local_experts"]
        W["router"] = f64(t[f"{p}.gate.weight"])
        W["experts"] = [tuple(map(f64, e)) for e in _stacked_or_per_expert(t, p, E, ("w1", "w3", "w2"))]
    elif family in ("qwen2_moe", "olmoe", "deepseek_v3"):
        E = cfg["n_routed_experts"] if family == "deepseek_v3" else cfg["num_experts"]
        W["router"] = f64(t[f"{p}.gate.weight"])
        W["experts"] = [tuple(map(f64, e)) for e in
                        _stacked_or_per_expert(t, p, E, ("gate_proj", "up_proj", "down_proj"))]
        if family == "qwen2_moe":
            s = f"{p}.shared_expert"
            W["shared"] = tuple(f64(t[f"{s}.{n}_proj.weight"]) for n in ("gate", "up", "down"))
            W["shared_gate"] = f64(t[f"{p}.shared_expert_gate.weight"])
        if family == "deepseek_v3":
            s = f"{p}.shared_experts"
            W["shared"] = tuple(f64(t[f"{s}.{n}_proj.weight"]) for n in ("gate", "up", "down"))
            W["bias"] = f64(t[f"{p}.gate.e_score_correction_bias"])
    elif family == "switch":
        E = cfg["num_experts"]
        W["router"] = f64(t[f"{p}.router.classifier.weight"])
        if f"{p}.router.classifier.bias" in t:
            W["router_bias"] = f64(t[f"{p}.router.classifier.bias"])
        W["experts"] = [(f64(t[f"{p}.experts.expert_{e}.wi.weight"]), f64(t[f"{p}.experts.expert_{e}.wo.weight"]))
                        for e in range(E)]
    else:
        raise ValueError(family)
    return W


def run_block(family, W, cfg, x):
    """Dispatch on family with hyperparameters taken from config.json."""
    x = np.asarray(x, dtype=np.float64)
    if family == "mixtral":
        return mixtral_block(x, W, cfg["num_experts_per_tok"], cfg.get("hidden_act", "silu"))
    if family == "olmoe":
        return olmoe_block(x, W, cfg["num_experts_per_tok"], cfg["norm_topk_prob"], cfg.get("hidden_act", "silu"))
    if family == "qwen2_moe":
        return qwen2_moe_block(x, W, cfg["num_experts_per_tok"], cfg["norm_topk_prob"], cfg.get("hidden_act", "silu"))
    if family == "deepseek_v3":
        return deepseek_v3_block(x, W, cfg["num_experts_per_tok"], cfg["n_group"], cfg["topk_group"],
                                 cfg["norm_topk_prob"], cfg["routed_scaling_factor"], cfg.get("hidden_act", "silu"))
    if family == "switch":
        return switch_block(x, W, cfg["expert_capacity"], cfg.get("dense_act_fn", "relu"))
    raise ValueError(family)


def reference_for_folder(folder):
    """Recompute (y, routing) for a fixture folder from config.json, meta.json, x.npy and the weights."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    x = np.load(os.path.join(folder, "x.npy"))
    W = layer_weights(load_checkpoint(folder), meta["family"], meta["layer"], cfg)
    return run_block(meta["family"], W, cfg, x)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) /
                 max(float(np.max(np.abs(np.asarray(b, np.float64)))), 1e-30))


def check_folder(folder, tol=1e-5):
    y_ref = np.load(os.path.join(folder, "y.npy"))
    y, r = reference_for_folder(folder)
    err = rel_err(y, y_ref)
    ok = err <= tol
    idx_file = os.path.join(folder, "topk_idx.npy")
    if os.path.exists(idx_file):
        got = np.sort(np.load(idx_file), axis=-1)
        ok = ok and np.array_equal(got, np.sort(r.idx, axis=-1))
    return ok, err


if __name__ == "__main__":
    folders = [a for a in sys.argv[1:] if os.path.isdir(a)]
    if not folders:
        print(__doc__)
        sys.exit(2)
    bad = 0
    for d in folders:
        meta_path = os.path.join(d, "meta.json")
        if not os.path.exists(meta_path) or "layer" not in json.load(open(meta_path)):
            # make_family_fixtures.py's whole models and the mechanism fixtures have other references.
            print(f"skip          {d}")
            continue
        ok, err = check_folder(d)
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {err:.2e}  {d}")
    sys.exit(1 if bad else 0)
