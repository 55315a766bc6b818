import MoEIR

/// What the executor needs of every op family: the temporary buffers a step uses while it runs
/// (planned into the arena with the values) and the step itself, a closure with its pointers and
/// sizes bound for one token count. Each family implements both with an exhaustive `switch` in its
/// `Steps/<Family>Steps.swift`, and each step has a twin in the reference interpreter
/// (`Reference/<Family>Reference.swift`) that the executor tests compare it with.
protocol StepFamily {
    /// Bytes of each scratch buffer the step of `n` needs for `tokens` tokens (none: `[]`).
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int]
    /// The step of node `i` (`n`), or nil for ops that compute nothing at run time.
    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)?
}

extension Op {
    /// The family's executor steps.
    var steps: any StepFamily {
        switch self {
        case .leaf(let o): return o
        case .dense(let o): return o
        case .elementwise(let o): return o
        case .scoring(let o): return o
        case .selection(let o): return o
        case .routingStage(let o): return o
        case .experts(let o): return o
        case .sequence(let o): return o
        }
    }
}

extension Schedule {
    /// The number of rows of a tensor: its elements over its last dimension.
    func rows(_ t: TensorType) -> Int { max(t.elementCount(tokens: tokens) / max(t.last?.fixedValue ?? 1, 1), 1) }
}
