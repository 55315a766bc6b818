#!/usr/bin/env python3
"""Writes a checkpoint for graphs/bench/skewed_mixtral.moe: seeded random weights (N(0, 1/fan_in)) and a
selection bias `gate.skew` that sends most tokens to experts 0 and 1. numpy only.

    python3 scripts/make_skewed_bench.py OUT_DIR [--hidden 1024 --ffn 3584 --experts 8 --skew 0.2]
"""
import argparse
import json
import os
import struct

import numpy as np


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=3584)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--skew", type=float, default=0.2, help="selection bias of experts 0 and 1")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    H, F, E = a.hidden, a.ffn, a.experts
    t = {"gate.weight": rng.standard_normal((E, H), dtype=np.float32) / np.sqrt(H)}
    skew = np.zeros(E, dtype=np.float32)
    skew[:2] = a.skew
    t["gate.skew"] = skew
    for e in range(E):
        t[f"experts.{e}.w1.weight"] = rng.standard_normal((F, H), dtype=np.float32) / np.sqrt(H)
        t[f"experts.{e}.w3.weight"] = rng.standard_normal((F, H), dtype=np.float32) / np.sqrt(H)
        t[f"experts.{e}.w2.weight"] = rng.standard_normal((H, F), dtype=np.float32) / np.sqrt(F)
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), t)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"hidden_size": H, "intermediate_size": F, "num_local_experts": E}, f)


if __name__ == "__main__":
    main()
