#!/usr/bin/env python3
"""A second, independent reference for DSelect-k: the per-example gate of the official implementation
(google-research/dselect_k_moe, `DSelectKGate` with routing inputs), transcribed operation by operation
into numpy, and fixtures made with it for graphs/mechanisms/dselect_k.moe.

It shares nothing with scripts/mechanisms_reference.py but the file writers: the official code's own
steps, in its own layout, are
  1. binary_matrix[i] = the digits of np.binary_repr(i, width=m), m = ceil(log2 E): most significant first;
  2. z and w logits are Keras Dense layers (kernel [in, out], plus a bias);
  3. z is reshaped to [-1, k, 1, m]; S = smooth_step(z) (0 / 1 outside ±γ/2, a3·z³ + a1·z + 1/2 inside);
  4. selector_outputs = prod over m of where(codes, S, 1 − S): [batch, k, E];
  5. selector_weights = softmax over the k selectors of the w logits: [batch, k, 1];
  6. expert_weights = sum over the selectors of weights · outputs: [batch, E];
  7. the layer's output mixes every expert's output by its weight (`accumulate_n`).
The Keras kernels are stored transposed, as the graph's [out, in] `linear` weights.

    python3 scripts/dselect_k_official.py            # writes Tests/Fixtures/mechanisms/dselect_k_official_*
"""
from __future__ import annotations

import math
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_mechanism_fixtures import OUT, ROOT, write_json, write_safetensors  # noqa: E402  (file writers only)


class OfficialPerExampleGate:
    """DSelectKGate(num_nonzeros=k, gamma) called on (experts, routing_inputs), in numpy float64."""

    def __init__(self, num_experts, num_nonzeros, gamma, z_kernel, z_bias, w_kernel, w_bias):
        self.k, self.gamma = num_nonzeros, gamma
        self.num_binary = math.ceil(math.log2(num_experts))
        self.z_kernel, self.z_bias, self.w_kernel, self.w_bias = z_kernel, z_bias, w_kernel, w_bias
        binary_matrix = np.array([list(np.binary_repr(v, width=self.num_binary))
                                  for v in range(num_experts)]) == "1"
        self.binary_codes = binary_matrix[None, :, :]                     # (1, E, m)
        self.a3, self.a1, self.a0 = -2 / gamma ** 3, 3 / (2 * gamma), 0.5

    def smooth_step(self, x):
        return np.where(x <= -self.gamma / 2, 0.0,
                        np.where(x >= self.gamma / 2, 1.0, self.a3 * x ** 3 + self.a1 * x + self.a0))

    def expert_weights(self, routing_inputs):
        sample_logits = (routing_inputs @ self.z_kernel + self.z_bias).reshape(-1, self.k, 1, self.num_binary)
        s = self.smooth_step(sample_logits)
        selector_outputs = np.prod(np.where(self.binary_codes[None], s, 1 - s), axis=3)     # (B, k, E)
        logits = (routing_inputs @ self.w_kernel + self.w_bias)[:, :, None]                 # (B, k, 1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        selector_weights = e / e.sum(axis=1, keepdims=True)
        return np.sum(selector_weights * selector_outputs, axis=1)                         # (B, E)

    def __call__(self, experts, routing_inputs):
        w = self.expert_weights(routing_inputs)
        return sum(w[:, i:i + 1] * experts[i] for i in range(len(experts)))


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def swiglu(x, gate, up, down):
    g = x @ gate.T
    return (g / (1 + np.exp(-g)) * (x @ up.T)) @ down.T


VARIANTS = [
    # folder suffix, seed, tokens, hidden, ffn, E, k, gamma, z scale
    ("h16-f16-e8-s2-g1-n11", 301, 11, 16, 16, 8, 2, 1.0, 1.5),
    ("h12-f12-e6-s3-g15-n9", 302, 9, 12, 12, 6, 3, 1.5, 2.0),
]


def build(suffix, seed, T, d, f, E, k, gamma, z_scale):
    rng = np.random.default_rng(seed)
    m = math.ceil(math.log2(E))
    z_kernel = f32(rng.normal(0, z_scale / math.sqrt(d), (d, k * m)))
    z_bias = f32(rng.normal(0, 0.3 * z_scale, k * m))
    w_kernel = f32(rng.normal(0, 2 / math.sqrt(d), (d, k)))
    w_bias = f32(rng.normal(0, 0.5, k))
    experts = [(f32(rng.normal(0, 1 / math.sqrt(d), (f, d))), f32(rng.normal(0, 1 / math.sqrt(d), (f, d))),
                f32(rng.normal(0, 1 / math.sqrt(f), (d, f)))) for _ in range(E)]
    x = f32(rng.normal(0, 1, (T, d)))
    gate = OfficialPerExampleGate(E, k, gamma, z_kernel, z_bias, w_kernel, w_bias)
    y = gate([swiglu(x, *w) for w in experts], x)

    folder = os.path.join(OUT, f"dselect_k_official_{suffix}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    config = {"hidden_size": d, "intermediate_size": f, "num_experts": E, "num_selectors": k,
              "selector_bits": m, "smooth_step_gamma": gamma}
    tensors = {"moe.router.z.weight": z_kernel.T, "moe.router.z.bias": z_bias,
               "moe.router.alpha.weight": w_kernel.T, "moe.router.alpha.bias": w_bias}
    for e, (g, u, dn) in enumerate(experts):
        tensors[f"moe.experts.{e}.gate_proj.weight"] = g
        tensors[f"moe.experts.{e}.up_proj.weight"] = u
        tensors[f"moe.experts.{e}.down_proj.weight"] = dn
    write_json(os.path.join(folder, "config.json"), config)
    write_safetensors(os.path.join(folder, "model.safetensors"),
                      {n: np.ascontiguousarray(v, dtype=np.float32) for n, v in tensors.items()})
    np.save(os.path.join(folder, "x.npy"), x.astype(np.float32))
    np.save(os.path.join(folder, "y.npy"), y.astype(np.float32))
    weights = gate.expert_weights(x)
    write_json(os.path.join(folder, "meta.json"), {
        "graph": "graphs/mechanisms/dselect_k.moe",
        "inputs": {"x": "x.npy"}, "outputs": {"y": "y.npy"}, "set": {},
        "description": f"the official per-example DSelect-k gate (np.binary_repr codes, Dense z and α with "
                       f"biases), E = {E}, k = {k}, γ = {gamma}",
        "tokens": T, "seed": seed,
        "experts_per_token": [int((w != 0).sum()) for w in weights],
        "reference": "scripts/dselect_k_official.py (a numpy transcription of google-research dselect_k_moe)",
    })
    print(f"{os.path.basename(folder):<44} experts/token {[int((w != 0).sum()) for w in weights]}")


def main():
    for v in VARIANTS:
        build(*v)


if __name__ == "__main__":
    main()
