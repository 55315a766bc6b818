import MoEBasics
import MoEIR
import MoESyntax

/// A call's arguments by parameter name, evaluated on demand with the expected kind.
struct BoundArguments {
    let function: String
    let at: SourceRange
    var args: [String: Expr] = [:]

    init(function: String, at: SourceRange) {
        self.function = function
        self.at = at
    }

    /// Binds a call's arguments to `params`: the first `positional` may be given by position,
    /// all by label, none twice.
    static func bind(_ c: Call, params: [String], positional: Int) throws(Diagnostic) -> BoundArguments {
        var bound = BoundArguments(function: c.callee.name, at: c.callee.range)
        var next = 0
        for a in c.arguments {
            if params.isEmpty {
                throw .error("'\(c.callee.name)' takes no arguments", at: a.label?.range ?? a.value.range)
            }
            let name: String
            if let label = a.label {
                guard params.contains(label.name) else {
                    var notes: [Diagnostic.Note] = [.init("'\(c.callee.name)' takes " + params.map { "\($0):" }.joined(separator: ", "))]
                    if let s = NameSuggestions.best(for: label.name, in: params) { notes.insert(.init("did you mean '\(s):'?"), at: 0) }
                    throw .error("'\(c.callee.name)' has no argument '\(label.name)'", at: label.range, notes: notes)
                }
                name = label.name
            } else {
                guard next < min(positional, params.count) else {
                    throw .error(
                        "too many unlabelled arguments to '\(c.callee.name)'", at: a.value.range,
                        notes: [.init("label the argument, e.g. '\(params[min(next, params.count - 1)]): …'")])
                }
                name = params[next]
            }
            if let prev = bound.args[name] {
                throw .error(
                    "argument '\(name)' of '\(c.callee.name)' is given twice", at: a.label?.range ?? a.value.range,
                    notes: [.init("first given here", at: prev.range)])
            }
            bound.args[name] = a.value
            if a.label == nil { next += 1 } else { next = max(next, (params.firstIndex(of: name) ?? next) + 1) }
        }
        return bound
    }

    func has(_ name: String) -> Bool { args[name] != nil }

    private func missing(_ name: String) -> Diagnostic {
        .error("'\(function)' needs an argument '\(name)'", at: at)
    }

    func raw(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ASTToIR.Value {
        guard let e = args[name] else { throw missing(name) }
        let v = try l.lower(e)
        if case .poisoned = v { throw ASTToIR.alreadyReported }
        return v
    }

    /// A tensor or routing value.
    func value(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ValueID {
        try value(name, from: try raw(name, &l), l)
    }

    /// `v`, argument `name` already lowered (`raw`), as a tensor or routing value: for builtins
    /// that look at the value before deciding what it must be, so it is lowered only once (a
    /// chain of such calls would otherwise lower its innermost argument 2ⁿ times).
    func value(_ name: String, from v: ASTToIR.Value, _ l: ASTToIR) throws(Diagnostic) -> ValueID {
        guard let e = args[name] else { throw missing(name) }
        switch v {
        case .tensor(let id): return id
        case .symbol:
            if case .name(let id) = e { throw l.unknownName(id, expecting: "a tensor") }
            throw .error("expected a tensor", at: e.range)
        default:
            throw .error("argument '\(name)' of '\(function)' must be a tensor, not a compile-time value", at: e.range)
        }
    }

    func tensor(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ValueID {
        try tensor(name, from: try raw(name, &l), l)
    }

    /// `v`, argument `name` already lowered, as a tensor (see `value(_:from:_:)`).
    func tensor(_ name: String, from v: ASTToIR.Value, _ l: ASTToIR) throws(Diagnostic) -> ValueID {
        let id = try value(name, from: v, l)
        if l.isRouting(id) {
            throw .error(
                "argument '\(name)' of '\(function)' must be a tensor, but it is a routing", at: args[name]!.range,
                notes: [.init("a routing (after topk) feeds routing stages and a moe block's router")])
        }
        return id
    }

    func optionalTensor(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ValueID? {
        has(name) ? try tensor(name, &l) : nil
    }

    func routing(_ name: String, _ l: inout ASTToIR, stage: String) throws(Diagnostic) -> ValueID {
        let id = try value(name, &l)
        guard l.isRouting(id) else {
            throw .error(
                "'\(stage)' applies to a routing (after an expert selection), but its input is a tensor", at: at,
                notes: [.init("select experts first, e.g. '|> topk(k) |> \(stage)'")])
        }
        return id
    }

    func number(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> Double {
        guard let e = args[name] else { throw missing(name) }
        switch try raw(name, &l) {
        case .int(let i): return Double(i)
        case .float(let f): return f
        case .symbol(let s) where s == "inf": return .infinity
        case .symbol:
            if case .name(let id) = e { throw l.unknownName(id, expecting: "a number") }
            throw .error("expected a number", at: e.range)
        case .null: throw l.nullUse(e, expecting: "a number")
        default: throw .error("argument '\(name)' of '\(function)' must be a number known at compile time", at: e.range)
        }
    }

    func optionalNumber(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> Double? {
        has(name) ? try number(name, &l) : nil
    }

    func int(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> Int {
        guard let e = args[name] else { throw missing(name) }
        switch try raw(name, &l) {
        case .int(let i): return i
        case .float(let f) where f == f.rounded() && abs(f) < 1e15: return Int(f)
        case .symbol:
            if case .name(let id) = e { throw l.unknownName(id, expecting: "an integer") }
            throw .error("expected an integer", at: e.range)
        case .null: throw l.nullUse(e, expecting: "an integer")
        default: throw .error("argument '\(name)' of '\(function)' must be an integer known at compile time", at: e.range)
        }
    }

    func optionalInt(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> Int? {
        has(name) ? try int(name, &l) : nil
    }

    /// A compile-time `true` or `false` (a bool param), or nil when the argument is absent.
    func optionalBool(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> Bool? {
        guard let e = args[name] else { return nil }
        switch try raw(name, &l) {
        case .bool(let b): return b
        case .null: throw l.nullUse(e, expecting: "true or false")
        default: throw .error("argument '\(name)' of '\(function)' must be true or false", at: e.range)
        }
    }

    /// A list of integers (`[3, 5]`) or a single integer.
    func optionalInts(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> [Int]? {
        guard let e = args[name] else { return nil }
        switch try raw(name, &l) {
        case .ints(let v): return v
        case .int(let v): return [v]
        case .null: throw l.nullUse(e, expecting: "a list of integers")
        default: throw .error("argument '\(name)' of '\(function)' must be a list of integers, e.g. [0, 3]", at: e.range)
        }
    }

    /// A bare word from a fixed set (`act: gelu`), or a string param holding one.
    func symbol(_ name: String, _ l: inout ASTToIR, among choices: [String]) throws(Diagnostic) -> String {
        guard let e = args[name] else { throw missing(name) }
        var word: String
        switch try raw(name, &l) {
        case .symbol(let s), .string(let s): word = s
        default: throw .error("argument '\(name)' must be one of " + choices.joined(separator: ", "), at: e.range)
        }
        // Hugging Face's names for the same activations (config.json "hidden_act" values).
        let aliases = ["gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"]
        if !choices.contains(word), let a = aliases[word], choices.contains(a) { word = a }
        guard choices.contains(word) else {
            var notes: [Diagnostic.Note] = [.init("choose one of " + choices.joined(separator: ", "))]
            if let s = NameSuggestions.best(for: word, in: choices) { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
            throw .error("unknown \(name) '\(word)'", at: e.range, notes: notes)
        }
        return word
    }
}
