import Foundation
import MoEIR

/// Expert selection, every rule spelled out (see `SelectionOp`).
extension SelectionOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, a = n.attributes
        func tensor(_ i: Int) -> HostTensor { c.tensor(i) }
        func routing(_ i: Int) -> ReferenceInterpreter.Routing { c.routing(i) }
        switch self {
        case .topk:
            let s = tensor(0)
            var next = 1
            var bias: [Double]?, by: HostTensor?
            if a.bool("with_bias") == true { bias = tensor(next).floats.map(Double.init); next += 1 }
            if a.bool("with_by") == true { by = tensor(next) }
            return .routing(R.topk(scores: s, bias: bias, by: by, attributes: a))

        case .fused_router:
            // By definition the chain `RouterFusion` replaced, each part evaluated as its own op.
            let operands = n.operands.map { c.values[$0.index]! }
            var scores = operands[0]
            if let score = a.string("score"), score != "identity" { scores = try c.evaluate(Op(rawValue: score)!, [scores]) }
            var selection = a
            for key in ["score", "normalize", "eps", "scale"] { selection[key] = nil }
            var r = try c.evaluate(.topk, [scores] + operands.dropFirst(), selection)
            switch a.string("normalize") {
            case "sum"?: r = try c.evaluate(.route_renormalize, [r], ["eps": .float(a.float("eps") ?? 0)])
            case "softmax"?: r = try c.evaluate(.route_softmax, [r])
            default: break
            }
            if let f = a.float("scale") { r = try c.evaluate(.route_scale, [r], ["factor": .float(f)]) }
            return r

        case .threshold, .top_p, .stat_topk, .dense_route, .nonzero:
            return .routing(R.select(n.op, scores: tensor(0), attributes: a))

        case .expert_choice:
            let s = tensor(0)
            let tokensN = s.shape[0], e = s.shape[1]
            let f = s.floats.map(Double.init)
            // Invalid tokens take no capacity and do not count in T.
            let valid = (0..<tokensN).filter { t in !R.invalid((0..<e).map { f[t * e + $0] }) }
            let cap =
                n.operands.count == 2
                ? RoutingMath.expertChoiceCapacity(tokens: valid.count, k: a.int("k")!, runTimeFactor: tensor(1).floats[0], experts: e)
                : RoutingMath.expertChoiceCapacity(tokens: valid.count, k: a.int("k")!, factor: a.float("capacity_factor")!, experts: e)
            var chosen = [[Bool]](repeating: [Bool](repeating: false, count: e), count: tokensN)
            for ex in 0..<e {
                // Each expert takes its `cap` best valid tokens, ties to the lower token index.
                let column = valid.map { f[$0 * e + ex] }
                for i in R.bestIndices(column, cap) { chosen[valid[i]][ex] = true }
            }
            var r = R.Routing(
                tokens: tokensN, slots: e, experts: e, expert: [Int](repeating: -1, count: tokensN * e),
                weight: [Double](repeating: 0, count: tokensN * e))
            for t in 0..<tokensN {
                if !valid.contains(t) {
                    r.markInvalid(t)
                    continue
                }
                var slot = 0
                for ex in 0..<e where chosen[t][ex] {
                    r.expert[t * e + slot] = ex
                    r.weight[t * e + slot] = f[t * e + ex]
                    slot += 1
                }
            }
            return .routing(r)

        case .hash_route:
            let ids = tensor(0).ints!
            let e = a.int("experts")!
            let method = a.string("method")!, seed = a.int("seed") ?? 0
            return .routing(
                R.Routing(
                    tokens: ids.count, slots: 1, experts: e,
                    expert: ids.map { RoutingMath.hashExpert(id: $0, experts: e, method: method, seed: seed) },
                    weight: [Double](repeating: 1, count: ids.count)))

        case .within:
            // For each chosen outer group, the inner group's k best experts; weight = outer · inner.
            let outer = routing(0)
            let inner = tensor(1)
            let e = inner.shape[1], size = e / outer.experts, k = a.int("k")!
            let f = inner.floats.map(Double.init)
            let slots = outer.slots * k
            var r = R.Routing(
                tokens: outer.tokens, slots: slots, experts: e, expert: [Int](repeating: -1, count: outer.tokens * slots),
                weight: [Double](repeating: 0, count: outer.tokens * slots))
            for t in 0..<outer.tokens {
                if outer.expert[t * outer.slots] == Int(RoutingMath.invalidToken) || R.invalid((0..<e).map { f[t * e + $0] }) {
                    r.markInvalid(t)
                    continue
                }
                for o in 0..<outer.slots {
                    let g = outer.expert[t * outer.slots + o]
                    guard g >= 0 else { continue }
                    let members = (0..<size).map { f[t * e + g * size + $0] }
                    for (j, idx) in R.bestIndices(members, k).enumerated() {
                        r.expert[t * slots + o * k + j] = g * size + idx
                        r.weight[t * slots + o * k + j] = outer.weight[t * outer.slots + o] * members[idx]
                    }
                }
            }
            return .routing(r)

        case .sparsemixer:
            return .routing(R.sparsemixer(tensor(0), jitterEps: a.float("jitter_eps")!))
        }
    }
}

