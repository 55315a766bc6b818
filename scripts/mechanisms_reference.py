#!/usr/bin/env python3
"""Plain-numpy reference implementations of the routing mechanisms in graphs/mechanisms/*.moe.

Written from the written semantics (Tests/Fixtures/mechanisms/README.md, "Semantics", and the comment at
the top of each graph), NOT from moec's Swift sources: the point is an independent second implementation.
Depends on numpy only (the safetensors reader is shared with scripts/moe_reference.py).

Conventions
  x          float array [T, d], one row per token
  W          dict of weights keyed by the graph's own weight names (`gate`, `w_gate`, ...), already stacked:
             a `{e}` pattern gives one [E, ...] array. Linear weights are [out, in] and applied as x·Wᵀ.
  returns    a dict of outputs keyed by the graph's output names ({"y": ...}; MMoE: {"ctr", "cvr"}).
  trace      optional dict; when given, a function records its routing there:
               trace["routes"]   per token, the chosen (expert, weight) pairs, best first
               trace["margins"]  a Margins object: every routing decision with its distance to a tie
All arithmetic is float64. "Best first" orderings break ties towards the lower index (stable sort).

A routing is a list (one entry per token) of lists of (expert, weight) pairs. Pipeline stages after a
selection (`renormalize`, `softmax`, `sqrt`) map that structure; `combine` applies the experts.

Command line: recompute every fixture folder from its files and compare with the stored outputs:

    python3 scripts/mechanisms_reference.py Tests/Fixtures/mechanisms/*/
    python3 scripts/mechanisms_reference.py --non-finite    # also with a NaN / ±inf token inserted
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from fractions import Fraction
from statistics import NormalDist

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moe_reference import read_safetensors  # noqa: E402  (numpy-only safetensors reader)

# ============================================================================ elementwise helpers


def silu(z):
    return z / (1.0 + np.exp(-z))


def relu(z):
    return np.maximum(z, 0.0)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(s, temperature=1.0, groups=None):
    """Numerically stable softmax over the last axis of s / temperature. With `groups=G`, the last
    axis is cut into G contiguous equal groups and the softmax is taken within each group."""
    s = np.asarray(s, dtype=np.float64) / temperature
    if groups is not None:
        shape = s.shape
        n = shape[-1]
        assert n % groups == 0, f"softmax(groups: {groups}) over a last axis of {n}"
        return softmax(s.reshape(shape[:-1] + (groups, n // groups))).reshape(shape)
    m = np.max(s, axis=-1, keepdims=True)
    e = np.exp(s - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def linear(x, w, bias=None):
    """x·Wᵀ (+ b), W stored [out, in]."""
    y = x @ w.T
    return y if bias is None else y + bias


def best_first(row):
    """Indices of `row` from best (largest) to worst; equal values keep the lower index first."""
    return [int(i) for i in np.argsort(-np.asarray(row), kind="stable")]


def norm_ppf(q):
    """Φ⁻¹(q), the standard normal quantile (Python's statistics module, AS241, ~1e-16 accurate)."""
    return NormalDist().inv_cdf(q)


# ============================================================================ experts


def swiglu_expert(x, w_gate, w_up, w_down):
    """(silu(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ."""
    return (silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def relu_mlp_expert(x, w_up, w_down):
    """relu(x·W_upᵀ)·W_downᵀ."""
    return relu(x @ w_up.T) @ w_down.T


def swiglu_experts(W):
    """expert(e, rows) for the SwiGLU experts `w_gate`, `w_up`, `w_down` ([E, ffn, d], [E, ffn, d], [E, d, ffn])."""
    return lambda e, x: swiglu_expert(x, W["w_gate"][e], W["w_up"][e], W["w_down"][e])


INVALID = None   # the route of a token whose scores hold a NaN or +∞ (see `invalid`)


def invalid(row):
    """The one rule for non-finite values: a score row with a NaN or +∞ makes its token invalid (routed
    nowhere, no capacity, no balancing, a NaN output row). −∞ is the masking convention, not invalid."""
    row = np.asarray(row, dtype=np.float64)
    return bool(np.any(np.isnan(row)) or np.any(row == np.inf))


def combine(x, routes, expert, width=None):
    """y_t = Σ_(e, w) in routes[t]  w · expert(e, x_t). A token with no expert gets a zero row; a token
    whose input row is not finite or whose route is INVALID gets a NaN row."""
    width = x.shape[1] if width is None else width
    y = np.zeros((x.shape[0], width))
    for t, chosen in enumerate(routes):
        if chosen is INVALID or not np.all(np.isfinite(x[t])):
            y[t] = np.nan
            continue
        for e, w in chosen:
            y[t] += w * expert(e, x[t:t + 1])[0]
    return y


# ============================================================================ decision margins


class Margins:
    """Every discrete routing decision with its distance to a tie, so that a fixture can be rejected when
    fp32 rounding could flip a choice. `add(what, token, a, b, scale)` records |a − b| / scale."""

    def __init__(self):
        self.items = []

    def add(self, what, where, a, b, scale):
        gap = abs(float(a) - float(b))
        scale = max(abs(float(scale)), 1e-300)
        self.items.append((gap / scale, what, where, float(a), float(b)))

    def min(self):
        if not self.items:
            return None
        return min(self.items)

    def summary(self):
        m = self.min()
        if m is None:
            return {"decisions": 0, "min_relative_margin": None}
        rel, what, where, a, b = m
        return {"decisions": len(self.items), "min_relative_margin": rel, "at": {"what": what, "where": where,
                                                                                  "a": a, "b": b}}


def _rowscale(row):
    return float(np.max(np.abs(row)))


def _record(trace, routes, margins, **extra):
    if trace is not None:
        trace["routes"] = routes
        trace["margins"] = margins
        trace.update(extra)


# ============================================================================ selections
# Each returns routes: per token a list of (expert, weight), best first.


BY_TIE = 1e-6   # topk(by:): selection values within this relative distance tie; the piped scores decide


def by_first(by_row, score_row, candidates):
    """`candidates` ordered for topk(by: B): repeatedly take the first candidate that no later one beats,
    where b beats a if B_b > B_a clearly, or B_a and B_b tie (|B_a − B_b| ≤ BY_TIE·max(|B_a|, |B_b|)) and
    the piped score of b is larger. (Sinkhorn balances a one-token batch to 1/E everywhere up to
    rounding; the token's own scores must pick its experts.)"""
    left, out = list(candidates), []
    while left:
        pick = left[0]
        for e in left[1:]:
            a, b = float(by_row[pick]), float(by_row[e])
            if abs(a - b) <= BY_TIE * max(abs(a), abs(b)):
                if score_row[e] > score_row[pick]:
                    pick = e
            elif b > a:
                pick = e
        left.remove(pick)
        out.append(pick)
    return out


def select_topk(scores, k, by=None, force=(), disable=(), margins=None, what="topk"):
    """topk(k) / topk(k, by: S) / topk(k, force: F, disable: D).
    Forced experts take the first slots in the listed order; disabled experts are never chosen; the
    remaining k − |F| slots take the best remaining experts by `by` (default: the scores themselves;
    with `by`, ties within BY_TIE are broken by the scores, see `by_first`).
    The weight of a chosen slot is the piped score at that expert."""
    given_by = by is not None
    by = scores if by is None else by
    routes = []
    for t in range(scores.shape[0]):
        if invalid(scores[t]) or (given_by and invalid(by[t])):
            routes.append(INVALID)
            continue
        chosen = list(force)
        if given_by:
            rest = by_first(by[t], scores[t], [e for e in range(scores.shape[1]) if e not in force and e not in disable])
        else:
            rest = [e for e in best_first(by[t]) if e not in force and e not in disable]
        free = k - len(chosen)
        chosen += rest[:free]
        if margins is not None and 0 < free < len(rest):
            a, b = rest[free - 1], rest[free]
            if given_by and abs(by[t][a] - by[t][b]) <= BY_TIE * max(abs(by[t][a]), abs(by[t][b])):
                margins.add(what + " tie broken by the scores", t, scores[t][a], scores[t][b], _rowscale(scores[t]))
            else:
                margins.add(what, t, by[t][a], by[t][b], _rowscale(by[t]))
        routes.append([(e, float(scores[t, e])) for e in chosen])
    return routes


def select_threshold(scores, tau, max_k, margins=None):
    """threshold(τ, max_k: m): the experts with score ≥ τ, best first, at most m of them."""
    routes = []
    for t in range(scores.shape[0]):
        if invalid(scores[t]):
            routes.append(INVALID)
            continue
        passing = [e for e in best_first(scores[t]) if scores[t, e] >= tau]
        if margins is not None:
            for e in range(scores.shape[1]):
                margins.add("threshold", (t, e), scores[t, e], tau, max(tau, _rowscale(scores[t])))
            if len(passing) > max_k:
                margins.add("threshold max_k", t, scores[t, passing[max_k - 1]], scores[t, passing[max_k]],
                            _rowscale(scores[t]))
        routes.append([(e, float(scores[t, e])) for e in passing[:max_k]])
    return routes


def select_top_p(scores, p, max_k, margins=None):
    """top_p(p, max_k: m): best first, take experts until the cumulative sum of their scores is ≥ p
    (the expert that crosses p is included), at most m experts."""
    routes = []
    for t in range(scores.shape[0]):
        if invalid(scores[t]):
            routes.append(INVALID)
            continue
        order = best_first(scores[t])
        chosen, cum = [], 0.0
        for e in order:
            if len(chosen) == max_k:
                break
            chosen.append(e)
            cum += scores[t, e]
            if margins is not None:
                margins.add("top_p cumulative", (t, len(chosen)), cum, p, max(p, 1.0))
            if cum >= p:
                break
        n = len(chosen)
        if margins is not None and n < len(order):
            margins.add("top_p boundary", t, scores[t, order[n - 1]], scores[t, order[n]], _rowscale(scores[t]))
        routes.append([(e, float(scores[t, e])) for e in chosen])
    return routes


def stat_topk_cut(row, k):
    """mean(row) + std(row)·Φ⁻¹(1 − k/E), population std (ddof = 0)."""
    E = row.shape[0]
    return float(np.mean(row) + np.std(row) * norm_ppf(1.0 - k / E))


def select_stat_topk(scores, k, margins=None):
    """stat_topk(k): keep every expert with score ≥ cut (all of them may pass; a token may get none),
    best first."""
    routes = []
    for t in range(scores.shape[0]):
        if invalid(scores[t]):
            routes.append(INVALID)
            continue
        cut = stat_topk_cut(scores[t], k)
        if margins is not None:
            for e in range(scores.shape[1]):
                margins.add("stat_topk cut", (t, e), scores[t, e], cut, max(abs(cut), _rowscale(scores[t])))
        routes.append([(e, float(scores[t, e])) for e in best_first(scores[t]) if scores[t, e] >= cut])
    return routes


def expert_choice_capacity(T, k, cf, E):
    """C = min(T, ceil(T·k·cf / E)) with cf as written: the shortest decimal that reads back as the value
    (an f32 input 1.2 is 1.2, not 1.2000000476837158), evaluated exactly in rationals."""
    if isinstance(cf, (np.floating, np.ndarray)) and np.asarray(cf).dtype == np.float32:
        written = np.format_float_positional(np.float32(cf), unique=True, trim="-")
    else:
        written = repr(float(cf))
    return min(T, math.ceil(Fraction(T * k) * Fraction(written) / E))


def select_expert_choice(scores, k, capacity_factor, margins=None):
    # capacity_factor: an np.float32 when it comes from an input file (see expert_choice_capacity)
    """expert_choice(k, capacity_factor: cf): each expert independently takes its C best tokens by score
    (ties → lower token index); a token's weights are its scores for the experts that took it."""
    T, E = scores.shape
    valid = [t for t in range(T) if not invalid(scores[t])]          # invalid tokens: no capacity, not in T
    C = expert_choice_capacity(len(valid), k, capacity_factor, E)
    taken = [[] for _ in range(T)]
    for e in range(E):
        order = [valid[i] for i in best_first(scores[valid, e])]
        for t in order[:C]:
            taken[t].append(e)
        if margins is not None and 0 < C < len(valid):
            margins.add("expert_choice capacity", e, scores[order[C - 1], e], scores[order[C], e],
                        _rowscale(scores[:, e]))
    routes = [[(e, float(scores[t, e])) for e in sorted(es, key=lambda e: (-scores[t, e], e))]
              if t in valid else INVALID for t, es in enumerate(taken)]
    return routes, C


KNUTH = 2654435761
MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1


def hash_expert(token_id, E):
    """Knuth's multiplicative hash, high bits: ⌊E · frac(uint32(id) · 2654435761 / 2³²)⌋."""
    frac = Fraction((int(token_id) & MASK32) * KNUTH % (1 << 32), 1 << 32)
    return math.floor(E * frac)


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def random_fixed_expert(token_id, E, seed):
    """splitmix64(uint64(seed)·1000003 + uint32(id)) mod E, all arithmetic mod 2⁶⁴."""
    s = int(seed) & MASK64                     # int64 reinterpreted as uint64
    return splitmix64((s * 1000003 + (int(token_id) & MASK32)) & MASK64) % E


def smooth_step(t, gamma):
    """S(t) = 0 for t ≤ −γ/2, 1 for t ≥ γ/2, else −2t³/γ³ + 3t/(2γ) + 1/2."""
    if t <= -gamma / 2:
        return 0.0
    if t >= gamma / 2:
        return 1.0
    return -2.0 * t ** 3 / gamma ** 3 + 3.0 * t / (2.0 * gamma) + 0.5


def dselect_weights(z, alpha, E, gamma):
    """DSelect-k weights [T, E]. m = ⌈log₂E⌉ bits; k selectors (k = width of alpha); selector c reads
    z[c·m + j] for bit j. r⁽ᶜ⁾_i = Π_j (S(z_cj) if bit j of i is 1 else 1 − S(z_cj)), bit j counted from
    the most significant of the m bits (bit 0 = MSB); w_i = Σ_c softmax(alpha)_c · r⁽ᶜ⁾_i for i < E."""
    T, k = alpha.shape
    m = (E - 1).bit_length()                     # ⌈log₂E⌉
    assert z.shape == (T, k * m), f"dselect: z is {z.shape}, expected {(T, k * m)} (k={k}, m={m})"
    a = softmax(alpha)
    w = np.zeros((T, E))
    for t in range(T):
        # S is C¹ at ±γ/2 (S' = 0 there), so a z near saturation gives a weight near 0 either way:
        # `nonzero` may keep a negligible weight in fp32 and drop it in fp64 without changing y.
        S = [smooth_step(float(v), gamma) for v in z[t]]
        for i in range(E):
            for c in range(k):
                r = 1.0
                for j in range(m):
                    s = S[c * m + j]
                    r *= s if (i >> (m - 1 - j)) & 1 else 1.0 - s
                w[t, i] += a[t, c] * r
    return w


def sparsemax(z):
    """sparsemax over the last axis (Martins & Astudillo 2016, eq. 2-4): the Euclidean projection of each
    row onto the probability simplex. Sort z descending; k(z) = max{k : 1 + k·z_(k) > Σ_{j≤k} z_(j)};
    τ = (Σ_{j≤k(z)} z_(j) − 1) / k(z); p = max(z − τ, 0). −∞ entries get 0; a row of only −∞ gives zeros."""
    z = np.asarray(z, dtype=np.float64)
    out = np.zeros_like(z)
    for t in range(z.shape[0]):
        finite = z[t] > -np.inf
        if not finite.any():
            continue
        v = np.sort(z[t][finite])[::-1]
        cs = np.cumsum(v)
        ks = np.arange(1, len(v) + 1)
        k = int(ks[1 + ks * v > cs].max())
        tau = (cs[k - 1] - 1) / k
        out[t] = np.maximum(z[t] - tau, 0)
    return out


def select_nonzero(weights):
    """nonzero: every expert with a non-zero weight, best first; weights as they are."""
    return [INVALID if invalid(weights[t]) else
            [(e, float(weights[t, e])) for e in best_first(weights[t]) if weights[t, e] != 0.0]
            for t in range(weights.shape[0])]


def sinkhorn(S, iterations):
    """P = row-softmax(S) (the first row scaling of exp(S)); repeat n times: scale each column to sum T/E
    (skip a zero column), then each row to sum 1 (skip a zero row). Rows first, as Megatron-LM."""
    T, E = S.shape
    valid = [t for t in range(T) if not invalid(S[t])]    # invalid tokens take no part: NaN rows
    P = np.full((T, E), np.nan)
    P[valid] = softmax(S[valid])
    for _ in range(iterations):
        col = P[valid].sum(axis=0)
        for e in range(E):
            if col[e] != 0.0:
                P[valid, e] *= (len(valid) / E) / col[e]
        for t in valid:
            row = P[t].sum()
            if row != 0.0:
                P[t, :] /= row
    return P


def within(outer_routes, inner, k, per_group, margins=None):
    """outer |> within(inner, k: k2): for each chosen outer group g (outer slot order), the k2 best inner
    experts of group g (inner columns g·S .. g·S + S − 1); weight = outer weight × inner score; expert
    index g·S + j."""
    routes = []
    for t, chosen in enumerate(outer_routes):
        if chosen is INVALID or invalid(inner[t]):
            routes.append(INVALID)
            continue
        r = []
        for g, wg in chosen:
            block = inner[t, g * per_group:(g + 1) * per_group]
            order = best_first(block)
            if margins is not None and k < per_group:
                margins.add("within", (t, g), block[order[k - 1]], block[order[k]], _rowscale(block))
            r += [(g * per_group + j, wg * float(block[j])) for j in order[:k]]
        routes.append(r)
    return routes


# ============================================================================ stages after a selection


def renormalize(routes):
    """weights / the sum of the token's chosen weights (a token with no expert, or whose weights sum to 0,
    stays as it is)."""
    out = []
    for chosen in routes:
        if chosen is INVALID:
            out.append(INVALID)
            continue
        s = sum(w for _, w in chosen)
        out.append([(e, w / s) for e, w in chosen] if s != 0 else list(chosen))   # a zero sum stays: no 0/0
    return out


def softmax_chosen(routes):
    """`softmax` after a selection: softmax over the token's chosen values only."""
    out = []
    for chosen in routes:
        if chosen is INVALID or not chosen:
            out.append(chosen)
            continue
        v = softmax(np.array([w for _, w in chosen]))
        out.append([(e, float(p)) for (e, _), p in zip(chosen, v)])
    return out


def sqrt_weights(routes):
    return [INVALID if chosen is INVALID else [(e, math.sqrt(w)) for e, w in chosen] for chosen in routes]


# ============================================================================ scores


def cosine_scores(h, C):
    """cos(h, c_e) = (h·c_e) / max(‖h‖·‖c_e‖, 1e-8)."""
    num = h @ C.T
    den = np.linalg.norm(h, axis=1)[:, None] * np.linalg.norm(C, axis=1)[None, :]
    return num / np.maximum(den, 1e-8)


def distance(x, C):
    """‖x − c_e‖₂ for every token and centroid: [T, E]."""
    return np.sqrt(((x[:, None, :] - C[None, :, :]) ** 2).sum(-1))


def subspace_scores(x, U):
    """‖x·U_e‖₂ / max(‖x‖₂, 1e-12) with U [E, d, r]."""
    xn = np.maximum(np.linalg.norm(x, axis=1), 1e-12)
    return np.stack([np.linalg.norm(x @ U[e], axis=1) for e in range(U.shape[0])], axis=1) / xn[:, None]


# ============================================================================ one function per graph


def topk_softmax(W, x, *, top_k, trace=None):
    """graphs/mechanisms/topk_softmax.moe: x |> linear(gate) |> topk(k) |> softmax."""
    m = Margins()
    logits = linear(x, W["gate"])
    routes = softmax_chosen(select_topk(logits, top_k, margins=m))
    _record(trace, routes, m, scores=logits)
    return {"y": combine(x, routes, swiglu_experts(W))}


def linear_temperature(W, x, *, top_k, temperature, trace=None):
    """linear_temperature.moe: linear(gate, bias) |> softmax(temperature: τ) |> topk(k) |> renormalize."""
    m = Margins()
    p = softmax(linear(x, W["gate"], W["gate_bias"]), temperature=temperature)
    routes = renormalize(select_topk(p, top_k, margins=m))
    _record(trace, routes, m, scores=p)
    return {"y": combine(x, routes, swiglu_experts(W))}


def cosine_router(W, x, *, top_k, temperature, trace=None):
    """cosine_router.moe: x |> linear(proj) |> cosine(centroids) |> softmax(temperature: τ) |> topk(k)
    |> renormalize."""
    m = Margins()
    s = cosine_scores(linear(x, W["proj"]), W["centroids"])
    p = softmax(s, temperature=temperature)
    routes = renormalize(select_topk(p, top_k, margins=m))
    _record(trace, routes, m, scores=p)
    return {"y": combine(x, routes, swiglu_experts(W))}


def laplace_router(W, x, *, top_k, trace=None):
    """laplace_router.moe: −distance(x, centroids) |> softmax |> topk(k) |> renormalize."""
    m = Margins()
    p = softmax(-distance(x, W["centroids"]))
    routes = renormalize(select_topk(p, top_k, margins=m))
    _record(trace, routes, m, scores=p)
    return {"y": combine(x, routes, swiglu_experts(W))}


def hash_router(W, x, ids, *, num_experts, trace=None):
    """hash_router.moe: ids |> hash(experts: E); weight 1."""
    routes = [[(hash_expert(i, num_experts), 1.0)] for i in ids]
    _record(trace, routes, Margins())
    return {"y": combine(x, routes, swiglu_experts(W))}


def random_fixed_router(W, x, ids, *, num_experts, seed, trace=None):
    """random_fixed_router.moe: ids |> random_fixed(experts: E, seed: s); weight 1."""
    routes = [[(random_fixed_expert(i, num_experts, seed), 1.0)] for i in ids]
    _record(trace, routes, Margins())
    return {"y": combine(x, routes, swiglu_experts(W))}


def subspace_router(W, x, *, top_k, trace=None):
    """subspace_router.moe: x |> subspace(bases) |> stat_topk(k) |> renormalize."""
    m = Margins()
    s = subspace_scores(x, W["bases"])
    routes = renormalize(select_stat_topk(s, top_k, margins=m))
    _record(trace, routes, m, scores=s)
    return {"y": combine(x, routes, swiglu_experts(W))}


def threshold_router(W, x, *, tau, max_k, trace=None):
    """threshold_router.moe: linear(gate) |> softmax |> threshold(τ, max_k: m) |> renormalize."""
    m = Margins()
    p = softmax(linear(x, W["gate"]))
    routes = renormalize(select_threshold(p, tau, max_k, margins=m))
    _record(trace, routes, m, scores=p)
    return {"y": combine(x, routes, swiglu_experts(W))}


def top_p_router(W, x, *, p, max_k, trace=None):
    """top_p_router.moe: linear(gate) |> softmax |> top_p(p, max_k: m) |> renormalize."""
    m = Margins()
    probs = softmax(linear(x, W["gate"]))
    routes = renormalize(select_top_p(probs, p, max_k, margins=m))
    _record(trace, routes, m, scores=probs)
    return {"y": combine(x, routes, swiglu_experts(W))}


def stat_topk(W, x, *, top_k, trace=None):
    """stat_topk.moe: logits |> stat_topk(k) |> softmax (over the chosen logits)."""
    m = Margins()
    logits = linear(x, W["gate"])
    routes = softmax_chosen(select_stat_topk(logits, top_k, margins=m))
    _record(trace, routes, m, scores=logits)
    return {"y": combine(x, routes, swiglu_experts(W))}


def expert_choice(W, x, capacity_factor, *, top_k, trace=None):
    """expert_choice.moe: linear(gate) |> softmax |> expert_choice(k, capacity_factor: cf)."""
    m = Margins()
    p = softmax(linear(x, W["gate"]))
    routes, C = select_expert_choice(p, top_k, np.float32(capacity_factor), margins=m)
    _record(trace, routes, m, scores=p, capacity=C)
    return {"y": combine(x, routes, swiglu_experts(W))}


def sinkhorn_router(W, x, *, top_k, iterations, trace=None):
    """sinkhorn_router.moe: chosen by sinkhorn(logits), weighted by softmax(logits), renormalised."""
    m = Margins()
    logits = linear(x, W["gate"])
    balanced = sinkhorn(logits, iterations)
    routes = renormalize(select_topk(softmax(logits), top_k, by=balanced, margins=m))
    _record(trace, routes, m, scores=balanced)
    return {"y": combine(x, routes, swiglu_experts(W))}


def hierarchical(W, x, *, groups, per_group, outer_k, inner_k, trace=None):
    """hierarchical.moe: outer = softmax(−distance(x, β) + b) |> topk(outer_k) over groups;
    inner = softmax(x·W_innerᵀ, groups: G); outer |> within(inner, k: inner_k)."""
    m = Margins()
    outer_p = softmax(-distance(x, W["outer_centroids"]) + W["outer_bias"])
    outer = select_topk(outer_p, outer_k, margins=m, what="outer topk")
    inner = softmax(linear(x, W["inner_gate"]), groups=groups)
    routes = within(outer, inner, inner_k, per_group, margins=m)
    _record(trace, routes, m, scores=outer_p, inner=inner)
    return {"y": combine(x, routes, swiglu_experts(W))}


def sparsemax_router(W, x, *, max_k, trace=None):
    """sparsemax_router.moe: linear(gate) |> sparsemax |> nonzero(max_k: m) |> renormalize."""
    m = Margins()
    p = sparsemax(linear(x, W["gate"]))
    routes = []
    for t, chosen in enumerate(select_nonzero(p)):
        if len(chosen) > max_k:
            m.add("sparsemax max_k", t, chosen[max_k - 1][1], chosen[max_k][1], _rowscale(p[t]))
        routes.append(chosen[:max_k])
    routes = renormalize(routes)
    _record(trace, routes, m, scores=p)
    return {"y": combine(x, routes, swiglu_experts(W))}


def dselect_k(W, x, *, num_experts, gamma, trace=None):
    """dselect_k.moe: dselect(z: x·Zᵀ + b_z, alpha: x·Aᵀ + b_α, experts: E, gamma: γ) |> nonzero."""
    m = Margins()
    w = dselect_weights(linear(x, W["z_gate"], W["z_bias"]), linear(x, W["alpha_gate"], W["alpha_bias"]),
                        num_experts, gamma)
    routes = select_nonzero(w)
    _record(trace, routes, m, scores=w)
    return {"y": combine(x, routes, swiglu_experts(W))}


def steering(W, x, steer, *, top_k, force=(0,), disable=(5,), trace=None):
    """steering.moe: linear(x, gate) + steer |> softmax |> topk(k, force: [0], disable: [5]) |> renormalize."""
    m = Margins()
    p = softmax(linear(x, W["gate"]) + steer)
    routes = renormalize(select_topk(p, top_k, force=force, disable=disable, margins=m))
    _record(trace, routes, m, scores=p)
    return {"y": combine(x, routes, swiglu_experts(W))}


def sqrtgate(W, x, *, top_k, p, trace=None):
    """sqrtgate.moe: routed = softmax |> topk(k) |> renormalize |> sqrt; y = √(1−p)·routed + √p·shared."""
    m = Margins()
    probs = softmax(linear(x, W["gate"]))
    routes = sqrt_weights(renormalize(select_topk(probs, top_k, margins=m)))
    routed = combine(x, routes, swiglu_experts(W))
    shared = swiglu_expert(x, W["shared_gate"], W["shared_up"], W["shared_down"])
    _record(trace, routes, m, scores=probs)
    return {"y": math.sqrt(1.0 - p) * routed + math.sqrt(p) * shared}


def multihop(W, x, *, top_k, hops, tau, trace=None):
    """multihop.moe: h₀ = x; for hop i: route h_i, Δ_i = MoE(h_i) for active tokens (0 for halted ones);
    if i < hops − 1 a token stays active iff ‖Δ_i‖ ≥ τ·‖h_i‖; h_{i+1} = h_i + Δ_i. Output h_n."""
    m = Margins()
    expert = swiglu_experts(W)
    T = x.shape[0]
    h = x.astype(np.float64).copy()
    active = np.ones(T, dtype=bool)
    active_per_hop, ratios_per_hop, routes_per_hop = [], [], []
    for i in range(hops):
        active_per_hop.append(int(active.sum()))
        rows = np.nonzero(active)[0]
        p = softmax(linear(h[rows], W["gate"]))
        sub = renormalize(select_topk(p, top_k, margins=m, what=f"hop {i} topk"))
        routes = [[] for _ in range(T)]
        for r, t in enumerate(rows):
            routes[t] = sub[r]
        delta = combine(h, routes, expert)           # zero rows for inactive tokens
        routes_per_hop.append(routes)
        ratio = np.linalg.norm(delta, axis=1) / np.linalg.norm(h, axis=1)
        ratios_per_hop.append(ratio)
        if i < hops - 1:
            for t in rows:
                m.add(f"hop {i} halt", int(t), ratio[t], tau, tau)
            active = active & (np.linalg.norm(delta, axis=1) >= tau * np.linalg.norm(h, axis=1))
        h = h + delta
    _record(trace, routes_per_hop[0], m, active_per_hop=active_per_hop, ratios_per_hop=ratios_per_hop,
            routes_per_hop=routes_per_hop)
    return {"y": h}


def upcycling(W, x, *, top_k, upcycle, trace=None):
    """upcycling.moe: expert e is repeated upcycle[e] times in order (router rows too); then
    softmax over the Σc logits |> topk(k) |> renormalize on the expanded model."""
    m = Margins()
    origin = [e for e, c in enumerate(upcycle) for _ in range(c)]      # expanded index -> original expert
    gate = W["gate"][origin]
    p = softmax(linear(x, gate))
    routes = renormalize(select_topk(p, top_k))
    # Copies of one expert tie exactly, in any precision, and compute the same thing. Only a near-tie
    # between two *different* experts can change the result: record a pair of neighbours (by value)
    # when swapping their values would change how many copies of each expert are chosen.
    E0 = len(upcycle)

    def chosen(v):       # v: one value per original expert -> sorted origins of the top-k copies
        return sorted(origin[j] for j in best_first([v[o] for o in origin])[:top_k])

    for t in range(x.shape[0]):
        v = [float(p[t, origin.index(e)]) for e in range(E0)]
        order = best_first(v)
        for a, b in zip(order, order[1:]):
            w = list(v)
            w[a], w[b] = w[b], w[a]
            if chosen(w) != chosen(v):
                m.add("upcycled topk", (t, a, b), v[a], v[b], _rowscale(p[t]))
    base = swiglu_experts(W)
    _record(trace, routes, m, scores=p, origin=origin)
    return {"y": combine(x, routes, lambda j, xr: base(origin[j], xr))}


def mmoe_ranking(W, x, *, trace=None):
    """mmoe_ranking.moe: per task, mix ALL ReLU-MLP experts with softmax(x·gateᵀ) (`dense`), then the tower
    sigmoid(linear(relu(linear(h, W1, b1)), W2, b2))."""
    expert = lambda e, xr: relu_mlp_expert(xr, W["e_up"][e], W["e_down"][e])
    E = W["e_up"].shape[0]
    out, gates = {}, {}
    for task in ("ctr", "cvr"):
        g = softmax(linear(x, W[f"gate_{task}"]))
        routes = [[(e, float(g[t, e])) for e in range(E)] for t in range(x.shape[0])]   # dense
        mix = combine(x, routes, expert)
        hidden = relu(linear(mix, W[f"{task}_hidden"], W[f"{task}_hb"]))
        out[task] = sigmoid(linear(hidden, W[f"{task}_out"], W[f"{task}_ob"]))
        gates[task] = g
    _record(trace, None, Margins(), gates=gates)
    return out


# ============================================================================ graph files and fixtures

# graph name -> (function, names of its run-time inputs besides x, graph params passed as keywords)
GRAPHS = {
    "topk_softmax": (topk_softmax, [], ["top_k"]),
    "linear_temperature": (linear_temperature, [], ["top_k", "temperature"]),
    "cosine_router": (cosine_router, [], ["top_k", "temperature"]),
    "laplace_router": (laplace_router, [], ["top_k"]),
    "hash_router": (hash_router, ["ids"], ["num_experts"]),
    "random_fixed_router": (random_fixed_router, ["ids"], ["num_experts", "seed"]),
    "subspace_router": (subspace_router, [], ["top_k"]),
    "threshold_router": (threshold_router, [], ["tau", "max_k"]),
    "top_p_router": (top_p_router, [], ["p", "max_k"]),
    "stat_topk": (stat_topk, [], ["top_k"]),
    "expert_choice": (expert_choice, ["capacity_factor"], ["top_k"]),
    "sinkhorn_router": (sinkhorn_router, [], ["top_k", "iterations"]),
    "hierarchical": (hierarchical, [], ["groups", "per_group", "outer_k", "inner_k"]),
    "dselect_k": (dselect_k, [], ["num_experts", "gamma"]),
    "sparsemax_router": (sparsemax_router, [], ["max_k"]),
    "steering": (steering, ["steer"], ["top_k"]),
    "sqrtgate": (sqrtgate, [], ["top_k", "p"]),
    "multihop": (multihop, [], ["top_k", "hops", "tau"]),
    "upcycling": (upcycling, [], ["top_k", "upcycle"]),
    "mmoe_ranking": (mmoe_ranking, [], []),
}


def read_graph(path):
    """The declarations of a .moe file this reference needs, read with a few regular expressions (not moec's
    parser): params {name: (default, [config keys])}, weights [(name, shape expressions, tensor pattern)],
    inputs {name: (dtype, shape)}, and the `upcycle: [...]` list if any."""
    src = open(path).read()
    text = re.sub(r"#[^\n]*", "", src)
    params = {}
    for m in re.finditer(r"\bparam\s+(\w+)\s*(?::\s*(\w+))?\s*(?:=\s*(-?[\w.]+|\"[^\"]*\"))?"
                         r"((?:\s*from\s*\"[^\"]*\"(?:\s*,\s*\"[^\"]*\")*)?)", text):
        name, _, default, keys = m.groups()
        if default is not None:
            if default in ("true", "false"):
                default = default == "true"
            elif re.fullmatch(r"-?\d+", default):
                default = int(default)
            elif default.startswith('"'):
                default = default[1:-1]
            else:
                default = float(default)
        params[name] = (default, re.findall(r"\"([^\"]*)\"", keys or ""))
    weights = []
    for g in re.finditer(r"\bweights\s+\"([^\"]*)\"\s*\{((?:[^}\"]|\"[^\"]*\")*)\}", text):
        prefix, body = g.groups()
        for w in re.finditer(r"(\w+)\s*:\s*\[([^\]]*)\]\s*=\s*\"([^\"]*)\"", body):
            weights.append((w.group(1), [s.strip() for s in w.group(2).split(",")], prefix + w.group(3)))
    for w in re.finditer(r"\bweight\s+(\w+)\s*:\s*\[([^\]]*)\]\s*=\s*\"([^\"]*)\"", text):
        weights.append((w.group(1), [s.strip() for s in w.group(2).split(",")], w.group(3)))
    inputs = {}
    for m in re.finditer(r"\binput\s+(\w+)\s*:\s*(i32|f32)?\s*\[([^\]]*)\]", text):
        inputs[m.group(1)] = (m.group(2) or "f32", [s.strip() for s in m.group(3).split(",") if s.strip()])
    up = re.search(r"\bupcycle\s*:\s*\[([^\]]*)\]", text)
    upcycle = [int(v) for v in up.group(1).split(",")] if up else None
    return {"params": params, "weights": weights, "inputs": inputs, "upcycle": upcycle}


def param_values(graph, config):
    """Resolve each param: the first of its config keys present, else its default (as moec documents)."""
    vals = {}
    for name, (default, keys) in graph["params"].items():
        v = default
        for k in keys:
            if k in config:
                v = config[k]
                break
        if isinstance(default, float) and v is not None:
            v = float(v)
        vals[name] = v
    return vals


def eval_dim(expr, vals):
    """A shape entry such as `selectors * bits` evaluated with the param values."""
    return int(eval(expr, {"__builtins__": {}}, dict(vals)))


def weight_layout(graph, vals):
    """[(local name, full shape, tensor pattern with params substituted)] for every declared weight."""
    out = []
    for name, dims, pattern in graph["weights"]:
        shape = [eval_dim(d, vals) for d in dims]
        pat = re.sub(r"\{(\w+)\}", lambda m: "{e}" if m.group(1) == "e" else str(vals[m.group(1)]), pattern)
        out.append((name, shape, pat))
    return out


def load_graph_weights(folder, graph, vals):
    """Weights by graph name from a folder's model.safetensors, stacking `{e}` patterns; shapes checked."""
    t = read_safetensors(os.path.join(folder, "model.safetensors"))
    W = {}
    for name, shape, pat in weight_layout(graph, vals):
        if "{e}" in pat:
            arr = np.stack([t[pat.replace("{e}", str(e))] for e in range(shape[0])])
        else:
            arr = t[pat]
        assert list(arr.shape) == shape, f"{pat}: shape {list(arr.shape)}, graph declares {shape}"
        W[name] = arr.astype(np.float64)
    return W


def run_graph(name, W, inputs, vals, graph=None, trace=None):
    """Run graph `name` with weights W (by graph names), inputs {name: array}, params `vals` (by graph param
    names)."""
    fn, input_names, kw_names = GRAPHS[name]
    kw = {}
    for k in kw_names:
        kw[k] = graph["upcycle"] if k == "upcycle" else vals[k]
    args = [np.asarray(inputs["x"], dtype=np.float64)]
    for n in input_names:
        a = inputs[n]
        args.append(a if n == "ids" else np.asarray(a, dtype=np.float64))
    return fn(W, *args, **kw, trace=trace)


def check_folder(folder, root, bad_row=None):
    """max |Δ| / max |ref| of the reference against the folder's outputs. With `bad_row` (a function of the
    width giving a non-finite row), that row is inserted as token T // 2 (id 7 for `ids`) first: its outputs
    must be NaN (else the error is inf) and the other tokens' outputs unchanged."""
    meta = json.load(open(os.path.join(folder, "meta.json")))
    graph_path = os.path.join(root, meta["graph"])
    name = os.path.splitext(os.path.basename(graph_path))[0]
    graph = read_graph(graph_path)
    config_path = os.path.join(folder, "config.json")
    vals = param_values(graph, json.load(open(config_path)) if os.path.exists(config_path) else {})
    for k, v in meta.get("set", {}).items():
        vals[k] = v
    W = load_graph_weights(folder, graph, vals)
    inputs = {k: np.load(os.path.join(folder, f)) for k, f in meta["inputs"].items()}
    at = inputs["x"].shape[0] // 2
    if bad_row is not None:
        inputs["x"] = np.insert(inputs["x"], at, bad_row(inputs["x"].shape[1]), axis=0)
        if "ids" in inputs:
            inputs["ids"] = np.insert(inputs["ids"], at, 7)
    out = run_graph(name, W, inputs, vals, graph)
    worst = 0.0
    for k, f in meta["outputs"].items():
        ref = np.load(os.path.join(folder, f)).astype(np.float64)
        if bad_row is not None:
            if not np.all(np.isnan(out[k][at])):
                return math.inf
            out[k] = np.delete(out[k], at, axis=0)
        err = float(np.max(np.abs(out[k] - ref)) / max(np.max(np.abs(ref)), 1e-30))
        worst = max(worst, err)
    return worst


def main(argv):
    # --non-finite: also insert a non-finite token into each folder (the one rule: its output NaN,
    # the other tokens unchanged)
    non_finite = "--non-finite" in argv
    argv = [a for a in argv if a != "--non-finite"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = argv or sorted(os.path.join(root, "Tests/Fixtures/mechanisms", d)
                             for d in os.listdir(os.path.join(root, "Tests/Fixtures/mechanisms"))
                             if os.path.isdir(os.path.join(root, "Tests/Fixtures/mechanisms", d)))
    bad = 0
    rows = {"": None,
            " + NaN token": lambda d: np.full(d, np.nan),
            " + token with +inf": lambda d: np.where(np.arange(d) == 1, np.inf, 0.5),
            " + token with -inf": lambda d: np.where(np.arange(d) == 0, -np.inf, -0.25)}
    for folder in folders:
        if not os.path.exists(os.path.join(folder, "meta.json")):
            continue
        for label, row in rows.items():
            if row is not None and not non_finite:
                continue
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):   # NaN is what is tested
                err = check_folder(folder, root, bad_row=row)
            ok = err <= 1e-5
            bad += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(os.path.normpath(folder)) + label:<62} "
                  f"max|Δ|/max|ref| {err:.1e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
