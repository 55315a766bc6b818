import MoEBasics

/// Prints a graph as text: params and weights first, then one node a line in SSA form with its
/// type and the source position it came from.
///
///     %probs = softmax %logits : f32[tokens, 8]                    # mixtral.moe:21:31
public struct IRPrinter {
    public var showLocations: Bool

    public init(showLocations: Bool = true) { self.showLocations = showLocations }

    public func print(_ g: Graph) -> String {
        let names = valueNames(g)
        var out = "graph \(g.name) {\n"
        for p in g.params {
            out += "  param \(p.name) = \(p.value)".padded(to: 44) + "# \(p.source)\n"
        }
        if !g.params.isEmpty { out += "\n" }
        for w in g.weights {
            out += "  weight @\(w.name): f32[\(w.shape.map(String.init).joined(separator: ", "))] = \"\(w.pattern)\""
            if let r = w.repeats { out += " repeat [\(r.map(String.init).joined(separator: ", "))]" }
            out += "\n"
        }
        if !g.weights.isEmpty { out += "\n" }
        for id in g.ids {
            let n = g[id]
            var line = "  \(names[id.index]) = \(n.op.rawValue)"
            var operandText: [String] = []
            switch n.op {
            case .input: operandText.append("\"\(n.attributes.string("name") ?? "?")\"")
            case .weight: operandText.append("@\(g.weights[n.attributes.int("index") ?? 0].name)")
            case .constant: operandText.append(Attribute.float(n.attributes.float("value") ?? 0).description)
            default: operandText = n.operands.map { names[$0.index] }
            }
            if !operandText.isEmpty { line += " " + operandText.joined(separator: ", ") }
            let shown = n.attributes.filter { !["name", "index", "value"].contains($0.key) || !n.op.isLeaf }
            if !shown.isEmpty {
                line += " {" + shown.map { "\($0.key) = \($0.value)" }.joined(separator: ", ") + "}"
            }
            line += " : " + format(n.type, g)
            if showLocations, !n.locations.isEmpty {
                line = line.padded(to: 72) + "# " + n.locations.map { short($0) }.joined(separator: ", ")
            }
            out += line + "\n"
        }
        for o in g.outputs {
            out += "  output \(o.name) = \(names[o.value.index])\n"
        }
        if let last = g.lastReaders, last.count == g.nodes.count {
            out += memoryPlan(g, last, names)
        }
        return out + "}\n"
    }

    /// The memory plan as "after step S, these values' arena bytes are free": weights and
    /// constants live outside the arena, and outputs are never freed.
    func memoryPlan(_ g: Graph, _ last: [Int], _ names: [String]) -> String {
        var freed: [Int: [String]] = [:]
        for id in g.ids where !g[id].op.isLeaf || g[id].op == .input {
            let s = last[id.index]
            if s < g.nodes.count { freed[s, default: []].append(names[id.index]) }
        }
        var out = "\n  memory (values whose arena bytes are free for reuse after a step)\n"
        for s in freed.keys.sorted() {
            out += "    after \(names[s]): " + freed[s]!.joined(separator: ", ") + "\n"
        }
        return out
    }

    public func format(_ t: IRType, _ g: Graph) -> String {
        switch t {
        case .tensor(let tt): return OpSchema.format(tt, tokens: g.tokensName)
        case .routing(let r): return "route[\(g.tokensName), \(r.slots) of \(r.experts)]"
        }
    }

    func short(_ r: SourceRange) -> String {
        let file = r.start.file.split(separator: "/").last.map(String.init) ?? r.start.file
        return "\(file):\(r.start.line):\(r.start.column)"
    }

    /// `%name` for values the source named (made unique), `%N` for the rest.
    public func valueNames(_ g: Graph) -> [String] {
        var used: Set<String> = []
        var names: [String] = []
        for id in g.ids {
            let n = g[id]
            var name = "%\(id.index)"
            if let given = n.name, n.op != .weight {
                var candidate = "%\(given)"
                var k = 1
                while used.contains(candidate) { candidate = "%\(given).\(k)"; k += 1 }
                name = candidate
            } else if n.op == .weight, let given = n.name {
                name = "%\(given)"
                var k = 1
                while used.contains(name) { name = "%\(given).\(k)"; k += 1 }
            }
            used.insert(name)
            names.append(name)
        }
        return names
    }
}

extension Op {
    var isLeaf: Bool { self == .input || self == .weight || self == .constant }
}

extension String {
    func padded(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
