import MoEIR

/// Memory planning: buffer liveness over the final node order, recorded in the graph
/// (`Graph.lastReaders`) for the executor's arena.
///
/// 1. A value is live from the node that computes it (inputs: from the start of the run) to its
///    last reader; graph outputs live to the end (they are copied out after the last step).
/// 2. Walking the nodes once, each operand's last reader is the latest node that reads it.
///
/// The executor then lays out, per token count, one arena in which values whose lifetimes do not
/// overlap share bytes (`ArenaPlanner`: largest first, lowest free offset; a step's scratch is
/// live during its step only). `--emit ir-opt` lists what is freed after each step, and
/// `--emit plan` the arena's bytes, the bytes without reuse, and the peak of live bytes at a few
/// token counts.
///
/// Without it (`--disable-pass memory-planning`) the plan has no liveness and every value keeps
/// its own bytes for the whole run: the arena is the sum of all buffers.
///
/// Runs last: a pass that changes the node list afterwards drops the plan (see `compact`).
public struct MemoryPlanning: Pass {
    public static let name = "memory-planning"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        g.lastReaders = Self.lastReaders(graph)
        return g
    }

    /// Per node, the index of its value's last reader (`nodes.count` for outputs, its own index
    /// when unread).
    public static func lastReaders(_ g: Graph) -> [Int] {
        var last = Array(g.nodes.indices)
        for (i, n) in g.nodes.enumerated() { for o in n.operands { last[o.index] = max(last[o.index], i) } }
        for o in g.outputs { last[o.value.index] = g.nodes.count }
        return last
    }
}
