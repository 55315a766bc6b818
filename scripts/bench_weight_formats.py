#!/usr/bin/env python3
"""moec's f32 plan against its plans in narrower formats (`moec compile --weights F`) on one layer.

Compiles GRAPH with --model CKPT once per format (--formats, default f32,bf16,int8,int4; the
first is the reference), then runs `moec bench --json` on the plans in turn, ROUNDS times each
(the order reversed every other round), in this one invocation, and prints per token count and
format the median over the rounds of bench's medians, the speed-up over the first format (above
1: faster), the weight bytes each reads per step and the GB/s they reach, and each plan's peak
resident memory at the largest token count (`ru_maxrss` of a separate `moec bench` run).

    python3 scripts/bench_weight_formats.py --model ~/.cache/moec-bench/mixtral-h1024-f3584-e8-k2 \
        --graph graphs/mixtral.moe --tokens 1,16,128,512 --threads 2 --rounds 5

A format written FORMAT/widened (e.g. int8/widened) runs FORMAT's plan with MOEC_INT8_ROWS=0:
the weights widened to f32 instead of the integer products, for the two paths side by side.
FORMAT/experts stores only the stacked expert weights (those declared with three dimensions) in
FORMAT, from a copy of GRAPH with `as FORMAT` on them, and the rest (a shared expert) in f32:
what `--weights` stored before shared experts took it.

Standard library only; MOEC (default .build/release/moec) is the binary to time.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile


def experts_only(graph: str, fmt: str, out: str) -> None:
    """A copy of `graph` with ` as FMT` on each weight declared with three dimensions (the stacked
    expert weights): `moec compile` without --weights then stores those in FMT and the rest in f32."""
    entry = re.compile(r'^(\s*\w+\s*:\s*\[([^\]]*)\]\s*=\s*"[^"]*"[^#]*?)(\s*(#.*)?)$')
    lines = []
    for line in open(graph).read().splitlines():
        m = entry.match(line)
        if m and len(m.group(2).split(",")) == 3 and " as " not in m.group(1):
            line = m.group(1) + f" as {fmt}" + m.group(3)
        lines.append(line)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--graph", default="graphs/mixtral.moe")
    p.add_argument("--tokens", default="1,16,128,512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--formats", default="f32,bf16,int8,int4")
    p.add_argument("--moec", default=os.environ.get("MOEC", ".build/release/moec"))
    a = p.parse_args()
    tokens = [int(t) for t in a.tokens.split(",")]
    formats = a.formats.split(",")
    tmp = tempfile.mkdtemp(prefix="moec-formats-")
    plans = {}
    for fmt in formats:
        if fmt.partition("/")[2] not in ("", "widened", "experts"):
            sys.exit(f"--formats: unknown path in '{fmt}' (FORMAT, FORMAT/widened or FORMAT/experts)")
    env = {}
    for fmt in formats:
        stored, _, path = fmt.partition("/")
        env[fmt] = dict(os.environ, **({"MOEC_INT8_ROWS": "0"} if path == "widened" else {}))
        if path == "experts":
            plans[fmt] = os.path.join(tmp, f"{stored.replace(':', '-')}-experts.plan.json")
            source = os.path.join(tmp, f"{stored.replace(':', '-')}-experts.moe")
            experts_only(a.graph, stored.replace(":", "g"), source)
            command = [a.moec, "compile", source, "--model", a.model, "-o", plans[fmt]]
        else:
            plans[fmt] = os.path.join(tmp, f"{stored.replace(':', '-')}.plan.json")
            command = [a.moec, "compile", a.graph, "--model", a.model, "--weights", stored, "-o", plans[fmt]]
        if not os.path.exists(plans[fmt]):
            if subprocess.run(command).returncode != 0:
                sys.exit(f"moec compile failed for {fmt} (its error is above)")
    times = {(f, t): [] for f in plans for t in tokens}
    read = {}
    for r in range(a.rounds):
        for fmt in formats if r % 2 == 0 else list(reversed(formats)):
            out = subprocess.run(
                [a.moec, "bench", plans[fmt], "--tokens", a.tokens, "--threads", str(a.threads), "--json"],
                check=True, capture_output=True, text=True, env=env[fmt]).stdout
            for line in out.splitlines():
                j = json.loads(line)
                times[(fmt, j["tokens"])].append(j["median_ms"])
                read[(fmt, j["tokens"])] = j["weight_mb_touched"]
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    rss = {}
    for fmt in formats:
        child = subprocess.Popen([a.moec, "bench", plans[fmt], "--tokens", str(max(tokens)), "--threads", str(a.threads), "--repeat", "2",
                                  "--warmup", "0"], stdout=subprocess.DEVNULL, env=env[fmt])
        _, _, usage = os.wait4(child.pid, 0)
        rss[fmt] = usage.ru_maxrss / 1024
    ref = formats[0]
    print("| tokens | format | ms | " + f"{ref} / format | MB read | GB/s |")
    print("|---:|---|---:|---:|---:|---:|")
    for t in tokens:
        base = statistics.median(times[(ref, t)])
        for fmt in formats:
            m = statistics.median(times[(fmt, t)])
            print(f"| {t} | {fmt} | {m:.2f} | {base / m:.2f} | {read[(fmt, t)]:.1f} | {read[(fmt, t)] / m:.1f} |")
    print("peak RSS at " + str(max(tokens)) + " tokens (MB): " + ", ".join(f"{f} {rss[f]:.0f}" for f in formats))
    print("rounds (ms): " + "; ".join(
        f"{fmt} {t}: " + " / ".join(f"{x:.2f}" for x in times[(fmt, t)]) for t in tokens for fmt in formats))


if __name__ == "__main__":
    main()
