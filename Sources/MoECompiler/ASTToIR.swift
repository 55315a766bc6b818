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

/// Gives a syntax tree meaning: resolves params, evaluates shapes, binds names, checks types
/// with `OpSchema` and builds the IR graph. Every error points into the `.moe` source; errors
/// in one declaration do not stop the others from being checked.
public struct ASTToIR {
    /// A name's meaning while lowering.
    enum Value {
        case tensor(ValueID)            // a tensor or a routing in the graph
        case int(Int)
        case float(Double)
        case bool(Bool)
        case string(String)
        case symbol(String)             // a bare word that names nothing (an enum-like argument: act: gelu)
        case poisoned                   // its definition failed; uses stay quiet
        case declaredWeight             // a weight not yet read (it becomes a node on first use)
        case ints([Int])                // a list of integers: [3, 5]
    }

    /// Thrown where a value depends on one whose error was already reported.
    static let alreadyReported = Diagnostic.error("", at: nil)

    private var builder: GraphBuilder
    private let ast: SourceFileAST
    private let sources: ParamSources
    private let diagnostics: DiagnosticEngine

    private var scope: [String: (value: Value, range: SourceRange)] = [:]
    private var params: [ParamBinding] = []
    private var weightDecls: [String: WeightDecl] = [:]
    private var usedWeights: Set<String> = []
    private var tokensName: String?
    private var tokensRange: SourceRange?
    /// The `let` or `output` being lowered: a multi-hop block is named after it.
    private var binding: String?
    /// Names given to multi-hop blocks so far (the `block` attribute of their hops).
    private var blockNames: Set<String> = []

    private init(ast: SourceFileAST, sources: ParamSources, diagnostics: DiagnosticEngine) {
        self.ast = ast
        self.sources = sources
        self.diagnostics = diagnostics
        var modelName: String?
        for d in ast.declarations { if case .model(let id) = d { modelName = id.name } }
        let base = ast.path.split(separator: "/").last.map(String.init) ?? ast.path
        let fallback = base.hasSuffix(".moe") ? String(base.dropLast(4)) : base
        builder = GraphBuilder(name: modelName ?? fallback)
    }

    /// Lowers a parsed file to a graph. Returns nil when errors were reported.
    public static func lower(_ ast: SourceFileAST, sources: ParamSources = ParamSources(),
                             diagnostics: DiagnosticEngine) -> Graph? {
        var lowering = ASTToIR(ast: ast, sources: sources, diagnostics: diagnostics)
        return lowering.run()
    }

    private mutating func run() -> Graph? {
        let before = diagnostics.errorCount
        bindParams()
        for d in ast.declarations {
            switch d {
            case .model, .param: continue
            case .input(let i): declareInput(i)
            case .weight(let w): declareWeight(w)
            case .let(let l):
                guard declare(l.name) else { continue }
                binding = l.name.name
                defer { binding = nil }
                do {
                    let v = try lower(l.value)
                    if case .tensor(let id) = v, builder.graph[id].name == nil || builder.graph[id].op != .input && builder.graph[id].op != .weight {
                        builder.rename(id, to: l.name.name)
                    }
                    scope[l.name.name] = (v, l.name.range)
                } catch {
                    report(error)
                    scope[l.name.name] = (.poisoned, l.name.range)
                }
            case .output(let o):
                lowerOutput(o)
            }
        }
        if !ast.declarations.contains(where: { if case .output = $0 { return true }; return false }) && diagnostics.errorCount == before {
            reportNoOutputs()
        }
        for (name, w) in weightDecls.sorted(by: { $0.key < $1.key }) where !usedWeights.contains(name) && diagnostics.errorCount == before {
            diagnostics.emit(.warning("weight '\(name)' is declared but never used", at: w.name.range))
        }
        guard diagnostics.errorCount == before else { return nil }
        builder.setParams(params)
        var g = builder.finish()
        g.tokensName = tokensName ?? "tokens"
        return g
    }

    /// Points at the end of the file, where an `output` line would go (1:1 in an empty file),
    /// and suggests outputting the last `let`.
    private func reportNoOutputs() {
        let lastLet = ast.declarations.last { if case .let = $0 { return true }; return false }
        let example = lastLet.map { d -> String in if case .let(let l) = d { return l.name.name }; return "y" } ?? "y"
        let at = ast.end ?? SourceRange(SourceLocation(file: ast.path, line: 1, column: 1))
        diagnostics.error("the graph declares no outputs", at: at,
                          notes: [.init("add 'output NAME' for each result, e.g. 'output \(example)'")])
    }

    private func report(_ d: Diagnostic) {
        if d != ASTToIR.alreadyReported { diagnostics.emit(d) }
    }

    // MARK: Names

    private mutating func declare(_ id: Identifier) -> Bool {
        if let prev = scope[id.name] {
            diagnostics.error("'\(id.name)' is already declared", at: id.range,
                              notes: [.init("previous declaration is here", at: prev.range)])
            return false
        }
        if Builtins.functions.contains(id.name) {
            diagnostics.emit(.warning("'\(id.name)' shadows the built-in function of the same name", at: id.range))
        }
        return true
    }

    private func lookup(_ id: Identifier) -> Value {
        if let v = scope[id.name] { return v.value }
        return .symbol(id.name)
    }

    /// Names in scope similar to `name`, for "did you mean" notes.
    private func similarNames(_ name: String) -> [String] {
        let all = Array(scope.keys) + Array(weightDecls.keys)
        return closest(to: name, among: all)
    }

    private func unknownName(_ id: Identifier, expecting what: String) -> Diagnostic {
        var notes: [Diagnostic.Note] = []
        if let s = similarNames(id.name).first { notes.append(.init("did you mean '\(s)'?")) }
        return .error("unknown name '\(id.name)' (expected \(what))", at: id.range, notes: notes)
    }

    // MARK: Params

