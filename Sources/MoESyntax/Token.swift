import MoEBasics

/// One lexical token of a `.moe` file, with the range of source text it came from.
public struct Token: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case identifier(String)
        case keyword(Keyword)
        case int(Int)
        case float(Double)
        case string(String)
        case punct(Punct)
        case eof
    }

    public var kind: Kind
    public var range: SourceRange

    public var description: String {
        switch kind {
        case .identifier(let s): return "identifier '\(s)'"
        case .keyword(let k): return "'\(k.rawValue)'"
        case .int(let v): return "integer \(v)"
        case .float(let v): return "number \(v)"
        case .string(let s): return "string \"\(s)\""
        case .punct(let p): return "'\(p.rawValue)'"
        case .eof: return "end of file"
        }
    }
}

public enum Keyword: String, CaseIterable, Sendable {
    case model, param, input, weight, weights, `let`, output, moe, of, from, `if`, `true`, `false`, null

    /// Keywords that begin a top-level declaration: where the parser resynchronises after an error.
    public var startsDeclaration: Bool {
        switch self {
        case .model, .param, .input, .weight, .weights, .let, .output: return true
        default: return false
        }
    }
}

public enum Punct: String, CaseIterable, Sendable {
    case lparen = "(", rparen = ")", lbracket = "[", rbracket = "]", lbrace = "{", rbrace = "}"
    case comma = ",", colon = ":", equal = "=", plus = "+", minus = "-", star = "*", slash = "/"
    case pipe = "|>", equalEqual = "==", notEqual = "!=", question = "?"
}
