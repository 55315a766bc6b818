#!/usr/bin/env python3
"""Writes a checkpoint for graphs/qwen2_moe.moe with a Qwen1.5-MoE-A2.7B-shaped layer: hidden 2048,
expert ffn 1408, a shared expert 5632 wide (as many bytes a token as four routed experts), top-4,
and 16 experts instead of 60 (a token's work is the same; the file is 0.7 GB instead of 2.2).
Seeded random weights N(0, 1/fan_in); numpy only. For `scripts/bench_weight_formats.py` with
FORMAT/experts beside FORMAT: the shared expert in f32 or in the format.

    python3 scripts/make_shared_expert_bench.py ~/.cache/moec-bench/qwen2moe-h2048-e16
    python3 scripts/bench_weight_formats.py --model ~/.cache/moec-bench/qwen2moe-h2048-e16 \\
        --graph graphs/qwen2_moe.moe --formats f32,int8/experts,int8,int4/experts,int4 --tokens 1,16,128
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_skewed_bench import write_safetensors  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--ffn", type=int, default=1408)
    p.add_argument("--shared-ffn", type=int, default=5632)
    p.add_argument("--experts", type=int, default=16)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    h, f, s, e = a.hidden, a.ffn, a.shared_ffn, a.experts
    rng = np.random.default_rng(a.seed)

    def w(n, k):
        return (rng.standard_normal((n, k), dtype=np.float32) / np.sqrt(k)).astype(np.float32)

    prefix = "model.layers.0.mlp."
    tensors = {prefix + "gate.weight": w(e, h), prefix + "shared_expert_gate.weight": w(1, h),
               prefix + "shared_expert.gate_proj.weight": w(s, h), prefix + "shared_expert.up_proj.weight": w(s, h),
               prefix + "shared_expert.down_proj.weight": w(h, s)}
    for i in range(e):
        tensors[prefix + f"experts.{i}.gate_proj.weight"] = w(f, h)
        tensors[prefix + f"experts.{i}.up_proj.weight"] = w(f, h)
        tensors[prefix + f"experts.{i}.down_proj.weight"] = w(h, f)
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), tensors)
    config = {"model_type": "qwen2_moe", "hidden_size": h, "moe_intermediate_size": f, "num_experts": e, "num_experts_per_tok": a.k,
              "shared_expert_intermediate_size": s, "norm_topk_prob": False}
    with open(os.path.join(a.out, "config.json"), "w") as out:
        json.dump(config, out, indent=1)
        out.write("\n")
    print(f"wrote {a.out}: {sum(t.nbytes for t in tensors.values()) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
