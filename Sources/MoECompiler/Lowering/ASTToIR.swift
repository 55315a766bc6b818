import MoEBasics
import MoEIR
import MoESyntax

/// Gives a syntax tree meaning: resolves params, evaluates shapes, binds names, checks types
/// with `OpSchema` and builds the IR graph. Every error points into the `.moe` source; errors
/// in one declaration do not stop the others from being checked.
///
/// This file is the driver (declarations in order, names and scope, outputs). The rest of the
/// lowering is in this folder by concern: `Params` (param values from `--set`, config.json,
/// defaults), `Shapes` (dimensions, constants, inputs and weights), `Expressions`,
/// `MoEBlockLowering`, `Arguments` (a call's arguments by name) and `Builtins/`, one file of
/// builtins per op family.
public struct ASTToIR {
    /// A name's meaning while lowering.
    enum Value {
        case tensor(ValueID) // a tensor or a routing in the graph
        case int(Int)
        case float(Double)
        case bool(Bool)
        case string(String)
        case symbol(String) // a bare word that names nothing (an enum-like argument: act: gelu)
        case poisoned // its definition failed; uses stay quiet
        case declaredWeight // a weight not yet read (it becomes a node on first use)
        case ints([Int]) // a list of integers: [3, 5]
        case null // an optional param's null, or the literal `null`: only comparable
    }

    /// Thrown where a value depends on one whose error was already reported.
    static let alreadyReported = Diagnostic.error("", at: nil)

    var builder: GraphBuilder
    let ast: SourceFileAST
    let sources: ParamSources
    let diagnostics: DiagnosticEngine

    var scope: [String: (value: Value, range: SourceRange)] = [:]
    var params: [ParamBinding] = []
    var weightDecls: [String: WeightDecl] = [:]
    var usedWeights: Set<String> = []
    /// Weights declared with a dimension of 0 (a part a param switches off), and the error a use reports.
    var emptyWeights: [String: Diagnostic] = [:]
    var tokensName: String?
    var tokensRange: SourceRange?
    /// The `let` or `output` being lowered: a multi-hop block is named after it.
    var binding: String?
    /// Names given to multi-hop blocks so far (the `block` attribute of their hops).
    var blockNames: Set<String> = []

    /// Weights become graph nodes when first used, so unused ones are not required in the checkpoint.
    var pendingWeights: [String: WeightInfo] = [:]

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
    public static func lower(
        _ ast: SourceFileAST, sources: ParamSources = ParamSources(),
        diagnostics: DiagnosticEngine
    ) -> Graph? {
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
        if !ast.declarations.contains(where: {
            if case .output = $0 { return true }; return false
        }) && diagnostics.errorCount == before {
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
        let lastLet = ast.declarations.last {
            if case .let = $0 { return true }; return false
        }
        let example =
            lastLet.map { d -> String in
                if case .let(let l) = d { return l.name.name }; return "y"
            } ?? "y"
        let at = ast.end ?? SourceRange(SourceLocation(file: ast.path, line: 1, column: 1))
        diagnostics.error(
            "the graph declares no outputs", at: at,
            notes: [.init("add 'output NAME' for each result, e.g. 'output \(example)'")])
    }

    func report(_ d: Diagnostic) {
        if d != ASTToIR.alreadyReported { diagnostics.emit(d) }
    }

    // MARK: Names

    mutating func declare(_ id: Identifier) -> Bool {
        if let prev = scope[id.name] {
            diagnostics.error(
                "'\(id.name)' is already declared", at: id.range,
                notes: [.init("previous declaration is here", at: prev.range)])
            return false
        }
        if Builtins.functions.contains(id.name) {
            diagnostics.emit(.warning("'\(id.name)' shadows the built-in function of the same name", at: id.range))
        }
        return true
    }

    func lookup(_ id: Identifier) -> Value {
        if let v = scope[id.name] { return v.value }
        return .symbol(id.name)
    }

    /// Names in scope similar to `name`, for "did you mean" notes.
    private func similarNames(_ name: String) -> [String] {
        let all = Array(scope.keys) + Array(weightDecls.keys)
        return NameSuggestions.closest(to: name, in: all)
    }

    func unknownName(_ id: Identifier, expecting what: String) -> Diagnostic {
        var notes: [Diagnostic.Note] = []
        if let s = similarNames(id.name).first { notes.append(.init("did you mean '\(s)'?")) }
        return .error("unknown name '\(id.name)' (expected \(what))", at: id.range, notes: notes)
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
}
