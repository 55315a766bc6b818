import MoEIR

/// Removes nodes whose values reach no output.
///
/// 1. Mark the outputs live.
/// 2. Walk the nodes from last to first; a live node marks its operands live.
/// 3. Keep live nodes and inputs (inputs stay: they are the graph's interface), renumbered.
public struct DeadCodeElimination: Pass {
    public static let name = "dead-code-elimination"
    public init() {}

    public func run(_ g: Graph) throws -> Graph {
        var live = [Bool](repeating: false, count: g.nodes.count)
        for o in g.outputs { live[o.value.index] = true }
        for i in g.nodes.indices.reversed() {
            if g.nodes[i].op == .input { live[i] = true }
            if live[i] { for o in g.nodes[i].operands { live[o.index] = true } }
        }
        return compact(g, keeping: live)
    }
}