    private mutating func bindParams() {
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
                }
                scope[p.name.name] = (v, p.name.range)
            } catch {
                report(error)
                scope[p.name.name] = (.poisoned, p.name.range)
            }
        }
        for o in sources.overrides where declared[o.name] == nil {
            let names = ast.declarations.compactMap { d -> String? in if case .param(let p) = d { return p.name.name }; return nil }
            var notes: [Diagnostic.Note] = []
            if let s = closest(to: o.name, among: names).first { notes.append(.init("did you mean '\(s)'?")) }
            notes.append(.init(names.isEmpty ? "\(ast.path) declares no params" : "the params of \(ast.path) are: " + names.joined(separator: ", ")))
            diagnostics.error("--set \(o.name)=\(o.value): no param named '\(o.name)'", at: nil, notes: notes)
        }
    }

    private func resolve(_ p: ParamDecl) throws(Diagnostic) -> (ParamBinding.Value, String) {
        let declaredType = p.type ?? p.defaultValue?.type
        if let p2 = p.defaultValue, let t = p.type, !compatible(p2, t) {
            throw .error("default value \(p2) does not have the declared type \(t.rawValue)", at: p.defaultRange ?? p.name.range)
        }
        if let o = sources.overrides.last(where: { $0.name == p.name.name }) {
            guard let v = parseOverride(o.value, as: declaredType) else {
                throw .error("--set \(o.name)=\(o.value): '\(o.value)' is not a valid \(declaredType?.rawValue ?? "value")", at: p.name.range,
                             notes: [.init("param '\(p.name.name)' is declared here")])
            }
            return (v, "--set")
        }
        for (key, range) in p.configKeys {
            guard let j = sources.configValue(key), !j.isNull else { continue }
            guard let v = convert(j, to: declaredType) else {
                throw .error("\(sources.configPath): key \"\(key)\" is \(j.compact), not \(article(declaredType))", at: range)
            }
            return (v, "\(sources.configPath.split(separator: "/").last.map(String.init) ?? "config.json"):\(key)")
        }
        if let config = sources.config, !p.configKeys.isEmpty {
            // The config lacks every key. A near miss is almost certainly a typo in the graph.
            let keys = Array(config.keys)
            for (key, range) in p.configKeys {
                if let near = closest(to: key, among: keys).first {
                    throw .error("\(sources.configPath) has no key \"\(key)\"", at: range,
                                 notes: [.init("did you mean \"\(near)\"?")])
                }
            }
            if p.defaultValue != nil {
                let list = p.configKeys.map { "\"\($0.key)\"" }.joined(separator: ", ")
                diagnostics.emit(.warning("\(sources.configPath) has no key \(list); '\(p.name.name)' takes its default \(p.defaultValue!)",
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
            }
            return (v, "default")
        }
        let keys = p.configKeys.map { "\"\($0.key)\"" }.joined(separator: ", ")
        if sources.config == nil {
            throw .error("param '\(p.name.name)' has no value", at: p.name.range,
                         notes: [.init(p.configKeys.isEmpty ? "give it a default or pass --set \(p.name.name)=VALUE"
                                       : "it is read from config.json (\(keys)): pass --model DIR, or --set \(p.name.name)=VALUE")])
        }
        throw .error("param '\(p.name.name)' has no value: \(sources.configPath) has no key \(keys) and the param has no default",
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

    // MARK: Shapes

    /// Evaluates a dimension: an integer expression over int params, or the token symbol.
    private mutating func dim(_ e: Expr, allowTokens: Bool, what: String) throws(Diagnostic) -> Dim {
        if case .name(let id) = e, scope[id.name] == nil {
            if let t = tokensName {
                guard id.name == t else {
                    var notes: [Diagnostic.Note] = [.init("the token dimension is '\(t)'", at: tokensRange)]
                    if let s = closest(to: id.name, among: Array(scope.keys) + [t]).first { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
                    throw .error("unknown dimension '\(id.name)'", at: id.range, notes: notes)
                }
            } else if allowTokens {
                let candidates = closest(to: id.name, among: Array(scope.keys))
                if let c = candidates.first, Self.editDistance(c, id.name) <= 1 {
                    throw .error("unknown dimension '\(id.name)'", at: id.range,
                                 notes: [.init("did you mean the param '\(c)'?"),
                                         .init("a name that is not a param is the graph's token dimension; one is allowed")])
                }
                tokensName = id.name
                tokensRange = id.range
            }
            guard allowTokens else {
                throw .error("the token dimension '\(id.name)' cannot appear in \(what)", at: id.range,
                             notes: [.init("only the first dimension of an input can be the token count")])
            }
            return .tokens
        }
        return .fixed(try intValue(e, what: "a dimension"))
    }

    /// Evaluates a compile-time integer expression.
    private mutating func intValue(_ e: Expr, what: String) throws(Diagnostic) -> Int {
        switch try constant(e) {
        case .int(let v): return v
        case .float(let f) where f == f.rounded() && abs(f) < 1e15: return Int(f)
        case .poisoned: throw ASTToIR.alreadyReported
        default: throw .error("\(what) must be an integer known at compile time", at: e.range)
        }
    }

    /// Evaluates an expression that must be a compile-time value (number, bool, string).
    private mutating func constant(_ e: Expr) throws(Diagnostic) -> Value {
        let v = try lower(e)
        switch v {
        case .tensor:
            throw .error("expected a value known at compile time, but this is a tensor", at: e.range)
        case .symbol(let s):
            guard case .name(let id) = e else { throw .error("unknown name '\(s)'", at: e.range) }
            throw unknownName(id, expecting: "a param")
        default:
            return v
        }
    }

    private mutating func declareInput(_ i: InputDecl) {
        guard declare(i.name) else { return }
        do throws(Diagnostic) {
            var dims: [Dim] = []
            for (k, d) in i.shape.enumerated() {
                let v = try dim(d, allowTokens: k == 0, what: k == 0 ? "" : "dimension \(k + 1) of an input")
                if case .fixed(let n) = v, n <= 0 { throw Diagnostic.error("dimension must be positive, got \(n)", at: d.range) }
                dims.append(v)
            }
            let dtype: DType = i.elementType == .i32 ? .i32 : .f32
            if TensorType(dtype, dims).addressableElementsPerToken == nil {
                throw Diagnostic.error("input '\(i.name.name)': the shape [\(dims.map { OpSchema.format($0, tokens: tokensName ?? "tokens") }.joined(separator: ", "))] has more elements per token than moec can address",
                                       at: i.shapeRange, notes: [.init(Addressable.limitNote)])
            }
            let id = builder.addInput(name: i.name.name, type: TensorType(dtype, dims), at: i.name.range)
            scope[i.name.name] = (.tensor(id), i.name.range)
        } catch {
            report(error)
            scope[i.name.name] = (.poisoned, i.name.range)
        }
    }

    private mutating func declareWeight(_ w: WeightDecl) {
        guard declare(w.name) else { return }
        do throws(Diagnostic) {
            var shape: [Int] = []
            for d in w.shape {
                let v = try dim(d, allowTokens: false, what: "a weight's shape")
                guard case .fixed(let n) = v, n > 0 else {
                    throw Diagnostic.error("weight dimensions must be positive", at: d.range)
                }
                shape.append(n)
            }
            guard Addressable.elementCount(shape) != nil else {
                throw Diagnostic.error("weight '\(w.name.name)': the shape \(shape) has more elements than moec can address",
                                       at: w.shapeRange, notes: [.init(Addressable.limitNote)])
            }
            let pattern = try interpolate(w.pattern, at: w.patternRange)
            if pattern.contains("{e}") && shape.count < 2 {
                throw Diagnostic.error("a weight read per expert ({e}) needs a shape [experts, …] with at least two dimensions", at: w.shapeRange)
            }
            weightDecls[w.name.name] = w
            let info = WeightInfo(name: w.name.name, pattern: pattern, shape: shape, location: w.name.range)
            scope[w.name.name] = (.declaredWeight, w.name.range)
            pendingWeights[w.name.name] = info
        } catch {
            report(error)
            scope[w.name.name] = (.poisoned, w.name.range)
        }
    }

    /// Weights become graph nodes when first used, so unused ones are not required in the checkpoint.
    private var pendingWeights: [String: WeightInfo] = [:]

    /// Replaces `{param}` in a tensor-name pattern; `{e}` stays for the expert index.
    private func interpolate(_ pattern: String, at range: SourceRange) throws(Diagnostic) -> String {
        var out = ""
        var rest = Substring(pattern)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw .error("unclosed '{' in tensor name \"\(pattern)\"", at: range)
            }
            let name = String(rest[rest.index(after: open)..<close])
            if name == "e" {
                out += "{e}"
            } else {
                switch scope[name]?.value {
                case .int(let v)?: out += String(v)
                case .string(let s)?: out += s
                case .poisoned?: throw ASTToIR.alreadyReported
                default:
                    var notes: [Diagnostic.Note] = [.init("braces in a tensor name take an int or string param, or {e} for the expert index")]
                    if let s = closest(to: name, among: params.map(\.name) + ["e"]).first { notes.insert(.init("did you mean '{\(s)}'?"), at: 0) }
                    throw .error("unknown name '{\(name)}' in tensor name \"\(pattern)\"", at: range, notes: notes)
                }
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    // MARK: Expressions

    private mutating func lower(_ e: Expr) throws(Diagnostic) -> Value {
        switch e {
        case .int(let v, _): return .int(v)
        case .float(let v, _): return .float(v)
        case .string(let s, _): return .string(s)
        case .bool(let b, _): return .bool(b)
        case .name(let id):
            if let w = pendingWeights[id.name] {
                usedWeights.insert(id.name)
                let vid = builder.addWeight(w)
                return .tensor(vid)
            }
            let v = lookup(id)
            if case .poisoned = v { throw ASTToIR.alreadyReported }
            return v
        case .negate(let inner, let r):
            switch try lower(inner) {
            case .int(let v):
                guard v != .min else { throw .error("-(\(v)) does not fit in a 64-bit integer", at: r) }
                return .int(-v)
            case .float(let v): return .float(-v)
            case .tensor(let id): return .tensor(try builder.add(.neg, [try tensorOperand(id, at: r)], at: r))
            default: throw .error("'-' needs a number or a tensor", at: r)
            }
        case .binary(let op, let l, let r, let range):
            return try binary(op, try lower(l), try lower(r), lhs: l, rhs: r, at: range)
        case .call(let c):
            return try call(c)
        case .moe(let m):
            return try moeBlock(m)
        case .list(let items, _):
            var out: [Int] = []
            for item in items {
                switch try lower(item) {
                case .int(let v): out.append(v)
                case .ints(let v): out += v
                case .poisoned: throw ASTToIR.alreadyReported
                default: throw .error("lists hold integers known at compile time", at: item.range)
                }
            }
            return .ints(out)
        }
    }

    private func tensorOperand(_ id: ValueID, at r: SourceRange) throws(Diagnostic) -> ValueID {
        if builder.type(of: id).routing != nil {
            throw .error("arithmetic on a routing is not defined", at: r,
                         notes: [.init("use routing stages such as 'scale(f)', 'renormalize' or 'sqrt'")])
        }
        return id
    }

    private mutating func binary(_ op: BinaryOperator, _ a: Value, _ b: Value, lhs: Expr, rhs: Expr, at range: SourceRange) throws(Diagnostic) -> Value {
        func number(_ v: Value) -> Double? {
            switch v {
            case .int(let i): return Double(i)
            case .float(let f): return f
            default: return nil
            }
        }
        // Compile-time arithmetic; a result that does not fit in an Int is an error, not a
        // wrapped-around shape.
        if case .int(let x) = a, case .int(let y) = b {
            let result: (partialValue: Int, overflow: Bool)
            switch op {
            case .add: result = x.addingReportingOverflow(y)
            case .sub: result = x.subtractingReportingOverflow(y)
            case .mul: result = x.multipliedReportingOverflow(by: y)
            case .div:
                guard y != 0 else { throw .error("division by zero", at: range) }
                guard x.remainderReportingOverflow(dividingBy: y).partialValue == 0 else {
                    throw .error("\(x) / \(y) is not a whole number", at: range,
                                 notes: [.init("integer params divide exactly; write a float (\(x).0 / \(y)) for a fraction")])
                }
                result = x.dividedReportingOverflow(by: y)
            }
            guard !result.overflow else {
                throw .error("\(x) \(op.rawValue) \(y) does not fit in a 64-bit integer", at: range)
            }
            return .int(result.partialValue)
        }
        if let x = number(a), let y = number(b) {
            switch op {
            case .add: return .float(x + y)
            case .sub: return .float(x - y)
            case .mul: return .float(x * y)
            case .div:
                guard y != 0 else { throw .error("division by zero", at: range) }
                return .float(x / y)
            }
        }
        // Tensor arithmetic; compile-time numbers become constants.
        func operand(_ v: Value, _ e: Expr) throws(Diagnostic) -> ValueID {
            switch v {
            case .tensor(let id): return try tensorOperand(id, at: range)
            case .int, .float: return builder.addConstant(number(v)!, at: e.range)
            case .symbol(let s):
                if case .name(let id) = e { throw unknownName(id, expecting: "a tensor or number") }
                throw .error("unknown name '\(s)'", at: e.range)
            case .poisoned: throw ASTToIR.alreadyReported
            default: throw .error("'\(op.rawValue)' needs numbers or tensors", at: e.range)
            }
        }
        let x = try operand(a, lhs), y = try operand(b, rhs)
        let irOp: Op
        switch op {
        case .add: irOp = .add
        case .sub: irOp = .sub
        case .mul: irOp = .mul
        case .div: irOp = .div
        }
        return .tensor(try builder.add(irOp, [x, y], at: range))
    }

    // MARK: Calls

    private mutating func call(_ c: Call) throws(Diagnostic) -> Value {
        if let cond = c.condition {
            let v = try constant(cond)
            guard case .bool(let keep) = v else {
                throw .error("the condition of '\(c.callee.name) if …' must be a bool known at compile time", at: cond.range)
            }
            if !keep { return try lower(c.arguments[0].value) }
        }
        let name = c.callee.name
        let at = c.callee.range
        if scope[name] != nil && !Builtins.functions.contains(name) {
            throw .error("'\(name)' is not a function", at: at)
        }
        let args = try Builtins.bind(c, diagnostics: diagnostics)
        switch name {
        case "linear":
            let x = try args.tensor("x", &self), w = try args.tensor("weight", &self)
            var ops = [x, w]
            if let b = try args.optionalTensor("bias", &self) { ops.append(b) }
            return .tensor(try builder.add(.linear, ops, at: at))
        case "rmsnorm", "layernorm":
            let x = try args.tensor("x", &self), w = try args.tensor("weight", &self)
            var ops = [x, w]
            if name == "layernorm", let b = try args.optionalTensor("bias", &self) { ops.append(b) }
            let eps = try args.optionalNumber("eps", &self) ?? (name == "rmsnorm" ? 1e-6 : 1e-5)
            return .tensor(try builder.add(name == "rmsnorm" ? .rmsnorm : .layernorm, ops, ["eps": .float(eps)], at: at))
        case "softmax":
            let x = try args.value("x", &self)
            let t = try args.optionalNumber("temperature", &self)
            let groups = try args.optionalInt("groups", &self)
            if isRouting(x) {
                if t != nil || groups != nil { throw .error("softmax over a routing takes no temperature or groups", at: at) }
                return .tensor(try builder.add(.route_softmax, [x], at: at))
            }
            var attrs: Attributes = [:]
            if let t { attrs["temperature"] = .float(t) }
            if let groups { attrs["groups"] = .int(groups) }
            return .tensor(try builder.add(.softmax, [x], attrs, at: at))
        case "sqrt":
            let v = try args.raw("x", &self)
            if case .int(let i) = v { return .float(Double(i).squareRoot()) }
            if case .float(let f) = v { return .float(f.squareRoot()) }
            let x = try args.value("x", &self)
            return .tensor(try builder.add(isRouting(x) ? .route_sqrt : .sqrt, [x], at: at))
        case "silu", "gelu", "gelu_tanh", "relu", "sigmoid", "tanh", "exp":
            let v = try args.raw("x", &self)
            if name == "exp", let n = numeric(v) { return .float(Foundation.exp(n)) }
            if name == "sigmoid", let n = numeric(v) { return .float(1 / (1 + Foundation.exp(-n))) }
            let x = try args.tensor("x", &self)
            return .tensor(try builder.add(Op(rawValue: name)!, [x], at: at))
        case "topk":
            let scores = try args.tensor("scores", &self)
            let k = try args.int("k", &self)
            var attrs: Attributes = ["k": .int(k)]
            var ops = [scores]
            if let b = try args.optionalTensor("bias", &self) { ops.append(b); attrs["with_bias"] = .bool(true) }
            if let by = try args.optionalTensor("by", &self) { ops.append(by); attrs["with_by"] = .bool(true) }
            if let f = try args.optionalInts("force", &self) { attrs["force"] = .ints(f) }
            if let d = try args.optionalInts("disable", &self) { attrs["disable"] = .ints(d) }
            if let groups = try args.optionalInt("groups", &self) {
                attrs["groups"] = .int(groups)
                attrs["keep_groups"] = .int(try args.optionalInt("keep_groups", &self) ?? groups)
                attrs["group_top"] = .int(try args.optionalInt("group_top", &self) ?? 2)
            } else if args.has("keep_groups") || args.has("group_top") {
                throw .error("keep_groups and group_top need groups", at: at)
            }
            if let m = try args.optionalNumber("masked", &self) {
                attrs["masked"] = .float(m)
            }
            return .tensor(try builder.add(.topk, ops, attrs, at: at))
        case "threshold", "top_p", "stat_topk", "dense", "nonzero":
            let scores = try args.tensor("scores", &self)
            var attrs: Attributes = [:]
            switch name {
            case "threshold": attrs["tau"] = .float(try args.number("tau", &self))
            case "top_p": attrs["p"] = .float(try args.number("p", &self))
            case "stat_topk": attrs["k"] = .int(try args.int("k", &self))
            default: break
            }
            if let m = try args.optionalInt("max_k", &self) { attrs["max_k"] = .int(m) }
            let op: Op = name == "dense" ? .dense_route : Op(rawValue: name)!
            return .tensor(try builder.add(op, [scores], attrs, at: at))
        case "expert_choice":
            let scores = try args.tensor("scores", &self)
            var attrs: Attributes = ["k": .int(try args.int("k", &self))]
            var ops = [scores]
            switch try args.raw("capacity_factor", &self) {
            case .int(let v): attrs["capacity_factor"] = .float(Double(v))
            case .float(let v): attrs["capacity_factor"] = .float(v)
            case .tensor(let id): ops.append(id)
            default: throw .error("capacity_factor must be a number, or a scalar input to set it at run time", at: at)
            }
            return .tensor(try builder.add(.expert_choice, ops, attrs, at: at))
        case "hash", "random_fixed":
            let ids = try args.tensor("ids", &self)
            var attrs: Attributes = ["experts": .int(try args.int("experts", &self)), "method": .string(name == "hash" ? "hash" : "random")]
            attrs["seed"] = .int(try args.optionalInt("seed", &self) ?? 0)
            return .tensor(try builder.add(.hash_route, [ids], attrs, at: at))
        case "within":
            let outer = try args.routing("outer", &self, stage: name)
            let inner = try args.tensor("inner", &self)
            return .tensor(try builder.add(.within, [outer, inner], ["k": .int(try args.optionalInt("k", &self) ?? 1)], at: at))
        case "cosine", "distance":
            let x = try args.tensor("x", &self), c = try args.tensor("centroids", &self)
            return .tensor(try builder.add(Op(rawValue: name)!, [x, c], at: at))
        case "subspace":
            let x = try args.tensor("x", &self), u = try args.tensor("bases", &self)
            return .tensor(try builder.add(.subspace, [x, u], at: at))
        case "sinkhorn":
            let x = try args.tensor("scores", &self)
            return .tensor(try builder.add(.sinkhorn, [x], ["iterations": .int(try args.optionalInt("iterations", &self) ?? 3)], at: at))
        case "dselect":
            let x = try args.tensor("x", &self), z = try args.tensor("z", &self), alpha = try args.tensor("alpha", &self)
            let attrs: Attributes = ["experts": .int(try args.int("experts", &self)), "gamma": .float(try args.optionalNumber("gamma", &self) ?? 1)]
            return .tensor(try builder.add(.dselect, [x, z, alpha], attrs, at: at))
        case "renormalize":
            let r = try args.routing("routing", &self, stage: name)
            let eps = try args.optionalNumber("eps", &self) ?? 0
            return .tensor(try builder.add(.route_renormalize, [r], ["eps": .float(eps)], at: at))
        case "scale":
            let r = try args.routing("routing", &self, stage: name)
            let f = try args.number("factor", &self)
            return .tensor(try builder.add(.route_scale, [r], ["factor": .float(f)], at: at))
        case "capacity":
            let r = try args.routing("routing", &self, stage: name)
            let cap = try args.int("capacity", &self)
            return .tensor(try builder.add(.route_capacity, [r], ["capacity": .int(cap)], at: at))
        case "swiglu":
            let x = try args.tensor("x", &self)
            let g = try args.tensor("gate", &self), u = try args.tensor("up", &self), d = try args.tensor("down", &self)
            return .tensor(try builder.add(.swiglu, [x, g, u, d], at: at))
        case "mlp":
            let x = try args.tensor("x", &self)
            let u = try args.tensor("up", &self), d = try args.tensor("down", &self)
            let act = try args.symbol("act", &self, among: Activation.allCases.map(\.rawValue))
            return .tensor(try builder.add(.mlp, [x, u, d], ["act": .string(act)], at: at))
        default:
            var notes: [Diagnostic.Note] = []
            if let s = closest(to: name, among: Array(Builtins.functions)).first { notes.append(.init("did you mean '\(s)'?")) }
            throw .error("unknown function '\(name)'", at: at, notes: notes)
        }
    }

    private func numeric(_ v: Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .float(let f): return f
        default: return nil
        }
    }

    private func isRouting(_ id: ValueID) -> Bool { builder.type(of: id).routing != nil }

    // MARK: MoE blocks

    /// A moe block. With `hops: n` the block runs n times on its own output
    /// (h ← h + block(h), the router re-reading h each hop) and its value is the final h;
    /// with `halt: τ` a token stops once its update is small (‖Δh‖ < τ·‖h‖). Each hop is a
    /// `moe_experts` node with the attributes `block` (the name of the `let` the block is in,
    /// made unique with `#2`, `#3`, …) and `hop` (0 ..< n): one MoE layer (`MoELayer`).
    /// `upcycle: c` (or a list, one count per expert) duplicates experts and router rows
    /// at compile time (the ExpertUpcycling pass), keeping top-k.
    private mutating func moeBlock(_ m: MoEBlock) throws(Diagnostic) -> Value {
        let inputValue = try lower(m.input)
        guard case .tensor(let x) = inputValue else {
            throw .error("the moe block's input must be a tensor", at: m.input.range)
        }
        var fields: [String: MoEField] = [:]
        let known = ["router", "experts", "shared", "hops", "halt", "upcycle"]
        for f in m.fields {
            guard known.contains(f.name.name) else {
                var notes: [Diagnostic.Note] = [.init("a moe block has the fields " + known.joined(separator: ", "))]
                if let s = closest(to: f.name.name, among: known).first { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
                throw .error("unknown field '\(f.name.name)' in moe block", at: f.name.range, notes: notes)
            }
            if let prev = fields[f.name.name] {
                throw .error("field '\(f.name.name)' is given twice", at: f.name.range, notes: [.init("first given here", at: prev.name.range)])
            }
            if f.kind != nil && f.name.name != "experts" {
                throw .error("'of' belongs to the experts field ('experts: 8 of swiglu(…)')", at: f.name.range)
            }
            fields[f.name.name] = f
        }
        guard let routerField = fields["router"] else {
            throw .error("moe block has no router", at: m.range,
                         notes: [.init("add e.g. 'router: x |> linear(gate) |> softmax |> topk(2)'")])
        }
        guard let expertsField = fields["experts"] else {
            throw .error("moe block has no experts", at: m.range,
                         notes: [.init("add e.g. 'experts: 8 of swiglu(gate: w1, up: w3, down: w2)'")])
        }
        guard let kindCall = expertsField.kind else {
            throw .error("experts must be written 'COUNT of KIND(…)'", at: expertsField.value.range,
                         notes: [.init("e.g. 'experts: num_experts of swiglu(gate: w1, up: w3, down: w2)'")])
        }
        let count = try intValue(expertsField.value, what: "the number of experts")
        guard count >= 1 else { throw .error("the number of experts must be positive, got \(count)", at: expertsField.value.range) }

        var hops = 1
        if let f = fields["hops"] {
            hops = try intValue(f.value, what: "hops")
            guard hops >= 1, hops <= 64 else { throw .error("hops must be between 1 and 64, got \(hops)", at: f.value.range) }
        }
        var haltTau: Double?
        if let f = fields["halt"] {
            switch try constant(f.value) {
            case .int(let v): haltTau = Double(v)
            case .float(let v): haltTau = v
            default: throw .error("halt takes a number: the relative update norm below which a token stops", at: f.value.range)
            }
            guard haltTau! >= 0 else { throw .error("halt must be non-negative", at: f.value.range) }
            guard hops > 1 else { throw .error("halt needs hops > 1", at: f.name.range) }
        }
        var inputName: Identifier?
        if hops > 1 {
            guard case .name(let id) = m.input else {
                throw .error("a multi-hop block needs a named input (write 'moe(h) { … }' with 'let h = …')", at: m.input.range)
            }
            inputName = id
            if let shared = fields["shared"], haltTau != nil {
                throw .error("shared experts with halting are not supported: a halted token must get no update", at: shared.name.range)
            }
        }
        var upcycle: [Int]?
        if let f = fields["upcycle"] {
            switch try constant(f.value) {
            case .int(let c): upcycle = [Int](repeating: c, count: count)
            case .ints(let list): upcycle = list
            default: throw .error("upcycle takes a copy count, or a list with one count per expert", at: f.value.range)
            }
            guard upcycle!.count == count else {
                throw .error("upcycle lists \(upcycle!.count) copy counts, but the block has \(count) experts", at: f.value.range)
            }
            if let bad = upcycle!.first(where: { $0 < 1 }) {
                throw .error("upcycle copy counts must be at least 1, got \(bad)", at: f.value.range)
            }
        }

        // The expert kind: swiglu(gate:, up:, down:) | swiglu(gate_up:, down:) | mlp(up:, down:, act:)
        let kindArgs = try Builtins.bindExpertKind(kindCall)
        let kindAt = kindCall.callee.range
        var attrs: Attributes = ["experts": .int(count)]
        var weights: [ValueID] = []
        switch kindCall.callee.name {
        case "swiglu":
            if kindArgs.has("gate_up") {
                attrs["kind"] = .string(ExpertKind.swiglu_fused.rawValue)
                weights = [try kindArgs.tensor("gate_up", &self), try kindArgs.tensor("down", &self)]
            } else {
                attrs["kind"] = .string(ExpertKind.swiglu.rawValue)
                weights = [try kindArgs.tensor("gate", &self), try kindArgs.tensor("up", &self), try kindArgs.tensor("down", &self)]
            }
        case "mlp":
            attrs["kind"] = .string(ExpertKind.mlp.rawValue)
            weights = [try kindArgs.tensor("up", &self), try kindArgs.tensor("down", &self)]
            attrs["act"] = .string(try kindArgs.symbol("act", &self, among: Activation.allCases.map(\.rawValue)))
        default:
            throw .error("unknown expert kind '\(kindCall.callee.name)'", at: kindAt,
                         notes: [.init("expert kinds are swiglu(gate:, up:, down:), swiglu(gate_up:, down:) and mlp(up:, down:, act:)")])
        }
        if let upcycle { attrs["upcycle"] = .ints(upcycle) }
        var blockName: String?
        if hops > 1 {
            let base = binding ?? "moe"
            var name = base, n = 1
            while blockNames.contains(name) { n += 1; name = "\(base)#\(n)" }
            blockNames.insert(name)
            blockName = name
        }

        let saved = inputName.flatMap { scope[$0.name] }
        defer { if let id = inputName, let saved { scope[id.name] = saved } }
        var h = x
        var active: ValueID?
        var result = x
        for hop in 0..<hops {
            if let id = inputName { scope[id.name] = (.tensor(h), id.range) }
            let routerValue = try lower(routerField.value)
            guard case .tensor(let routing) = routerValue, let rt = builder.type(of: routing).routing else {
                throw .error("the router must end in an expert selection such as 'topk(k)'", at: routerField.value.range,
                             notes: [.init("the router computes scores, then selects: 'x |> linear(gate) |> softmax |> topk(2)'")])
            }
            guard rt.experts == count else {
                throw .error("the router scores \(rt.experts) experts but the block declares \(count)", at: expertsField.value.range,
                             notes: [.init("the router is here", at: routerField.value.range)])
            }
            var hopAttrs = attrs
            if let blockName {
                hopAttrs["block"] = .string(blockName)
                hopAttrs["hop"] = .int(hop)
            }
            var operands = [h, routing] + weights
            if let active { operands.append(active); hopAttrs["with_active"] = .bool(true) }
            var delta = try builder.add(.moe_experts, operands, hopAttrs, at: [kindAt, m.range])
            if let shared = fields["shared"] {
                let sv = try lower(shared.value)
                guard case .tensor(let s) = sv, builder.type(of: s).tensor != nil else {
                    throw .error("shared must be a tensor expression, e.g. 'swiglu(x, gate: sg, up: su, down: sd)'", at: shared.value.range)
                }
                delta = try builder.add(.add, [delta, s], at: shared.name.range)
            }
            if hops == 1 {
                result = delta
            } else {
                var next: ValueID?
                if let tau = haltTau, hop + 1 < hops {
                    next = try builder.add(.halt_mask, [h, delta] + (active.map { [$0] } ?? []), ["tau": .float(tau)], at: fields["halt"]!.name.range)
                }
                h = try builder.add(.add, [h, delta], at: m.range)
                active = next
                result = h
            }
        }
        return .tensor(result)
    }

    // MARK: Outputs

    private mutating func lowerOutput(_ o: OutputDecl) {
        do throws(Diagnostic) {
            let v: Value
            if let e = o.value {
                guard declare(o.name) else { return }
                binding = o.name.name
                defer { binding = nil }
                v = try lower(e)
                scope[o.name.name] = (v, o.name.range)
            } else {
                v = try lower(.name(o.name))
            }
            switch v {
            case .tensor(let id):
                if builder.type(of: id).routing != nil {
                    throw Diagnostic.error("output '\(o.name.name)' is a routing; outputs are tensors", at: o.name.range)
                }
                if builder.graph.outputs.contains(where: { $0.name == o.name.name }) {
                    throw Diagnostic.error("output '\(o.name.name)' is declared twice", at: o.name.range)
                }
                builder.addOutput(name: o.name.name, value: id)
            case .symbol:
                throw unknownName(o.name, expecting: "a tensor to output")
            case .poisoned:
                return
            default:
                throw Diagnostic.error("output '\(o.name.name)' is a compile-time value, not a tensor", at: o.name.range)
            }
        } catch {
            report(error)
        }
    }

    // MARK: Argument access used by Builtins

    fileprivate mutating func lowerArgument(_ e: Expr) throws(Diagnostic) -> Value { try lower(e) }

    fileprivate func unknown(_ id: Identifier, expecting: String) -> Diagnostic { unknownName(id, expecting: expecting) }

    static func editDistance(_ a: String, _ b: String) -> Int { levenshtein(a, b) }
}

// MARK: - Built-in functions and their arguments

/// The functions a `.moe` file can call, with their parameters: the first ones may be given
/// by position, all by label.
enum Builtins {
    static let signatures: [String: [String]] = [
        "linear": ["x", "weight", "bias"],
        "rmsnorm": ["x", "weight", "eps"],
        "layernorm": ["x", "weight", "bias", "eps"],
        "softmax": ["x", "temperature", "groups"],
        "sigmoid": ["x"], "silu": ["x"], "gelu": ["x"], "gelu_tanh": ["x"], "relu": ["x"], "tanh": ["x"],
        "exp": ["x"], "sqrt": ["x"],
        "topk": ["scores", "k", "bias", "groups", "keep_groups", "group_top", "masked", "by", "force", "disable"],
        "threshold": ["scores", "tau", "max_k"], "top_p": ["scores", "p", "max_k"], "stat_topk": ["scores", "k", "max_k"],
        "dense": ["scores"], "nonzero": ["scores", "max_k"],
        "expert_choice": ["scores", "k", "capacity_factor"],
        "hash": ["ids", "experts"], "random_fixed": ["ids", "experts", "seed"],
        "within": ["outer", "inner", "k"],
        "cosine": ["x", "centroids"], "distance": ["x", "centroids"], "subspace": ["x", "bases"],
        "sinkhorn": ["scores", "iterations"],
        "dselect": ["x", "z", "alpha", "experts", "gamma"],
        "renormalize": ["routing", "eps"],
        "scale": ["routing", "factor"],
        "capacity": ["routing", "capacity"],
        "swiglu": ["x", "gate", "up", "down"],
        "mlp": ["x", "up", "down", "act"],
    ]
    static let functions: Set<String> = Set(signatures.keys)

    /// Parameters that may be given by position; the rest must be labelled.
    static let positional: [String: Int] = [
        "linear": 3, "rmsnorm": 2, "layernorm": 3, "softmax": 1, "topk": 2, "renormalize": 1, "scale": 2,
        "capacity": 2, "swiglu": 1, "mlp": 1, "sigmoid": 1, "silu": 1, "gelu": 1, "gelu_tanh": 1, "relu": 1,
        "tanh": 1, "exp": 1, "sqrt": 1,
        "threshold": 2, "top_p": 2, "stat_topk": 2, "dense": 1, "nonzero": 1, "expert_choice": 2, "hash": 1, "random_fixed": 1,
        "within": 2, "cosine": 2, "distance": 2, "subspace": 2, "sinkhorn": 1, "dselect": 1,
    ]

    static func bind(_ c: Call, diagnostics: DiagnosticEngine) throws(Diagnostic) -> BoundArguments {
        guard let sig = signatures[c.callee.name] else {
            var notes: [Diagnostic.Note] = []
            if let s = closest(to: c.callee.name, among: Array(functions)).first { notes.append(.init("did you mean '\(s)'?")) }
            throw .error("unknown function '\(c.callee.name)'", at: c.callee.range, notes: notes)
        }
        return try bind(c, params: sig, positional: positional[c.callee.name] ?? sig.count)
    }

    static func bindExpertKind(_ c: Call) throws(Diagnostic) -> BoundArguments {
        let sig: [String]
        switch c.callee.name {
        case "swiglu": sig = ["gate", "up", "down", "gate_up"]
        case "mlp": sig = ["up", "down", "act"]
        default:
            throw .error("unknown expert kind '\(c.callee.name)'", at: c.callee.range,
                         notes: [.init("expert kinds are swiglu(gate:, up:, down:), swiglu(gate_up:, down:) and mlp(up:, down:, act:)")])
        }
        return try bind(c, params: sig, positional: 0)
    }

    static func bind(_ c: Call, params: [String], positional: Int) throws(Diagnostic) -> BoundArguments {
        var bound = BoundArguments(function: c.callee.name, at: c.callee.range)
        var next = 0
        for a in c.arguments {
            let name: String
            if let label = a.label {
                guard params.contains(label.name) else {
                    var notes: [Diagnostic.Note] = [.init("'\(c.callee.name)' takes " + params.map { "\($0):" }.joined(separator: ", "))]
                    if let s = closest(to: label.name, among: params).first { notes.insert(.init("did you mean '\(s):'?"), at: 0) }
                    throw .error("'\(c.callee.name)' has no argument '\(label.name)'", at: label.range, notes: notes)
                }
                name = label.name
            } else {
                guard next < min(positional, params.count) else {
                    throw .error("too many unlabelled arguments to '\(c.callee.name)'", at: a.value.range,
                                 notes: [.init("label the argument, e.g. '\(params[min(next, params.count - 1)]): …'")])
                }
                name = params[next]
            }
            if let prev = bound.args[name] {
                throw .error("argument '\(name)' of '\(c.callee.name)' is given twice", at: a.label?.range ?? a.value.range,
                             notes: [.init("first given here", at: prev.range)])
            }
            bound.args[name] = a.value
            if a.label == nil { next += 1 } else { next = max(next, (params.firstIndex(of: name) ?? next) + 1) }
        }
        return bound
    }
}

/// A call's arguments by parameter name, evaluated on demand with the expected kind.
struct BoundArguments {
    let function: String
    let at: SourceRange
    var args: [String: Expr] = [:]

    init(function: String, at: SourceRange) {
        self.function = function
        self.at = at
    }

    func has(_ name: String) -> Bool { args[name] != nil }

    private func missing(_ name: String) -> Diagnostic {
        .error("'\(function)' needs an argument '\(name)'", at: at)
    }

    func raw(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ASTToIR.Value {
        guard let e = args[name] else { throw missing(name) }
        let v = try l.lowerArgument(e)
        if case .poisoned = v { throw ASTToIR.alreadyReported }
        return v
    }

    /// A tensor or routing value.
    func value(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ValueID {
        guard let e = args[name] else { throw missing(name) }
        switch try raw(name, &l) {
        case .tensor(let id): return id
        case .symbol:
            if case .name(let id) = e { throw l.unknown(id, expecting: "a tensor") }
            throw .error("expected a tensor", at: e.range)
        default:
            throw .error("argument '\(name)' of '\(function)' must be a tensor, not a compile-time value", at: e.range)
        }
    }

    func tensor(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ValueID {
        let id = try value(name, &l)
        if l.isRoutingValue(id) {
            throw .error("argument '\(name)' of '\(function)' must be a tensor, but it is a routing", at: args[name]!.range,
                         notes: [.init("a routing (after topk) feeds routing stages and a moe block's router")])
        }
        return id
    }

    func optionalTensor(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> ValueID? {
        has(name) ? try tensor(name, &l) : nil
    }

    func routing(_ name: String, _ l: inout ASTToIR, stage: String) throws(Diagnostic) -> ValueID {
        let id = try value(name, &l)
        guard l.isRoutingValue(id) else {
            throw .error("'\(stage)' applies to a routing (after an expert selection), but its input is a tensor", at: at,
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
            if case .name(let id) = e { throw l.unknown(id, expecting: "a number") }
            throw .error("expected a number", at: e.range)
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
            if case .name(let id) = e { throw l.unknown(id, expecting: "an integer") }
            throw .error("expected an integer", at: e.range)
        default: throw .error("argument '\(name)' of '\(function)' must be an integer known at compile time", at: e.range)
        }
    }

    func optionalInt(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> Int? {
        has(name) ? try int(name, &l) : nil
    }

    /// A list of integers (`[3, 5]`) or a single integer.
    func optionalInts(_ name: String, _ l: inout ASTToIR) throws(Diagnostic) -> [Int]? {
        guard let e = args[name] else { return nil }
        switch try raw(name, &l) {
        case .ints(let v): return v
        case .int(let v): return [v]
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
            if let s = closest(to: word, among: choices).first { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
            throw .error("unknown \(name) '\(word)'", at: e.range, notes: notes)
        }
        return word
    }
}

extension ASTToIR {
    fileprivate func isRoutingValue(_ id: ValueID) -> Bool { builder.type(of: id).routing != nil }
}

// MARK: - Suggestions

/// Candidates within a small edit distance of `name`, closest first.
func closest(to name: String, among candidates: [String]) -> [String] {
    let limit = max(1, name.count / 3)
    return candidates
        .filter { $0 != name }
        .map { ($0, levenshtein($0, name)) }
        .filter { $0.1 <= limit }
        .sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        .map(\.0)
}

func levenshtein(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

import Foundation
