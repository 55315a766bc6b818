import Foundation
import MoEBasics
import MoEIR
import MoESyntax

/// Where param values come from besides the source: the checkpoint's config.json and
/// `--set NAME=VALUE` on the command line.
public struct ParamSources: Sendable {
    /// The parsed config.json, if a model folder was given.
    public var config: JSONObject?
    /// How to name the config in messages ("model/config.json").
    public var configPath: String
    /// `--set` values in the order given, as typed text.
    public var overrides: [(name: String, value: String)]

    public init(config: JSONObject? = nil, configPath: String = "config.json", overrides: [(name: String, value: String)] = []) {
        self.config = config
        self.configPath = configPath
        self.overrides = overrides
    }

    /// Looks up a possibly dotted key ("text_config.hidden_size").
    func configValue(_ key: String) -> JSON? {
        guard let config else { return nil }
        if let v = config[key] { return v }
        var cur: JSON = .object(config)
        for part in key.split(separator: ".") {
            guard let next = cur[String(part)] else { return nil }
            cur = next
        }
        return cur
    }
}

// Params: each `param` gets its value from `--set`, config.json or its default, in that order.
extension ASTToIR {
    mutating func bindParams() {
        var declared: [String: ParamDecl] = [:]
        for d in ast.declarations {
            guard case .param(let p) = d else { continue }
            guard declare(p.name) else { continue }
            declared[p.name.name] = p
            do {
                let (value, source) = try resolve(p)
                params.append(ParamBinding(name: p.name.name, value: value, source: source))
                let v: Value
                switch value {
                case .int(let i): v = .int(i)
                case .float(let f): v = .float(f)
                case .bool(let b): v = .bool(b)
                case .string(let s): v = .string(s)
                case .null: v = .null
                }
                scope[p.name.name] = (v, p.name.range)
            } catch {
                report(error)
                scope[p.name.name] = (.poisoned, p.name.range)
            }
        }
        for o in sources.overrides where declared[o.name] == nil {
            let names = ast.declarations.compactMap { d -> String? in
                if case .param(let p) = d { return p.name.name }; return nil
            }
            var notes: [Diagnostic.Note] = []
            if let s = NameSuggestions.best(for: o.name, in: names) { notes.append(.init("did you mean '\(s)'?")) }
            notes.append(.init(names.isEmpty ? "\(ast.path) declares no params" : "the params of \(ast.path) are: " + names.joined(separator: ", ")))
            diagnostics.error("--set \(o.name)=\(o.value): no param named '\(o.name)'", at: nil, notes: notes)
        }
    }

