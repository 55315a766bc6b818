import MoEIR

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
        case .moe_experts: return MoEExpertsKernel.step(s, n, i)
        case .halt_mask: return ExpertsSteps.haltMask(s, n, i)
        }
    }
}

enum ExpertsSteps {
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
