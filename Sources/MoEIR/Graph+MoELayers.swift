/// One source-level moe block: the unit that load statistics, `moec place` and placed runs call a
/// MoE layer.
///
/// A block is usually one `moe_experts` node. A multi-hop block (`hops: n`) is lowered to n
/// `moe_experts` nodes, one per hop, which all read the same expert weights: the same experts,
/// so one layer. Those nodes carry the attributes `block` (the block's name, unique in the
/// graph) and `hop` (0 ..< n); nodes without `block` are layers of their own.
public struct MoELayer: Sendable, Equatable {
    /// The block's name: the `block` attribute of a multi-hop block (the binding it was
    /// lowered in, `let y = moe(…)`), else the node's name, else its value (`%9`).
    public var name: String
    /// The layer's `moe_experts` nodes, one per hop, in hop (and graph) order.
    public var nodes: [ValueID]
    /// The position of each of `nodes` among all `moe_experts` nodes of the graph, in graph
    /// order: its index in `Schedule.lastExpertLoads()`.
    public var nodePositions: [Int]
    /// Experts of the block (of its first hop; the verifier checks every hop has as many).
    public var experts: Int

    public var hops: Int { nodes.count }
}

extension Graph {
    /// The graph's MoE layers in the order of their first node, which is the order of the
    /// blocks in the source.
    public var moeLayers: [MoELayer] {
        var layers: [MoELayer] = []
        var layerOfBlock: [String: Int] = [:]
        var position = 0
        for id in ids where self[id].op == .moe_experts {
            defer { position += 1 }
            let n = self[id]
            let block = n.attributes.string("block")
            if let block, let l = layerOfBlock[block] {
                layers[l].nodes.append(id)
                layers[l].nodePositions.append(position)
                continue
            }
            let experts = self[n.operands[1]].type.routing?.experts ?? n.attributes.int("experts") ?? 0
            if let block {
                layerOfBlock[block] = layers.count
                layers.append(MoELayer(name: block, nodes: [id], nodePositions: [position], experts: experts))
            } else {
                layers.append(MoELayer(name: n.name ?? id.description, nodes: [id], nodePositions: [position], experts: experts))
            }
        }
        return layers
    }
}
