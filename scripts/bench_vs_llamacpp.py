#!/usr/bin/env python3
"""moec against llama.cpp on the same GGUF files: one MoE layer, per expert format and token count.

The files are the one-layer `qwen3moe` models of scripts/llamacpp/make_gguf.py (hidden 1024,
8 experts of ffn 3584, top-2; expert tensors F32, BF16, Q8_0, Q4_0, Q4_K; a twin with tiny
experts). llama.cpp is timed by scripts/llamacpp/bench_llamacpp.py (llama-cpp-python, its MoE
part alone: the model minus the tiny-expert twin, with and without llama.cpp's CPU weight
repacking); moec by `moec bench graphs/gguf/qwen3moe.moe --model FILE` on the same file (the
router and the experts; without --weights the file's Q8_0/Q4_0/Q4_K/Q5_K/Q6_K/BF16 expert
tensors keep their type; `--formats` may add q5_k and q6_k, not timed by default). Both run in this one invocation, moec before and after llama.cpp, `--invocations`
times; the table gives per format and token count the median of every sample, llama.cpp's best
configuration, and best-llama.cpp / moec (above 1: moec is faster). The roofline line gives what
this machine reached in the same run: the read bandwidth of moec's f32 layer at 1 token (a lower
bound of the machine's) and the GFLOP/s of its f32 layer at 512 tokens.

    bash scripts/llamacpp/setup_venv.sh ../llama-venv        # once, ~5 min
    python3 scripts/bench_vs_llamacpp.py --llama-python ../llama-venv/bin/python --models ../llama-work

MOEC (default .build/release/moec) is the binary timed. The GGUF files (~950 MB) are written to
--models when missing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def moec_bench(moec, path, tokens, threads, repeat):
    out = subprocess.run(
        [moec, "bench", os.path.join(ROOT, "graphs/gguf/qwen3moe.moe"), "--model", path, "--tokens", tokens,
         "--threads", str(threads), "--json"] + (["--repeat", str(repeat)] if repeat else []),
        check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llama-python", required=True, help="python of a venv with llama-cpp-python (scripts/llamacpp/setup_venv.sh)")
    p.add_argument("--models", required=True, help="folder of moe1l_*.gguf (written when missing)")
    p.add_argument("--formats", default="f32,bf16,q8_0,q4_0,q4_k")
    p.add_argument("--tokens", default="1,16,128,512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--invocations", type=int, default=2)
    p.add_argument("--moec-repeat", type=int, default=0, help="moec bench --repeat (0: its default)")
    p.add_argument("--moec", default=os.environ.get("MOEC", os.path.join(ROOT, ".build/release/moec")))
    p.add_argument("--json", default=None, help="write every sample here")
    a = p.parse_args()
    formats = a.formats.split(",")
    tokens = [int(t) for t in a.tokens.split(",")]
    os.makedirs(a.models, exist_ok=True)
    missing = [f for f in ["base"] + formats if not os.path.exists(os.path.join(a.models, f"moe1l_{f}.gguf"))]
    if missing:
        print(f"writing {', '.join(missing)} GGUF files to {a.models}", file=sys.stderr, flush=True)
        subprocess.run([a.llama_python, os.path.join(HERE, "llamacpp/make_gguf.py"), a.models,
                        "--formats", ",".join(f for f in formats)], check=True)
    variants = ["base"] + formats + [f"{f}@norepack" for f in formats if f.startswith("q")]
    prefill = ",".join(str(t) for t in tokens if t > 1)
    moec = {(f, t): [] for f in formats for t in tokens}
    llama = {}
    for inv in range(a.invocations):
        for half in range(2):
            for f in formats:
                for j in moec_bench(a.moec, os.path.join(a.models, f"moe1l_{f}.gguf"), a.tokens, a.threads, a.moec_repeat):
                    moec[(f, j["tokens"])].append(j)
            print(f"invocation {inv + 1}: moec round {half + 1} done", file=sys.stderr, flush=True)
            if half == 0:
                with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                    out = tmp.name
                subprocess.run([a.llama_python, os.path.join(HERE, "llamacpp/bench_llamacpp.py"), a.models, "--variants", ",".join(variants),
                                "--threads", str(a.threads), "--prefill", prefill, "--flush-mib", "0", "--json", out],
                               check=True, stdout=subprocess.DEVNULL)
                with open(out) as fh:
                    j = json.load(fh)
                os.unlink(out)
                for name, s in j["summary"].items():
                    for col, cell in s["row"].items():
                        n = 1 if col == "decode_hot" else (int(col.split("_")[1]) if col.startswith("prefill_") else None)
                        if n is not None:
                            llama.setdefault((name, n), []).append(cell["moe_ms"])
                system = j["system_info"]
                print(f"invocation {inv + 1}: llama.cpp done", file=sys.stderr, flush=True)

    def med(xs):
        return statistics.median(xs) if xs else float("nan")

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    isa = "avx512" if "avx512_vnni" in open("/proc/cpuinfo").read() else "avx2"
    print(f"CPU: {cpu} ({isa}; llama.cpp: {system.strip()})")
    print(f"{a.threads} threads, {a.invocations} invocations; ms are medians of every sample (moec: its bench medians; "
          "llama.cpp: MoE part = model - tiny-expert twin)")
    f32_1 = med([j["weight_gb_per_s"] for j in moec.get(("f32", 1), [])])
    f32_512 = med([j.get("gflops", float("nan")) for j in moec.get(("f32", max(tokens)), [])])
    print(f"roofline reached here: {f32_1:.1f} GB/s read (moec f32, 1 token), {f32_512:.0f} GFLOP/s (moec f32, {max(tokens)} tokens)")
    print()
    print("| experts | tokens | llama.cpp ms (repack) | llama.cpp ms (no repack) | moec ms | best llama.cpp / moec | moec GB/s | moec MB read |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for f in formats:
        for t in tokens:
            lr = med(llama.get((f, t), []))
            ln = med(llama.get((f + "@norepack", t), [])) if f.startswith("q") else float("nan")
            best = min(x for x in (lr, ln) if x == x) if (lr == lr or ln == ln) else float("nan")
            m = med([j["median_ms"] for j in moec[(f, t)]])
            gbs = med([j["weight_gb_per_s"] for j in moec[(f, t)]])
            mb = med([j["weight_mb_touched"] for j in moec[(f, t)]])
            no = f"{ln:.2f}" if ln == ln else "–"
            print(f"| {f} | {t} | {lr:.2f} | {no} | {m:.2f} | {best / m:.2f} | {gbs:.1f} | {mb:.1f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"moec": {f"{f}/{t}": v for (f, t), v in moec.items()}, "llama": {f"{n}/{t}": v for (n, t), v in llama.items()}}, fh, indent=1)


if __name__ == "__main__":
    main()
