#!/usr/bin/env python3
"""One-layer qwen3moe GGUF files with Mixtral-shaped K-quant experts, for timing moec on them.

llama.cpp's Q4_K_M and Q5_K_M files store many expert tensors as Q5_K and Q6_K. gguf-py reads
those types but cannot quantize to them, so the blocks here are random (quant bytes and sub-block
scales drawn uniformly, half-precision super-block scales of a plausible size), as in
scripts/make_gguf_fixtures.py: the values do not matter for speed, the bytes do. Hidden 1024,
8 experts of ffn 3584, top-2, router F32 (the shape of bench_vs_llamacpp.py's files).

    ~/.venvs/moec-ref/bin/python scripts/make_kquant_bench.py OUT_DIR [--types q5_k,q6_k]
    moec bench graphs/gguf/qwen3moe.moe --model OUT_DIR/moe1l_q6_k.gguf --tokens 1,16,128
"""
import argparse
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

TYPES = {"q4_k": T.Q4_K, "q5_k": T.Q5_K, "q6_k": T.Q6_K}


def k_blocks(rng: np.random.Generator, t: T, shape: tuple[int, ...]) -> np.ndarray:
    block, size = gguf.GGML_QUANT_SIZES[t]
    n = int(np.prod(shape)) // block
    b = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    d = np.exp(rng.uniform(-9.5, -8.5, size=n)).astype(np.float16).view(np.uint8).reshape(n, 2)
    if t == T.Q6_K:
        b[:, size - 2:] = d  # ql[128] qh[64] scales[16] d
    else:
        b[:, 0:2], b[:, 2:4] = d, d  # d dmin scales[12] (qh[32]) qs[128]
    return b.reshape(*shape[:-1], shape[-1] // block * size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--types", default="q5_k,q6_k")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=3584)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    rng = np.random.default_rng(20261203)
    H, F, E = a.hidden, a.ffn, a.experts
    router = (rng.standard_normal((E, H)) * 0.3).astype(np.float32)
    for name in a.types.split(","):
        t = TYPES[name]
        path = os.path.join(a.out_dir, f"moe1l_{name}.gguf")
        w = gguf.GGUFWriter(path, arch="qwen3moe")
        w.add_block_count(1)
        w.add_embedding_length(H)
        w.add_expert_feed_forward_length(F)
        w.add_expert_count(E)
        w.add_expert_used_count(a.top_k)
        w.add_tensor("blk.0.ffn_gate_inp.weight", router)
        for part, shape in (("gate", (E, F, H)), ("up", (E, F, H)), ("down", (E, H, F))):
            w.add_tensor(f"blk.0.ffn_{part}_exps.weight", k_blocks(rng, t, shape), raw_dtype=t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
