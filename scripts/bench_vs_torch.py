#!/usr/bin/env python3
"""moec against PyTorch / transformers on the same MoE layer, with the roofline.

For each layer shape (Mixtral, OLMoE, DeepSeek-V3 below), this script
  1. builds a one-layer transformers model of that family with seeded random weights and saves it as a
     Hugging Face folder (config.json + model.safetensors, Hub tensor names) under --cache;
  2. times the model's MoE block in PyTorch (eval, no_grad, fp32, --threads threads), with each of
     transformers' experts implementations ("eager", "grouped_mm") and keeps the faster one;
  3. runs `moec bench graphs/FAMILY.moe --model FOLDER --json` on the same weights and token counts;
  4. measures this machine's GEMM peak (torch.mm 512x1024x3584) and bandwidth (256 MiB, the better of
     a read and a copy) and prints, per token count: the roofline max(active FLOPs / peak, touched
     weight bytes / bandwidth) with the issue's figures and with this run's probes, moec's and
     transformers' medians, moec's fraction of each roofline and its speed-up.

Both sides run in the same invocation, one after the other, with the same thread count; the figures are
medians of repeated runs (at least 10 and 1 s each). Needs torch, transformers, safetensors, numpy:
    python3 -m venv ~/.venvs/moec-ref && ~/.venvs/moec-ref/bin/pip install -r scripts/requirements.txt
    ~/.venvs/moec-ref/bin/python scripts/bench_vs_torch.py [--shapes mixtral,olmoe,deepseek_v3] [--tokens 1,16,128,512]
Also: MOEC_BLAS=none in the environment benchmarks moec's own kernels (the peer is unaffected).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(fn, warmup=3, min_runs=10, min_time=1.0, max_runs=200):
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_time and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# Layer shapes of issue 4: hidden 1024 throughout.
SHAPES = {
    "mixtral": dict(graph="graphs/mixtral.moe", experts=8, k=2, ffn=3584, shared_ffn=0),
    "olmoe": dict(graph="graphs/olmoe.moe", experts=64, k=8, ffn=512, shared_ffn=0),
    "deepseek_v3": dict(graph="graphs/deepseek_v3.moe", experts=64, k=8, ffn=512, shared_ffn=512),
}
HIDDEN = 1024
# The figures issue 4 gives for these machines (2-core AMD EPYC): OpenBLAS sgemm peak with 2
# threads and copy bandwidth; its roofline targets (2.9 / 12 / 39 / 155 ms for Mixtral) use them.
ISSUE_PEAK, ISSUE_BW = 140.0, 30.0


def make_model(name, transformers, torch):
    s = SHAPES[name]
    tok = dict(vocab_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, num_hidden_layers=1,
               tie_word_embeddings=False, hidden_act="silu", max_position_embeddings=64)
    if name == "mixtral":
        cfg = transformers.MixtralConfig(**tok, hidden_size=HIDDEN, intermediate_size=s["ffn"],
                                         num_local_experts=s["experts"], num_experts_per_tok=s["k"],
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=4)
        model = transformers.MixtralForCausalLM(cfg)
    elif name == "olmoe":
        cfg = transformers.OlmoeConfig(**tok, hidden_size=HIDDEN, intermediate_size=s["ffn"],
                                       num_experts=s["experts"], num_experts_per_tok=s["k"], norm_topk_prob=False,
                                       num_attention_heads=256, num_key_value_heads=256)
        model = transformers.OlmoeForCausalLM(cfg)
    else:
        cfg = transformers.DeepseekV3Config(**tok, hidden_size=HIDDEN, intermediate_size=4096,
                                            moe_intermediate_size=s["ffn"], n_routed_experts=s["experts"],
                                            num_experts_per_tok=s["k"], n_shared_experts=1, n_group=8, topk_group=4,
                                            norm_topk_prob=True, routed_scaling_factor=2.5, first_k_dense_replace=0,
                                            num_attention_heads=2, num_key_value_heads=2, q_lora_rank=8,
                                            kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4)
        model = transformers.DeepseekV3ForCausalLM(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            z = torch.randn(tuple(p.shape), generator=g)
            p.copy_(1.0 + 0.1 * z if p.ndim == 1 else z / math.sqrt(p.shape[-1]))
        for bname, b in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(tuple(b.shape), generator=g))
    model.eval()
    return model


def folder_for(name, cache, transformers, torch):
    out = os.path.join(cache, f"{name}-h{HIDDEN}")
    model = make_model(name, transformers, torch)
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
    else:  # weights on disk are authoritative: reload them so both sides use the same numbers
        model = type(model).from_pretrained(out, torch_dtype=torch.float32)
        model.eval()
    return out, model


def touched(block, name, x, torch):
    s = SHAPES[name]
    with torch.no_grad():
        out = block.gate(x)
    idx = out[-1] if isinstance(out, tuple) else out
    hit = int(torch.unique(idx).numel())
    T = x.shape[0]
    flops = 2.0 * 3 * HIDDEN * (T * s["k"] * s["ffn"] + T * s["shared_ffn"]) + 2.0 * T * HIDDEN * s["experts"]
    bytes_ = 4 * (hit * 3 * HIDDEN * s["ffn"] + 3 * HIDDEN * s["shared_ffn"] + s["experts"] * HIDDEN)
    return flops, bytes_, hit


def machine(torch):
    a, b = torch.randn(512, 1024), torch.randn(1024, 3584)
    c = torch.empty(512, 3584)
    peak = 2.0 * 512 * 1024 * 3584 / bench(lambda: torch.mm(a, b, out=c)) / 1e9
    n = 256 * 1024 * 1024 // 4
    u, v = torch.rand(n), torch.rand(n)
    copy = 2 * 4 * n / bench(lambda: v.copy_(u), warmup=2) / 1e9
    read = 4 * n / bench(lambda: u.sum(), warmup=2) / 1e9
    del u, v
    return peak, copy, read


def moec_bench(graph, folder, tokens, threads, binary):
    cmd = [binary, "bench", os.path.join(REPO, graph), "--model", folder, "--set", "layer=0", "--tokens",
           ",".join(map(str, tokens)), "--threads", str(threads), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"moec bench failed ({' '.join(cmd)}):\n{r.stderr}")
    return {j["tokens"]: j for j in map(json.loads, r.stdout.splitlines())}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="mixtral,olmoe,deepseek_v3")
    p.add_argument("--tokens", default="1,16,128,512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--impls", default="eager,grouped_mm", help="transformers experts implementations to try")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/moec-bench"))
    p.add_argument("--moec", default=os.path.join(REPO, ".build/release/moec"))
    p.add_argument("--json", help="also write all figures to this file")
    a = p.parse_args()
    import torch
    import transformers
    torch.set_num_threads(a.threads)
    tokens = [int(t) for t in a.tokens.split(",")]
    if not os.path.exists(a.moec):
        subprocess.run(["swift", "build", "-c", "release", "--product", "moec"], cwd=REPO, check=True)
    peak, copy, read = machine(torch)
    # Streaming weights is reading: the probe's bandwidth is the better of a read (sum) and a copy.
    bw = max(copy, read)
    print(f"machine: GEMM peak {peak:.0f} GFLOP/s (torch.mm 512x1024x3584), bandwidth {copy:.1f} GB/s copy, "
          f"{read:.1f} GB/s read (256 MiB), {a.threads} threads, moec BLAS: {os.environ.get('MOEC_BLAS', 'auto')}", flush=True)
    print(f"roofline = max(active FLOPs / peak, touched weight bytes / bandwidth): 'issue' with the issue's figures "
          f"for this machine ({ISSUE_PEAK:.0f} GFLOP/s, {ISSUE_BW:.0f} GB/s), 'probes' with this run's "
          f"({peak:.0f} GFLOP/s, {bw:.1f} GB/s)", flush=True)
    rows = []
    for name in a.shapes.split(","):
        folder, model = folder_for(name, a.cache, transformers, torch)
        block = model.model.layers[0].mlp
        m = moec_bench(SHAPES[name]["graph"], folder, tokens, a.threads, a.moec)
        print(f"\n{name} (hidden {HIDDEN}, ffn {SHAPES[name]['ffn']}, {SHAPES[name]['experts']} experts, "
              f"top-{SHAPES[name]['k']}{', 1 shared' if SHAPES[name]['shared_ffn'] else ''})")
        print("| tokens | roofline ms (issue) | roofline / moec | roofline ms (probes) | roofline / moec "
              "| moec ms | transformers ms (impl) | speed-up |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for T in tokens:
            x = torch.randn(1, T, HIDDEN, generator=torch.Generator().manual_seed(T))
            flops, nbytes, hit = touched(block, name, x.view(-1, HIDDEN), torch)
            roof = max(flops / (peak * 1e9), nbytes / (bw * 1e9)) * 1e3
            roof_issue = max(flops / (ISSUE_PEAK * 1e9), nbytes / (ISSUE_BW * 1e9)) * 1e3
            best = None
            for impl in a.impls.split(","):
                model.set_experts_implementation(impl)
                with torch.no_grad():
                    t = bench(lambda: block(x)) * 1e3
                if best is None or t < best[0]:
                    best = (t, impl)
            ms = m[T]["median_ms"]
            row = dict(shape=name, tokens=T, roofline_ms=roof, roofline_issue_ms=roof_issue, moec_ms=ms,
                       torch_ms=best[0], torch_impl=best[1], experts_hit=hit, peak_gflops=peak, bandwidth_gbs=bw,
                       copy_gbs=copy, read_gbs=read, threads=a.threads, moec_backend=m[T].get("backend"))
            rows.append(row)
            print(f"| {T} | {roof_issue:.2f} | {roof_issue / ms:.2f} | {roof:.2f} | {roof / ms:.2f} | {ms:.2f} "
                  f"| {best[0]:.2f} ({best[1]}) | {best[0] / ms:.2f}x |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
