import MoEBasics

/// Expressions: the productions from `expr` down to `primary`, with the nesting limit that keeps
/// the recursion (here, and in every walk over the tree later) bounded.
extension Parser {
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
    struct Parsed { var expr: Expr; var depth: Int }

    func tooDeep(at range: SourceRange) -> Recover {
        error(
            "expression nested too deeply (more than \(Parser.maxNestingDepth) levels)", at: range,
            notes: [
                .init(
                    "brackets, calls, lists, unary '-', moe blocks, and each operator or '|>' stage of a chain nest one level each; name parts with 'let'")
            ])
    }

    /// Runs `body` one construct deeper; the construct opens at `range`.
    mutating func nested<T>(at range: SourceRange, _ body: (inout Parser) throws -> T) throws -> T {
        guard nesting < Parser.maxNestingDepth else { throw tooDeep(at: range) }
        nesting += 1
        defer { nesting -= 1 }
        return try body(&self)
    }

    /// A node whose deepest child is `childDepth` deep; an error at `range` if that is too deep.
    func node(_ expr: Expr, over childDepth: Int, at range: SourceRange) throws -> Parsed {
        guard childDepth < Parser.maxNestingDepth else { throw tooDeep(at: range) }
        return Parsed(expr: expr, depth: childDepth + 1)
    }

    /// expr = pipeline ;
    public mutating func parseExpr() throws -> Expr {
        try parsePipeline().expr
    }

    /// pipeline = comparison , { '|>' , stage } ;
    /// stage    = IDENT , [ '(' , [ arguments ] , ')' ] , [ 'if' , comparison ] ;
    mutating func parsePipeline() throws -> Parsed {
        var value = try parseComparison()
        while isPunct(.pipe) {
            let pipe = current.range
            advance()
            let callee = try expectIdentifier("a function name after '|>'")
            var args = [Argument(label: nil, value: value.expr)]
            var depth = value.depth
            // A call's '(' is on its name's line: one on the next line starts a new expression
            // (an expert body's result after a `let` ending in a bare stage).
            if isPunct(.lparen), !tokenStartsLine {
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
    mutating func parseComparison() throws -> Parsed {
        let lhs = try parseAdditive()
        guard isPunct(.equalEqual) || isPunct(.notEqual) else { return lhs }
        let op: BinaryOperator = isPunct(.equalEqual) ? .equal : .notEqual
        let r = current.range
        advance()
        let rhs = try parseAdditive()
        return try node(.binary(op, lhs.expr, rhs.expr, opRange: r), over: max(lhs.depth, rhs.depth), at: r)
    }

    /// additive = multiplicative , { ( '+' | '-' ) , multiplicative } ;
    mutating func parseAdditive() throws -> Parsed {
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
    mutating func parseMultiplicative() throws -> Parsed {
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
    mutating func parseUnary() throws -> Parsed {
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
    mutating func parsePrimary() throws -> Parsed {
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
            if isPunct(.lparen), !tokenStartsLine {
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
    mutating func parseArguments() throws -> (arguments: [Argument], depth: Int) {
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
    /// moe_field = IDENT , ':' , ( expert_group , { ',' , expert_group } | expr ) ;
    /// expert_group = expr , 'of' , IDENT , [ '(' , [ arguments ] , ')' ] , [ expert_body ] ;
    /// expert_body = '{' , { 'let' , IDENT , '=' , expr } , expr , '}' ;
    /// The depth is that of the deepest expression in the block.
    mutating func parseMoEBlock() throws -> (block: MoEBlock, depth: Int) {
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
                var body: ExpertBody?
                if kind != nil, isPunct(.lbrace) {
                    let parsed = try parseExpertBody()
                    depth = max(depth, parsed.depth + 1)
                    body = parsed.body
                }
                var field = MoEField(name: name, value: value.expr, kind: kind, body: body)
                // More groups: `, COUNT of KIND[(args)]`.
                while kind != nil, consume(.comma) {
                    let count = try parsePipeline()
                    depth = max(depth, count.depth)
                    guard isKeyword(.of) else {
                        throw error("expected 'of' after the count of a group of experts, found \(current)", notes: [.init("e.g. 'experts: 6 of swiglu(…), 2 of copy'")])
                    }
                    advance()
                    let callee = try expectIdentifier("an expert kind after 'of' (copy, zero, constant(v), …)")
                    var arguments: [Argument] = []
                    if isPunct(.lparen) {
                        let args = try parseArguments()
                        depth = max(depth, args.depth + 1)
                        arguments = args.arguments
                    }
                    var groupBody: ExpertBody?
                    if isPunct(.lbrace) {
                        let parsed = try parseExpertBody()
                        depth = max(depth, parsed.depth + 1)
                        groupBody = parsed.body
                    }
                    field.moreGroups.append(ExpertGroup(count: count.expr, kind: Call(callee: callee, arguments: arguments), body: groupBody))
                }
                if kind == nil, isKeyword(.if) {
                    advance()
                    let cond = try parseComparison()
                    depth = max(depth, cond.depth)
                    field.condition = cond.expr
                }
                fields.append(field)
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

    /// expert_body = '{' , { 'let' , IDENT , '=' , expr } , expr , '}' ;
    mutating func parseExpertBody() throws -> (body: ExpertBody, depth: Int) {
        let open = try expect(.lbrace, "to open the expert's body")
        var lets: [LetDecl] = []
        var depth = 0
        while isKeyword(.let) {
            advance()
            let name = try expectIdentifier("a name after 'let'")
            _ = try expect(.equal, "after the name in 'let \(name.name)'")
            let value = try parsePipeline()
            depth = max(depth, value.depth)
            lets.append(LetDecl(name: name, value: value.expr))
        }
        if isPunct(.rbrace) {
            throw error(
                "the expert's body has no result", notes: [.init("end the body with the expression of the expert's output row, e.g. 'g * u |> linear(down)'")])
        }
        let result = try parsePipeline()
        depth = max(depth, result.depth)
        if !isPunct(.rbrace) {
            throw error(
                "expected '}' to close the expert's body, found \(current)",
                notes: [.init("a body is 'let' lines and one final expression; the body was opened here", at: open)])
        }
        advance()
        return (ExpertBody(lets: lets, result: result.expr, range: open), depth)
    }
}
