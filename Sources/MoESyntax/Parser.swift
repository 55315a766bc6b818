import MoEBasics

/// A recursive-descent parser for `.moe` files, one function per production of
/// `Grammar/moe.ebnf`.
///
/// Error recovery: a syntax error inside a declaration is reported and the parser skips to
/// the next keyword that starts a declaration (inside a `moe { … }` block, to the next field
/// or the closing brace), so one run reports the independent errors of a file.
public struct Parser {
    var tokens: [Token]
    var pos = 0
    let diagnostics: DiagnosticEngine
    let path: String
    /// The constructs currently open around the parser (the recursion depth; see
    /// `Parser+Expressions.swift`).
    var nesting = 0

    /// Thrown internally to unwind to the nearest recovery point; the error is already reported.
    struct Recover: Error {}

    public init(tokens: [Token], path: String, diagnostics: DiagnosticEngine) {
        self.tokens = tokens
        self.path = path
        self.diagnostics = diagnostics
    }

    /// Lexes and parses a file. Errors go to `diagnostics`; the tree holds what could be parsed.
    public static func parse(_ file: SourceFile, diagnostics: DiagnosticEngine) -> SourceFileAST {
        var lexer = Lexer(file: file, diagnostics: diagnostics)
        var parser = Parser(tokens: lexer.tokenize(), path: file.path, diagnostics: diagnostics)
        return parser.parseFile()
    }

    // MARK: Token helpers

    var current: Token { tokens[pos] }
    var previous: Token { tokens[max(0, pos - 1)] }

    mutating func advance() { if pos < tokens.count - 1 { pos += 1 } }

    func isPunct(_ p: Punct) -> Bool { current.kind == .punct(p) }
    func isKeyword(_ k: Keyword) -> Bool { current.kind == .keyword(k) }

    mutating func consume(_ p: Punct) -> Bool {
        if isPunct(p) { advance(); return true }
        return false
    }

    mutating func expect(_ p: Punct, _ context: String, notes: [Diagnostic.Note] = []) throws -> SourceRange {
        if isPunct(p) { let r = current.range; advance(); return r }
        throw error("expected '\(p.rawValue)' \(context), found \(current)", notes: notes)
    }

    mutating func expectIdentifier(_ context: String) throws -> Identifier {
        if case .identifier(let s) = current.kind {
            let id = Identifier(s, at: current.range)
            advance()
            return id
        }
        if case .keyword(let k) = current.kind {
            throw error(
                "expected \(context), found keyword '\(k.rawValue)'",
                notes: [.init("'\(k.rawValue)' is reserved; choose another name")])
        }
        throw error("expected \(context), found \(current)")
    }

    mutating func expectString(_ context: String) throws -> (String, SourceRange) {
        if case .string(let s) = current.kind {
            let r = current.range
            advance()
            return (s, r)
        }
        throw error("expected \(context), found \(current)")
    }

    func error(_ message: String, at range: SourceRange? = nil, notes: [Diagnostic.Note] = []) -> Recover {
        var r = range ?? current.range
        // "Expected …" at the first token of a line is about what the previous line lacks:
        // point just after the previous token, where the missing text belongs.
        if range == nil, pos > 0, tokenStartsLine {
            let p = previous.range.start
            r = SourceRange(SourceLocation(file: p.file, line: p.line, column: p.column + previous.range.length), length: 1)
        }
        // A line that already has an error (often a lexical one) gets no second, consequential one.
        let lineHasError = diagnostics.diagnostics.contains {
            $0.severity == .error && $0.location?.file == r.start.file && $0.location?.line == r.start.line
        }
        if !lineHasError { diagnostics.error(message, at: r, notes: notes) }
        return Recover()
    }

    /// Skips to the next declaration keyword that starts a line (where the next declaration
    /// most likely begins, whatever brackets the broken one left open).
    mutating func synchronize() {
        while current.kind != .eof {
            switch current.kind {
            case .keyword(let k) where k.startsDeclaration && tokenStartsLine: return
            default: break
            }
            advance()
        }
    }

    /// True when the current token is the first on its line: a declaration keyword there ends
    /// an unbalanced bracket left by the error.
    var tokenStartsLine: Bool {
        pos == 0 || tokens[pos - 1].range.start.line < current.range.start.line
    }

