import Foundation
import MoEIR
import MoEKernels

/// Executor steps of the routing stages (see `RoutingStageOp`): each copies its input routing and
/// changes the weights (or drops pairs) in the copy.
extension RoutingStageOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .route_capacity:
            // Pairs taken per expert.
            return [try ByteCount.product(g[n.operands[0]].type.routing!.experts, 4)]
        case .route_renormalize, .route_softmax, .route_scale, .route_sqrt:
            return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        RoutingStagesSteps.transform(s, n, i, self)
    }
}

enum RoutingStagesSteps {
    static func transform(_ s: Schedule, _ n: Node, _ i: Int, _ op: RoutingStageOp) -> () -> Void {
        let r = s.executable.graph[n.operands[0]].type.routing!
        let input = RoutingBuffer(s.pointer(n.operands[0]), tokens: s.tokens, slots: r.slots)
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: r.slots)
        let slots = r.slots, tokens = s.tokens
        let a = n.attributes
        switch op {
        case .route_renormalize:
            let eps = Float(a.float("eps") ?? 0)
            return {
                input.copy(to: out)
                for t in 0..<tokens {
                    var sum: Float = 0
                    for j in 0..<slots where out.experts[t * slots + j] >= 0 { sum += out.weights[t * slots + j] }
                    let d = sum + eps
                    // A zero sum (no expert, or all weights 0) leaves the weights: 0/0 would make
                    // NaN out of finite input.
                    if d == 0 { continue }
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
            let cap = Int32(clamping: min(RoutingStageOp.capacity(a, tokens: tokens), tokens * slots))
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
