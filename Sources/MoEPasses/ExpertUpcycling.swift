import MoEBasics
import MoEIR

/// Expert upcycling as a graph rewrite: a block with `upcycle: counts` gets `Σ counts`
/// experts, expert e copied `counts[e]` times, and a router extended to match; top-k is
/// unchanged (Expert Upcycling: E → m·E experts by duplication with router extension).
///
/// 1. Find the weights indexed by expert: the block's expert weights, and every weight
///    feeding its router whose first dimension is the expert count (gate rows, selection
///    bias, centroids).
/// 2. Give each a copy in the weight table with `repeats = counts` (slices repeated at load
///    time; nothing is copied in the checkpoint) and point the readers at the copy.
/// 3. Recompute types downstream, set the block's expert count, drop the `upcycle` attribute.
///
/// Indices in `force:`/`disable:` refer to experts after upcycling.
public struct ExpertUpcycling: Pass {
    public static let name = "expert-upcycling"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        for i in g.nodes.indices where g.nodes[i].op == .moe_experts {
            guard let counts = g.nodes[i].expertsView?.upcycle else { continue }
            let experts = counts.count
            let total = counts.reduce(0 as Int?) { sum, c in
                guard let sum else { return nil }
                let (t, overflow) = sum.addingReportingOverflow(c)
                return overflow ? nil : t
            }
            guard let total, total <= Addressable.maxElements else {
                throw DiagnosticError(.error("upcycle: the copy counts add up to more experts than moec can address", at: g.nodes[i].location))
            }
            // 1. Expert-indexed weights: expert weights, and router weights with leading dim E.
            var targets: Set<Int> = []
            let n = g.nodes[i]
            let block = n.expertsView!
            for o in block.expertWeights where g[o].op == .weight { targets.insert(o.index) }
            var stack = [block.routing.index]
            var seen: Set<Int> = []
            while let v = stack.popLast() {
                guard seen.insert(v).inserted else { continue }
                let node = g.nodes[v]
                if node.op == .weight, node.tensorType?.shape.first == .fixed(experts) { targets.insert(v) }
                stack += node.operands.map(\.index)
            }
            // 2. Repeated copies of those weights, read by this block's nodes.
            var replacement: [Int: ValueID] = [:]
            for t in targets.sorted() {
                let index = g.nodes[t].attributes.int("index")!
                var info = g.weights[index]
                guard info.repeats == nil else {
                    throw DiagnosticError(.error("weight '\(info.name)' is upcycled twice", at: n.location))
                }
                info.repeats = counts
                info.shape[0] = total
                guard info.isAddressable else {
                    throw DiagnosticError(
                        .error(
                            "upcycling gives weight '\(info.name)' the shape \(info.shape), which has more elements than moec can address",
                            at: n.location, notes: [.init(Addressable.limitNote)]))
                }
                info.name += ".upcycled"
                g.weights.append(info)
                var node = g.nodes[t]
                node.attributes["index"] = .int(g.weights.count - 1)
                node.type = .tensor(TensorType(.f32, info.shape.map { .fixed($0) }))
                node.name = info.name
                g.nodes.append(node) // placed at the end for now; moved below
                replacement[t] = ValueID(g.nodes.count - 1)
            }
            for v in seen.union([i]) {
                g.nodes[v].operands = g.nodes[v].operands.map { replacement[$0.index] ?? $0 }
            }
            g.nodes[i].attributes["experts"] = .int(total)
            g.nodes[i].attributes["upcycle"] = nil
            g = moveLeavesFirst(g)
        }
        do { try g.reinferTypes() } catch { throw DiagnosticError(error) }
        return g
    }

    /// Restores topological order after appending weight nodes: leaf nodes go first.
    private func moveLeavesFirst(_ g: Graph) -> Graph {
        let order =
            g.nodes.indices.filter { g.nodes[$0].op == .weight || g.nodes[$0].op == .input }
            + g.nodes.indices.filter { g.nodes[$0].op != .weight && g.nodes[$0].op != .input }
        var position = [Int](repeating: 0, count: g.nodes.count)
        for (p, i) in order.enumerated() { position[i] = p }
        var out = g
        out.nodes = order.map { i in
            var n = g.nodes[i]
            n.operands = n.operands.map { ValueID(position[$0.index]) }
            return n
        }
        out.outputs = g.outputs.map { ($0.name, ValueID(position[$0.value.index])) }
        return out
    }
}