    // MARK: Declarations

    /// file = { declaration } , EOF ;
    public mutating func parseFile() -> SourceFileAST {
        var decls: [Declaration] = []
        while current.kind != .eof {
            let before = pos
            do {
                decls.append(try parseDeclaration(into: &decls))
            } catch {
                synchronize()
                if pos == before { advance() }
            }
        }
        return SourceFileAST(path: path, declarations: decls, end: current.range)
    }

    /// declaration = model_decl | param_decl | input_decl | weight_decl | weights_group
    ///             | let_decl | output_decl ;
    mutating func parseDeclaration(into decls: inout [Declaration]) throws -> Declaration {
        guard case .keyword(let k) = current.kind, k.startsDeclaration else {
            var notes: [Diagnostic.Note] = [.init("a declaration starts with 'model', 'param', 'input', 'weight', 'weights', 'let' or 'output'")]
            if case .identifier = current.kind, tokens[pos + 1].kind == .punct(.equal) {
                notes = [.init("to name a value, write 'let \(current.kind.identifierName ?? "name") = …'")]
            }
            throw error("expected a declaration, found \(current)", notes: notes)
        }
        advance()
        switch k {
        case .model:
            return .model(try expectIdentifier("a model name after 'model'"))
        case .param:
            return .param(try parseParam())
        case .input:
            return .input(try parseInput())
        case .weight:
            return .weight(try parseWeightEntry(prefix: ""))
        case .weights:
            // weights_group = 'weights' , STRING , '{' , { weight_entry } , '}' ;
            let (prefix, _) = try expectString("a tensor-name prefix string after 'weights'")
            _ = try expect(.lbrace, "to open the weights group")
            var last: Declaration?
            while !isPunct(.rbrace) && current.kind != .eof {
                if case .keyword(let k) = current.kind, k.startsDeclaration {
                    throw error("expected '}' to close the weights group, found \(current)")
                }
                let entry = Declaration.weight(try parseWeightEntry(prefix: prefix))
                if let l = last { decls.append(l) }
                last = entry
            }
            _ = try expect(.rbrace, "to close the weights group")
            guard let final = last else {
                throw error("empty weights group", at: previous.range)
            }
            return final
        case .let:
            let name = try expectIdentifier("a name after 'let'")
            _ = try expect(.equal, "after the name in 'let \(name.name)'")
            return .let(LetDecl(name: name, value: try parseExpr()))
        case .output:
            let name = try expectIdentifier("an output name after 'output'")
            var value: Expr?
            if consume(.equal) { value = try parseExpr() }
            return .output(OutputDecl(name: name, value: value))
        default:
            fatalError("unreachable: startsDeclaration covers these keywords")
        }
    }

    /// param_decl = 'param' , IDENT , [ ':' , type_name , [ '?' ] ] , [ '=' , literal ] ,
    ///              [ 'from' , config_key , { ',' , config_key } ] ;
    /// config_key = STRING , [ '[' , ( INT | IDENT ) , ']' ] ;
    mutating func parseParam() throws -> ParamDecl {
        let name = try expectIdentifier("a parameter name after 'param'")
        var decl = ParamDecl(name: name, type: nil, typeRange: nil, defaultValue: nil, defaultRange: nil, configKeys: [])
        if consume(.colon) {
            let t = try expectIdentifier("a type (int, float, bool or string)")
            guard let type = ParamType(rawValue: t.name) else {
                throw error(
                    "unknown parameter type '\(t.name)'", at: t.range,
                    notes: [.init("parameter types are int, float, bool and string, each optionally followed by '?' to allow null")])
            }
            decl.type = type
            decl.typeRange = t.range
            decl.optional = consume(.question)
        }
        if consume(.equal) {
            let start = current.range
            decl.defaultValue = try parseLiteral()
            decl.defaultRange = start
        }
        if isKeyword(.from) {
            advance()
            repeat {
                let (key, r) = try expectString("a config.json key string after 'from'")
                var configKey = ConfigKey(key: key, range: r)
                if isPunct(.lbracket) {
                    let open = current.range
                    advance()
                    switch current.kind {
                    case .int(let i): configKey.index = i
                    case .identifier(let name): configKey.indexName = name
                    default: throw error("expected a list index (a non-negative integer or an int param) after '[', found \(current)")
                    }
                    configKey.indexRange = current.range
                    advance()
                    _ = try expect(.rbracket, "to close the list index", notes: [.init("the index started here", at: open)])
                }
                decl.configKeys.append(configKey)
            } while consume(.comma)
        }
        if decl.type == nil && decl.defaultValue?.type == nil {
            throw error(
                "parameter '\(name.name)' needs a type or a default value", at: name.range,
                notes: [.init("write 'param \(name.name): int from \"key\"' or 'param \(name.name) = 8'")])
        }
        return decl
    }

