import Foundation
import MoEIR
import MoEKernels

/// Executor steps of the selection family (see `SelectionOp`; the rules are spelled out in
/// `Reference/SelectionReference.swift`): per token, scores become (expert, weight) slots of a
/// `RoutingBuffer`.
extension SelectionOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .topk:
            // Choice scores and taken flags: E floats each (group scores fit in the flags).
            let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
            return [try ByteCount.sum(try ByteCount.product(e, 8), 64)]
        case .fused_router:
            // Scores, choice scores and flags: E floats each (group scores fit in the flags).
            let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
            return [try ByteCount.sum(try ByteCount.product(e, 12), 64)]
        case .threshold, .top_p, .stat_topk, .nonzero, .dense_route, .within:
            // E indices (and flags).
            let e = g[n.operands[self == .within ? 1 : 0]].tensorType!.shape[1].fixedValue!
            return [try ByteCount.sum(try ByteCount.product(e, 8), 64)]
        case .expert_choice:
            // The valid tokens and a token order per expert, and a chosen flag per (token, expert).
            let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
            return [try ByteCount.sum(try ByteCount.product(tokens, 8), 64), try ByteCount.sum(try ByteCount.product(tokens, e), 64)]
        case .hash_route, .sparsemixer:
            return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        switch self {
        case .topk: return SelectionSteps.topk(s, n, i)
        case .fused_router: return SelectionSteps.fusedRouter(s, n, i)
        case .threshold, .top_p, .stat_topk, .nonzero, .dense_route: return SelectionSteps.variableK(s, n, i)
        case .expert_choice: return SelectionSteps.expertChoice(s, n, i)
        case .hash_route: return SelectionSteps.hash(s, n, i)
        case .within: return SelectionSteps.within(s, n, i)
        case .sparsemixer: return SelectionSteps.sparsemixer(s, n, i)
        }
    }
}

