#!/usr/bin/env python3
"""Experts across MPI ranks against threads in one process (issue 13's speed acceptance).

On the Mixtral-shaped layer of scripts/bench_expression_experts.py (hidden 1024, ffn 3584, 8
experts, top-2; its checkpoint in --cache, written if missing) and on graphs/bench/skewed_mixtral.moe
(checkpoint from scripts/make_skewed_bench.py, profiled and placed with `moec profile` and
`moec place --workers 2`), alternating, --rounds times each, in this one invocation:
  - `mpirun -n 2 moec bench … --placement static --threads 1` vs `moec bench … --threads 2`
    (acceptance: within 1.25x at 512 tokens), on the layer and on graphs/bench/shared_mixtral.moe
    (the layer plus a shared expert: dense work the ranks share out when they shard the tokens);
  - on the skewed router, `mpirun -n 2 … --placement PLANNED` vs `--placement static`
    (acceptance: planned faster at 128 and 512 tokens).
Prints per token count the medians (over rounds) of moec bench's medians (under mpirun, each run
timed by its slowest rank), and the last round's per-rank breakdown.

    /work/venv-ref/bin/python scripts/bench_mpi.py [--rounds 3] [--tokens 128,512]

Needs numpy and safetensors, Open MPI's mpirun, and a release build of moec.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from bench_expression_experts import cpu_name, make_checkpoints  # noqa: E402

MPIRUN = ["mpirun", "--oversubscribe", "-n", "2"]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def bench(moec, graph, model, tokens, extra, ranks):
    cmd = (MPIRUN if ranks > 1 else []) + [moec, "bench", os.path.join(REPO, graph), "--model", model,
                                             "--tokens", tokens, "--json", "--repeat", "10"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV).stdout
    return {r["tokens"]: r for r in map(json.loads, filter(None, out.splitlines()))}


SKEWED_GRAPH = "graphs/bench/skewed_mixtral.moe"


def skewed_checkpoint(moec, cache):
    """The skewed layer's checkpoint (scripts/make_skewed_bench.py) and its profile (`moec profile`,
    4 batches of 128 tokens), written into `cache` if missing: (folder, profile path)."""
    skew = os.path.join(cache, "skewed-h1024-f3584-e8")
    if not os.path.exists(os.path.join(skew, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_skewed_bench.py"), skew], check=True)
    stats = os.path.join(skew, "profile.json")
    if not os.path.exists(stats):
        subprocess.run([moec, "profile", os.path.join(REPO, SKEWED_GRAPH), "--model", skew, "--batch-tokens", "128",
                        "--batches", "4", "-o", stats], check=True, capture_output=True)
    return skew, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", default="128,512")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/moec-bench"))
    ap.add_argument("--moec", default=os.path.join(REPO, ".build", "release", "moec"))
    a = ap.parse_args()
    if not os.path.exists(a.moec):
        sys.exit(f"no moec at {a.moec}: run `swift build -c release` first")
    _, mix = make_checkpoints(a.cache, 1024, 3584, 8, 2)
    skew, stats = skewed_checkpoint(a.moec, a.cache)
    skewed_graph = SKEWED_GRAPH
    placement = os.path.join(skew, "placement-2.json")  # the experts moved, no replicas
    replicated = os.path.join(skew, "placement-2-r12.json")  # 12 slots: the busy experts replicated
    for path, extra in [(placement, []), (replicated, ["--replicas", "12"])]:
        if not os.path.exists(path):
            subprocess.run([a.moec, "place", "--load", stats, "--workers", "2", "-o", path] + extra, check=True, capture_output=True)
    configs = {
        "mixtral 1 process x 2 threads": ("graphs/mixtral.moe", mix, ["--threads", "2"], 1),
        "mixtral 2 ranks x 1 thread, static": ("graphs/mixtral.moe", mix, ["--placement", "static", "--threads", "1"], 2),
        "shared expert 1 process x 2 threads": ("graphs/bench/shared_mixtral.moe", mix, ["--threads", "2"], 1),
        "shared expert 2 ranks x 1 thread, static": ("graphs/bench/shared_mixtral.moe", mix, ["--placement", "static", "--threads", "1"], 2),
        "skewed 2 ranks, static": (skewed_graph, skew, ["--placement", "static", "--threads", "1"], 2),
        "skewed 2 ranks, planned": (skewed_graph, skew, ["--placement", placement, "--threads", "1"], 2),
        "skewed 2 ranks, planned, 12 slots": (skewed_graph, skew, ["--placement", replicated, "--threads", "1"], 2),
    }
    runs = {name: [] for name in configs}
    for r in range(a.rounds):
        for name, (graph, model, extra, ranks) in configs.items():
            runs[name].append(bench(a.moec, graph, model, a.tokens, extra, ranks))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    tokens = [int(x) for x in a.tokens.split(",")]
    print(f"{cpu_name()}, {os.cpu_count()} cores; medians over {a.rounds} rounds of moec bench's medians (ms)")
    print(f"{'':38}" + "".join(f"{t:>12}" for t in tokens))
    med = {}
    for name in configs:
        med[name] = {t: statistics.median(run[t]["median_ms"] for run in runs[name]) for t in tokens}
        print(f"{name:38}" + "".join(f"{med[name][t]:>12.3f}" for t in tokens))
    for t in tokens:
        ratio = med["mixtral 2 ranks x 1 thread, static"][t] / med["mixtral 1 process x 2 threads"][t]
        shared = med["shared expert 2 ranks x 1 thread, static"][t] / med["shared expert 1 process x 2 threads"][t]
        gain = med["skewed 2 ranks, static"][t] / med["skewed 2 ranks, planned"][t]
        gain12 = med["skewed 2 ranks, static"][t] / med["skewed 2 ranks, planned, 12 slots"][t]
        print(f"{t} tokens: 2 ranks / 2 threads = {ratio:.2f} (acceptance <= 1.25), with a shared expert {shared:.2f}; "
              f"skewed static / planned = {gain:.2f}, / planned with 12 slots = {gain12:.2f} (acceptance > 1)")
    print("per-rank medians of the last round (ms): route, dispatch, experts, combine; pairs; bytes sent")
    for name in configs:
        for t in tokens:
            for q in runs[name][-1][t].get("ranks", []):
                print(f"  {name:36} {t:>4} rank {q['rank']}: {q['route_ms']:8.3f} {q['dispatch_ms']:8.3f} "
                      f"{q['experts_ms']:8.3f} {q['combine_ms']:8.3f}; {q['pairs']:5d} pairs; {q['bytes_sent']} B")


if __name__ == "__main__":
    main()