    /// literal = [ '-' ] , ( INT | FLOAT ) | 'true' | 'false' | STRING | 'null' ;
    mutating func parseLiteral() throws -> Literal {
        let negative = consume(.minus)
        switch current.kind {
        case .int(let v): advance(); return .int(negative ? -v : v)
        case .float(let v): advance(); return .float(negative ? -v : v)
        case .keyword(.true) where !negative: advance(); return .bool(true)
        case .keyword(.false) where !negative: advance(); return .bool(false)
        case .keyword(.null) where !negative: advance(); return .null
        case .string(let s) where !negative: advance(); return .string(s)
        default:
            throw error("expected a literal value (number, true, false, null or string), found \(current)")
        }
    }

    /// input_decl = 'input' , IDENT , ':' , [ elem_type ] , shape ;
    mutating func parseInput() throws -> InputDecl {
        let name = try expectIdentifier("an input name after 'input'")
        _ = try expect(.colon, "after the input name", notes: [.init("write 'input \(name.name): [tokens, hidden]'")])
        var elem = ElementType.f32
        if case .identifier(let s) = current.kind, let e = ElementType(rawValue: s) {
            elem = e
            advance()
        }
        let (shape, range) = try parseShape()
        return InputDecl(name: name, elementType: elem, shape: shape, shapeRange: range)
    }

    /// shape = '[' , [ dim , { ',' , dim } ] , ']' ;
    mutating func parseShape() throws -> ([Expr], SourceRange) {
        let open = try expect(.lbracket, "to start a shape")
        var dims: [Expr] = []
        if !isPunct(.rbracket) {
            repeat { dims.append(try parseAdditive().expr) } while consume(.comma)
        }
        let close = try expect(.rbracket, "to close the shape")
        let length = close.start.line == open.start.line ? close.start.column - open.start.column + 1 : 1
        return (dims, SourceRange(open.start, length: length))
    }

    /// weight_entry = IDENT , ':' , shape , '=' , STRING , { '|>' , layout_step } , [ 'as' , IDENT ] ;
    /// layout_step  = IDENT , [ '(' , [ arguments ] , ')' ] ;
    /// (`as` is not reserved: it is read here only.)
    mutating func parseWeightEntry(prefix: String) throws -> WeightDecl {
        let name = try expectIdentifier("a weight name")
        _ = try expect(.colon, "after the weight name", notes: [.init("write '\(name.name): [rows, cols] = \"tensor.name\"'")])
        let (shape, shapeRange) = try parseShape()
        _ = try expect(.equal, "before the tensor name of weight '\(name.name)'")
        let (pattern, patternRange) = try expectString("a tensor-name string")
        var decl = WeightDecl(name: name, shape: shape, shapeRange: shapeRange, pattern: prefix + pattern, patternRange: patternRange)
        while consume(.pipe) {
            let step = try expectIdentifier("a layout step after '|>' (transpose, reshape, squeeze, split, deinterleave)")
            let args = isPunct(.lparen) ? try parseArguments().arguments : []
            decl.layout.append(Call(callee: step, arguments: args, piped: true))
        }
        if case .identifier("as") = current.kind {
            advance()
            decl.format = try expectIdentifier("a weight format after 'as' (f32, bf16, f16, int8, int4, int4g64, int4g128, int4z, …)")
        }
        return decl
    }
}

extension Token.Kind {
    var identifierName: String? {
        if case .identifier(let s) = self { return s }
        return nil
    }

    var keywordName: String? {
        if case .keyword(let k) = self { return k.rawValue }
        return nil
    }
}
