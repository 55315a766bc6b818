import MoEIR

/// Leaves compute nothing at run time: inputs are copied into the arena before the steps run,
/// weights are prepared by the executable at load time, constants live beside the arena.
extension LeafOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .input, .weight, .constant: return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        switch self {
        case .input, .weight, .constant: return nil
        }
    }
}
