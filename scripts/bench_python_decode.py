#!/usr/bin/env python3
"""Decode speed of a transformers model with and without moec's MoE blocks (moec.transformers.patch).

The model: 2 Mixtral layers with Mixtral-shaped experts (hidden 1024, ffn 3584, 8 experts, top-2),
8 attention heads of 128 (2 KV heads), and a small vocabulary of 4096 so that the LM head does not
dominate a step; built once by scripts/make_python_fixtures.py (0.8 GB, fp32) into --model.
Variants, in one invocation, interleaved repeat by repeat:
  torch        the model as transformers runs it (its default experts implementation)
  moec f32     patched, expert weights as the checkpoint stores them (fp32)
  moec int4    patched, --weights int4 (expert matrices in 4 bits, groups of 32)
  layers f32   patched with whole_layers=True: each decoder layer (attention, norms, MoE block) a
               moec plan of graphs/decoder with its own KV cache (--layers: its weight formats)
Each repeat prefills a prompt (untimed), then times each of --tokens single-token decode steps
(greedy, with the KV cache). OMP_WAIT_POLICY is PASSIVE for all variants (--omp-wait-policy): with
libgomp's default spinning, torch's idle OpenMP threads and moec's workers take each other's cores
(on 2 cores a patched f32 step measured 45 ms instead of 14; torch alone 20-60 ms by the load). Reported: the median step over all repeats as tokens/s, and the
median of the repeats' tokens/s. torch and moec both get --threads threads (torch.set_num_threads
and the plans' worker threads).

    PYTHONPATH=python /work/venv-ref/bin/python scripts/bench_python_decode.py --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

# torch's OpenMP threads (libgomp) spin for milliseconds after each parallel region by default,
# on the cores moec's worker threads then need (and the other way round): passive waiting, set
# before torch is imported, for every variant alike. --omp-wait-policy default leaves it unset.
if "--omp-wait-policy" in sys.argv[:-1]:
    _policy = sys.argv[sys.argv.index("--omp-wait-policy") + 1]
else:
    _policy = "PASSIVE"
if _policy.lower() != "default":
    os.environ["OMP_WAIT_POLICY"] = _policy

import torch  # noqa: E402
import transformers  # noqa: E402

import make_python_fixtures  # noqa: E402
import moec  # noqa: E402
import moec.transformers  # noqa: E402


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def decode(model, prompt: torch.Tensor, tokens: int) -> tuple[list[float], list[int]]:
    """Per-step seconds of `tokens` greedy decode steps after an untimed prefill, and the tokens."""
    steps, out = [], []
    with torch.no_grad():
        cache = transformers.DynamicCache(config=model.config)
        logits = model(prompt, past_key_values=cache, use_cache=True).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(tokens):
            out.append(int(nxt))
            t0 = time.perf_counter()
            logits = model(nxt, past_key_values=cache, use_cache=True).logits
            steps.append(time.perf_counter() - t0)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
    return steps, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join("/tmp", "moec-bench-mixtral"),
                   help="the checkpoint folder (built there when missing)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32, help="decode steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--prompt", type=int, default=16, help="prompt tokens (prefilled, not timed)")
    p.add_argument("--weights", default="f32,int4", help="moec variants: comma-separated weight formats")
    p.add_argument("--layers", default="f32",
                   help="whole-layer variants (patch(whole_layers=True)): comma-separated weight formats, or none")
    p.add_argument("--record-routing", action="store_true", help="patched models record routing statistics")
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY for torch's OpenMP threads (PASSIVE, ACTIVE, or default: unset)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    if not os.path.exists(os.path.join(a.model, "config.json")):
        print(f"building the benchmark model in {a.model} …", flush=True)
        make_python_fixtures.build("bench-mixtral", a.model)

    def load():
        return transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()

    variants = {"torch": load()}
    for w in a.weights.split(","):
        variants[f"moec {w}"] = moec.transformers.patch(load(), weights=None if w == "f32" else w, threads=a.threads,
                                                        record_routing=a.record_routing)
    for w in [] if a.layers in ("", "none") else a.layers.split(","):
        variants[f"layers {w}"] = moec.transformers.patch(load(), weights=None if w == "f32" else w, threads=a.threads,
                                                          record_routing=a.record_routing, whole_layers=True)
    cfg = variants["torch"].config
    experts_impl = getattr(cfg, "_experts_implementation", None) or "default"
    print(f"model: {a.model}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, ffn {cfg.intermediate_size}, "
          f"{cfg.num_local_experts} experts, top-{cfg.num_experts_per_tok}, vocab {cfg.vocab_size}")
    print(f"torch {torch.__version__} (experts implementation: {experts_impl}), transformers {transformers.__version__}, "
          f"libMoEC {moec.version()} ({moec.library_path()})")
    if os.sep + "debug" + os.sep in moec.library_path():
        # The package takes the newer of a checkout's release and debug builds: after `swift
        # build --build-tests` that is the debug one, about 20× slower here.
        print("warning: timing a debug build of libMoEC; set MOEC_LIBRARY to .build/release/libMoEC.so "
              "(or run `swift build -c release` after the debug build)", file=sys.stderr, flush=True)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, threads {a.threads}, prompt {a.prompt}, {a.tokens} decode steps × {a.repeats} repeats; "
          f"load average before: {load_average()}", flush=True)

    prompt = torch.randint(3, cfg.vocab_size, (1, a.prompt), generator=torch.Generator().manual_seed(0))
    steps = {name: [] for name in variants}
    rates = {name: [] for name in variants}
    tokens = {}
    for name, model in variants.items():  # warm-up: first-run allocations, page faults of the weights
        decode(model, prompt, 4)
    for r in range(a.repeats):
        for name, model in variants.items():
            s, toks = decode(model, prompt, a.tokens)
            steps[name] += s
            rates[name].append(len(s) / sum(s))
            tokens.setdefault(name, toks)
    base = 1 / statistics.median(steps["torch"])
    print(f"\n{'variant':<12} {'tokens/s (median step)':>24} {'median of repeats':>18} {'vs torch':>9}  same tokens as torch")
    for name in variants:
        tps = 1 / statistics.median(steps[name])
        print(f"{name:<12} {tps:>24.1f} {statistics.median(rates[name]):>18.1f} {tps / base:>8.2f}×  "
              f"{tokens[name] == tokens['torch']}")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