enum SelectionSteps {
    /// Top-k selection, optionally limited to the best groups (see `SelectionReference.topk`
    /// for the rule): per token, choice scores (score + bias), group masking, then k rounds of
    /// "largest not yet taken", ties to the lower index.
    static func topk(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let scores = UnsafePointer(s.floats(n.operands[0]))
        let a = n.attributes
        let withBias = a.bool("with_bias") ?? false, withBy = a.bool("with_by") ?? false
        let bias = withBias ? UnsafePointer(s.floats(n.operands[1])) : nil
        let by = withBy ? UnsafePointer(s.floats(n.operands[withBias ? 2 : 1])) : nil
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let rule = TopKRule(a, experts: e, tiesByWeight: withBy)
        let k = rule.k
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: k)
        let choice = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
        let taken = choice + e
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                let row = scores + t * e
                let selectRow = by.map { $0 + t * e } ?? row
                if RoutingMath.hasInvalidScore(row, e) || (by != nil && RoutingMath.hasInvalidScore(selectRow, e)) {
                    out.markInvalid(t)
                    continue
                }
                for j in 0..<e { choice[j] = selectRow[j] + (bias?[j] ?? 0) }
                rule.select(weightsFrom: row, choice: choice, taken: taken, experts: out.experts + t * k, weights: out.weights + t * k)
            }
        }
    }

    /// The fused router (see `RouterFusion`): per token, the logits row becomes scores in a small
    /// buffer (softmax, sigmoid, or as is), top-k selects on scores + bias, and the chosen weights
    /// are normalised and scaled in place, all while the row is in cache.
    static func fusedRouter(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let logits = UnsafePointer(s.floats(n.operands[0]))
        let a = n.attributes
        let bias = (a.bool("with_bias") ?? false) ? UnsafePointer(s.floats(n.operands[1])) : nil
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let rule = TopKRule(a, experts: e)
        let k = rule.k
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: k)
        let scores = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
        let choice = scores + e, taken = choice + e
        let tokens = s.tokens
        let score = a.string("score") ?? "identity", normalize = a.string("normalize")
        let eps = Float(a.float("eps") ?? 0), scale = a.float("scale").map(Float.init)
        return {
            for t in 0..<tokens {
                let row = logits + t * e
                var probabilities = row
                switch score {
                case "softmax": Kernels.softmaxRows(row, scores, rows: 1, cols: e); probabilities = UnsafePointer(scores)
                case "sigmoid": Kernels.sigmoid(row, scores, count: e); probabilities = UnsafePointer(scores)
                default: break
                }
                // On the scores the unfused chain's topk would see (sigmoid(+∞) = 1 is valid).
                if RoutingMath.hasInvalidScore(probabilities, e) {
                    out.markInvalid(t)
                    continue
                }
                for j in 0..<e { choice[j] = probabilities[j] + (bias?[j] ?? 0) }
                let experts = out.experts + t * k, weights = out.weights + t * k
                rule.select(weightsFrom: probabilities, choice: choice, taken: taken, experts: experts, weights: weights)
                if normalize == "sum" {
                    var sum: Float = 0
                    for j in 0..<k { sum += weights[j] }
                    let d = sum + eps
                    if d != 0 { for j in 0..<k { weights[j] /= d } } // as `route_renormalize`
                } else if normalize == "softmax" {
                    RoutingStagesSteps.softmaxOfLiveSlots(weights, experts: experts, count: k)
                }
                if let f = scale { for j in 0..<k { weights[j] *= f } }
            }
        }
    }

    /// Sorts `count` expert indices in place: larger value first, ties to the lower index.
    @inline(__always)
    static func sortBest(_ idx: UnsafeMutablePointer<Int32>, _ count: Int, _ v: UnsafePointer<Float>) {
        guard count > 1 else { return }
        for i in 1..<count {
            let x = idx[i]
            var j = i - 1
            while j >= 0 && (v[Int(idx[j])] < v[Int(x)] || (v[Int(idx[j])] == v[Int(x)] && idx[j] > x)) {
                idx[j + 1] = idx[j]
                j -= 1
            }
            idx[j + 1] = x
        }
    }

    static func variableK(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let scores = UnsafePointer(s.floats(n.operands[0]))
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let slots = n.type.routing!.slots
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: slots)
        let idx = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let tokens = s.tokens
        let op = n.op
        let a = n.attributes
        let tau = Float(a.float("tau") ?? 0), p = Float(a.float("p") ?? 1)
        let quantile = op == .stat_topk ? RoutingMath.normalQuantile(1 - Double(a.int("k")!) / Double(e)) : 0
        return {
            for t in 0..<tokens {
                let row = scores + t * e
                var count = 0
                if RoutingMath.hasInvalidScore(row, e) {
                    out.markInvalid(t)
                    continue
                }
                switch op {
                case .threshold:
                    for j in 0..<e where row[j] >= tau { idx[count] = Int32(j); count += 1 }
                    sortBest(idx, count, row)
                case .nonzero:
                    for j in 0..<e where row[j] != 0 { idx[count] = Int32(j); count += 1 }
                    sortBest(idx, count, row)
                case .stat_topk:
                    var mean = 0.0
                    for j in 0..<e { mean += Double(row[j]) }
                    mean /= Double(e)
                    var variance = 0.0
                    for j in 0..<e { variance += (Double(row[j]) - mean) * (Double(row[j]) - mean) }
                    let cut = Float(mean + (variance / Double(e)).squareRoot() * quantile)
                    for j in 0..<e where row[j] >= cut { idx[count] = Int32(j); count += 1 }
                    sortBest(idx, count, row)
                case .top_p:
                    for j in 0..<e { idx[j] = Int32(j) }
                    sortBest(idx, e, row)
                    var sum: Float = 0
                    while count < e && sum < p { sum += row[Int(idx[count])]; count += 1 }
                default: // dense_route: every expert in index order
                    for j in 0..<e { idx[j] = Int32(j) }
                    count = e
                }
                let kept = min(count, slots)
                for slot in 0..<slots {
                    if slot < kept {
                        let j = Int(idx[slot])
                        out.experts[t * slots + slot] = Int32(j)
                        out.weights[t * slots + slot] = row[j]
                    } else {
                        out.experts[t * slots + slot] = -1
                        out.weights[t * slots + slot] = 0
                    }
                }
            }
        }
    }

    static func expertChoice(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let scores = UnsafePointer(s.floats(n.operands[0]))
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: e)
        let order = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let chosen = s.scratch(i, 1).assumingMemoryBound(to: UInt8.self)
        let tokens = s.tokens
        let k = n.attributes.int("k")!
        let factorPointer = n.operands.count == 2 ? UnsafePointer(s.floats(n.operands[1])) : nil
        let fixedFactor = n.attributes.float("capacity_factor") ?? 1
        let fixedCapacity = RoutingMath.expertChoiceCapacity(tokens: tokens, k: k, factor: fixedFactor, experts: e)
        return {
            // Invalid tokens (see `RoutingMath.invalidToken`) are left out: of the order, and of
            // the token count the capacity is computed from.
            let validTokens = order + tokens
            var valid = 0
            for t in 0..<tokens where !RoutingMath.hasInvalidScore(scores + t * e, e) {
                validTokens[valid] = Int32(t)
                valid += 1
            }
            let cap =
                factorPointer.map { RoutingMath.expertChoiceCapacity(tokens: valid, k: k, runTimeFactor: $0[0], experts: e) }
                ?? (valid == tokens ? fixedCapacity : RoutingMath.expertChoiceCapacity(tokens: valid, k: k, factor: fixedFactor, experts: e))
            chosen.initialize(repeating: 0, count: tokens * e)
            for ex in 0..<e {
                // Partial selection: the `cap` best valid tokens of this expert's column.
                order.update(from: validTokens, count: valid)
                for c in 0..<cap {
                    var best = c
                    for t in (c + 1)..<max(valid, c + 1) {
                        let a = scores[Int(order[t]) * e + ex], b = scores[Int(order[best]) * e + ex]
                        if a > b || (a == b && order[t] < order[best]) { best = t }
                    }
                    let tmp = order[c]; order[c] = order[best]; order[best] = tmp
                    chosen[Int(order[c]) * e + ex] = 1
                }
            }
            for t in 0..<tokens {
                if RoutingMath.hasInvalidScore(scores + t * e, e) {
                    out.markInvalid(t)
                    continue
                }
                var slot = 0
                for ex in 0..<e where chosen[t * e + ex] != 0 {
                    out.experts[t * e + slot] = Int32(ex)
                    out.weights[t * e + slot] = scores[t * e + ex]
                    slot += 1
                }
                while slot < e {
                    out.experts[t * e + slot] = -1
                    out.weights[t * e + slot] = 0
                    slot += 1
                }
            }
        }
    }

    static func hash(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let ids = s.pointer(n.operands[0]).assumingMemoryBound(to: Int32.self)
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: 1)
        let e = n.attributes.int("experts")!, method = n.attributes.string("method")!, seed = n.attributes.int("seed") ?? 0
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                out.experts[t] = Int32(RoutingMath.hashExpert(id: ids[t], experts: e, method: method, seed: seed))
                out.weights[t] = 1
            }
        }
    }

    /// PhiMoE's sparsemixer (the rule: `ReferenceInterpreter.sparsemixer`): two rounds per token
    /// of "best remaining expert, weighted by the softmax over the remaining experts within the
    /// relative margin", the first choice excluded from the second round.
    static func sparsemixer(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let scores = UnsafePointer(s.floats(n.operands[0]))
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let twoEps = Float(2 * n.attributes.float("jitter_eps")!)
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: 2)
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                let row = scores + t * e
                if RoutingMath.hasInvalidScore(row, e) {
                    out.markInvalid(t)
                    continue
                }
                var first = -1
                for slot in 0..<2 {
                    var best = -1
                    var m = -Float.infinity
                    for j in 0..<e where j != first && row[j] > m {
                        m = row[j]
                        best = j
                    }
                    out.experts[t * 2 + slot] = Int32(best)
                    out.weights[t * 2 + slot] = 0
                    guard best >= 0 else { continue }
                    var sum: Float = 0
                    for j in 0..<e where j != first && row[j] > -Float.infinity {
                        if !((m - row[j]) / max(abs(row[j]), m) > twoEps) { sum += expf(row[j] - m) }
                    }
                    out.weights[t * 2 + slot] = 1 / sum
                    first = best
                }
            }
        }
    }

    static func within(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let outerType = g[n.operands[0]].type.routing!
        let outer = RoutingBuffer(s.pointer(n.operands[0]), tokens: s.tokens, slots: outerType.slots)
        let inner = UnsafePointer(s.floats(n.operands[1]))
        let e = g[n.operands[1]].tensorType!.shape[1].fixedValue!
        let size = e / outerType.experts, k = n.attributes.int("k")!
        let slots = outerType.slots * k
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: slots)
        let idx = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                if outer.experts[t * outerType.slots] == RoutingMath.invalidToken || RoutingMath.hasInvalidScore(inner + t * e, e) {
                    out.markInvalid(t)
                    continue
                }
                for o in 0..<outerType.slots {
                    let gi = Int(outer.experts[t * outerType.slots + o])
                    for j in 0..<k { out.experts[t * slots + o * k + j] = -1; out.weights[t * slots + o * k + j] = 0 }
                    guard gi >= 0 else { continue }
                    let row = inner + t * e + gi * size
                    for j in 0..<size { idx[j] = Int32(j) }
                    sortBest(idx, size, row)
                    let w = outer.weights[t * outerType.slots + o]
                    for j in 0..<k {
                        out.experts[t * slots + o * k + j] = Int32(gi * size + Int(idx[j]))
                        out.weights[t * slots + o * k + j] = w * row[Int(idx[j])]
                    }
                }
            }
        }
    }
}