extension ReferenceInterpreter {
    /// PhiMoE's `sparsemixer` in its inference form (transformers' `modeling_phimoe.sparsemixer`
    /// with `training=False`), in Double. Per token, twice (the second time without the first
    /// choice): m = the best remaining score, chosen expert = its first index; an expert j is
    /// masked when (m − s_j) / max(|s_j|, m) > 2·jitter_eps; weight = softmax over the unmasked
    /// remaining scores, at the chosen expert. No remaining finite score leaves the slot empty.
    static func sparsemixer(_ s: HostTensor, jitterEps: Double) -> Routing {
        let tokens = s.shape[0], e = s.shape[1]
        let f = s.floats.map(Double.init)
        var r = Routing(
            tokens: tokens, slots: 2, experts: e, expert: [Int](repeating: -1, count: tokens * 2),
            weight: [Double](repeating: 0, count: tokens * 2))
        for t in 0..<tokens {
            let row = Array(f[t * e..<(t + 1) * e])
            if invalid(row) {
                r.markInvalid(t)
                continue
            }
            var remaining = row
            for slot in 0..<2 {
                guard let best = remaining.indices.max(by: { remaining[$0] < remaining[$1] || (remaining[$0] == remaining[$1] && $0 > $1) }),
                    remaining[best] > -.infinity
                else { break }
                let m = remaining[best]
                var sum = 0.0
                for j in 0..<e where remaining[j] > -.infinity {
                    // The margin is measured on the original scores, as transformers does.
                    let masked = (m - row[j]) / Swift.max(abs(row[j]), m) > 2 * jitterEps
                    if !masked { sum += Foundation.exp(remaining[j] - m) }
                }
                r.expert[t * 2 + slot] = best
                r.weight[t * 2 + slot] = 1 / sum
                remaining[best] = -.infinity
            }
        }
        return r
    }
}

extension ReferenceInterpreter {
    /// Whether a row of scores makes its token invalid: a NaN or +∞ in it (−∞ masks an expert).
    static func invalid(_ row: [Double]) -> Bool { row.contains { $0.isNaN || $0 == .infinity } }

