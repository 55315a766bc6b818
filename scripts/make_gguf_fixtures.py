#!/usr/bin/env python3
"""Write the GGUF fixtures of moec's tests with llama.cpp's own Python package (gguf-py).

    python scripts/make_gguf_fixtures.py          # writes Tests/Fixtures/gguf/

Needs numpy, torch, transformers and `gguf` (scripts/requirements.txt). The files:

  types.gguf        GGUF v3 written by gguf.GGUFWriter: one metadata key of every value type
                    (u8 … f64, bool, string, arrays of numbers and of strings) and one tensor of
                    every type moec reads (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), each
                    quantized by gguf.quants.quantize from seeded random rows of varied scale
                    (a row of zeros, a row with one large value) or, for the K-quants, which
                    gguf-py cannot quantize, random blocks (finite scales, a block of zeros);
                    plus a stacked expert tensor
                    blk.0.ffn_gate_exps.weight [4, 8, 256] in Q4_K, as llama.cpp's MoE files hold
                    them
  aligned64.gguf    the same F32 and Q8_0 tensors with general.alignment = 64
  NAME.npy          gguf.quants.dequantize of each tensor: the reference moec's dequantization
                    must equal (numpy shape = the GGUF dims reversed)
  expected.json     the metadata as written, and each tensor's type, dims and numpy shape
  qwen3moe-q8_0.gguf, qwen3moe-q4_k.gguf, qwen3moe-q5_k.gguf, qwen3moe-q6_k.gguf
                    one MoE layer as llama.cpp's qwen3moe files hold it (blk.0.ffn_gate_inp,
                    blk.0.ffn_{gate,up,down}_exps; Q8_0 from gguf-py's quantize, the K-quants
                    random blocks; Q5_K and Q6_K with 2 experts, top-1, to stay small), with
                    NAME.x.npy and NAME.y.npy: transformers' Qwen3MoeSparseMoeBlock run on the
                    weights as gguf-py dequantizes them (graphs/gguf/qwen3moe.moe)
  qwen3moe-q8_0-split-0000{1,2}-of-00002.gguf
                    the Q8_0 file in two splits (split.no, split.count, as llama.cpp's gguf-split)
  llama-q8_0.gguf, qwen2moe-q8_0.gguf, deepseek2-q8_0.gguf
                    the same for llama.cpp's llama (Mixtral), qwen2moe (shared expert with its
                    sigmoid gate) and deepseek2 (V3: sigmoid, exp_probs_b, groups, shared expert)
                    architectures, against MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock and
                    DeepseekV3MoE (graphs/gguf/ARCH.moe)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "gguf"

TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K]


def rows(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    scale = np.exp(rng.uniform(-4, 2, size=(n, 1))).astype(np.float32)
    x = (rng.standard_normal((n, width)) * scale).astype(np.float32)
    x[0] = 0  # a block of zeros: scales of 0
    x[1, 7] = 1000.0  # one large value in a block
    return x


def k_blocks(rng: np.random.Generator, t: T, shape: tuple[int, ...], log_scale: tuple[float, float] = (-9, -2)) -> np.ndarray:
    """Blocks of a K-quant type (gguf-py dequantizes them but cannot quantize them): random
    quant bytes and sub-block scales, and finite half-precision super-block scales."""
    block, size = gguf.GGML_QUANT_SIZES[t]
    n = int(np.prod(shape)) // block
    b = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    d = np.exp(rng.uniform(*log_scale, size=n)).astype(np.float16).view(np.uint8).reshape(n, 2)
    dmin = np.exp(rng.uniform(*log_scale, size=n)).astype(np.float16).view(np.uint8).reshape(n, 2)
    if t == T.Q6_K:
        b[:, size - 2:] = d  # ql[128] qh[64] scales[16] d
    else:
        b[:, 0:2], b[:, 2:4] = d, dmin  # d dmin scales[12] (qh[32]) qs[128]
    b[0, :] = 0  # a block of zeros
    return b.reshape(*shape[:-1], shape[-1] // block * size)


def moe_layer(rng: np.random.Generator, name: str, expert_type: T, H: int, F: int, E: int, K: int, tokens: int) -> dict:
    """A one-layer qwen3moe GGUF file as llama.cpp names its tensors (router F32, stacked experts
    in `expert_type`), its input, and the output of transformers' Qwen3MoeSparseMoeBlock run on
    the weights as gguf-py dequantizes them."""
    import torch
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

    router = (rng.standard_normal((E, H)) * 0.3).astype(np.float32)
    stored, dense = {}, {}
    for part, shape in (("gate", (E, F, H)), ("up", (E, F, H)), ("down", (E, H, F))):
        if expert_type == T.Q8_0:
            q = gguf.quants.quantize((rng.standard_normal(shape) * 0.1).astype(np.float32), T.Q8_0)
        else:
            q = k_blocks(rng, expert_type, shape, log_scale=(-9.5, -8.5))
        stored[part] = q
        dense[part] = gguf.quants.dequantize(q, expert_type).reshape(shape)
    # The file, and for Q8_0 the same file in splits of two tensors (NAME-split-0000i-of-00002.gguf).
    for path, split in [(OUT / f"{name}.gguf", 0)] + ([(OUT / f"{name}-split.gguf", 2)] if expert_type == T.Q8_0 else []):
        w = gguf.GGUFWriter(str(path), arch="qwen3moe", split_max_tensors=split)
        w.add_block_count(1)
        w.add_embedding_length(H)
        w.add_expert_feed_forward_length(F)
        w.add_expert_count(E)
        w.add_expert_used_count(K)
        w.add_tensor("blk.0.ffn_gate_inp.weight", router)
        for part in ("gate", "up", "down"):
            w.add_tensor(f"blk.0.ffn_{part}_exps.weight", stored[part], raw_dtype=expert_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    config = Qwen3MoeConfig(hidden_size=H, moe_intermediate_size=F, num_experts=E, num_experts_per_tok=K, norm_topk_prob=True)
    block = Qwen3MoeSparseMoeBlock(config).eval()
    with torch.no_grad():
        block.gate.weight.copy_(torch.from_numpy(router))
        block.experts.gate_up_proj.copy_(torch.from_numpy(np.concatenate([dense["gate"], dense["up"]], axis=1)))
        block.experts.down_proj.copy_(torch.from_numpy(dense["down"]))
        x = rng.standard_normal((tokens, H)).astype(np.float32)
        y = block(torch.from_numpy(x)[None])[0].numpy()
    np.save(OUT / f"{name}.x.npy", x)
    np.save(OUT / f"{name}.y.npy", np.ascontiguousarray(y, dtype=np.float32))
    return {"experts": expert_type.name, "hidden": H, "ffn": F, "experts_count": E, "top_k": K, "tokens": tokens,
            "reference": "transformers Qwen3MoeSparseMoeBlock on gguf-py's dequantized weights"}


def arch_layer(rng: np.random.Generator, name: str, arch: str) -> dict:
    """A one-layer GGUF file of llama.cpp architecture `arch` (llama with experts, i.e. Mixtral;
    qwen2moe; deepseek2 in its V3 form), Q8_0 experts and shared experts, F32 router, its input,
    and the output of the transformers block the architecture comes from, run on the weights
    as gguf-py dequantizes them."""
    import torch
    H, F, FS, T_ = 64, 64, 96, 6

    def q8(shape, scale=0.1):
        q = gguf.quants.quantize((rng.standard_normal(shape) * scale).astype(np.float32), T.Q8_0)
        return q, gguf.quants.dequantize(q, T.Q8_0).reshape(shape)

    tensors: dict = {}  # GGUF name -> (stored array, raw dtype or None)
    keys: list = []  # (method, value)
    if arch == "llama":
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
        E, K = 4, 2
        block = MixtralSparseMoeBlock(MixtralConfig(hidden_size=H, intermediate_size=F, num_local_experts=E, num_experts_per_tok=K))
        keys = [("add_feed_forward_length", F)]
    elif arch == "qwen2moe":
        from transformers import Qwen2MoeConfig
        from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock
        E, K = 4, 2
        block = Qwen2MoeSparseMoeBlock(Qwen2MoeConfig(hidden_size=H, moe_intermediate_size=F, shared_expert_intermediate_size=FS,
                                                      num_experts=E, num_experts_per_tok=K, norm_topk_prob=False))
        keys = [("add_expert_feed_forward_length", F), ("add_expert_shared_feed_forward_length", FS)]
    else:
        from transformers import DeepseekV3Config
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
        E, K, G, TG, S = 8, 2, 4, 2, 1
        block = DeepseekV3MoE(DeepseekV3Config(hidden_size=H, moe_intermediate_size=F, n_routed_experts=E, n_shared_experts=S,
                                               num_experts_per_tok=K, n_group=G, topk_group=TG, norm_topk_prob=True,
                                               routed_scaling_factor=2.5))
        keys = [("add_expert_feed_forward_length", F), ("add_expert_shared_count", S), ("add_expert_group_count", G),
                ("add_expert_group_used_count", TG), ("add_expert_weights_norm", True), ("add_expert_weights_scale", 2.5),
                ("add_expert_gating_func", gguf.ExpertGatingFuncType.SIGMOID)]
    block = block.eval()
    router = (rng.standard_normal((E, H)) * 0.3).astype(np.float32)
    tensors["blk.0.ffn_gate_inp.weight"] = (router, None)
    dense = {}
    for part, shape in (("gate", (E, F, H)), ("up", (E, F, H)), ("down", (E, H, F))):
        q, dense[part] = q8(shape)
        tensors[f"blk.0.ffn_{part}_exps.weight"] = (q, T.Q8_0)
    with torch.no_grad():
        block.gate.weight.copy_(torch.from_numpy(router))
        block.experts.gate_up_proj.copy_(torch.from_numpy(np.concatenate([dense["gate"], dense["up"]], axis=1)))
        block.experts.down_proj.copy_(torch.from_numpy(dense["down"]))
        if arch in ("qwen2moe", "deepseek2"):
            width = FS if arch == "qwen2moe" else F
            module = block.shared_expert if arch == "qwen2moe" else block.shared_experts
            for part, shape in (("gate", (width, H)), ("up", (width, H)), ("down", (H, width))):
                q, d = q8(shape)
                tensors[f"blk.0.ffn_{part}_shexp.weight"] = (q, T.Q8_0)
                getattr(module, f"{part}_proj").weight.copy_(torch.from_numpy(d))
        if arch == "qwen2moe":
            mix = (rng.standard_normal(H) * 0.3).astype(np.float32)
            tensors["blk.0.ffn_gate_inp_shexp.weight"] = (mix, None)
            block.shared_expert_gate.weight.copy_(torch.from_numpy(mix[None]))
        if arch == "deepseek2":
            bias = (rng.standard_normal(E) * 0.1).astype(np.float32)
            tensors["blk.0.exp_probs_b.bias"] = (bias, None)
            block.gate.e_score_correction_bias.copy_(torch.from_numpy(bias))
        x = rng.standard_normal((T_, H)).astype(np.float32)
        y = block(torch.from_numpy(x)[None])
        y = (y[0] if isinstance(y, tuple) else y)[0].numpy()
    w = gguf.GGUFWriter(str(OUT / f"{name}.gguf"), arch=arch)
    w.add_block_count(1)
    w.add_embedding_length(H)
    w.add_expert_count(E)
    w.add_expert_used_count(K)
    for method, value in keys:
        getattr(w, method)(value)
    for tensor_name, (array, raw) in tensors.items():
        w.add_tensor(tensor_name, array, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.save(OUT / f"{name}.x.npy", x)
    np.save(OUT / f"{name}.y.npy", np.ascontiguousarray(y, dtype=np.float32))
    return {"arch": arch, "experts": "Q8_0", "hidden": H, "tokens": T_, "graph": f"graphs/gguf/{arch}.moe",
            "reference": type(block).__name__ + " on gguf-py's dequantized weights"}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    rng = np.random.default_rng(20261202)
    metadata = {
        "test.u8": (200, "add_uint8"), "test.i8": (-100, "add_int8"), "test.u16": (60000, "add_uint16"),
        "test.i16": (-30000, "add_int16"), "test.u32": (4000000000, "add_uint32"), "test.i32": (-2000000000, "add_int32"),
        "test.f32": (0.5, "add_float32"), "test.bool": (True, "add_bool"), "test.string": ("héllo, gguf", "add_string"),
        "test.u64": (2**63 + 5, "add_uint64"), "test.i64": (-(2**62), "add_int64"), "test.f64": (1e300, "add_float64"),
        "test.array_i32": ([1, -2, 3], "add_array"), "test.array_str": (["a", "bc", ""], "add_array"),
        "qwen3moe.expert_count": (4, "add_uint32"), "qwen3moe.expert_used_count": (2, "add_uint32"),
    }
    expected: dict = {"files": {}}
    for file, alignment, types in [("types.gguf", None, TYPES), ("aligned64.gguf", 64, [T.F32, T.Q8_0])]:
        w = gguf.GGUFWriter(str(OUT / file), arch="qwen3moe")
        if alignment:
            w.add_custom_alignment(alignment)
        for key, (value, method) in metadata.items():
            getattr(w, method)(key, value)
        tensors = {}
        for t in types:
            name = f"t.{t.name.lower()}"
            x = rows(rng, 3, 512)
            if t == T.F32:
                q = x
            elif t == T.F16:
                q = x.astype(np.float16)
            elif t in (T.Q4_K, T.Q5_K, T.Q6_K):
                q = k_blocks(rng, t, x.shape)
            else:
                q = gguf.quants.quantize(x, t)
            w.add_tensor(name, q, raw_dtype=t if t not in (T.F32, T.F16) else None)
            tensors[name] = (t, gguf.quants.dequantize(q, t) if t not in (T.F32, T.F16) else q.astype(np.float32))
        if file == "types.gguf":
            q = k_blocks(rng, T.Q4_K, (4, 8, 256))
            w.add_tensor("blk.0.ffn_gate_exps.weight", q, raw_dtype=T.Q4_K)
            tensors["blk.0.ffn_gate_exps.weight"] = (T.Q4_K, gguf.quants.dequantize(q, T.Q4_K))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        entry = {"alignment": alignment or 32, "tensors": {}}
        for name, (t, y) in tensors.items():
            y = np.ascontiguousarray(y, dtype=np.float32)
            if file == "types.gguf":
                np.save(OUT / f"{name}.npy", y)
            entry["tensors"][name] = {"type": t.name, "ggml_type": int(t), "shape": list(y.shape), "dims": list(reversed(y.shape))}
        expected["files"][file] = entry
    expected["layers"] = {
        "qwen3moe-q8_0": moe_layer(rng, "qwen3moe-q8_0", T.Q8_0, H=64, F=96, E=4, K=2, tokens=7),
        "qwen3moe-q4_k": moe_layer(rng, "qwen3moe-q4_k", T.Q4_K, H=256, F=256, E=4, K=2, tokens=5),
        "llama-q8_0": arch_layer(rng, "llama-q8_0", "llama"),
        "qwen2moe-q8_0": arch_layer(rng, "qwen2moe-q8_0", "qwen2moe"),
        "deepseek2-q8_0": arch_layer(rng, "deepseek2-q8_0", "deepseek2"),
    }
    # Their own stream, so adding them left the files above as they were.
    rng_k = np.random.default_rng(20261203)
    for t in (T.Q5_K, T.Q6_K):
        name = f"qwen3moe-{t.name.lower()}"
        expected["layers"][name] = moe_layer(rng_k, name, t, H=256, F=256, E=2, K=1, tokens=5)
    expected["metadata"] = {k: v for k, (v, _) in metadata.items()}
    expected["metadata"]["general.architecture"] = "qwen3moe"
    expected["gguf"] = getattr(gguf, "__version__", "unknown")
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    # Read back with gguf-py's own reader: the files are what llama.cpp's tools would read.
    for file in expected["files"]:
        r = gguf.GGUFReader(str(OUT / file))
        assert {t.name for t in r.tensors} == set(expected["files"][file]["tensors"]), file
    print(f"wrote {OUT.relative_to(ROOT)}: {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
