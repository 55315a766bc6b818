import MoEBasics

/// Prints a graph as text: params and weights first, then one node a line in SSA form with its
/// type and the source range it came from (line, first column, end column; the end is exclusive).
///
///     %probs = softmax %logits : f32[tokens, 8]                    # mixtral.moe:21:31-38
///
/// `IRReader` reads the text back into the same graph. Locations name their file by its last
/// path component; the header's comment lists the full paths of the files shortened that way,
/// so nothing is lost (a file whose last component is ambiguous is printed in full).
public struct IRPrinter {
    public var showLocations: Bool

    public init(showLocations: Bool = true) { self.showLocations = showLocations }

    public func print(_ g: Graph) -> String {
        let names = valueNames(g)
        let files = SourceFileNames(g)
        var out = "graph \(g.name) {"
        if showLocations, !files.shortened.isEmpty { out = out.padded(to: 44) + "# " + files.shortened.joined(separator: ", ") }
        out += "\n"
        for p in g.params {
            out += "  param \(p.name) = \(Self.literal(p.value))".padded(to: 44) + "# \(p.source)\n"
        }
        if !g.params.isEmpty { out += "\n" }
        for w in g.weights {
            var line = "  weight @\(w.name): \(w.format.rawValue)[\(w.shape.map(String.init).joined(separator: ", "))] = \(Self.quoted(w.pattern))"
            if !w.layout.isEmpty { line += " layout \(Self.quoted(w.layout.text))" }
            if let r = w.repeats { line += " repeat [\(r.map(String.init).joined(separator: ", "))]" }
            if showLocations, let l = w.location { line = line.padded(to: 72) + "# " + files.format(l) }
            out += line + "\n"
        }
        if !g.weights.isEmpty { out += "\n" }
        for id in g.ids {
            let n = g[id]
            var line = "  \(names[id.index]) = \(n.op.rawValue)"
            var operandText: [String] = []
            switch n.op {
            case .input: operandText.append(Self.quoted(n.attributes.string("name") ?? "?"))
            case .weight: operandText.append("@\(g.weights[n.attributes.int("index") ?? 0].name)")
            case .constant: operandText.append(Attribute.float(n.attributes.float("value") ?? 0).description)
            default: operandText = n.operands.map { names[$0.index] }
            }
            if !operandText.isEmpty { line += " " + operandText.joined(separator: ", ") }
            let shown = n.attributes.filter { !["name", "index", "value"].contains($0.key) || !n.op.isLeaf }
            if !shown.isEmpty {
                line += " {" + shown.map { "\($0.key) = \(Self.literal($0.value))" }.joined(separator: ", ") + "}"
            }
            line += " : " + format(n.type, g)
            if showLocations, !n.locations.isEmpty {
                line = line.padded(to: 72) + "# " + n.locations.map(files.format).joined(separator: ", ")
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

    /// A string literal as the reader reads it: quotes, backslashes and line breaks escaped.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    static func literal(_ a: Attribute) -> String {
        if case .string(let s) = a { return quoted(s) }
        return a.description
    }

    static func literal(_ v: ParamBinding.Value) -> String {
        if case .string(let s) = v { return quoted(s) }
        return v.description
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

/// How locations name their files: by the last path component where that is unambiguous.
struct SourceFileNames {
    /// The files printed by their last component, in order of first use: the header lists them.
    var shortened: [String] = []
    private var shown: [String: String] = [:]

    init(_ g: Graph) {
        var files: [String] = []
        var seen: Set<String> = []
        for r in g.weights.compactMap(\.location) + g.nodes.flatMap(\.locations) where seen.insert(r.start.file).inserted {
            files.append(r.start.file)
        }
        var lastComponents: [String: Int] = [:]
        for f in files { lastComponents[Self.lastComponent(f), default: 0] += 1 }
        for f in files {
            let short = Self.lastComponent(f)
            // A file named like another's last component keeps its full name, so the reader
            // can tell them apart; so does one whose path would not read back from the header's list.
            if short != f, lastComponents[short] == 1, !seen.contains(short), !f.contains(", ") {
                shown[f] = short
                shortened.append(f)
            }
        }
    }

    static func lastComponent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), path.index(after: slash) < path.endIndex else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// `file:line:column-end`, `end` the column after the range.
    func format(_ r: SourceRange) -> String {
        "\(shown[r.start.file] ?? r.start.file):\(r.start.line):\(r.start.column)-\(r.start.column + r.length)"
    }
}

extension Op {
    var isLeaf: Bool { self == .input || self == .weight || self == .constant }
}
