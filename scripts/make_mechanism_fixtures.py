#!/usr/bin/env python3
"""Writes the parity fixtures for graphs/mechanisms/*.moe into Tests/Fixtures/mechanisms/<graph>_<variant>/.

Each folder is a small checkpoint the way moec reads one (config.json + model.safetensors, tensor names
exactly as the graph binds them), the run-time inputs as .npy, the outputs of the independent numpy
reference (scripts/mechanisms_reference.py, float64, on the float32-rounded weights and inputs) as float32
.npy, and meta.json:

    {"graph": "graphs/mechanisms/X.moe", "inputs": {name: file}, "outputs": {name: file},
     "set": {param: value}, ...description, seeds, params, routing statistics...}

`set` holds params given as `--set` (they are left out of config.json, so the graph's default would be
wrong: the test must pass them). Inputs whose routing decision lies within MIN_MARGIN (relative) of a tie
are rejected and redrawn with the next seed, so fp32 rounding cannot flip a choice.

Needs numpy only. Deterministic: the same numpy gives byte-identical files.

    python3 scripts/make_mechanism_fixtures.py              # all fixtures (removes stale folders)
    python3 scripts/make_mechanism_fixtures.py --only hash  # the variants whose folder name contains "hash"
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mechanisms_reference as ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/Fixtures/mechanisms")
MIN_MARGIN = 2e-4          # smallest relative distance of any routing decision to a tie
MAX_ATTEMPTS = 200


# ============================================================================ files


def write_safetensors(path, tensors):
    """Minimal safetensors writer: F32/I32 tensors, sorted by name, 8-byte aligned header."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


# ============================================================================ weights and inputs


def f32(a):
    """Round to float32 and back: the reference computes on exactly the values stored in the files."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def init_weight(rng, name, shape, spec):
    """A random weight for the graph's weight `name`, scaled so the mechanism has something to decide."""
    fan_in = shape[-1]
    gate_scale = spec.get("gate_scale", 2.0)
    if name in ("gate", "inner_gate", "alpha_gate", "gate_ctr", "gate_cvr"):
        return rng.normal(0.0, gate_scale / math.sqrt(fan_in), shape)
    if name == "z_gate":
        return rng.normal(0.0, spec.get("z_scale", 1.0) / math.sqrt(fan_in), shape)
    if name in ("gate_bias", "outer_bias", "alpha_bias"):
        return rng.normal(0.0, 0.5, shape)
    if name == "z_bias":
        return rng.normal(0.0, 0.3 * spec.get("z_scale", 1.0), shape)
    if name in ("centroids", "outer_centroids"):
        return rng.normal(0.0, spec.get("centroid_scale", 1.0), shape)
    if name == "bases":                       # [E, d, r]: orthonormal columns per expert
        E, d, r = shape
        return np.stack([np.linalg.qr(rng.normal(size=(d, r)))[0] for _ in range(E)])
    if name.endswith("hb") or name.endswith("ob"):
        return rng.normal(0.0, 0.1, shape)
    scale = spec.get("expert_scale", 1.0) if name in ("w_down", "e_down") else 1.0
    return rng.normal(0.0, scale / math.sqrt(fan_in), shape)


def make_inputs(rng, graph, vals, spec):
    """Every run-time input of the graph: x ~ N(0, 1) and the graph-specific extras from the spec."""
    T = spec["tokens"]
    out = {}
    for name, (dtype, dims) in graph["inputs"].items():
        if name == "x":
            width = ref.eval_dim(dims[1], vals)
            out[name] = f32(rng.normal(0.0, spec.get("x_scale", 1.0), (T, width)))
        elif name == "ids":
            lo, hi = spec.get("id_range", (0, 32000))
            out[name] = rng.integers(lo, hi, size=T, dtype=np.int64).astype(np.int32)
        elif name == "capacity_factor":
            out[name] = np.float64(np.float32(spec["capacity_factor"]))
        elif name == "steer":
            out[name] = f32(spec["steer"])
        else:
            raise SystemExit(f"no generator for input '{name}'")
    return out


# ============================================================================ one fixture


