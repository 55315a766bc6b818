import MoEBasics
import MoEIR
import MoESyntax

/// A function a `.moe` file can call: its parameters and its lowering, side by side. The first
/// `positional` parameters may be given by position, all of them by label. Each op family keeps
/// its builtins in one file (`ScoringBuiltins`, …) and `Builtins.all` lists the families, so a new
/// builtin is one entry in its family's file.
struct Builtin: Sendable {
    /// Lowers a call whose arguments are bound to the parameters; returns the call's value.
    typealias Lowering = @Sendable (inout ASTToIR, BoundArguments) throws(Diagnostic) -> ASTToIR.Value

    let name: String
    let parameters: [String]
    let positional: Int
    let lower: Lowering

    init(_ name: String, _ parameters: [String], positional: Int, lower: @escaping Lowering) {
        precondition(positional <= parameters.count, "builtin '\(name)': more positional parameters than parameters")
        self.name = name
        self.parameters = parameters
        self.positional = positional
        self.lower = lower
    }
}

/// The functions a `.moe` file can call, gathered from the op families. The lookup, the binding of
/// a call's arguments, "unknown function" notes and the shadowing warning all read this one list.
enum Builtins {
    static let all: [Builtin] =
        DenseBuiltins.builtins + ElementwiseBuiltins.builtins + ScoringBuiltins.builtins
        + SelectionBuiltins.builtins + RoutingStagesBuiltins.builtins + SequenceBuiltins.builtins

    static let byName: [String: Builtin] = Dictionary(
        all.map { ($0.name, $0) },
        uniquingKeysWith: { first, _ in
            preconditionFailure("builtin '\(first.name)' is declared twice")
        })

    static let functions: Set<String> = Set(byName.keys)

    /// The builtin `c` calls, with the call's arguments bound to its parameters.
    static func bind(_ c: Call) throws(Diagnostic) -> (Builtin, BoundArguments) {
        guard let builtin = byName[c.callee.name] else {
            var notes: [Diagnostic.Note] = []
            if let s = NameSuggestions.best(for: c.callee.name, in: functions) { notes.append(.init("did you mean '\(s)'?")) }
            throw .error("unknown function '\(c.callee.name)'", at: c.callee.range, notes: notes)
        }
        return (builtin, try BoundArguments.bind(c, params: builtin.parameters, positional: builtin.positional))
    }
}

/// The builtins as a `.moe` author sees them, for editors (`moec lsp` completes and explains
/// them): each function's name and its signature, the positional parameters first and the
/// others as labels, `softmax(x, temperature:, groups:)`.
public enum BuiltinSignatures {
    public static let all: [(name: String, signature: String)] = Builtins.all.map { b in
        let positional = b.parameters.prefix(b.positional)
        let labelled = b.parameters.dropFirst(b.positional).map { "\($0):" }
        return (b.name, "\(b.name)(\((positional + labelled).joined(separator: ", ")))")
    }
}
