import MoEIR

/// What a schedule runs, for listings (`--emit plan`) and tests, without its closures.
extension Schedule {
    /// One step: the node whose value it computes and its name (`Step.name`).
    public struct StepDescription: Sendable, Equatable {
        public var node: ValueID
        public var name: String
    }

    /// The steps a schedule of `g` runs, in order: one per node that computes a value (leaves,
    /// inputs, weights and constants, are buffers, not steps), named by the node's op. This list is
    /// what `Schedule.init` builds a closure for, one by one, so a listing (`--emit plan`, which
    /// never loads weights) and a run cannot disagree.
    public static func stepDescriptions(_ g: Graph) -> [StepDescription] {
        g.ids.filter { !Schedule.isBuffer(g[$0].op) }.map { StepDescription(node: $0, name: g[$0].op.rawValue) }
    }

    /// Leaves' values are buffers filled before the run (inputs, constants) or weights: no step.
    static func isBuffer(_ op: Op) -> Bool {
        if case .leaf = op { return true }
        return false
    }
}
