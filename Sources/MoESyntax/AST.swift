import MoEBasics

/// The syntax tree of a `.moe` file: what was written, with where it was written.
/// It knows nothing of types or shapes; `ASTToIR` in MoECompiler gives it meaning.

public struct Identifier: Equatable, Sendable {
    public var name: String
    public var range: SourceRange
    public init(_ name: String, at range: SourceRange) {
        self.name = name
        self.range = range
    }
}

public struct SourceFileAST: Sendable {
    public var path: String
    public var declarations: [Declaration]
    /// The end of the file (where its end-of-file token is), for errors about something the
    /// file lacks, such as outputs; 1:1 for an empty file.
    public var end: SourceRange?
    public init(path: String, declarations: [Declaration], end: SourceRange? = nil) {
        self.path = path
        self.declarations = declarations
        self.end = end
    }
}

public enum Declaration: Sendable {
    case model(Identifier)
    case param(ParamDecl)
    case input(InputDecl)
    case weight(WeightDecl)
    case `let`(LetDecl)
    case output(OutputDecl)

    /// The name the declaration declares.
    public var name: Identifier {
        switch self {
        case .model(let i): return i
        case .param(let p): return p.name
        case .input(let i): return i.name
        case .weight(let w): return w.name
        case .let(let l): return l.name
        case .output(let o): return o.name
        }
    }

    public var range: SourceRange { name.range }
}

public enum ParamType: String, Sendable, CaseIterable {
    case int, float, bool, string
}

public enum Literal: Equatable, Sendable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    /// JSON's `null`: the value of an optional param (`int?`) whose config key is null.
    case null

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .bool(let v): return String(v)
        case .string(let s): return "\"\(s)\""
        case .null: return "null"
        }
    }

    /// The type the literal gives an untyped param; `null` gives none.
    public var type: ParamType? {
        switch self {
        case .int: return .int
        case .float: return .float
        case .bool: return .bool
        case .string: return .string
        case .null: return nil
        }
    }
}

/// One config.json key a param reads: `"hidden_size"`, or an element of a list-valued key,
/// `"moe_topk"[0]`.
public struct ConfigKey: Sendable {
    public var key: String
    public var range: SourceRange
    /// The list index written after the key, if any (a number, or an int param declared
    /// earlier: `"moe_topk"[layer]`), and where it was written.
    public var index: Int?
    public var indexName: String?
    public var indexRange: SourceRange?
    public init(key: String, range: SourceRange, index: Int? = nil, indexName: String? = nil, indexRange: SourceRange? = nil) {
        self.key = key
        self.range = range
        self.index = index
        self.indexName = indexName
        self.indexRange = indexRange
    }
    /// The index as written: `[0]`, `[layer]`, or nothing.
    public var writtenIndex: String { index.map { "[\($0)]" } ?? indexName.map { "[\($0)]" } ?? "" }
    /// The key as written: `"moe_topk"[0]`.
    public var written: String { "\"\(key)\"" + writtenIndex }
}

public struct ParamDecl: Sendable {
    public var name: Identifier
    public var type: ParamType?
    public var typeRange: SourceRange?
    public var defaultValue: Literal?
    public var defaultRange: SourceRange?
    /// Written `int?`: the param may be `null` (from config.json, `--set`, or its default).
    public var optional: Bool = false
    /// Keys looked up in config.json, first present wins.
    public var configKeys: [ConfigKey]
}

public enum ElementType: String, Sendable {
    case f32, i32
}

public struct InputDecl: Sendable {
    public var name: Identifier
    public var elementType: ElementType
    public var shape: [Expr]
    public var shapeRange: SourceRange
}

public struct WeightDecl: Sendable {
    public var name: Identifier
    public var shape: [Expr]
    public var shapeRange: SourceRange
    /// The tensor-name pattern, with the `weights "prefix" { … }` prefix already prepended.
    public var pattern: String
    public var patternRange: SourceRange
    /// Layout steps applied to each tensor read (`|> transpose`, `|> reshape([E, F, H])`), in
    /// order, from the checkpoint's layout to the declared shape.
    public var layout: [Call] = []
    /// How the weight is stored at run time (`… as int8`), when written.
    public var format: Identifier?
}

