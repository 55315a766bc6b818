import MoEBasics

/// Prints a syntax tree back as canonical `.moe` text, each declaration followed by the
/// position it was parsed from. Printing what was parsed and parsing what was printed gives
/// the same tree, which the tests use to check the parser.
public struct ASTPrinter {
    public var showLocations: Bool

    public init(showLocations: Bool = true) { self.showLocations = showLocations }

    public func print(_ file: SourceFileAST) -> String {
        var out = ""
        for d in file.declarations {
            var line = declaration(d)
            if showLocations {
                let loc = d.range.start
                line += "  # \(loc.line):\(loc.column)"
            }
            out += line + "\n"
        }
        return out
    }

    public func declaration(_ d: Declaration) -> String {
        switch d {
        case .model(let id):
            return "model \(id.name)"
        case .param(let p):
            var s = "param \(p.name.name)"
            if let t = p.type { s += ": \(t.rawValue)" + (p.optional ? "?" : "") }
            if let v = p.defaultValue { s += " = \(v)" }
            if !p.configKeys.isEmpty {
                s += " from " + p.configKeys.map { quote($0.key) + $0.writtenIndex }.joined(separator: ", ")
            }
            return s
        case .input(let i):
            return "input \(i.name.name): \(i.elementType == .f32 ? "" : i.elementType.rawValue)\(shape(i.shape))"
        case .weight(let w):
            var s = "weight \(w.name.name): \(shape(w.shape)) = \(quote(w.pattern))"
            for step in w.layout {
                s += " |> \(step.callee.name)"
                if !step.arguments.isEmpty { s += "(" + arguments(step.arguments, indent: "") + ")" }
            }
            if let f = w.format { s += " as \(f.name)" }
            return s
        case .let(let l):
            return "let \(l.name.name) = \(expr(l.value))"
        case .output(let o):
            return "output \(o.name.name)" + (o.value.map { " = \(expr($0))" } ?? "")
        }
    }

    func shape(_ dims: [Expr]) -> String {
        "[" + dims.map { expr($0) }.joined(separator: ", ") + "]"
    }

    func quote(_ s: String) -> String {
        var out = "\""
        for c in s {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    /// Expressions print fully parenthesised where precedence matters, so the printed text
    /// shows how the parser grouped them.
    public func expr(_ e: Expr, indent: String = "") -> String {
        switch e {
        case .int(let v, _): return String(v)
        case .float(let v, _): return String(v)
        case .string(let s, _): return quote(s)
        case .bool(let b, _): return String(b)
        case .null: return "null"
        case .name(let id): return id.name
        case .list(let items, _): return "[" + items.map { expr($0, indent: indent) }.joined(separator: ", ") + "]"
        case .negate(let inner, _): return "-" + atom(inner, indent: indent)
        case .binary(let op, let l, let r, _):
            return "(\(expr(l, indent: indent)) \(op.rawValue) \(expr(r, indent: indent)))"
        case .call(let c):
            if c.piped, let first = c.arguments.first {
                var s = "\(expr(first.value, indent: indent)) |> \(c.callee.name)"
                let rest = Array(c.arguments.dropFirst())
                if !rest.isEmpty { s += "(" + arguments(rest, indent: indent) + ")" }
                if let cond = c.condition { s += " if \(expr(cond, indent: indent))" }
                return s
            }
            return "\(c.callee.name)(\(arguments(c.arguments, indent: indent)))"
        case .moe(let m):
            var s = "moe(\(expr(m.input, indent: indent))) {\n"
            for f in m.fields {
                s += indent + "  \(f.name.name): \(expr(f.value, indent: indent + "  "))"
                if let k = f.kind { s += " of \(k.callee.name)(\(arguments(k.arguments, indent: indent + "  ")))" }
                if let body = f.body {
                    s += " {\n"
                    for l in body.lets { s += indent + "    let \(l.name.name) = \(expr(l.value, indent: indent + "    "))\n" }
                    s += indent + "    \(expr(body.result, indent: indent + "    "))\n" + indent + "  }"
                }
                if let c = f.condition { s += " if \(expr(c, indent: indent + "  "))" }
                for g in f.moreGroups {
                    s += ", \(expr(g.count, indent: indent + "  ")) of \(g.kind.callee.name)"
                    if !g.kind.arguments.isEmpty || g.body != nil { s += "(\(arguments(g.kind.arguments, indent: indent + "  ")))" }
                    if let body = g.body {
                        s += " {\n"
                        for l in body.lets { s += indent + "    let \(l.name.name) = \(expr(l.value, indent: indent + "    "))\n" }
                        s += indent + "    \(expr(body.result, indent: indent + "    "))\n" + indent + "  }"
                    }
                }
                s += "\n"
            }
            return s + indent + "}"
        }
    }

    private func atom(_ e: Expr, indent: String) -> String {
        switch e {
        case .call(let c) where c.piped: return "(\(expr(e, indent: indent)))"
        default: return expr(e, indent: indent)
        }
    }

    private func arguments(_ args: [Argument], indent: String) -> String {
        args.map { a in
            let v = a.value
            let text: String
            if case .call(let c) = v, c.piped { text = "(\(expr(v, indent: indent)))" } else { text = expr(v, indent: indent) }
            return (a.label.map { "\($0.name): " } ?? "") + text
        }.joined(separator: ", ")
    }
}
