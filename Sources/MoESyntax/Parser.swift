import MoEBasics

/// A recursive-descent parser for `.moe` files, one function per production of
/// `Grammar/moe.ebnf`.
///
/// Error recovery: a syntax error inside a declaration is reported and the parser skips to
/// the next keyword that starts a declaration (inside a `moe { … }` block, to the next field
/// or the closing brace), so one run reports the independent errors of a file.
public struct Parser {
    private var tokens: [Token]
    private var pos = 0
    private let diagnostics: DiagnosticEngine
    private let path: String

    /// Thrown internally to unwind to the nearest recovery point; the error is already reported.
    private struct Recover: Error {}

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

    private var current: Token { tokens[pos] }
    private var previous: Token { tokens[max(0, pos - 1)] }

    private mutating func advance() { if pos < tokens.count - 1 { pos += 1 } }

    private func isPunct(_ p: Punct) -> Bool { current.kind == .punct(p) }
    private func isKeyword(_ k: Keyword) -> Bool { current.kind == .keyword(k) }

    private mutating func consume(_ p: Punct) -> Bool {
        if isPunct(p) { advance(); return true }
        return false
    }

    private mutating func expect(_ p: Punct, _ context: String, notes: [Diagnostic.Note] = []) throws -> SourceRange {
        if isPunct(p) { let r = current.range; advance(); return r }
        throw error("expected '\(p.rawValue)' \(context), found \(current)", notes: notes)
    }