/// The top-k rule of one token, shared by the `topk` and `fused_router` steps (see
/// `ReferenceInterpreter.topk`): group masking on the choice scores, forced experts first, then k
/// rounds of "largest not yet taken", ties to the lower index; the weights are read from another row.
struct TopKRule {
    let experts: Int, k: Int, groups: Int, keep: Int, groupTop: Int
    let masked: Float
    let force: [Int32]
    let disable: [Int]
    /// `topk(by:)`: choice scores within a relative `RoutingMath.selectionTieTolerance` tie, and
    /// the weights row decides between them.
    let tiesByWeight: Bool

    init(_ a: Attributes, experts e: Int, tiesByWeight: Bool = false) {
        self.tiesByWeight = tiesByWeight
        experts = e
        k = a.int("k")!
        groups = a.int("groups") ?? 1
        keep = a.int("keep_groups") ?? groups
        groupTop = a.int("group_top") ?? 2
        masked = Float(a.float("masked") ?? -.infinity)
        var force: [Int32] = []
        for f in a.ints("force") ?? [] where !force.contains(Int32(f)) { force.append(Int32(f)) }
        self.force = force
        disable = a.ints("disable") ?? []
    }

    /// `choice` (E floats) holds the selection scores and is overwritten; `taken` is scratch of
    /// max(E, groups) floats; the k chosen experts and their `weightsFrom` values go to `out*`.
    @inline(__always)
    func select(
        weightsFrom row: UnsafePointer<Float>, choice: UnsafeMutablePointer<Float>, taken: UnsafeMutablePointer<Float>,
        experts outExperts: UnsafeMutablePointer<Int32>, weights outWeights: UnsafeMutablePointer<Float>
    ) {
        let e = experts
        if groups > 1 {
            let size = e / groups
            // Group scores into taken[0..<groups]; the best `keep` groups stay.
            for gi in 0..<groups {
                var sum: Float = 0
                var used = 0
                var lastBest = Float.infinity, lastIndex = -1
                while used < groupTop {
                    var best = -Float.infinity, bi = -1
                    for j in 0..<size {
                        let v = choice[gi * size + j]
                        let after = v < lastBest || (v == lastBest && gi * size + j > lastIndex)
                        if after && (bi < 0 || v > best) { best = v; bi = gi * size + j }
                    }
                    if bi < 0 { break }
                    sum += best
                    lastBest = best
                    lastIndex = bi
                    used += 1
                }
                taken[gi] = sum
            }
            for _ in 0..<keep {
                var best = -Float.infinity, bi = -1
                for gi in 0..<groups where taken[gi] != -.infinity || bi < 0 {
                    if taken[gi].isNaN { continue }
                    if bi < 0 || taken[gi] > best { best = taken[gi]; bi = gi }
                }
                if bi >= 0 { taken[bi] = .nan } // mark kept
            }
            for gi in 0..<groups where !taken[gi].isNaN {
                for j in 0..<size { choice[gi * size + j] = masked }
            }
        }
        for j in 0..<e { taken[j] = 0 }
        for j in disable { taken[j] = 1 }
        for (slot, f) in force.enumerated() {
            taken[Int(f)] = 1
            outExperts[slot] = f
            outWeights[slot] = row[Int(f)]
        }
        for slot in force.count..<k {
            var best = -Float.infinity, bi = -1
            if tiesByWeight {
                for j in 0..<e where taken[j] == 0 {
                    if bi < 0 || RoutingMath.selectsBefore(choice[j], row[j], than: best, row[bi]) { best = choice[j]; bi = j }
                }
            } else {
                for j in 0..<e where taken[j] == 0 {
                    if bi < 0 || choice[j] > best { best = choice[j]; bi = j }
                }
            }
            taken[bi] = 1
            outExperts[slot] = Int32(bi)
            outWeights[slot] = row[bi]
        }
    }
}
