#!/usr/bin/env python3
"""Tiny whole causal LMs for the Python package's tests and benchmark (python/tests, scripts/
bench_python_decode.py): one per family that moec.transformers patches, every layer but the dense
ones an MoE layer, every parameter seeded, written with `save_pretrained` (the Hub's tensor names
and layout: transformers 5 reverts its in-memory expert fusion on save).

    /work/venv-ref/bin/python scripts/make_python_fixtures.py OUT_DIR                  # all five
    /work/venv-ref/bin/python scripts/make_python_fixtures.py OUT_DIR mixtral gpt_oss  # some
    /work/venv-ref/bin/python scripts/make_python_fixtures.py OUT_DIR --bench          # the benchmark's

Each model goes to OUT_DIR/<name>; `build(name, folder)` does one from Python. The benchmark's
model (`bench-mixtral`) is Mixtral-shaped: hidden 1024, ffn 3584, 8 experts, top-2, 2 layers, and
a small vocabulary of 4096 (so that the MoE blocks, not the LM head, dominate a decode step); its
checkpoint is 0.8 GB.
"""
from __future__ import annotations

import math
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

TOK = dict(vocab_size=96, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
ATTN = dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)

# name: (config class, model class, config arguments)
MODELS = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(**TOK, **ATTN, num_hidden_layers=3, hidden_size=32, intermediate_size=64, head_dim=8,
                     num_local_experts=8, num_experts_per_tok=2)),
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM",
              dict(**TOK, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                   num_hidden_layers=3, hidden_size=32, intermediate_size=24, num_experts=16,
                   num_experts_per_tok=4, norm_topk_prob=False)),
    # Layer 0 dense (mlp_only_layers), layers 1 and 2 MoE.
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(**TOK, **ATTN, num_hidden_layers=3, hidden_size=32, intermediate_size=64,
                       moe_intermediate_size=24, num_experts=8, num_experts_per_tok=2, head_dim=8,
                       mlp_only_layers=[0], norm_topk_prob=True)),
    # Layer 0 dense (first_k_dense_replace); 4 groups of 4 experts, 2 groups kept; a shared expert.
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM",
                    dict(**TOK, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         num_hidden_layers=3, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                         n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2, n_shared_experts=1,
                         first_k_dense_replace=1, routed_scaling_factor=2.5, norm_topk_prob=True, q_lora_rank=16,
                         kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8)),
    # swiglu_limit small enough that the clamps bind on these activations.
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM",
                dict(**TOK, **ATTN, num_hidden_layers=2, hidden_size=32, intermediate_size=24, head_dim=8,
                     num_local_experts=8, num_experts_per_tok=2, swiglu_limit=1.0,
                     layer_types=["sliding_attention", "full_attention"], sliding_window=16)),
    "bench-mixtral": ("MixtralConfig", "MixtralForCausalLM",
                      dict(vocab_size=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
                           num_hidden_layers=2, hidden_size=1024, intermediate_size=3584, num_attention_heads=8,
                           num_key_value_heads=2, head_dim=128, max_position_embeddings=512, num_local_experts=8,
                           num_experts_per_tok=2)),
}
FAMILIES = ["mixtral", "olmoe", "qwen3_moe", "deepseek_v3", "gpt_oss"]


def init_all(model: torch.nn.Module, seed: int) -> None:
    """Seeded parameters, as scripts/make_fixtures.py's init_all: linear weights ~ N(0, 1/fan_in),
    norms ~ 1 + N(0, 0.1²), other vectors (biases) ~ N(0, 0.1²), embeddings ~ N(0, 1); DeepSeek's
    selection bias ~ N(0, 0.3²) (large enough to change which experts are chosen)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(tuple(p.shape), generator=g, dtype=torch.float32)
            if p.ndim == 1:
                v = 1.0 + 0.1 * z if "norm" in name else 0.1 * z
            elif "embed" in name:
                v = z
            else:
                v = z / math.sqrt(p.shape[-1])
            p.copy_(v.to(p.dtype))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.3 * torch.randn(tuple(b.shape), generator=g, dtype=torch.float32))


def build(name: str, folder: str, seed: int = 7) -> str:
    """Writes model `name` of MODELS to `folder` (save_pretrained) and returns the folder."""
    config_class, model_class, kwargs = MODELS[name]
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**kwargs))
    init_all(model, seed)
    model.eval()
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        raise SystemExit(__doc__)
    out, names = args[0], args[1:]
    if names == ["--bench"]:
        names = ["bench-mixtral"]
    for n in names or FAMILIES:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n!r}; known: {', '.join(MODELS)}")
        print(build(n, os.path.join(out, n)), flush=True)
