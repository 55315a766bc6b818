#!/usr/bin/env python3
"""Write moec's GPTQ and AWQ test checkpoints: tiny Mixtral layers whose expert linears are 4-bit
quantized and packed exactly as the public libraries pack them.

    python scripts/make_gptq_fixtures.py          # writes Tests/Fixtures/gptq/

Needs numpy, torch, transformers and safetensors (scripts/requirements.txt). Each folder is a
Hugging Face checkpoint of one Mixtral layer (`model.layers.0.block_sparse_moe.*`, the names
graphs/mixtral.moe binds), with `quantization_config` in config.json as the libraries write it:

  mixtral-gptq-g32        GPTQ (AutoGPTQ / GPTQModel, checkpoint_format "gptq" = v1), asymmetric,
                          group 32, desc_act false: per linear X, X.qweight int32 [in/8, out] (nibble
                          i of word r is input 8r+i), X.qzeros int32 [in/g, out/8] (nibble j of word c
                          is output 8c+j, holding zero − 1), X.scales fp16 [in/g, out], X.g_idx int32
                          [in] (= i // g); w = scale·(q − (stored zero + 1)) (AutoGPTQ's
                          QuantLinear.pack: `zeros -= 1`, nibbles shifted by 4·(j − i))
  mixtral-gptq-g128-sym   GPTQ, symmetric (zero 8, stored as 7), group 128
  mixtral-awq-g64         AWQ (AutoAWQ, version "gemm"), group 64: X.qweight int32 [in, out/8] and
                          X.qzeros int32 [in/g, out/8], both packed along the output dim with nibble
                          i holding output 8c + [0, 2, 4, 6, 1, 3, 5, 7][i] (AWQ_ORDER), X.scales
                          fp16 [in/g, out]; w = scale·(q − zero)
  mixtral-gptq-actorder   GPTQ with desc_act true: g_idx follows a permutation of the inputs (not
                          monotone), which moec refuses (no x/y)
  qwen2_moe-gptq-g32      a Qwen2-MoE layer (`model.layers.0.mlp.*`, graphs/qwen2_moe.moe): experts and
                          the shared expert GPTQ v1 group 32, router and shared_expert_gate fp16;
                          y from transformers' Qwen2MoeSparseMoeBlock

The router (`gate.weight`) stays fp16, as in the published GPTQ/AWQ Mixtral checkpoints. Each
folder (but the act-order one) has x.npy [T, H] and y.npy: transformers' MixtralSparseMoeBlock run
in fp32 on the dequantized weights (scale as fp16 widened, times q − zero: exact in fp32), and
w1.npy, expert 0's dequantized w1 [F, H] (what moec's reader must give, bit for bit). The script
unpacks every packed tensor again (the libraries' unpack: shifts, AWQ_REVERSE_ORDER) and checks
it against the integers it packed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "gptq"

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def quantize(w: np.ndarray, g_idx: np.ndarray, groups: int, sym: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-to-nearest 4-bit quantization of W [out, in] by input groups `g_idx`: per (group,
    output) an fp16 scale and an integer zero in 0…15 (8 when symmetric). Returns q [out, in]
    (0…15), scales fp16 [groups, out], zeros [groups, out]."""
    out, k = w.shape
    scales = np.zeros((groups, out), np.float16)
    zeros = np.zeros((groups, out), np.int64)
    q = np.zeros((out, k), np.int64)
    for gi in range(groups):
        cols = np.nonzero(g_idx == gi)[0]
        block = w[:, cols]
        if sym:
            s = np.maximum(np.abs(block).max(axis=1), 1e-8) * 2 / 15
            z = np.full(out, 8)
        else:
            lo, hi = np.minimum(block.min(axis=1), 0), np.maximum(block.max(axis=1), 0)
            s = np.maximum(hi - lo, 1e-8) / 15
            z = np.clip(np.round(-lo / s), 0, 15).astype(np.int64)
        s16 = s.astype(np.float16)
        scales[gi], zeros[gi] = s16, z
        sf = s16.astype(np.float32)[:, None]
        q[:, cols] = np.clip(np.round(block / sf) + z[:, None], 0, 15)
    return q, scales, zeros


