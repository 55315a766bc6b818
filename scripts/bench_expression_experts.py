#!/usr/bin/env python3
"""Expression experts against plain SwiGLU: the price of gpt-oss's biases, clamps and alpha.

Builds two checkpoints of one Mixtral-shaped MoE layer (hidden 1024, expert ffn 3584, 8 experts,
top-2; --hidden/--ffn/--experts/--k to change) with seeded random weights, in the Hub layouts the
graphs read:
  - gpt-oss (graphs/gpt_oss.moe): router with a bias, stacked input-first gate_up_proj with
    interleaved gate/up columns and biases, down_proj with a bias; experts written as an
    expression (clamps, (up + 1) * gate * sigmoid(alpha * gate));
  - Mixtral (graphs/mixtral.moe): the plain SwiGLU experts of the same size.
Then times `moec bench --json` on both, alternating, --rounds times each, in this one invocation,
and prints per token count the medians (of each run's median) and the ratio gpt-oss / Mixtral.
The acceptance of issue 12: within 1.2x at 1 and 512 tokens.

    ~/.venvs/moec-ref/bin/python scripts/bench_expression_experts.py [--tokens 1,16,128,512] [--rounds 3]

Needs numpy and safetensors (scripts/requirements.txt) and a release build of moec
(`swift build -c release`; --moec to point elsewhere).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write(folder, config, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def make_checkpoints(cache, h, f, e, k):
    rng = np.random.default_rng(0)
    s = 0.02

    def normal(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float32)

    gpt = os.path.join(cache, f"gpt_oss-h{h}-f{f}-e{e}-k{k}")
    if not os.path.exists(os.path.join(gpt, "model.safetensors")):
        p = "model.layers.0.mlp."
        write(gpt, dict(model_type="gpt_oss", hidden_size=h, intermediate_size=f, num_local_experts=e,
                        num_experts_per_tok=k, swiglu_alpha=1.702, swiglu_limit=7.0), {
            p + "router.weight": normal(e, h), p + "router.bias": normal(e),
            p + "experts.gate_up_proj": normal(e, h, 2 * f), p + "experts.gate_up_proj_bias": normal(e, 2 * f),
            p + "experts.down_proj": normal(e, f, h), p + "experts.down_proj_bias": normal(e, h)})
    mix = os.path.join(cache, f"mixtral-h{h}-f{f}-e{e}-k{k}")
    if not os.path.exists(os.path.join(mix, "model.safetensors")):
        p = "model.layers.0.block_sparse_moe."
        tensors = {p + "gate.weight": normal(e, h)}
        for i in range(e):
            tensors[p + f"experts.{i}.w1.weight"] = normal(f, h)
            tensors[p + f"experts.{i}.w3.weight"] = normal(f, h)
            tensors[p + f"experts.{i}.w2.weight"] = normal(h, f)
        write(mix, dict(model_type="mixtral", hidden_size=h, intermediate_size=f, num_local_experts=e,
                        num_experts_per_tok=k), tensors)
    return gpt, mix


def bench(moec, graph, model, tokens, threads):
    cmd = [moec, "bench", os.path.join(REPO, graph), "--model", model, "--tokens", tokens, "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {r["tokens"]: r["median_ms"] for r in map(json.loads, filter(None, out.splitlines()))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", default="1,16,128,512")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="threads (default: moec's default, all cores)")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=3584)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/moec-bench"))
    ap.add_argument("--moec", default=os.path.join(REPO, ".build", "release", "moec"))
    a = ap.parse_args()
    if not os.path.exists(a.moec):
        sys.exit(f"no moec at {a.moec}: run `swift build -c release` first")
    gpt, mix = make_checkpoints(a.cache, a.hidden, a.ffn, a.experts, a.k)
    runs = {"gpt_oss": [], "mixtral": []}
    for r in range(a.rounds):
        runs["gpt_oss"].append(bench(a.moec, "graphs/gpt_oss.moe", gpt, a.tokens, a.threads))
        runs["mixtral"].append(bench(a.moec, "graphs/mixtral.moe", mix, a.tokens, a.threads))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    print(f"{cpu_name()}, {os.cpu_count()} cores; hidden {a.hidden}, ffn {a.ffn}, {a.experts} experts, top-{a.k}; "
          f"medians over {a.rounds} rounds of moec bench's medians")
    print(f"{'tokens':>7} {'gpt-oss ms':>11} {'SwiGLU ms':>10} {'ratio':>6}")
    worst = 0.0
    for t in [int(x) for x in a.tokens.split(",")]:
        g = statistics.median(run[t] for run in runs["gpt_oss"])
        m = statistics.median(run[t] for run in runs["mixtral"])
        worst = max(worst, g / m)
        print(f"{t:>7} {g:>11.3f} {m:>10.3f} {g / m:>6.2f}")
    print(f"worst ratio {worst:.2f} ({'within' if worst <= 1.2 else 'above'} 1.2)")


if __name__ == "__main__":
    main()
