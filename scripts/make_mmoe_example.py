#!/usr/bin/env python3
"""Trains the small MMoE ranking model of examples/mmoe-ranking (graph: graphs/mechanisms/mmoe_ranking.moe).

Synthetic data: each row of x is the dense feature vector of one (user, item) candidate, x ~ N(0, 1).
Two labels are drawn from fixed hidden rules that share some features and not others, the situation
MMoE is for: a click depends on features 0-5 (with an interaction), a conversion on features 6-10 and on
the click score. The model is trained full-batch with Adam on the binary cross-entropy of both tasks,
with hand-written gradients (numpy only), stopped at the lowest held-out loss. It then writes the
checkpoint, 24 held-out candidates `x.npy`, and the reference scores `ctr.npy`, `cvr.npy` from
scripts/mechanisms_reference.py (float64).

    python3 scripts/make_mmoe_example.py          # rewrites examples/mmoe-ranking (byte-identical)
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mechanisms_reference as ref  # noqa: E402
from make_mechanism_fixtures import write_json, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "examples/mmoe-ranking")
DIMS = {"features": 16, "expert_ffn": 32, "num_experts": 6, "tower": 8}
TASKS = ("ctr", "cvr")


def synthetic(rng, n):
    """Features, (click, conversion) labels drawn from fixed rules, and the rules' true logits."""
    x = rng.normal(size=(n, DIMS["features"]))
    click = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 2] * x[:, 3] + 0.5 * x[:, 4] - 0.4 * np.abs(x[:, 5]) - 0.8
    conv = 0.9 * x[:, 6] + 0.7 * np.maximum(x[:, 7], 0) - 0.6 * x[:, 8] + 0.5 * x[:, 9] * x[:, 10] \
        + 0.4 * click - 1.6
    y = {"ctr": (rng.random(n) < ref.sigmoid(click)).astype(np.float64),
         "cvr": (rng.random(n) < ref.sigmoid(conv)).astype(np.float64)}
    return x, y, {"ctr": click, "cvr": conv}


def init(rng):
    F, H, E, Tw = DIMS["features"], DIMS["expert_ffn"], DIMS["num_experts"], DIMS["tower"]
    P = {"e_up": rng.normal(0, 1 / math.sqrt(F), (E, H, F)), "e_down": rng.normal(0, 1 / math.sqrt(H), (E, F, H))}
    for t in TASKS:
        P[f"gate_{t}"] = rng.normal(0, 0.1, (E, F))
        P[f"{t}_hidden"] = rng.normal(0, 1 / math.sqrt(F), (Tw, F))
        P[f"{t}_hb"] = np.zeros(Tw)
        P[f"{t}_out"] = rng.normal(0, 1 / math.sqrt(Tw), (1, Tw))
        P[f"{t}_ob"] = np.zeros(1)
    return P


def loss_and_grads(P, x, y):
    """Mean binary cross-entropy summed over the two tasks, and its gradient for every parameter."""
    N, E = x.shape[0], P["e_up"].shape[0]
    pre = np.einsum("nf,ehf->enh", x, P["e_up"])             # [E, N, H]
    h = np.maximum(pre, 0)
    o = np.einsum("enh,efh->enf", h, P["e_down"])            # [E, N, F] expert outputs
    G = {k: np.zeros_like(v) for k, v in P.items()}
    do = np.zeros_like(o)
    loss = 0.0
    for t in TASKS:
        g = ref.softmax(x @ P[f"gate_{t}"].T)                  # [N, E]
        mix = np.einsum("ne,enf->nf", g, o)
        a_pre = mix @ P[f"{t}_hidden"].T + P[f"{t}_hb"]
        a = np.maximum(a_pre, 0)
        z = (a @ P[f"{t}_out"].T + P[f"{t}_ob"])[:, 0]
        p = ref.sigmoid(z)
        loss += -np.mean(y[t] * np.log(p + 1e-12) + (1 - y[t]) * np.log(1 - p + 1e-12))
        dz = (p - y[t])[:, None] / N                           # [N, 1]
        G[f"{t}_out"] = dz.T @ a
        G[f"{t}_ob"] = dz.sum(0)
        da = (dz @ P[f"{t}_out"]) * (a_pre > 0)
        G[f"{t}_hidden"] = da.T @ mix
        G[f"{t}_hb"] = da.sum(0)
        dmix = da @ P[f"{t}_hidden"]                           # [N, F]
        do += np.einsum("ne,nf->enf", g, dmix)
        dg = np.einsum("nf,enf->ne", dmix, o)
        dlogit = g * (dg - (dg * g).sum(1, keepdims=True))
        G[f"gate_{t}"] = dlogit.T @ x
    G["e_down"] = np.einsum("enf,enh->efh", do, h)
    dpre = np.einsum("enf,efh->enh", do, P["e_down"]) * (pre > 0)
    G["e_up"] = np.einsum("enh,nf->ehf", dpre, x)
    assert E == len(P["e_up"])
    return loss, G