def dequantize(q: np.ndarray, scales: np.ndarray, zeros: np.ndarray, g_idx: np.ndarray) -> np.ndarray:
    """W [out, in] = scale·(q − zero), in fp32 (exact: an fp16 scale times an integer below 32)."""
    s = scales.astype(np.float32)[g_idx].T  # [out, in]
    z = zeros[g_idx].T
    return (s * (q - z).astype(np.float32)).astype(np.float32)


def pack_gptq(q: np.ndarray, scales: np.ndarray, zeros: np.ndarray, g_idx: np.ndarray) -> dict[str, np.ndarray]:
    """AutoGPTQ's QuantLinear.pack (4 bits): intweight = q.T [in, out]; word r of column c holds
    inputs 8r…8r+7, input 8r+j in bits 4j; zeros minus one, packed along the outputs the same way."""
    intweight = q.T.astype(np.uint32)  # [in, out]
    k, out = intweight.shape
    qweight = np.zeros((k // 8, out), np.uint32)
    for j in range(8):
        qweight |= intweight[j::8] << (4 * j)
    z = (zeros - 1).astype(np.uint32) & 0xF  # v1 stores zero − 1
    qzeros = np.zeros((z.shape[0], out // 8), np.uint32)
    for j in range(8):
        qzeros |= z[:, j::8] << (4 * j)
    return {"qweight": qweight.view(np.int32), "qzeros": qzeros.view(np.int32), "scales": scales, "g_idx": g_idx.astype(np.int32)}


def unpack_gptq(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    shifts = np.arange(0, 32, 4, dtype=np.uint32)
    qw = (t["qweight"].view(np.uint32)[:, None, :] >> shifts[None, :, None]) & 0xF  # [in/8, 8, out]
    qz = (t["qzeros"].view(np.uint32)[:, :, None] >> shifts[None, None, :]) & 0xF  # [g, out/8, 8]
    return qw.reshape(-1, qw.shape[-1]).T.astype(np.int64), qz.reshape(qz.shape[0], -1).astype(np.int64) + 1


def pack_awq(q: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> dict[str, np.ndarray]:
    """AutoAWQ's GEMM packing: intweight [in, out], word c of a row holds outputs 8c + AWQ_ORDER[i]
    in bits 4i; the zeros [groups, out] the same way (no offset)."""
    intweight = q.T.astype(np.uint32)
    k, out = intweight.shape
    qweight = np.zeros((k, out // 8), np.uint32)
    qzeros = np.zeros((zeros.shape[0], out // 8), np.uint32)
    for i in range(8):
        qweight |= intweight[:, AWQ_ORDER[i]::8] << (4 * i)
        qzeros |= zeros[:, AWQ_ORDER[i]::8].astype(np.uint32) << (4 * i)
    return {"qweight": qweight.view(np.int32), "qzeros": qzeros.view(np.int32), "scales": scales}


def unpack_awq(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    shifts = np.arange(0, 32, 4, dtype=np.uint32)
    iw = ((t["qweight"].view(np.uint32)[:, :, None] >> shifts[None, None, :]) & 0xF).reshape(t["qweight"].shape[0], -1)
    iz = ((t["qzeros"].view(np.uint32)[:, :, None] >> shifts[None, None, :]) & 0xF).reshape(t["qzeros"].shape[0], -1)
    reverse = (np.arange(iw.shape[1]).reshape(-1, 8)[:, AWQ_REVERSE_ORDER]).reshape(-1)
    return iw[:, reverse].T.astype(np.int64), iz[:, reverse].astype(np.int64)


def quantized_linear(rng, tensors: dict[str, np.ndarray], key: str, out: int, k: int, group: int, sym: bool, act_order: bool,
                     method: str) -> np.ndarray:
    """A random [out, k] linear quantized in groups of `group`, packed as `method` packs it into
    `tensors` under `key` (checked by unpacking it again); returns its dequantized values."""
    w = (rng.standard_normal((out, k)) * 0.2).astype(np.float32)
    if act_order:
        perm = rng.permutation(k)
        g_idx = np.empty(k, np.int64)
        g_idx[perm] = np.arange(k) // group
    else:
        g_idx = np.arange(k) // group
    q, scales, zeros = quantize(w, g_idx, k // group, sym)
    if method == "gptq":
        packed = pack_gptq(q, scales, zeros, g_idx)
        uq, uz = unpack_gptq(packed)
    else:
        packed = pack_awq(q, scales, zeros)
        uq, uz = unpack_awq(packed)
    assert np.array_equal(uq, q) and np.array_equal(uz, zeros), f"unpacking {key} gives other integers"
    for part, value in packed.items():
        tensors[f"{key}.{part}"] = value
    return dequantize(q, scales, zeros, g_idx)


def layer(name: str, method: str, group: int, sym: bool, act_order: bool, H: int, F: int, E: int, K: int, T: int, seed: int) -> dict:
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    rng = np.random.default_rng(seed)
    folder = OUT / name
    folder.mkdir(parents=True)
    prefix = "model.layers.0.block_sparse_moe."
    tensors: dict[str, np.ndarray] = {}
    router = (rng.standard_normal((E, H)) * 0.3).astype(np.float16)
    tensors[prefix + "gate.weight"] = router
    dense: dict[str, list[np.ndarray]] = {"w1": [], "w3": [], "w2": []}
    for e in range(E):
        for part, (out, k) in (("w1", (F, H)), ("w3", (F, H)), ("w2", (H, F))):
            dense[part].append(quantized_linear(rng, tensors, f"{prefix}experts.{e}.{part}", out, k, group, sym, act_order, method))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = MixtralConfig(hidden_size=H, intermediate_size=F, num_local_experts=E, num_experts_per_tok=K, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=H // 2, vocab_size=32)
    as_dict = config.to_dict()
    if method == "gptq":
        as_dict["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": act_order, "sym": sym,
                                          "true_sequential": True, "damp_percent": 0.01, "checkpoint_format": "gptq",
                                          "modules_in_block_to_quantize": None}
    else:
        as_dict["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True,
                                          "version": "gemm", "modules_to_not_convert": ["gate"]}
    (folder / "config.json").write_text(json.dumps(as_dict, indent=2, sort_keys=True) + "\n")
    info = {"name": name, "method": method, "group": group, "sym": sym, "desc_act": act_order, "hidden": H, "ffn": F, "experts": E,
            "k": K, "tokens": T, "seed": seed}
    if act_order:
        return info
    block = MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        block.gate.weight.copy_(torch.from_numpy(router.astype(np.float32)))
        gate_up = np.stack([np.concatenate([dense["w1"][e], dense["w3"][e]], axis=0) for e in range(E)])
        block.experts.gate_up_proj.copy_(torch.from_numpy(gate_up))
        block.experts.down_proj.copy_(torch.from_numpy(np.stack(dense["w2"])))
        x = rng.standard_normal((T, H)).astype(np.float32)
        y = block(torch.from_numpy(x)[None])
        y = (y[0] if isinstance(y, tuple) else y)[0].numpy()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", np.ascontiguousarray(y, dtype=np.float32))
    np.save(folder / "w1.npy", dense["w1"][0])
    info["reference"] = "MixtralSparseMoeBlock (fp32) on the dequantized weights"
    return info


def qwen2_layer(name: str, group: int, H: int, F: int, S: int, E: int, K: int, T: int, seed: int) -> dict:
    """A Qwen2-MoE layer whose expert and shared-expert linears are GPTQ (v1, asymmetric) in
    groups of `group`; the router and the shared expert's gate ([1, H]) stay fp16, as GPTQ
    libraries leave them."""
    from transformers import Qwen2MoeConfig
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    rng = np.random.default_rng(seed)
    folder = OUT / name
    folder.mkdir(parents=True)
    prefix = "model.layers.0.mlp."
    tensors: dict[str, np.ndarray] = {}
    router = (rng.standard_normal((E, H)) * 0.3).astype(np.float16)
    mix = (rng.standard_normal((1, H)) * 0.3).astype(np.float16)
    tensors[prefix + "gate.weight"] = router
    tensors[prefix + "shared_expert_gate.weight"] = mix

    def linear(key: str, out: int, k: int) -> np.ndarray:
        return quantized_linear(rng, tensors, prefix + key, out, k, group, False, False, "gptq")

    experts = [{p: linear(f"experts.{e}.{p}", *shape) for p, shape in (("gate_proj", (F, H)), ("up_proj", (F, H)), ("down_proj", (H, F)))}
               for e in range(E)]
    shared = {p: linear(f"shared_expert.{p}", *shape) for p, shape in (("gate_proj", (S, H)), ("up_proj", (S, H)), ("down_proj", (H, S)))}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = Qwen2MoeConfig(hidden_size=H, moe_intermediate_size=F, shared_expert_intermediate_size=S, num_experts=E,
                            num_experts_per_tok=K, norm_topk_prob=False, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1, vocab_size=32)
    as_dict = config.to_dict()
    as_dict["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": False, "sym": False,
                                      "true_sequential": True, "damp_percent": 0.01, "checkpoint_format": "gptq",
                                      "modules_in_block_to_quantize": None}
    (folder / "config.json").write_text(json.dumps(as_dict, indent=2, sort_keys=True) + "\n")
    block = Qwen2MoeSparseMoeBlock(config).eval()
    with torch.no_grad():
        block.gate.weight.copy_(torch.from_numpy(router.astype(np.float32)))
        block.shared_expert_gate.weight.copy_(torch.from_numpy(mix.astype(np.float32)))
        block.experts.gate_up_proj.copy_(torch.from_numpy(np.stack([np.concatenate([x["gate_proj"], x["up_proj"]]) for x in experts])))
        block.experts.down_proj.copy_(torch.from_numpy(np.stack([x["down_proj"] for x in experts])))
        for p, w in shared.items():
            getattr(block.shared_expert, p).weight.copy_(torch.from_numpy(w))
        x = rng.standard_normal((T, H)).astype(np.float32)
        y = block(torch.from_numpy(x)[None])
        y = (y[0] if isinstance(y, tuple) else y)[0].numpy()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", np.ascontiguousarray(y, dtype=np.float32))
    return {"name": name, "method": "gptq", "group": group, "sym": False, "desc_act": False, "hidden": H, "ffn": F, "shared_ffn": S,
            "experts": E, "k": K, "tokens": T, "seed": seed,
            "reference": "Qwen2MoeSparseMoeBlock (fp32) on the dequantized weights; shared expert quantized too"}


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    index = [
        layer("mixtral-gptq-g32", "gptq", 32, False, False, H=64, F=64, E=4, K=2, T=7, seed=81),
        layer("mixtral-gptq-g128-sym", "gptq", 128, True, False, H=128, F=128, E=4, K=2, T=5, seed=82),
        layer("mixtral-awq-g64", "awq", 64, False, False, H=64, F=128, E=4, K=2, T=9, seed=83),
        layer("mixtral-gptq-actorder", "gptq", 32, False, True, H=64, F=64, E=2, K=1, T=1, seed=84),
        qwen2_layer("qwen2_moe-gptq-g32", 32, H=64, F=64, S=128, E=4, K=2, T=7, seed=85),
    ]
    (OUT / "index.json").write_text(json.dumps({"torch": torch.__version__, "fixtures": index}, indent=1) + "\n")


if __name__ == "__main__":
    main()