    /// Top-k selection, optionally limited to the best groups.
    ///
    /// 1. Choice score = (`by` if given, else the score) + bias: they affect selection only.
    /// 2. With groups: group score = sum of the `group_top` best choice scores in the group;
    ///    keep the `keep_groups` best groups; choice scores outside them become `masked`
    ///    (−∞ unless the graph says otherwise).
    /// 3. Forced experts take the first slots, in the order listed; disabled experts are never
    ///    chosen; the remaining slots take the best choice scores, ties to the lower index. With
    ///    `by`, choice scores within `RoutingMath.selectionTieTolerance` (relative) tie and the
    ///    larger score decides (a one-token Sinkhorn batch balances every entry to 1/E).
    ///    Each slot carries the expert's (unbiased) score as its weight.
    static func topk(scores: HostTensor, bias: [Double]?, by: HostTensor?, attributes a: Attributes) -> Routing {
        let tokens = scores.shape[0], e = scores.shape[1]
        let k = a.int("k")!
        let groups = a.int("groups") ?? 1
        let keep = a.int("keep_groups") ?? groups
        let groupTop = a.int("group_top") ?? 2
        let masked = a.float("masked") ?? -.infinity
        var force: [Int] = []
        for f in a.ints("force") ?? [] where !force.contains(f) { force.append(f) }
        let disable = Set(a.ints("disable") ?? [])
        let s = scores.floats
        let sel = by?.floats ?? s
        var r = Routing(
            tokens: tokens, slots: k, experts: e,
            expert: [Int](repeating: -1, count: tokens * k), weight: [Double](repeating: 0, count: tokens * k))
        for t in 0..<tokens {
            let raw = (0..<e).map { Double(s[t * e + $0]) }
            if invalid(raw) || (by != nil && invalid((0..<e).map { Double(sel[t * e + $0]) })) {
                r.markInvalid(t)
                continue
            }
            var choice = (0..<e).map { Double(sel[t * e + $0]) + (bias?[$0] ?? 0) }
            if groups > 1 {
                let size = e / groups
                let groupScore = (0..<groups).map { g -> Double in
                    let members = (0..<size).map { choice[g * size + $0] }.sorted(by: >)
                    return members.prefix(groupTop).reduce(0, +)
                }
                let kept = Set(bestIndices(groupScore, keep))
                for g in 0..<groups where !kept.contains(g) {
                    for j in 0..<size { choice[g * size + j] = masked }
                }
            }
            let candidates = (0..<e).filter { !disable.contains($0) && !force.contains($0) }
            var best: [Int]
            if by == nil {
                best = bestIndices(candidates.map { choice[$0] }, k - force.count).map { candidates[$0] }
            } else {
                // Selection scores within the tie tolerance are ordered by the weights row: k
                // rounds of "first candidate no other is selected before".
                best = []
                var left = candidates
                for _ in 0..<(k - force.count) {
                    var pick = 0
                    for q in 1..<max(left.count, 1) {
                        let j = left[q], b = left[pick]
                        if RoutingMath.selectsBefore(Float(choice[j]), Float(raw[j]), than: Float(choice[b]), Float(raw[b])) { pick = q }
                    }
                    best.append(left.remove(at: pick))
                }
            }
            for (slot, idx) in (force + best).enumerated() {
                r.expert[t * k + slot] = idx
                r.weight[t * k + slot] = raw[idx]
            }
        }
        return r
    }

    /// Variable-k selections; chosen experts are listed best first (ties to the lower index),
    /// at most `max_k` of them, each with its score as weight.
    /// - threshold: every score ≥ tau.
    /// - top_p: the fewest best experts whose scores sum to at least p.
    /// - stat_topk: every score ≥ mean + std·Φ⁻¹(1 − k/E) (population std of the row).
    /// - dense_route: every expert, in index order.
    /// - nonzero: every expert with a non-zero score.
    static func select(_ op: Op, scores: HostTensor, attributes a: Attributes) -> Routing {
        let tokens = scores.shape[0], e = scores.shape[1]
        let slots = a.int("max_k") ?? e
        let f = scores.floats.map(Double.init)
        var r = Routing(
            tokens: tokens, slots: slots, experts: e, expert: [Int](repeating: -1, count: tokens * slots),
            weight: [Double](repeating: 0, count: tokens * slots))
        for t in 0..<tokens {
            let row = Array(f[(t * e)..<((t + 1) * e)])
            if invalid(row) {
                r.markInvalid(t)
                continue
            }
            let order = bestIndices(row, e)
            var chosen: [Int]
            switch op {
            case .threshold:
                chosen = order.filter { row[$0] >= a.float("tau")! }
            case .top_p:
                chosen = []
                var sum = 0.0
                for i in order where sum < a.float("p")! {
                    chosen.append(i)
                    sum += row[i]
                }
            case .stat_topk:
                let mean = row.reduce(0, +) / Double(e)
                let std = (row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(e)).squareRoot()
                let cut = mean + std * RoutingMath.normalQuantile(1 - Double(a.int("k")!) / Double(e))
                chosen = order.filter { row[$0] >= cut }
            case .dense_route:
                chosen = Array(0..<e)
            default:
                chosen = order.filter { row[$0] != 0 }
            }
            for (slot, i) in chosen.prefix(slots).enumerated() {
                r.expert[t * slots + slot] = i
                r.weight[t * slots + slot] = row[i]
            }
        }
        return r
    }
}