public struct LetDecl: Sendable {
    public var name: Identifier
    public var value: Expr
}

public struct OutputDecl: Sendable {
    public var name: Identifier
    public var value: Expr?
}

public enum BinaryOperator: String, Sendable {
    case add = "+", sub = "-", mul = "*", div = "/"
    /// Comparisons of compile-time values (params, literals, `null`), for stage conditions.
    case equal = "==", notEqual = "!="
}

public indirect enum Expr: Sendable {
    case int(Int, SourceRange)
    case float(Double, SourceRange)
    case string(String, SourceRange)
    case bool(Bool, SourceRange)
    case null(SourceRange)
    case name(Identifier)
    case call(Call)
    case binary(BinaryOperator, Expr, Expr, opRange: SourceRange)
    case negate(Expr, SourceRange)
    case moe(MoEBlock)
    case list([Expr], SourceRange)

    /// Where the expression starts, for diagnostics about the whole expression.
    public var range: SourceRange {
        switch self {
        case .int(_, let r), .float(_, let r), .string(_, let r), .bool(_, let r), .null(let r), .negate(_, let r), .list(_, let r): return r
        case .name(let i): return i.range
        case .call(let c): return c.callee.range
        case .binary(_, _, _, let r): return r
        case .moe(let m): return m.range
        }
    }
}

public struct Argument: Sendable {
    public var label: Identifier?
    public var value: Expr
    public init(label: Identifier?, value: Expr) {
        self.label = label
        self.value = value
    }
}

/// `f(a, b: c)`, or a pipeline stage `a |> f(b: c)` (then `piped` is true and `a` is the first
/// argument). A stage written `… |> f if cond` keeps its condition; when it is false at compile
/// time the stage is skipped and the call's value is its first argument.
public struct Call: Sendable {
    public var callee: Identifier
    public var arguments: [Argument]
    public var piped: Bool
    public var condition: Expr?
    public init(callee: Identifier, arguments: [Argument], piped: Bool = false, condition: Expr? = nil) {
        self.callee = callee
        self.arguments = arguments
        self.piped = piped
        self.condition = condition
    }
}

/// `moe(input) { router: …  experts: COUNT of kind(…)  shared: … }`
public struct MoEBlock: Sendable {
    public var input: Expr
    public var fields: [MoEField]
    public var range: SourceRange
}

public struct MoEField: Sendable {
    public var name: Identifier
    public var value: Expr
    /// For `experts: COUNT of kind(args)`: the kind; `value` is then the count.
    public var kind: Call?
    /// For `experts: COUNT of expert(row) { … }`: the expert's body (`kind` is then `expert(row)`).
    public var body: ExpertBody?
    /// Further groups of experts after the first, numbered after it:
    /// `experts: 6 of swiglu(…), 2 of copy, 1 of constant(v)`.
    public var moreGroups: [ExpertGroup] = []
    /// `shared: EXPR if COND`: the field counts only when the compile-time COND is true.
    public var condition: Expr?

    public init(name: Identifier, value: Expr, kind: Call? = nil, body: ExpertBody? = nil) {
        self.name = name
        self.value = value
        self.kind = kind
        self.body = body
    }
}

/// `COUNT of KIND` or `COUNT of KIND(args)` after the first group of an experts field.
public struct ExpertGroup: Sendable {
    public var count: Expr
    public var kind: Call
    public var body: ExpertBody?
}

/// An expert written as an expression: `expert(h) { let g = …  (u + 1) * g |> linear(down) }`.
/// `lets` name intermediate values; `result` is the expert's output row.
public struct ExpertBody: Sendable {
    public var lets: [LetDecl]
    public var result: Expr
    public var range: SourceRange
}
