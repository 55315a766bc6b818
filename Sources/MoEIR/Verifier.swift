import MoEBasics

/// Checks the invariants every graph must keep, before and after every pass:
///
/// 1. Operands refer to earlier nodes (the node list is a topological order).
/// 2. Every computed node's type is exactly what `OpSchema` derives from its operands.
/// 3. Leaf nodes are well formed: inputs are named tensors with unique names; weight nodes
///    refer to an entry of the weight table and have its shape; constants are f32 scalars.
///    Every weight table entry and every input (per token) is small enough to address
///    (`Addressable`); `OpSchema` holds computed values to the same limit.
/// 4. At most one dimension symbol exists (the token count) and it appears only where
///    tokens can vary: the first dimension of inputs.
/// 5. Outputs name existing tensor values (not routings), with unique names, and there is
///    at least one.
/// 6. The `moe_experts` nodes of one multi-hop block (the same `block` attribute) are its hops:
///    their `hop` attributes count 0, 1, … in graph order, and each hop has the same number of
///    experts (they share the expert weights; see `MoELayer`).
///
/// 7. A MoE block marked `prepacked` has only weights as expert matrices (computed ones cannot be
///    packed at load time).
/// 8. A memory plan (`lastReaders`, from `memory-planning`) frees no value before a reader:
///    each entry lies between its node and the end of the run, no node reads a value after its
///    last reader, and graph outputs live to the end.
///
/// Problems are collected, not thrown at the first one, and name the node:
/// `%5 (linear): recorded type f32[tokens, 8] but operands give f32[tokens, 16]`.
public enum Verifier {
    public static func verify(_ g: Graph) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        let printer = IRPrinter(showLocations: false)
        let names = printer.valueNames(g)
        func report(_ id: ValueID?, _ message: String) {
            let prefix = id.map { "\(names[$0.index]) (\(g[$0].op.rawValue)): " } ?? ""
            problems.append(.error(prefix + message, at: id.flatMap { g[$0].location }))
        }
        for w in g.weights where !w.isAddressable {
            problems.append(
                .error(
                    "weight @\(w.name): the shape \(w.shape) has more elements than moec can address", at: w.location,
                    notes: [.init(Addressable.limitNote)]))
        }
        var inputNames: Set<String> = []
        for id in g.ids {
            let n = g[id]
            for o in n.operands where o.index >= id.index || o.index < 0 {
                report(id, "operand \(o) is not defined before its use")
            }
            if n.operands.contains(where: { $0.index >= id.index || $0.index < 0 }) { continue }
            switch n.op {
            case .input:
                guard let name = n.attributes.string("name") else { report(id, "input without a name"); continue }
                if !inputNames.insert(name).inserted { report(id, "duplicate input name '\(name)'") }
                guard let t = n.tensorType else { report(id, "input must be a tensor"); continue }
                if t.shape.dropFirst().contains(.tokens) {
                    report(id, "the token dimension may only be the first dimension of an input")
                }
                if t.addressableElementsPerToken == nil {
                    report(id, "the shape \(printer.format(n.type, g)) has more elements per token than moec can address")
                }
            case .weight:
                guard let i = n.attributes.int("index"), g.weights.indices.contains(i) else {
                    report(id, "weight node refers to no entry of the weight table"); continue
                }
                let expected = IRType.tensor(TensorType(.f32, g.weights[i].shape.map { .fixed($0) }))
                if n.type != expected {
                    report(id, "weight @\(g.weights[i].name) has type \(printer.format(n.type, g)) but its table entry is \(printer.format(expected, g))")
                }
                let w = g.weights[i]
                if let group = w.format.group, (w.shape.last ?? 0) % group != 0 {
                    report(id, "weight @\(w.name) is \(w.format.rawValue), whose groups of \(group) values do not divide its rows of \(w.shape.last ?? 0)")
                }
            case .constant:
                if n.attributes.float("value") == nil { report(id, "constant without a value") }
                if n.type != .tensor(TensorType(.f32, [])) { report(id, "constant must be an f32 scalar") }
            default:
                do {
                    let derived = try OpSchema.resultType(n.op, n.operands.map { g[$0].type }, n.attributes)
                    if derived != n.type {
                        report(id, "recorded type \(printer.format(n.type, g)) but operands give \(derived.map { printer.format($0, g) } ?? "none")")
                    }
                } catch {
                    report(id, error.message)
                }
            }
        }
        var outputNames: Set<String> = []
        if g.outputs.isEmpty { report(nil, "graph '\(g.name)' has no outputs") }
        for o in g.outputs {
            if !outputNames.insert(o.name).inserted { report(nil, "duplicate output name '\(o.name)'") }
            guard g.nodes.indices.contains(o.value.index) else { report(nil, "output '\(o.name)' refers to no value"); continue }
            if g[o.value].type.routing != nil { report(o.value, "output '\(o.name)' is a routing, not a tensor") }
        }
        var hopsSeen: [String: (count: Int, experts: Int?)] = [:]
        for id in g.ids where g[id].op == .moe_experts {
            let n = g[id]
            guard let block = n.attributes.string("block") else { continue }
            let seen = hopsSeen[block] ?? (0, nil)
            let routing = n.operands.count > 1 && (0..<id.index).contains(n.operands[1].index) ? g[n.operands[1]].type.routing : nil
            if n.attributes.int("hop") != seen.count {
                report(id, "moe block '\(block)': expected hop \(seen.count) here, found \(n.attributes.int("hop").map { "hop \($0)" } ?? "no hop attribute")")
            }
            if let first = seen.experts, let e = routing?.experts, e != first {
                report(id, "moe block '\(block)': this hop has \(e) experts but the block's first hop has \(first)")
            }
            hopsSeen[block] = (seen.count + 1, seen.experts ?? routing?.experts)
        }
        for (id, experts) in g.expertsNodes where experts.has(.prepacked) {
            for m in experts.matrices where g.nodes.indices.contains(m.index) && g[m].op != .weight {
                report(id, "marked prepacked, but its expert matrix \(names[m.index]) is computed, not a weight")
            }
        }
        if let last = g.lastReaders {
            if last.count != g.nodes.count {
                report(nil, "the memory plan lists \(last.count) values but the graph has \(g.nodes.count)")
            } else {
                for id in g.ids where !(id.index...g.nodes.count).contains(last[id.index]) {
                    report(id, "the memory plan frees this value at step \(last[id.index]), outside \(id.index)...\(g.nodes.count)")
                }
                for id in g.ids {
                    for o in g[id].operands where g.nodes.indices.contains(o.index) && last[o.index] < id.index {
                        report(id, "reads \(names[o.index]), whose memory the plan frees after step \(last[o.index])")
                    }
                }
                for o in g.outputs where g.nodes.indices.contains(o.value.index) && last[o.value.index] != g.nodes.count {
                    report(o.value, "output '\(o.name)' must live to the end of the run, but the memory plan frees it after step \(last[o.value.index])")
                }
            }
        }
        return problems
    }
}