def routing_stats(name, trace, inputs):
    """A few numbers that show what the fixture exercises (experts per token, drops, hops)."""
    stats = {}
    routes = trace.get("routes")
    if routes is not None:
        counts = [len(r) for r in routes]
        stats["experts_per_token"] = counts
        hits = {}
        for r in routes:
            for e, _ in r:
                hits[e] = hits.get(e, 0) + 1
        stats["tokens_per_expert"] = {str(e): hits[e] for e in sorted(hits)}
    for key in ("capacity", "active_per_hop"):
        if key in trace:
            stats[key] = trace[key]
    if "origin" in trace:
        stats["upcycled_origin"] = trace["origin"]
    if "ids" in inputs:
        stats["ids"] = [int(i) for i in inputs["ids"]]
    m = trace["margins"].summary()
    stats["decisions"] = m["decisions"]
    stats["min_relative_margin"] = m["min_relative_margin"]
    return stats


def build(spec):
    name = spec["graph"]
    graph_rel = f"graphs/mechanisms/{name}.moe"
    graph = ref.read_graph(os.path.join(ROOT, graph_rel))
    params = dict(spec["params"])
    for p in params:
        assert p in graph["params"], f"{name}: no param '{p}'"
    # Every param lives in config.json under its first key, except the ones given by --set.
    settings = spec.get("set", {})
    config = {graph["params"][p][1][0]: v for p, v in params.items() if p not in settings and graph["params"][p][1]}
    vals = ref.param_values(graph, config)
    vals.update(settings)
    for p, v in params.items():
        assert vals[p] == v, f"{name}: param {p} resolves to {vals[p]}, spec says {v}"

    rng = np.random.default_rng(spec["seed"])
    W, tensors = {}, {}
    for wname, shape, pattern in ref.weight_layout(graph, vals):
        w = f32(init_weight(rng, wname, shape, spec))
        W[wname] = w
        if "{e}" in pattern:
            for e in range(shape[0]):
                tensors[pattern.replace("{e}", str(e))] = w[e].astype(np.float32)
        else:
            tensors[pattern] = w.astype(np.float32)

    for attempt in range(MAX_ATTEMPTS):
        x_seed = spec["seed"] * 1000 + attempt
        inputs = make_inputs(np.random.default_rng(x_seed), graph, vals, spec)
        trace = {}
        outputs = ref.run_graph(name, W, inputs, vals, graph, trace=trace)
        margin = trace["margins"].min()
        if margin is not None and margin[0] < MIN_MARGIN:
            continue
        problem = spec.get("require", lambda tr, inp: None)(trace, inputs)
        if problem:
            continue
        break
    else:
        raise SystemExit(f"{spec['folder']}: no input in {MAX_ATTEMPTS} attempts without a near-tie "
                         f"(last: {margin}) or with {spec.get('require_text')}")

    folder = os.path.join(OUT, spec["folder"])
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    write_json(os.path.join(folder, "config.json"), config)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
    input_files, output_files = {}, {}
    for k, v in inputs.items():
        arr = v.astype(np.int32) if k == "ids" else np.asarray(v, dtype=np.float32)
        np.save(os.path.join(folder, f"{k}.npy"), arr)
        input_files[k] = f"{k}.npy"
    for k, v in outputs.items():
        np.save(os.path.join(folder, f"{k}.npy"), np.asarray(v, dtype=np.float32))
        output_files[k] = f"{k}.npy"
    meta = {
        "graph": graph_rel,
        "inputs": input_files,
        "outputs": output_files,
        "set": settings,
        "description": spec["description"],
        "params": {p: vals[p] for p in graph["params"]},
        "tokens": spec["tokens"],
        "weight_seed": spec["seed"],
        "input_seed": x_seed,
        "rejected_inputs": attempt,
        "routing": routing_stats(name, trace, inputs),
        "reference": "scripts/mechanisms_reference.py (numpy float64 on the float32 files); "
                     "generator: scripts/make_mechanism_fixtures.py",
    }
    write_json(os.path.join(folder, "meta.json"), meta)
    err = ref.check_folder(folder, ROOT)           # read everything back through the files
    assert err <= 1e-6, f"{spec['folder']}: re-check from the files differs by {err}"
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    r = meta["routing"]
    print(f"{spec['folder']:<44} {size / 1024:6.1f} KB  margin {r['min_relative_margin'] or float('inf'):.1e}"
          f"  rejected {attempt:3d}  experts/token {r.get('experts_per_token', '-')}"
          + (f"  active/hop {r['active_per_hop']}" if "active_per_hop" in r else "")
          + (f"  C={r['capacity']}" if "capacity" in r else ""))
    return size


