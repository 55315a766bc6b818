import MoEIR

/// A graph-to-graph transformation. Passes keep source locations (a fused node keeps all of
/// its parts' locations) and leave a graph the verifier accepts.
public protocol Pass: Sendable {
    /// The name shown in pass listings and verifier failures.
    static var name: String { get }
    func run(_ graph: Graph) throws -> Graph
}

/// `graph` with `mark` on every `moe_experts` node for which `condition` holds: how the expert
/// passes leave their decisions for the executor.
func markingExperts(_ graph: Graph, _ mark: ExpertPassMark, where condition: (ExpertsNode) -> Bool = { _ in true }) -> Graph {
    var g = graph
    for (id, experts) in graph.expertsNodes where condition(experts) {
        g[id].setMark(mark)
    }
    return g
}

/// Rebuilds a graph keeping only `keep` nodes, renumbering operands and outputs.
public func compact(_ g: Graph, keeping keep: [Bool]) -> Graph {
    var map = [Int](repeating: -1, count: g.nodes.count)
    var out = g
    out.nodes = []
    for (i, n) in g.nodes.enumerated() where keep[i] {
        var n = n
        n.operands = n.operands.map { ValueID(map[$0.index]) }
        map[i] = out.nodes.count
        out.nodes.append(n)
    }
    out.outputs = g.outputs.map { ($0.name, ValueID(map[$0.value.index])) }
    out.lastReaders = nil // node indices changed: plan memory again (`MemoryPlanning`)
    // Drop weight-table entries no node reads any more, renumbering the rest.
    var used = Set<Int>()
    for n in out.nodes where n.op == .weight { if let i = n.attributes.int("index") { used.insert(i) } }
    if used.count != out.weights.count {
        var wmap: [Int: Int] = [:]
        var weights: [WeightInfo] = []
        for (i, w) in out.weights.enumerated() where used.contains(i) { wmap[i] = weights.count; weights.append(w) }
        out.weights = weights
        for i in out.nodes.indices where out.nodes[i].op == .weight {
            out.nodes[i].attributes["index"] = .int(wmap[out.nodes[i].attributes.int("index")!]!)
        }
    }
    return out
}