def auc(score, label):
    """Area under the ROC curve (rank statistic; no ties in continuous scores)."""
    r = np.empty(len(score))
    r[np.argsort(score)] = np.arange(1, len(score) + 1)
    pos = label == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def train(seed=7, steps=100, lr=0.01):
    """Adam, full batch; keeps the parameters with the lowest held-out loss (it overfits after ~50 steps)."""
    rng = np.random.default_rng(seed)
    x, y, _ = synthetic(rng, 8192)
    xv, yv, true_logits = synthetic(rng, 4096)
    P = init(rng)
    m = {k: np.zeros_like(v) for k, v in P.items()}
    v = {k: np.zeros_like(v) for k, v in P.items()}
    best = (math.inf, 0, None, None)
    for step in range(1, steps + 1):
        loss, G = loss_and_grads(P, x, y)
        for k in P:
            m[k] = 0.9 * m[k] + 0.1 * G[k]
            v[k] = 0.999 * v[k] + 0.001 * G[k] ** 2
            P[k] -= lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
        if step % 10 == 0:
            holdout, _ = loss_and_grads(P, xv, yv)
            if holdout < best[0]:
                best = (holdout, step, loss, {k: val.copy() for k, val in P.items()})
    holdout, step, loss, P = best
    P = {k: val.astype(np.float32).astype(np.float64) for k, val in P.items()}
    out = ref.mmoe_ranking(P, xv)
    stats = {"steps": step, "train_loss": float(loss), "holdout_loss": float(holdout),
             "holdout_auc": {t: auc(out[t][:, 0], yv[t]) for t in TASKS},
             "holdout_auc_of_the_true_rule": {t: auc(true_logits[t], yv[t]) for t in TASKS},
             "holdout_positive_rate": {t: float(yv[t].mean()) for t in TASKS},
             "loss": "binary cross-entropy, mean over candidates, summed over the two tasks"}
    return P, stats, rng


def check_gradients():
    """Finite differences on a few entries of every parameter (development check: --check-grad)."""
    rng = np.random.default_rng(0)
    x, y, _ = synthetic(rng, 64)
    P = init(rng)
    for k in P:
        P[k] = P[k] + rng.normal(0, 0.05, P[k].shape)
    _, G = loss_and_grads(P, x, y)
    for k in P:
        flat = P[k].reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            lp, _ = loss_and_grads(P, x, y)
            flat[i] = old - 1e-6
            lm, _ = loss_and_grads(P, x, y)
            flat[i] = old
            num = (lp - lm) / 2e-6
            assert abs(num - G[k].reshape(-1)[i]) <= 1e-6 + 1e-4 * abs(num), (k, i, num, G[k].reshape(-1)[i])
    print("gradients ok")


def main():
    if "--check-grad" in sys.argv:
        check_gradients()
        return
    P, stats, rng = train()
    graph_rel = "graphs/mechanisms/mmoe_ranking.moe"
    graph = ref.read_graph(os.path.join(ROOT, graph_rel))
    config = {graph["params"][p][1][0]: val for p, val in DIMS.items()}
    vals = ref.param_values(graph, config)
    tensors = {}
    for name, shape, pattern in ref.weight_layout(graph, vals):
        assert list(P[name].shape) == shape, (name, P[name].shape, shape)
        if "{e}" in pattern:
            for e in range(shape[0]):
                tensors[pattern.replace("{e}", str(e))] = P[name][e].astype(np.float32)
        else:
            tensors[pattern] = P[name].astype(np.float32)
    x, _, _ = synthetic(rng, 24)
    x = x.astype(np.float32)
    out = ref.mmoe_ranking(P, x.astype(np.float64))
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "config.json"), config)
    write_safetensors(os.path.join(OUT, "model.safetensors"), tensors)
    np.save(os.path.join(OUT, "x.npy"), x)
    for t in TASKS:
        np.save(os.path.join(OUT, f"{t}.npy"), out[t].astype(np.float32))
    write_json(os.path.join(OUT, "meta.json"), {
        "graph": graph_rel, "inputs": {"x": "x.npy"}, "outputs": {t: f"{t}.npy" for t in TASKS},
        "description": "MMoE ranking model trained on synthetic click/conversion data by "
                       "scripts/make_mmoe_example.py; ctr.npy and cvr.npy are the numpy reference's scores for x.npy",
        "params": DIMS, "training": stats})
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