# ============================================================================ the fixtures


def counts(trace):
    return [len(r) for r in trace["routes"]]


def needs(cond, text):
    """A `require` check: the fixture is redrawn until `cond(trace, inputs)` holds."""
    return lambda tr, inp: None if cond(tr, inp) else text


def varied_counts(lo_hi):
    lo, hi = lo_hi
    return needs(lambda tr, _: min(counts(tr)) <= lo and max(counts(tr)) >= hi,
                 f"tokens using ≤{lo} and ≥{hi} experts")


def _origins(tr):
    return [{tr["origin"][e] for e, _ in r} for r in tr["routes"]]


copies_and_distinct = needs(lambda tr, _: any(len(o) == 1 for o in _origins(tr)) and any(len(o) > 1 for o in _origins(tr)),
                            "a token on copies of one expert only and one on different experts")


def fixture(graph, variant, seed, tokens, description, params, **kw):
    return dict(graph=graph, folder=f"{graph}_{variant}", seed=seed, tokens=tokens, description=description,
                params=params, **kw)


def swiglu_dims(h, f, E):
    return {"hidden": h, "ffn": f, "num_experts": E}


FIXTURES = [
    fixture("linear_temperature", "h16-f24-e8-k2-t2-n13", 101, 13, "τ = 2 flattens the router",
            dict(swiglu_dims(16, 24, 8), top_k=2, temperature=2.0)),
    fixture("linear_temperature", "h12-f16-e6-k3-t05-n9", 102, 9, "τ = 0.5 sharpens it; τ given by --set",
            dict(swiglu_dims(12, 16, 6), top_k=3, temperature=0.5), set={"temperature": 0.5}),

    fixture("cosine_router", "h16-f16-e8-k2-r6-t01-n11", 111, 11, "rank 6 projection, τ = 0.1",
            dict(swiglu_dims(16, 16, 8), top_k=2, rank=6, temperature=0.1)),
    fixture("cosine_router", "h24-f20-e12-k3-r8-t025-n7", 112, 7, "E = 12, k = 3 (k by --set), τ = 0.25",
            dict(swiglu_dims(24, 20, 12), top_k=3, rank=8, temperature=0.25), set={"top_k": 3}),

    fixture("laplace_router", "h16-f24-e8-k2-n13", 121, 13, "softmax(−‖x − c_e‖), top-2",
            dict(swiglu_dims(16, 24, 8), top_k=2)),
    fixture("laplace_router", "h8-f12-e5-k1-n9", 122, 9, "top-1 over 5 centroids (renormalised weight 1)",
            dict(swiglu_dims(8, 12, 5), top_k=1), centroid_scale=0.7),

    fixture("hash_router", "h16-f24-e8-n17", 131, 17, "token ids in [0, 32000)",
            dict(swiglu_dims(16, 24, 8))),
    fixture("hash_router", "h12-f16-e5-n23-neg", 132, 23,
            "E = 5; ids over the whole int32 range, negative ones read as uint32",
            dict(swiglu_dims(12, 16, 5)), id_range=(-2**31, 2**31 - 1),
            require=needs(lambda tr, inp: (inp["ids"] < 0).sum() >= 3, "≥ 3 negative ids")),

    fixture("random_fixed_router", "h16-f24-e8-s1234-n17", 141, 17, "seed 1234 (the graph's default)",
            dict(swiglu_dims(16, 24, 8), seed=1234)),
    fixture("random_fixed_router", "h12-f16-e6-s987654321-n23-neg", 142, 23,
            "E = 6, a large seed, ids over the whole int32 range", dict(swiglu_dims(12, 16, 6), seed=987654321),
            id_range=(-2**31, 2**31 - 1),
            require=needs(lambda tr, inp: (inp["ids"] < 0).sum() >= 3, "≥ 3 negative ids")),

    fixture("subspace_router", "h16-f16-e8-k2-r4-n13", 151, 13,
            "rank-4 subspaces; a variable number of experts per token",
            dict(swiglu_dims(16, 16, 8), top_k=2, rank=4), require=varied_counts((1, 3))),
    fixture("subspace_router", "h24-f16-e12-k3-r6-n11", 152, 11, "E = 12, k = 3, rank 6",
            dict(swiglu_dims(24, 16, 12), top_k=3, rank=6), require=varied_counts((2, 4))),

    fixture("topk_softmax", "h16-f24-e8-k2-n13", 161, 13, "top-2 of the logits, softmax over the two",
            dict(swiglu_dims(16, 24, 8), top_k=2)),
    fixture("topk_softmax", "h12-f20-e16-k4-n9", 162, 9, "E = 16, k = 4",
            dict(swiglu_dims(12, 20, 16), top_k=4)),

    fixture("threshold_router", "h16-f16-e8-t015-k4-n21", 171, 21,
            "τ = 0.15, at most 4; some tokens hit max_k, others take 1–2",
            dict(swiglu_dims(16, 16, 8), tau=0.15, max_k=4), gate_scale=1.2,
            require=needs(lambda tr, inp: min(counts(tr)) <= 1 and max(counts(tr)) == 4
                          and any((row >= 0.15).sum() > 4 for row in tr["scores"]),
                          "a token with ≤ 1 expert and one cut by max_k")),
    fixture("threshold_router", "h12-f16-e6-t03-k2-n17", 172, 17,
            "τ = 0.3 by --set, at most 2: some tokens get no expert (output 0)",
            dict(swiglu_dims(12, 16, 6), tau=0.3, max_k=2), set={"tau": 0.3}, gate_scale=1.0,
            require=needs(lambda tr, inp: min(counts(tr)) == 0 and max(counts(tr)) == 2,
                          "a token with no expert and one with 2")),

    fixture("top_p_router", "h16-f16-e8-p06-k4-n17", 181, 17, "p = 0.6, at most 4",
            dict(swiglu_dims(16, 16, 8), p=0.6, max_k=4), require=varied_counts((1, 3))),
    fixture("top_p_router", "h12-f20-e12-p09-k3-n13", 182, 13,
            "p = 0.9 by --set, at most 3: max_k cuts most tokens",
            dict(swiglu_dims(12, 20, 12), p=0.9, max_k=3), set={"p": 0.9}, require=varied_counts((2, 3))),

    fixture("expert_choice", "h16-f16-e8-k2-cf1-n16", 191, 16, "cf = 1: C = 4 tokens per expert",
            dict(swiglu_dims(16, 16, 8), top_k=2), capacity_factor=1.0,
            require=needs(lambda tr, _: min(counts(tr)) == 0 and max(counts(tr)) >= 3,
                          "a token no expert took, one taken by ≥ 3")),
    fixture("expert_choice", "h12-f16-e6-k2-cf05-n13", 192, 13, "cf = 0.5: C = ⌈13·2·0.5/6⌉ = 3",
            dict(swiglu_dims(12, 16, 6), top_k=2), capacity_factor=0.5,
            require=needs(lambda tr, _: min(counts(tr)) == 0, "a dropped token")),
    fixture("expert_choice", "h8-f12-e4-k2-cf3-n10", 193, 10, "cf = 3: ⌈10·2·3/4⌉ = 15 > T, so C = T = 10",
            dict(swiglu_dims(8, 12, 4), top_k=2), capacity_factor=3.0),
    fixture("expert_choice", "h12-f12-e8-k2-cf12-n20", 194, 20,
            "cf = 1.2 as written: C = ⌈20·2·1.2/8⌉ = 6 (the f32 value 1.2000000476837158 would give 7)",
            dict(swiglu_dims(12, 12, 8), top_k=2), capacity_factor=1.2,
            require=needs(lambda tr, _: tr["capacity"] == 6, "C = 6")),
    fixture("expert_choice", "h8-f12-e8-k2-cf11-n40", 195, 40,
            "cf = 1.1 as written: C = ⌈40·2·1.1/8⌉ = 11 (the f32 value would give 12)",
            dict(swiglu_dims(8, 12, 8), top_k=2), capacity_factor=1.1,
            require=needs(lambda tr, _: tr["capacity"] == 11, "C = 11")),

    fixture("stat_topk", "h16-f16-e16-k4-n13", 201, 13, "E = 16, k = 4: about 4 experts per token",
            dict(swiglu_dims(16, 16, 16), top_k=4), require=varied_counts((3, 5))),
    fixture("stat_topk", "h12-f20-e8-k2-n11", 202, 11, "E = 8, k = 2",
            dict(swiglu_dims(12, 20, 8), top_k=2), require=varied_counts((1, 3))),

    fixture("sinkhorn_router", "h16-f16-e8-k2-i3-n16", 211, 16, "3 Sinkhorn iterations, top-2",
            dict(swiglu_dims(16, 16, 8), top_k=2, iterations=3), gate_scale=3.0),
    fixture("sinkhorn_router", "h12-f16-e6-k1-i10-n9", 212, 9, "10 iterations (by --set), top-1",
            dict(swiglu_dims(12, 16, 6), top_k=1, iterations=10), set={"iterations": 10}, gate_scale=3.0),
    fixture("sinkhorn_router", "h16-f16-e6-k2-i3-n1", 213, 1,
            "one token, E = 6: every balanced entry is 1/E (up to rounding), a tie the token's own probabilities break",
            dict(swiglu_dims(16, 16, 6), top_k=2, iterations=3), gate_scale=3.0,
            require=needs(lambda tr, _: sorted(e for e, _ in tr["routes"][0]) != [0, 1], "best experts other than 0 and 1")),

    fixture("hierarchical", "h16-f12-g4x4-o2-i1-n13", 221, 13, "4 groups of 4, keep 2 groups, 1 expert in each",
            dict(hidden=16, ffn=12, groups=4, per_group=4, outer_k=2, inner_k=1), centroid_scale=0.5),
    fixture("hierarchical", "h12-f16-g3x4-o1-i2-n11", 222, 11, "3 groups of 4, keep 1 group, 2 experts in it",
            dict(hidden=12, ffn=16, groups=3, per_group=4, outer_k=1, inner_k=2), centroid_scale=0.5),
    fixture("hierarchical", "h8-f8-g2x3-o2-i2-n9", 223, 9, "2 groups of 3, both kept, 2 of 3 in each",
            dict(hidden=8, ffn=8, groups=2, per_group=3, outer_k=2, inner_k=2), centroid_scale=0.5),

    fixture("sparsemax_router", "h16-f16-e8-k8-n17", 241, 17,
            "every expert allowed: the support size alone decides how many experts a token uses",
            dict(swiglu_dims(16, 16, 8), max_k=8), gate_scale=1.5, require=varied_counts((1, 4))),
    fixture("sparsemax_router", "h12-f16-e6-k2-n13", 242, 13, "E = 6, max_k = 2 by --set cuts wide supports",
            dict(swiglu_dims(12, 16, 6), max_k=2), set={"max_k": 2}, gate_scale=1.0,
            require=needs(lambda tr, inp: min(counts(tr)) == 1 and max(counts(tr)) == 2
                          and any((row > 0).sum() > 2 for row in tr["scores"]),
                          "a token with 1 expert and one cut by max_k")),

    fixture("dselect_k", "h16-f16-e8-s2-g1-n13", 231, 13, "E = 8 (3 bits), 2 selectors, γ = 1",
            dict(swiglu_dims(16, 16, 8), selectors=2, bits=3, gamma=1.0), z_scale=1.0,
            require=varied_counts((2, 6))),
    fixture("dselect_k", "h12-f12-e4-s3-g2-n11", 232, 11, "E = 4 (2 bits), 3 selectors, γ = 2",
            dict(swiglu_dims(12, 12, 4), selectors=3, bits=2, gamma=2.0), z_scale=2.0,
            require=varied_counts((1, 4))),
    fixture("dselect_k", "h12-f8-e16-s2-g05-n9", 233, 9, "E = 16 (4 bits), 2 selectors, γ = 0.5 by --set",
            dict(swiglu_dims(12, 8, 16), selectors=2, bits=4, gamma=0.5), set={"gamma": 0.5}, z_scale=0.6),

    fixture("steering", "h16-f16-e8-k3-n11", 241, 11,
            "force [0], disable [5], k = 3; the mask pushes expert 2 up and 6 down",
            dict(swiglu_dims(16, 16, 8), top_k=3), steer=[0.0, 0.0, 1.5, 0.0, 0.0, 3.0, -30.0, 0.0]),
    fixture("steering", "h12-f12-e10-k2-n9", 242, 9, "k = 2: forced expert 0 plus the best allowed one",
            dict(swiglu_dims(12, 12, 10), top_k=2),
            steer=[-5.0, 0.5, 0.0, -1.0, 0.0, 10.0, 0.0, 0.0, 2.0, -30.0]),

    fixture("sqrtgate", "h16-f16-sf24-e8-k2-p025-n13", 251, 13, "p = 0.25",
            dict(swiglu_dims(16, 16, 8), shared_ffn=24, top_k=2, p=0.25)),
    fixture("sqrtgate", "h12-f12-sf8-e6-k3-p06-n9", 252, 9, "p = 0.6 by --set, k = 3",
            dict(swiglu_dims(12, 12, 6), shared_ffn=8, top_k=3, p=0.6), set={"p": 0.6}),

    fixture("multihop", "h16-f16-e8-k2-h3-t04-n13", 261, 13, "3 hops, τ = 0.4: some tokens halt after each hop",
            dict(swiglu_dims(16, 16, 8), top_k=2, hops=3, tau=0.4), expert_scale=1.0,
            require=needs(lambda tr, _: tr["active_per_hop"][0] > tr["active_per_hop"][1] > tr["active_per_hop"][2] > 0,
                          "fewer active tokens at every hop")),
    fixture("multihop", "h12-f16-e6-k1-h4-t03-n11", 262, 11, "4 hops (by --set), top-1, τ = 0.3",
            dict(swiglu_dims(12, 16, 6), top_k=1, hops=4, tau=0.3), set={"hops": 4}, expert_scale=1.0,
            require=needs(lambda tr, _: tr["active_per_hop"][0] > tr["active_per_hop"][-1] > 0,
                          "some tokens halt and some run every hop")),

    fixture("upcycling", "h16-f16-k2-n13", 271, 13,
            "copies [2, 1, 3, 2] of 4 experts, top-2 of 8: some tokens take two copies of one expert",
            dict(hidden=16, ffn=16, num_experts=4, top_k=2), require=copies_and_distinct),
    fixture("upcycling", "h12-f20-k3-n11", 272, 11, "top-3 of 8",
            dict(hidden=12, ffn=20, num_experts=4, top_k=3), require=copies_and_distinct),

    fixture("mmoe_ranking", "f16-e4-ffn24-t8-n13", 281, 13, "4 experts, two gates and towers",
            dict(features=16, expert_ffn=24, num_experts=4, tower=8)),
    fixture("mmoe_ranking", "f12-e6-ffn16-t6-n21", 282, 21, "6 experts",
            dict(features=12, expert_ffn=16, num_experts=6, tower=6)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="build only the fixtures whose folder name contains this")
    args = ap.parse_args()
    chosen = [f for f in FIXTURES if not args.only or args.only in f["folder"]]
    os.makedirs(OUT, exist_ok=True)
    if not args.only:                       # remove folders no spec produces any more
        names = {f["folder"] for f in FIXTURES}
        for d in os.listdir(OUT):
            # dselect_k_official_*: written by scripts/dselect_k_official.py
            if os.path.isdir(os.path.join(OUT, d)) and d not in names and not d.startswith("dselect_k_official_"):
                shutil.rmtree(os.path.join(OUT, d))
    total = sum(build(f) for f in chosen)
    print(f"{len(chosen)} fixtures, {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