    private func resolve(_ p: ParamDecl) throws(Diagnostic) -> (ParamBinding.Value, String) {
        let declaredType = p.type ?? p.defaultValue?.type
        if p.defaultValue == .null && !p.optional {
            throw .error(
                "default value null needs an optional type", at: p.defaultRange ?? p.name.range,
                notes: [.init("write 'param \(p.name.name): \(p.type?.rawValue ?? "int")? = null'")])
        }
        if let p2 = p.defaultValue, p2 != .null, let t = p.type, !compatible(p2, t) {
            throw .error("default value \(p2) does not have the declared type \(t.rawValue)", at: p.defaultRange ?? p.name.range)
        }
        if let o = sources.overrides.last(where: { $0.name == p.name.name }) {
            if p.optional && o.value == "null" { return (.null, "--set") }
            guard let v = parseOverride(o.value, as: declaredType) else {
                throw .error(
                    "--set \(o.name)=\(o.value): '\(o.value)' is not a valid \(declaredType?.rawValue ?? "value")", at: p.name.range,
                    notes: [.init("param '\(p.name.name)' is declared here")])
            }
            return (v, "--set")
        }
        for (n, key) in p.configKeys.enumerated() {
            guard var j = sources.configValue(key.key) else { continue }
            var index = key.index
            if let name = key.indexName {
                switch scope[name]?.value {
                case .int(let i)?: index = i
                case .poisoned?: throw ASTToIR.alreadyReported
                case nil:
                    throw .error(
                        "unknown param '\(name)' in the index of \(key.written)", at: key.indexRange ?? key.range,
                        notes: [.init("an index names an int param declared before this one")])
                default: throw .error("param '\(name)' is not an integer, so it cannot index \(key.written)", at: key.indexRange ?? key.range)
                }
            }
            if let i = index {
                // An indexed key reads a list; a config that holds one value for every layer
                // instead is read by a later, unindexed key: `"moe_topk"[layer], "moe_topk"`.
                if j.array == nil && n < p.configKeys.count - 1 { continue }
                guard case .array(let items) = j else {
                    throw .error(
                        "\(sources.configPath): key \"\(key.key)\" is \(j.compact), not a list, so it has no element [\(i)]", at: key.indexRange ?? key.range)
                }
                guard i >= 0, i < items.count else {
                    throw .error(
                        "\(sources.configPath): key \"\(key.key)\" has \(items.count) element\(items.count == 1 ? "" : "s"); index \(i) is out of range",
                        at: key.indexRange ?? key.range, notes: [.init("the list is \(j.compact)")])
                }
                j = items[i]
            }
            let source = "\(sources.configPath.split(separator: "/").last.map(String.init) ?? "config.json"):\(key.key)" + (index.map { "[\($0)]" } ?? "")
            if j.isNull {
                guard p.optional else {
                    throw .error(
                        "\(sources.configPath): key \(key.written) is null, but param '\(p.name.name)' is \(article(declaredType))", at: key.range,
                        notes: [
                            .init("declare it '\(p.name.name): \(declaredType?.rawValue ?? "int")?' to accept null, and test it with 'if \(p.name.name) != null'")
                        ])
                }
                return (.null, source)
            }
            guard let v = convert(j, to: declaredType) else {
                var notes: [Diagnostic.Note] = []
                if case .array = j, index == nil { notes.append(.init("the key holds a list: pick an element with \(key.written)[0]")) }
                throw .error("\(sources.configPath): key \(key.written) is \(j.compact), not \(article(declaredType))", at: key.range, notes: notes)
            }
            return (v, source)
        }
        if let config = sources.config, !p.configKeys.isEmpty {
            // The config lacks every key. A near miss is almost certainly a typo in the graph.
            let keys = Array(config.keys)
            for configKey in p.configKeys {
                if let near = NameSuggestions.best(for: configKey.key, in: keys) {
                    throw .error(
                        "\(sources.configPath) has no key \"\(configKey.key)\"", at: configKey.range,
                        notes: [.init("did you mean \"\(near)\"?")])
                }
            }
            if p.defaultValue != nil {
                let list = p.configKeys.map { "\"\($0.key)\"" }.joined(separator: ", ")
                diagnostics.emit(
                    .warning(
                        "\(sources.configPath) has no key \(list); '\(p.name.name)' takes its default \(p.defaultValue!)",
                        at: p.configKeys[0].range))
            }
        }
        if let d = p.defaultValue {
            let v: ParamBinding.Value
            switch (d, declaredType) {
            case (.int(let i), .float?): v = .float(Double(i))
            case (.int(let i), _): v = .int(i)
            case (.float(let f), _): v = .float(f)
            case (.bool(let b), _): v = .bool(b)
            case (.string(let s), _): v = .string(s)
            case (.null, _): v = .null
            }
            return (v, "default")
        }
        let keys = p.configKeys.map { "\"\($0.key)\"" }.joined(separator: ", ")
        if sources.config == nil {
            throw .error(
                "param '\(p.name.name)' has no value", at: p.name.range,
                notes: [
                    .init(
                        p.configKeys.isEmpty
                            ? "give it a default or pass --set \(p.name.name)=VALUE"
                            : "it is read from config.json (\(keys)): pass --model DIR, or --set \(p.name.name)=VALUE")
                ])
        }
        throw .error(
            "param '\(p.name.name)' has no value: \(sources.configPath) has no key \(keys) and the param has no default",
            at: p.configKeys.first?.range ?? p.name.range,
            notes: [.init("pass --set \(p.name.name)=VALUE or add a default")])
    }

    private func article(_ t: ParamType?) -> String {
        switch t {
        case .int?: return "an integer"
        case .float?: return "a number"
        case .bool?: return "a boolean"
        case .string?: return "a string"
        case nil: return "a value"
        }
    }

    private func compatible(_ l: Literal, _ t: ParamType) -> Bool {
        switch (l, t) {
        case (.int, .int), (.int, .float), (.float, .float), (.bool, .bool), (.string, .string): return true
        default: return false
        }
    }

    private func convert(_ j: JSON, to t: ParamType?) -> ParamBinding.Value? {
        switch t {
        case .int?: return j.int.map { .int($0) }
        case .float?: return j.double.map { .float($0) }
        case .bool?: return j.bool.map { .bool($0) }
        case .string?: return j.string.map { .string($0) }
        case nil:
            if let i = j.int { return .int(i) }
            if let d = j.double { return .float(d) }
            if let b = j.bool { return .bool(b) }
            if let s = j.string { return .string(s) }
            return nil
        }
    }

    private func parseOverride(_ text: String, as t: ParamType?) -> ParamBinding.Value? {
        switch t {
        case .int?: return Int(text.replacingOccurrences(of: "_", with: "")).map { .int($0) }
        case .float?: return Double(text).flatMap { $0.isFinite ? .float($0) : nil }
        case .bool?:
            switch text.lowercased() {
            case "true", "1", "yes": return .bool(true)
            case "false", "0", "no": return .bool(false)
            default: return nil
            }
        case .string?: return .string(text)
        case nil:
            if let i = Int(text) { return .int(i) }
            if let d = Double(text) { return .float(d) }
            if text == "true" || text == "false" { return .bool(text == "true") }
            return .string(text)
        }
    }
}
