import Foundation
import MoEIR
import MoEKernels

/// A routing in the arena: `tokens × slots` expert indices (Int32, −1 for an empty slot)
/// followed by as many weights (Float).
struct RoutingBuffer {
    let experts: UnsafeMutablePointer<Int32>
    let weights: UnsafeMutablePointer<Float>
    let tokens: Int
    let slots: Int

    init(_ raw: UnsafeMutableRawPointer, tokens: Int, slots: Int) {
        experts = raw.assumingMemoryBound(to: Int32.self)
        weights = (raw + tokens * slots * 4).assumingMemoryBound(to: Float.self)
        self.tokens = tokens
        self.slots = slots
    }

    func copy(to other: RoutingBuffer) {
        other.experts.update(from: experts, count: tokens * slots)
        other.weights.update(from: weights, count: tokens * slots)
    }
}

/// Steps for expert selection and the routing stages after it.
enum RoutingSteps {
    /// Top-k selection, optionally limited to the best groups (see `ReferenceInterpreter.topk`
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
        let rule = TopKRule(a, experts: e)
        let k = rule.k
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: k)
        let choice = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
        let taken = choice + e
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                let row = scores + t * e
                let selectRow = by.map { $0 + t * e } ?? row
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
                for j in 0..<e { choice[j] = probabilities[j] + (bias?[j] ?? 0) }
                let experts = out.experts + t * k, weights = out.weights + t * k
                rule.select(weightsFrom: probabilities, choice: choice, taken: taken, experts: experts, weights: weights)
                if normalize == "sum" {
                    var sum: Float = 0
                    for j in 0..<k { sum += weights[j] }
                    let d = sum + eps
                    for j in 0..<k { weights[j] /= d }
                } else if normalize == "softmax" {
                    softmaxOfLiveSlots(weights, experts: experts, count: k)
                }
                if let f = scale { for j in 0..<k { weights[j] *= f } }
            }
        }
    }

    static func transform(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let r = s.executable.graph[n.operands[0]].type.routing!
        let input = RoutingBuffer(s.pointer(n.operands[0]), tokens: s.tokens, slots: r.slots)
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: r.slots)
        let slots = r.slots, tokens = s.tokens
        let a = n.attributes
        switch n.op {
        case .route_renormalize:
            let eps = Float(a.float("eps") ?? 0)
            return {
                input.copy(to: out)
                for t in 0..<tokens {
                    var sum: Float = 0
                    for j in 0..<slots where out.experts[t * slots + j] >= 0 { sum += out.weights[t * slots + j] }
                    let d = sum + eps
                    for j in 0..<slots where out.experts[t * slots + j] >= 0 { out.weights[t * slots + j] /= d }
                }
            }
        case .route_softmax:
            return {
                input.copy(to: out)
                for t in 0..<tokens { softmaxOfLiveSlots(out.weights + t * slots, experts: out.experts + t * slots, count: slots) }
            }
        case .route_scale:
            let f = Float(a.float("factor")!)
            return {
                input.copy(to: out)
                Kernels.scale(alpha: f, out.weights, out.weights, count: tokens * slots)
            }
        case .route_sqrt:
            return {
                input.copy(to: out)
                for j in 0..<(tokens * slots) { out.weights[j] = max(out.weights[j], 0).squareRoot() }
            }
        case .route_capacity:
            // An expert gets at most one pair per (token, slot), so every capacity of at least
            // tokens · slots drops nothing. Clamping to that keeps the count in Int32 (the
            // source may ask for 3·10⁹) without changing which pairs are kept.
            let cap = Int32(clamping: min(a.int("capacity")!, tokens * slots))
            let taken = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
            let experts = r.experts
            return {
                input.copy(to: out)
                taken.initialize(repeating: 0, count: experts)
                for j in 0..<slots {
                    for t in 0..<tokens {
                        let e = out.experts[t * slots + j]
                        guard e >= 0 else { continue }
                        if taken[Int(e)] < cap {
                            taken[Int(e)] += 1
                        } else {
                            out.experts[t * slots + j] = -1
                            out.weights[t * slots + j] = 0
                        }
                    }
                }
            }
        default:
            preconditionFailure("\(n.op) is not a routing transform")
        }
    }

    /// Softmax in place over one token's weights whose slot holds an expert (≥ 0; dropped slots
    /// are −1 and left alone). Every live choice masked out (all −∞) gives zeros (see
    /// `ReferenceInterpreter.softmax`).
    static func softmaxOfLiveSlots(_ w: UnsafeMutablePointer<Float>, experts: UnsafePointer<Int32>, count: Int) {
        var m = -Float.infinity
        for j in 0..<count where experts[j] >= 0 { m = max(m, w[j]) }
        if m == -.infinity {
            for j in 0..<count where experts[j] >= 0 { w[j] = 0 }
            return
        }
        var sum: Float = 0
        for j in 0..<count where experts[j] >= 0 {
            let v = Foundation.exp(w[j] - m)
            w[j] = v
            sum += v
        }
        for j in 0..<count where experts[j] >= 0 { w[j] /= sum }
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

    init(_ a: Attributes, experts e: Int) {
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
    func select(weightsFrom row: UnsafePointer<Float>, choice: UnsafeMutablePointer<Float>, taken: UnsafeMutablePointer<Float>,
                experts outExperts: UnsafeMutablePointer<Int32>, weights outWeights: UnsafeMutablePointer<Float>) {
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
                if bi >= 0 { taken[bi] = .nan }   // mark kept
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
            for j in 0..<e where taken[j] == 0 {
                if bi < 0 || choice[j] > best { best = choice[j]; bi = j }
            }
            taken[bi] = 1
            outExperts[slot] = Int32(bi)
            outWeights[slot] = row[bi]
        }
    }
}
