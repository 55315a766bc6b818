import MoEIR

/// Computes each value once: a node that repeats an earlier node (same op, same operands, same
/// attributes, same type) is replaced by that earlier node. Every op of the IR is a pure function
/// of its operands and attributes (routing included: ties and seeds are part of the attributes),
/// so two such nodes always hold the same value. Inputs are the exception: each is its own value.
///
/// 1. Walk the nodes in order (operands come before their readers). Rewrite each node's operands
///    through the replacements made so far.
/// 2. Key the node by (op, operands, attributes, type); locations and source names are not part
///    of the key. Inputs are never keyed.
/// 3. If an earlier node has the key, the node is a duplicate: record the earlier node as its
///    replacement, and give the earlier node the duplicate's source locations (as a fused node
///    keeps all of its parts') and its name if it had none. Otherwise remember the key.
/// 4. Rewrite the outputs through the replacements and drop the duplicates, renumbering the rest
///    (`compact`). A graph without duplicates is returned as it is.
public struct CommonSubexpressionElimination: Pass {
    public static let name = "common-subexpression-elimination"
    public init() {}

    /// What makes two nodes the same value.
    private struct Key: Hashable {
        let op: Op
        let operands: [ValueID]
        let attributes: Attributes
        let type: IRType
    }

    public func run(_ g: Graph) throws -> Graph {
        var out = g
        var replacement = Array(g.nodes.indices)
        var first: [Key: Int] = [:]
        var keep = [Bool](repeating: true, count: g.nodes.count)
        for i in g.nodes.indices {
            var n = g.nodes[i]
            n.operands = n.operands.map { ValueID(replacement[$0.index]) }
            out.nodes[i].operands = n.operands
            guard n.op != .input else { continue }
            let key = Key(op: n.op, operands: n.operands, attributes: n.attributes, type: n.type)
            if let earlier = first[key] {
                replacement[i] = earlier
                keep[i] = false
                for l in n.locations where !out.nodes[earlier].locations.contains(l) { out.nodes[earlier].locations.append(l) }
                if out.nodes[earlier].name == nil { out.nodes[earlier].name = n.name }
            } else {
                first[key] = i
            }
        }
        guard keep.contains(false) else { return g }
        out.outputs = g.outputs.map { ($0.name, ValueID(replacement[$0.value.index])) }
        return compact(out, keeping: keep)
    }
}
