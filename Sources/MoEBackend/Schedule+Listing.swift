import MoEIR

/// What a schedule runs, for listings (`--emit plan`) and tests, without its closures.
extension Schedule {
    /// One step: the node whose value it computes and its name (`Step.name`).
    public struct StepDescription: Sendable, Equatable {
        public var node: ValueID
        public var name: String
    }

    /// The steps a schedule of `g` runs, in order: one per node that computes a value (inputs,
    /// weights and constants are buffers, not steps; `makeStep` makes no closure for them),
    /// named by the node's op. Described from the graph alone because building a schedule needs
    /// the weights in memory, which `--emit plan` never loads; `steps` of every schedule built
    /// for `g` have these names in this order (`ScheduleListingTests` checks every example graph).
    public static func stepDescriptions(_ g: Graph) -> [StepDescription] {
        g.ids.filter { !Schedule.isBuffer(g[$0].op) }.map { StepDescription(node: $0, name: g[$0].op.rawValue) }
    }

    /// Ops whose value is a buffer filled before the run (inputs, constants) or a weight: no step.
    static func isBuffer(_ op: Op) -> Bool { op == .input || op == .weight || op == .constant }
}
