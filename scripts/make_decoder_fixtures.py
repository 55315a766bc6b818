#!/usr/bin/env python3
"""Whole decoder layers for moec's attention ops (graphs/decoder/*.moe): tiny Mixtral, Qwen2-MoE,
Qwen3-MoE, OLMoE and gpt-oss checkpoints with the input and output of one decoder layer as
transformers runs it (the attention with its rotary embedding and causal mask, the residuals, the
norms and the sparse MoE block).

    ~/.venvs/moec-ref/bin/python scripts/make_decoder_fixtures.py                  # all, into Tests/Fixtures/decoder
    ~/.venvs/moec-ref/bin/python scripts/make_decoder_fixtures.py --out DIR mixtral-window

Each fixture folder holds config.json, model.safetensors (save_pretrained: the Hub's names), x.npy
(float32 [T, hidden], the layer's input: one sequence, positions 0..T-1), y.npy (float32 [T, hidden],
the layer's output) and meta.json (the graph that computes the layer and its params, for moec's
parity tests). A random input goes in as `inputs_embeds` of the whole model; x and y are its
`hidden_states[L]` and `[L + 1]` (the input and output of layer L, 0 but for gpt_oss-full), so
transformers builds the mask and the rotary embedding itself. Every fixture is checked as it is
written against `reference_layer` below, a float64 numpy decoder layer written from the papers'
formulas (max|Δ|/max|y| ≤ 1e-5, recorded in meta.json). Weights are drawn larger than transformers' initialisation (std 0.3) so that the
attention is far from uniform and the rotation matters.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "Tests", "Fixtures", "decoder")

COMMON = dict(vocab_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
              num_hidden_layers=2, max_position_embeddings=64, rms_norm_eps=1e-5)

GPT_OSS = dict(COMMON, num_hidden_layers=3, hidden_size=16, intermediate_size=8, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
               layer_types=["sliding_attention", "full_attention", "sliding_attention"], attention_bias=True,
               rope_parameters={"rope_type": "yarn", "rope_theta": 1000.0, "factor": 4.0, "beta_fast": 32.0,
                                "beta_slow": 1.0, "original_max_position_embeddings": 16, "truncate": False})

# name: (config class, model class, config arguments, tokens, seed[, layer])
FIXTURES = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(**COMMON, hidden_size=24, intermediate_size=20, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 13, 81),
    "mixtral-window": ("MixtralConfig", "MixtralForCausalLM",
                       dict(**COMMON, hidden_size=16, intermediate_size=12, num_attention_heads=2, num_key_value_heads=1,
                            head_dim=6, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
                            rope_parameters={"rope_type": "default", "rope_theta": 100.0}), 11, 82),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(**COMMON, hidden_size=20, intermediate_size=16, moe_intermediate_size=12, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=6, num_experts=5, num_experts_per_tok=3, norm_topk_prob=True,
                       decoder_sparse_step=1, mlp_only_layers=[],
                       rope_parameters={"rope_type": "default", "rope_theta": 1000.0}), 10, 84),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM",
                  dict(**COMMON, hidden_size=16, intermediate_size=16, moe_intermediate_size=8,
                       shared_expert_intermediate_size=12, num_attention_heads=4, num_key_value_heads=2, num_experts=6,
                       num_experts_per_tok=3, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
                       qkv_bias=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 12, 85),
    # gpt-oss: YaRN rope, attention sinks, biases on every projection, sliding and full layers.
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM", dict(GPT_OSS), 12, 86, 0),
    "gpt_oss-full": ("GptOssConfig", "GptOssForCausalLM", dict(GPT_OSS), 12, 87, 1),
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM",
              dict(**COMMON, hidden_size=16, intermediate_size=12, num_attention_heads=4, num_key_value_heads=4,
                   num_experts=6, num_experts_per_tok=2, norm_topk_prob=False,
                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 9, 83),
}


def build(name: str):
    cfg_cls, model_cls, args, tokens, seed = FIXTURES[name][:5]
    config = getattr(transformers, cfg_cls)(**args)
    config._attn_implementation = "eager" if name.startswith("gpt_oss") else "sdpa"   # gpt-oss has no sdpa
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    x = torch.randn(1, tokens, config.hidden_size, generator=torch.Generator().manual_seed(seed + 1000))
    return model, x


def run_layer(model, x, layer):
    """The input and output of decoder layer `layer` on a model input of `x`."""
    with torch.no_grad():
        out = model.model(inputs_embeds=x, output_hidden_states=True, use_cache=False)
    return out.hidden_states[layer][0].numpy(), out.hidden_states[layer + 1][0].numpy()


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, head_dim, theta, yarn=None):
    """Rotates each head's pairs (j, j + D/2) of row t by t·f_j. With YaRN (Peng et al. 2023, as
    transformers' rope_type "yarn"): f_j blends θ^(-2j/D) (extrapolation, fast dimensions) and
    θ^(-2j/D)/factor (interpolation, slow ones) along a linear ramp between the dimensions that
    turn beta_fast and beta_slow times over the original context; cos and sin times
    0.1·ln(factor) + 1."""
    t = np.arange(x.shape[0], dtype=np.float64)[:, None]
    half = head_dim // 2
    freq = theta ** (-np.arange(half, dtype=np.float64) * 2 / head_dim)
    scale = 1.0
    if yarn:
        def dim_of(rotations):
            return head_dim * np.log(yarn["original_max_position_embeddings"] / (rotations * 2 * np.pi)) / (2 * np.log(theta))
        low, high = dim_of(yarn["beta_fast"]), dim_of(yarn["beta_slow"])
        if yarn.get("truncate", True):
            low, high = np.floor(low), np.ceil(high)
        low, high = max(low, 0), min(high, head_dim - 1)
        ramp = np.clip((np.arange(half) - low) / (high - low if high != low else 0.001), 0, 1)
        freq = freq / yarn["factor"] * ramp + freq * (1 - ramp)
        scale = 0.1 * np.log(yarn["factor"]) + 1
    angle = t * freq[None, :]
    out = x.copy()
    for h in range(0, x.shape[1], head_dim):
        a, b = x[:, h:h + half], x[:, h + half:h + head_dim]
        out[:, h:h + half] = scale * (a * np.cos(angle) - b * np.sin(angle))
        out[:, h + half:h + head_dim] = scale * (b * np.cos(angle) + a * np.sin(angle))
    return out


def attention(q, k, v, heads, kv_heads, window, sinks=None):
    T = q.shape[0]
    d = q.shape[1] // heads
    out = np.zeros((T, heads * d))
    for h in range(heads):
        g = h // (heads // kv_heads)
        s = q[:, h * d:(h + 1) * d] @ k[:, g * d:(g + 1) * d].T / np.sqrt(d)
        i, j = np.indices((T, T))
        seen = (j <= i) & ((i - j < window) if window else True)
        s = np.where(seen, s, -np.inf)
        if sinks is not None:   # one more logit per row, whose weight goes nowhere
            s = np.concatenate([s, np.full((T, 1), sinks[h])], axis=1)
        p = np.exp(s - s.max(-1, keepdims=True))
        p = (p / p.sum(-1, keepdims=True))[:, :T]
        out[:, h * d:(h + 1) * d] = p @ v[:, g * d:(g + 1) * d]
    return out


def reference_layer(name, folder, x, layer, model):
    """Decoder layer `layer` in float64 numpy, from the checkpoint's tensors by their Hub names
    (gpt-oss's MoE block, checked in moec's family fixtures, from `model`)."""
    from safetensors.numpy import load_file
    c = transformers.AutoConfig.from_pretrained(folder)
    W = {k: v.astype(np.float64) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    L = f"model.layers.{layer}."
    eps = c.rms_norm_eps
    h = rmsnorm(x, W[L + "input_layernorm.weight"], eps)
    q, k, v = (h @ W[L + f"self_attn.{p}_proj.weight"].T + W.get(L + f"self_attn.{p}_proj.bias", 0) for p in "qkv")
    d = c.head_dim if getattr(c, "head_dim", None) else c.hidden_size // c.num_attention_heads
    if name.startswith("olmoe"):   # OLMoE normalises the whole projections before the rotation
        q = rmsnorm(q, W[L + "self_attn.q_norm.weight"], eps)
        k = rmsnorm(k, W[L + "self_attn.k_norm.weight"], eps)
    if name.startswith("qwen3"):   # Qwen3 normalises each head alone
        q = rmsnorm(q.reshape(q.shape[0], -1, d), W[L + "self_attn.q_norm.weight"], eps).reshape(q.shape)
        k = rmsnorm(k.reshape(k.shape[0], -1, d), W[L + "self_attn.k_norm.weight"], eps).reshape(k.shape)
    theta = c.rope_parameters["rope_theta"]
    yarn = c.rope_parameters if c.rope_parameters.get("rope_type") == "yarn" else None
    q, k = rope(q, d, theta, yarn), rope(k, d, theta, yarn)
    window = getattr(c, "sliding_window", None) or 0
    if getattr(c, "layer_types", None) and c.layer_types[layer] != "sliding_attention":
        window = 0
    sinks = W.get(L + "self_attn.sinks")
    a = attention(q, k, v, c.num_attention_heads, c.num_key_value_heads, window, sinks)
    h1 = x + a @ W[L + "self_attn.o_proj.weight"].T + W.get(L + "self_attn.o_proj.bias", 0)
    n = rmsnorm(h1, W[L + "post_attention_layernorm.weight"], eps)
    if name.startswith("gpt_oss"):
        with torch.no_grad():
            out = model.model.layers[layer].mlp(torch.from_numpy(n).float()[None])
        return h1 + (out[0] if isinstance(out, tuple) else out)[0].double().numpy()
    if name.startswith(("olmoe", "qwen")):
        gate, E, wg, wu, wd = "mlp.gate.weight", c.num_experts, "mlp.experts.{}.gate_proj.weight", \
            "mlp.experts.{}.up_proj.weight", "mlp.experts.{}.down_proj.weight"
    else:
        gate, E, wg, wu, wd = "block_sparse_moe.gate.weight", c.num_local_experts, "block_sparse_moe.experts.{}.w1.weight", \
            "block_sparse_moe.experts.{}.w3.weight", "block_sparse_moe.experts.{}.w2.weight"
    logits = n @ W[L + gate].T
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top = np.argsort(-p, axis=-1, kind="stable")[:, :c.num_experts_per_tok]
    y = np.zeros_like(n)
    for t in range(n.shape[0]):
        w = p[t, top[t]]
        if not name.startswith(("olmoe", "qwen")) or c.norm_topk_prob:
            w = w / w.sum()
        for e, we in zip(top[t], w):
            g_ = n[t] @ W[L + wg.format(e)].T
            u = n[t] @ W[L + wu.format(e)].T
            y[t] += we * ((g_ / (1 + np.exp(-g_)) * u) @ W[L + wd.format(e)].T)
    if name.startswith("qwen2"):   # a shared expert for every token, scaled by a sigmoid gate
        P = L + "mlp.shared_expert."
        g_, u = n @ W[P + "gate_proj.weight"].T, n @ W[P + "up_proj.weight"].T
        shared = (g_ / (1 + np.exp(-g_)) * u) @ W[P + "down_proj.weight"].T
        y += shared / (1 + np.exp(-(n @ W[L + "mlp.shared_expert_gate.weight"].T)))
    return h1 + y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=list(FIXTURES))
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args()
    for name in a.names:
        layer = FIXTURES[name][5] if len(FIXTURES[name]) > 5 else 0
        model, embeds = build(name)
        x, y = run_layer(model, embeds, layer)
        folder = os.path.join(a.out, name)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        ref = reference_layer(name, folder, x.astype(np.float64), layer, model)
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        if not err <= 1e-5:
            sys.exit(f"{name}: transformers and the numpy reference differ by {err:.2e} (max|Δ|/max|y|)")
        np.save(os.path.join(folder, "x.npy"), x.astype(np.float32))
        np.save(os.path.join(folder, "y.npy"), y.astype(np.float32))
        c = model.config
        meta = {
            "graph": f"graphs/decoder/{name.split('-')[0]}.moe",
            "inputs": {"x": "x.npy"},
            "outputs": {"y": "y.npy"},
            "set": {"layer": layer} if layer else {},
            "source": f"transformers {transformers.__version__} {type(model).__name__}, decoder layer {layer} "
                      f"({c._attn_implementation} attention), torch {torch.__version__}",
            "tokens": int(x.shape[0]),
            "numpy_reference_rel_error": err,
        }
        with open(os.path.join(folder, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        print(f"{name}: {folder} tokens {x.shape[0]}, numpy reference within {err:.1e}")


if __name__ == "__main__":
    main()
