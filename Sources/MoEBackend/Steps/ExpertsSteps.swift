import MoEIR
import MoEKernels

/// Executor steps of the experts family (see `ExpertsOp`).
extension ExpertsOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .moe_experts: return try MoEExpertsKernel.scratchBytes(n, g, tokens: tokens)
        case .halt_mask: return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        switch self {
        case .moe_experts:
            return ExpertsSteps.nonFiniteRows(s, n, i, after: ExpertsSteps.fixedExperts(s, n, i, after: MoEExpertsKernel.step(s, n, i)))
        case .halt_mask: return ExpertsSteps.haltMask(s, n, i)
        }
    }
}

enum ExpertsSteps {
    /// The one rule for non-finite values, applied after the experts ran: a token whose input
    /// row is not finite, or whose routing marks it invalid (`RoutingMath.invalidToken`: its
    /// router scores were not finite), gets a NaN output row; it took no expert, capacity or
    /// balancing from the others. Also counts, for `--stats` and `moec run`, the active tokens
    /// routed to no expert and the invalid ones (`Schedule.lastTokenCounts`).
    static func nonFiniteRows(_ s: Schedule, _ n: Node, _ i: Int, after experts: @escaping () -> Void) -> () -> Void {
        let g = s.executable.graph
        let view = n.expertsView!
        let x = UnsafePointer(s.floats(view.input))
        let r = g[view.routing].type.routing!
        let routing = RoutingBuffer(s.pointer(view.routing), tokens: s.tokens, slots: r.slots)
        let active = view.active.map { UnsafePointer(s.floats($0)) }
        let h = g[view.input].tensorType!.shape[1].fixedValue!
        let y = s.floats(ValueID(i))
        let counts = s.tokenCounts(i)
        let tokens = s.tokens, slots = r.slots
        return {
            experts()
            var unrouted = 0, invalid = 0
            for t in 0..<tokens {
                var bad = false, live = false
                for j in 0..<slots {
                    let e = routing.experts[t * slots + j]
                    if e == RoutingMath.invalidToken { bad = true }
                    if e >= 0 { live = true }
                }
                for q in 0..<h where !x[t * h + q].isFinite { bad = true }
                if bad {
                    invalid += 1
                    for q in 0..<h { y[t * h + q] = .nan }
                } else if !live, active?[t] ?? 1 != 0 {
                    unrouted += 1
                }
            }
            counts[0] = unrouted
            counts[1] = invalid
        }
    }

    /// Fixed experts (`ExpertsNode.fixedExperts`), after the computed ones ran: each (token,
    /// slot) pair routed to one adds `w · x[t]` (copy), `w · v` (constant) or nothing (zero),
    /// in slot order; under `weighting: "input"` a constant's row is added unweighted (the
    /// expert of `w·x` is `v`). Also counts their loads.
    static func fixedExperts(_ s: Schedule, _ n: Node, _ i: Int, after experts: @escaping () -> Void) -> () -> Void {
        let view = n.expertsView!
        let fixed = view.fixedExperts
        guard !fixed.isEmpty else { return experts }
        let g = s.executable.graph
        let r = g[view.routing].type.routing!
        let routing = RoutingBuffer(s.pointer(view.routing), tokens: s.tokens, slots: r.slots)
        let x = UnsafePointer(s.floats(view.input))
        let active = view.active.map { UnsafePointer(s.floats($0)) }
        let constants = view.constants.map { UnsafePointer(s.floats($0)) }
        let h = g[view.input].tensorType!.shape[1].fixedValue!
        let y = s.floats(ValueID(i))
        let loads = s.loadCounts(i)
        let computed = view.computedExperts, tokens = s.tokens, slots = r.slots
        let weightOnInput = view.weightOnInput
        // Per fixed expert: 0 zero, 1 copy, 2 constant; and its row among the constants.
        let kinds = fixed.map { Int32(ExpertsNode.fixedKinds.firstIndex(of: $0)!) }
        var rowOfConstant: [Int] = []
        var c = 0
        for k in fixed {
            rowOfConstant.append(c)
            if k == "constant" { c += 1 }
        }
        return {
            experts()
            for j in 0..<fixed.count { loads[computed + j] = 0 }
            for t in 0..<tokens where active.map({ $0[t] != 0 }) ?? true {
                for slot in 0..<slots {
                    let p = t * slots + slot, e = Int(routing.experts[p])
                    guard e >= computed else { continue }
                    let j = e - computed
                    loads[e] += 1
                    let w = routing.weights[p]
                    switch kinds[j] {
                    case 1: Kernels.axpy(alpha: w, x + t * h, y + t * h, count: h)
                    case 2: Kernels.axpy(alpha: weightOnInput ? 1 : w, constants! + rowOfConstant[j] * h, y + t * h, count: h)
                    default: break
                    }
                }
            }
        }
    }

    static func haltMask(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let h = UnsafePointer(s.floats(n.operands[0])), d = UnsafePointer(s.floats(n.operands[1]))
        let active = n.operands.count == 3 ? UnsafePointer(s.floats(n.operands[2])) : nil
        let w = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let tau = Float(n.attributes.float("tau")!)
        let y = s.floats(ValueID(i))
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                if let active, active[t] == 0 { y[t] = 0; continue }
                var nh: Float = 0, nd: Float = 0
                for j in 0..<w { nh += h[t * w + j] * h[t * w + j]; nd += d[t * w + j] * d[t * w + j] }
                y[t] = nd.squareRoot() >= tau * nh.squareRoot() ? 1 : 0
            }
        }
    }
}
