#!/usr/bin/env python3
"""moec's f32 plan against its bf16 plan (`moec compile --weights bf16`) on the same layer.

Compiles GRAPH with --model CKPT twice (--weights f32, --weights bf16), then runs `moec bench
--json` on the two plans alternately, ROUNDS times each, in this one invocation, and prints per
token count the median over the rounds of bench's medians, the ratio f32 / bf16 (above 1: bf16
is faster), the weight bytes each reads per step and the GB/s they reach.

    python3 scripts/bench_weight_formats.py --model ~/.cache/moec-bench/mixtral-h1024-f3584-e8-k2 \
        --graph graphs/mixtral.moe --tokens 1,16,128,512 --threads 2 --rounds 5

Standard library only; MOEC (default .build/release/moec) is the binary to time.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--graph", default="graphs/mixtral.moe")
    p.add_argument("--tokens", default="1,16,128,512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--moec", default=os.environ.get("MOEC", ".build/release/moec"))
    a = p.parse_args()
    tokens = [int(t) for t in a.tokens.split(",")]
    tmp = tempfile.mkdtemp(prefix="moec-formats-")
    plans = {}
    for fmt in ("f32", "bf16"):
        plans[fmt] = os.path.join(tmp, f"{fmt}.plan.json")
        subprocess.run([a.moec, "compile", a.graph, "--model", a.model, "--weights", fmt, "-o", plans[fmt]], check=True)
    times = {(f, t): [] for f in plans for t in tokens}
    read = {}
    for r in range(a.rounds):
        for fmt in ("f32", "bf16") if r % 2 == 0 else ("bf16", "f32"):
            out = subprocess.run(
                [a.moec, "bench", plans[fmt], "--tokens", a.tokens, "--threads", str(a.threads), "--json"],
                check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                j = json.loads(line)
                times[(fmt, j["tokens"])].append(j["median_ms"])
                read[(fmt, j["tokens"])] = j["weight_mb_touched"]
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    print(f"| tokens | f32 ms | bf16 ms | f32 / bf16 | f32 MB read | bf16 MB read | f32 GB/s | bf16 GB/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in tokens:
        f, b = statistics.median(times[("f32", t)]), statistics.median(times[("bf16", t)])
        mf, mb = read[("f32", t)], read[("bf16", t)]
        print(f"| {t} | {f:.2f} | {b:.2f} | {f / b:.2f} | {mf:.1f} | {mb:.1f} | {mf / f:.1f} | {mb / b:.1f} |")
    print("rounds (ms): " + "; ".join(
        f"{fmt} {t}: " + " / ".join(f"{x:.2f}" for x in times[(fmt, t)]) for t in tokens for fmt in ("f32", "bf16")))


if __name__ == "__main__":
    main()
