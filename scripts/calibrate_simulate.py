#!/usr/bin/env python3
"""Calibrate `moec place --simulate`'s machine model with `mpirun` runs, and say how far it predicts.

The simulator (Sources/MoEPlacement/ClusterSimulation.swift) predicts a device's MoE step as
    compute  = pairs · expert_flops_per_token / flops_per_second
  + exchange = 2 · token_bytes · max(pairs sent, pairs received) / link bandwidth
and a layer's time as its slowest device's. This script fits its two machine numbers on this
machine and checks the predictions on runs it was not fitted on:

1. Fit, on the uniform Mixtral-shaped layer (hidden 1024, ffn 3584, 8 experts, top-2; the
   checkpoint of scripts/bench_expression_experts.py) run by `mpirun -n R moec bench
   --placement static --threads 1`: flops_per_second from each rank's experts time and pairs,
   the link bandwidth from each rank's dispatch time and bytes sent (moec bench --json "ranks").
2. Check, on the skewed layer of scripts/bench_mpi.py (graphs/bench/skewed_mixtral.moe, its
   profile and `moec place` placement): a cluster file with the fitted numbers and the run's
   sizes (devices = R, tokens_per_device = T / R, the profile as --load) goes through `moec place
   --simulate`; its "static" and "moec" rows are compared with the measured static and planned
   placements: predicted compute and exchange against the slowest rank's experts and dispatch
   times (the last rank to finish its experts waits for nobody in the exchange), and the
   predicted step against the time until every rank has its rows (max over ranks of experts +
   dispatch).

    /work/venv-ref/bin/python scripts/calibrate_simulate.py [--tokens 128,512] [--rounds 3]

Medians over --rounds of moec bench's medians; the machine is shared and noisy, so read the
errors as such. Needs numpy and safetensors (to write the checkpoints), Open MPI's mpirun, and
a release build of moec.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from bench_expression_experts import cpu_name, make_checkpoints  # noqa: E402
from bench_mpi import SKEWED_GRAPH, skewed_checkpoint  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
H, F, E, K = 1024, 3584, 8, 2
FLOPS_PER_PAIR = 2 * 3 * H * F  # gate, up and down projections of one token for one expert
TOKEN_BYTES = 4 * H


def bench(moec, graph, model, tokens, placement, ranks):
    cmd = ["mpirun", "--oversubscribe", "-n", str(ranks), moec, "bench", os.path.join(REPO, graph), "--model", model,
           "--tokens", tokens, "--json", "--repeat", "10", "--threads", "1", "--placement", placement]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV).stdout
    return {r["tokens"]: r for r in map(json.loads, filter(None, out.splitlines()))}


def median_of(runs, t, key):
    """Per rank, the median over rounds of `key` (ms → s, or a count)."""
    ranks = len(runs[0][t]["ranks"])
    scale = 1e-3 if key.endswith("_ms") else 1
    return [statistics.median(run[t]["ranks"][r][key] for run in runs) * scale for r in range(ranks)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", default="128,512")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/moec-bench"))
    ap.add_argument("--moec", default=os.path.join(REPO, ".build", "release", "moec"))
    a = ap.parse_args()
    if not os.path.exists(a.moec):
        sys.exit(f"no moec at {a.moec}: run `swift build -c release` first")
    R = a.ranks
    tokens = [int(x) for x in a.tokens.split(",")]
    _, uniform = make_checkpoints(a.cache, H, F, E, K)
    skew, profile = skewed_checkpoint(a.moec, a.cache)
    skewed_graph = SKEWED_GRAPH
    planned = os.path.join(skew, f"placement-{R}.json")
    if not os.path.exists(planned):
        subprocess.run([a.moec, "place", "--load", profile, "--workers", str(R), "-o", planned], check=True, capture_output=True)

    configs = {"fit: uniform, static": ("graphs/mixtral.moe", uniform, "static"),
               "check: skewed, static": (skewed_graph, skew, "static"),
               "check: skewed, planned": (skewed_graph, skew, planned)}
    runs = {name: [] for name in configs}
    for r in range(a.rounds):
        for name, (graph, model, placement) in configs.items():
            runs[name].append(bench(a.moec, graph, model, a.tokens, placement, R))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)

    print(f"{cpu_name()}, {os.cpu_count()} cores, {R} ranks x 1 thread; medians over {a.rounds} rounds")
    for t in tokens:
        fit = runs["fit: uniform, static"]
        experts, pairs = median_of(fit, t, "experts_ms"), median_of(fit, t, "pairs")
        dispatch, sent = median_of(fit, t, "dispatch_ms"), median_of(fit, t, "bytes_sent")
        flops = statistics.mean(p * FLOPS_PER_PAIR / s for p, s in zip(pairs, experts))
        # A rank's dispatch time includes waiting in the all-to-all for the ranks still computing;
        # the rank that finished its experts last waits for nobody, so its dispatch is the
        # exchange itself. The model charges 2 · token_bytes · pairs per exchange.
        last = max(range(R), key=lambda r: experts[r])
        bandwidth = 2 * max(sent[last], 1) / dispatch[last]
        cluster = {"devices": R, "nodes": 1, "flops_per_second": flops, "intra_node_bandwidth": bandwidth,
                   "inter_node_bandwidth": bandwidth, "tokens_per_device": t / R, "top_k": K, "experts": E, "layers": 1,
                   "expert_flops_per_token": FLOPS_PER_PAIR, "expert_bytes": 3 * H * F * 4, "token_bytes": TOKEN_BYTES}
        with tempfile.TemporaryDirectory() as tmp:
            path, report = os.path.join(tmp, "cluster.json"), os.path.join(tmp, "report.json")
            with open(path, "w") as f:
                json.dump(cluster, f)
            subprocess.run([a.moec, "place", "--simulate", path, "--load", profile, "-o", report], check=True, capture_output=True)
            with open(report) as f:
                predicted = {p["policy"]: p for p in json.load(f)}
        print(f"\n{t} tokens: fitted {flops / 1e9:.1f} GFLOP/s per rank, link {bandwidth / 1e9:.2f} GB/s "
              f"(uniform layer, static placement)")
        print(f"  {'':24}{'compute ms':>24}{'exchange ms':>24}{'step ms':>24}")
        print(f"  {'':24}" + f"{'pred / meas / err':>24}" * 3)
        for name, policy in [("check: skewed, static", "static"), ("check: skewed, planned", "moec")]:
            p = predicted[policy]
            experts, dispatch = median_of(runs[name], t, "experts_ms"), median_of(runs[name], t, "dispatch_ms")
            last = max(range(R), key=lambda r: experts[r])
            # Measured: the slowest rank's experts, its exchange (it waits for nobody), and the
            # time until every rank has its rows (max over ranks of experts + dispatch).
            step = max(x + d for x, d in zip(experts, dispatch))
            cells = []
            for pred, meas in [(p["compute_time_s"], experts[last]), (p["all_to_all_time_s"], dispatch[last]),
                               (p["step_time_s"], step)]:
                cells.append(f"{pred * 1e3:7.2f} / {meas * 1e3:7.2f} / {100 * (pred - meas) / meas:+4.0f}%")
            print(f"  {name[7:]:24}" + "".join(f"{c:>24}" for c in cells))
        whole = {name: statistics.median(run[t]["median_ms"] for run in runs[name]) for name in configs}
        print(f"  whole step (moec bench median, slowest rank): static {whole['check: skewed, static']:.2f} ms, "
              f"planned {whole['check: skewed, planned']:.2f} ms; predicted static / planned "
              f"{predicted['static']['step_time_s'] / predicted['moec']['step_time_s']:.2f}, measured "
              f"{whole['check: skewed, static'] / whole['check: skewed, planned']:.2f}")


if __name__ == "__main__":
    main()