    private mutating func expectIdentifier(_ context: String) throws -> Identifier {
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

    private mutating func expectString(_ context: String) throws -> (String, SourceRange) {
        if case .string(let s) = current.kind {
            let r = current.range
            advance()
            return (s, r)
        }
        throw error("expected \(context), found \(current)")
    }

    private func error(_ message: String, at range: SourceRange? = nil, notes: [Diagnostic.Note] = []) -> Recover {
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
    private mutating func synchronize() {
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
    private var tokenStartsLine: Bool {
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
    private mutating func parseDeclaration(into decls: inout [Declaration]) throws -> Declaration {
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
    private mutating func parseParam() throws -> ParamDecl {
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
    private mutating func parseLiteral() throws -> Literal {
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
    private mutating func parseInput() throws -> InputDecl {
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
    private mutating func parseShape() throws -> ([Expr], SourceRange) {
        let open = try expect(.lbracket, "to start a shape")
        var dims: [Expr] = []
        if !isPunct(.rbracket) {
            repeat { dims.append(try parseAdditive().expr) } while consume(.comma)
        }
        let close = try expect(.rbracket, "to close the shape")
        let length = close.start.line == open.start.line ? close.start.column - open.start.column + 1 : 1
        return (dims, SourceRange(open.start, length: length))
    }

    /// weight_entry = IDENT , ':' , shape , '=' , STRING , { '|>' , layout_step } ;
    /// layout_step  = IDENT , [ '(' , [ arguments ] , ')' ] ;
    private mutating func parseWeightEntry(prefix: String) throws -> WeightDecl {
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
        return decl
    }

    // MARK: Expressions

    /// How deeply expressions may nest, like clang's `-fbracket-depth` (and serde_json's 128).
    /// Every bracket, call's arguments, list, unary '-' and moe block is one level, and so is
    /// every operator of a chain (`a + b + c` is a tree two levels deep) and every `|>` stage.
    /// Deeper input is a located error: the parser recurses once per level, and so do the walks
    /// over the tree (the printer, the lowering, the tree's deallocation), so without a limit
    /// 20,000 nested `(` overflow the stack. The lowering of a nested call takes about 35 KB of
    /// stack per level in a debug build, so 256 levels overflowed a debug moec's 8 MB; at 128
    /// there is room to spare. Real graphs nest fewer than 10 levels.
    public static let maxNestingDepth = 128

    /// An expression and its tree's depth (a leaf is 0), so the limit is checked without walks.
    private struct Parsed { var expr: Expr; var depth: Int }

    /// The constructs currently open around the parser (the recursion depth).
    private var nesting = 0

    private func tooDeep(at range: SourceRange) -> Recover {
        error(
            "expression nested too deeply (more than \(Parser.maxNestingDepth) levels)", at: range,
            notes: [
                .init(
                    "brackets, calls, lists, unary '-', moe blocks, and each operator or '|>' stage of a chain nest one level each; name parts with 'let'")
            ])
    }

    /// Runs `body` one construct deeper; the construct opens at `range`.
    private mutating func nested<T>(at range: SourceRange, _ body: (inout Parser) throws -> T) throws -> T {
        guard nesting < Parser.maxNestingDepth else { throw tooDeep(at: range) }
        nesting += 1
        defer { nesting -= 1 }
        return try body(&self)
    }

    /// A node whose deepest child is `childDepth` deep; an error at `range` if that is too deep.
    private func node(_ expr: Expr, over childDepth: Int, at range: SourceRange) throws -> Parsed {
        guard childDepth < Parser.maxNestingDepth else { throw tooDeep(at: range) }
        return Parsed(expr: expr, depth: childDepth + 1)
    }

    /// expr = pipeline ;
    public mutating func parseExpr() throws -> Expr {
        try parsePipeline().expr
    }

    /// pipeline = comparison , { '|>' , stage } ;
    /// stage    = IDENT , [ '(' , [ arguments ] , ')' ] , [ 'if' , comparison ] ;
    private mutating func parsePipeline() throws -> Parsed {
        var value = try parseComparison()
        while isPunct(.pipe) {
            let pipe = current.range
            advance()
            let callee = try expectIdentifier("a function name after '|>'")
            var args = [Argument(label: nil, value: value.expr)]
            var depth = value.depth
            if isPunct(.lparen) {
                let rest = try parseArguments()
                args += rest.arguments
                depth = max(depth, rest.depth)
            }
            var condition: Expr?
            if isKeyword(.if) {
                advance()
                let c = try parseComparison()
                condition = c.expr
                depth = max(depth, c.depth)
            }
            value = try node(.call(Call(callee: callee, arguments: args, piped: true, condition: condition)), over: depth, at: pipe)
        }
        return value
    }

    /// comparison = additive , [ ( '==' | '!=' ) , additive ] ;
    private mutating func parseComparison() throws -> Parsed {
        let lhs = try parseAdditive()
        guard isPunct(.equalEqual) || isPunct(.notEqual) else { return lhs }
        let op: BinaryOperator = isPunct(.equalEqual) ? .equal : .notEqual
        let r = current.range
        advance()
        let rhs = try parseAdditive()
        return try node(.binary(op, lhs.expr, rhs.expr, opRange: r), over: max(lhs.depth, rhs.depth), at: r)
    }

    /// additive = multiplicative , { ( '+' | '-' ) , multiplicative } ;
    private mutating func parseAdditive() throws -> Parsed {
        var lhs = try parseMultiplicative()
        while isPunct(.plus) || isPunct(.minus) {
            let op: BinaryOperator = isPunct(.plus) ? .add : .sub
            let r = current.range
            advance()
            let rhs = try parseMultiplicative()
            lhs = try node(.binary(op, lhs.expr, rhs.expr, opRange: r), over: max(lhs.depth, rhs.depth), at: r)
        }
        return lhs
    }

    /// multiplicative = unary , { ( '*' | '/' ) , unary } ;
    private mutating func parseMultiplicative() throws -> Parsed {
        var lhs = try parseUnary()
        while isPunct(.star) || isPunct(.slash) {
            let op: BinaryOperator = isPunct(.star) ? .mul : .div
            let r = current.range
            advance()
            let rhs = try parseUnary()
            lhs = try node(.binary(op, lhs.expr, rhs.expr, opRange: r), over: max(lhs.depth, rhs.depth), at: r)
        }
        return lhs
    }

    /// unary = '-' , unary | primary ;
    private mutating func parseUnary() throws -> Parsed {
        if isPunct(.minus) {
            let r = current.range
            advance()
            let inner = try nested(at: r) { try $0.parseUnary() }
            return try node(.negate(inner.expr, r), over: inner.depth, at: r)
        }
        return try parsePrimary()
    }

    /// primary = INT | FLOAT | STRING | 'true' | 'false' | 'null'
    ///         | IDENT , [ '(' , [ arguments ] , ')' ] | '(' , expr , ')'
    ///         | '[' , [ expr , { ',' , expr } ] , ']' | moe_block ;
    private mutating func parsePrimary() throws -> Parsed {
        let tok = current
        switch tok.kind {
        case .int(let v): advance(); return Parsed(expr: .int(v, tok.range), depth: 0)
        case .float(let v): advance(); return Parsed(expr: .float(v, tok.range), depth: 0)
        case .string(let s): advance(); return Parsed(expr: .string(s, tok.range), depth: 0)
        case .keyword(.true): advance(); return Parsed(expr: .bool(true, tok.range), depth: 0)
        case .keyword(.false): advance(); return Parsed(expr: .bool(false, tok.range), depth: 0)
        case .keyword(.null): advance(); return Parsed(expr: .null(tok.range), depth: 0)
        case .keyword(.moe):
            let block = try nested(at: tok.range) { try $0.parseMoEBlock() }
            return try node(.moe(block.block), over: block.depth, at: tok.range)
        case .identifier(let s):
            advance()
            let id = Identifier(s, at: tok.range)
            if isPunct(.lparen) {
                let args = try parseArguments()
                return try node(.call(Call(callee: id, arguments: args.arguments)), over: args.depth, at: tok.range)
            }
            return Parsed(expr: .name(id), depth: 0)
        case .punct(.lparen):
            advance()
            // Parentheses add no node to the tree, but a level to the parser's recursion.
            let e = try nested(at: tok.range) { try $0.parsePipeline() }
            _ = try expect(.rparen, "to close the parenthesised expression")
            return e
        case .punct(.lbracket):
            advance()
            var items: [Expr] = []
            var depth = 0
            try nested(at: tok.range) { p in
                if !p.isPunct(.rbracket) {
                    repeat {
                        let item = try p.parsePipeline()
                        items.append(item.expr)
                        depth = max(depth, item.depth)
                    } while p.consume(.comma)
                }
            }
            _ = try expect(.rbracket, "to close the list", notes: [.init("the list started here", at: tok.range)])
            return try node(.list(items, tok.range), over: depth, at: tok.range)
        case .eof:
            throw error("expected an expression, found end of file")
        default:
            throw error("expected an expression, found \(tok)")
        }
    }

    /// arguments = argument , { ',' , argument } ;   (with the surrounding parentheses)
    /// argument  = [ IDENT , ':' ] , expr ;
    /// The depth is that of the deepest argument (0 for none).
    private mutating func parseArguments() throws -> (arguments: [Argument], depth: Int) {
        let open = try expect(.lparen, "to start the arguments")
        var args: [Argument] = []
        if consume(.rparen) { return (args, 0) }
        var depth = 0
        try nested(at: open) { p in
            repeat {
                var label: Identifier?
                // A keyword before ':' is a label too (`split(0, of: 2)`): nothing else fits there.
                if let s = p.current.kind.identifierName ?? p.current.kind.keywordName, p.tokens[p.pos + 1].kind == .punct(.colon) {
                    label = Identifier(s, at: p.current.range)
                    p.advance()
                    p.advance()
                }
                let value = try p.parsePipeline()
                args.append(Argument(label: label, value: value.expr))
                depth = max(depth, value.depth)
            } while p.consume(.comma)
        }
        _ = try expect(.rparen, "to close the arguments", notes: [.init("the arguments started here", at: open)])
        return (args, depth)
    }

    /// moe_block = 'moe' , '(' , expr , ')' , '{' , { moe_field } , '}' ;
    /// moe_field = IDENT , ':' , ( expr , 'of' , IDENT , '(' , [ arguments ] , ')' | expr ) ;
    /// The depth is that of the deepest expression in the block.
    private mutating func parseMoEBlock() throws -> (block: MoEBlock, depth: Int) {
        let start = current.range
        advance() // 'moe'
        _ = try expect(.lparen, "after 'moe'", notes: [.init("write 'moe(x) { router: …  experts: … }'")])
        let input = try parsePipeline()
        var depth = input.depth
        _ = try expect(.rparen, "after the moe block's input")
        let open = try expect(.lbrace, "to open the moe block")
        var fields: [MoEField] = []
        while !isPunct(.rbrace) {
            if current.kind == .eof {
                throw error(
                    "expected '}' to close the moe block, found end of file",
                    notes: [.init("the block was opened here", at: open)])
            }
            if case .keyword(let k) = current.kind, k.startsDeclaration, tokenStartsLine {
                throw error(
                    "expected '}' to close the moe block, found \(current)",
                    notes: [.init("the block was opened here", at: open)])
            }
            do {
                let name = try expectIdentifier("a field name (router, experts, shared)")
                _ = try expect(.colon, "after the field name '\(name.name)'")
                let value = try parsePipeline()
                depth = max(depth, value.depth)
                var kind: Call?
                if isKeyword(.of) {
                    advance()
                    let callee = try expectIdentifier("an expert kind after 'of' (swiglu or mlp)")
                    if isPunct(.lparen) {
                        let args = try parseArguments()
                        // The kind is a call node below the field.
                        depth = max(depth, args.depth + 1)
                        kind = Call(callee: callee, arguments: args.arguments)
                    } else {
                        kind = Call(callee: callee, arguments: [])
                    }
                }
                fields.append(MoEField(name: name, value: value.expr, kind: kind))
            } catch let e as Recover {
                // Skip to the next `name:` field or the closing brace.
                while current.kind != .eof && !isPunct(.rbrace) {
                    if case .identifier = current.kind, tokens[pos + 1].kind == .punct(.colon), tokenStartsLine { break }
                    if case .keyword(let k) = current.kind, k.startsDeclaration, tokenStartsLine { throw e }
                    advance()
                }
            }
        }
        advance() // '}'
        return (MoEBlock(input: input.expr, fields: fields, range: start), depth)
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
