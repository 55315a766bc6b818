import MoEBasics
import MoEIR
import MoESyntax

// Expressions: literals, names, arithmetic, calls (dispatched to `Builtins`) and moe blocks.
extension ASTToIR {
    /// An expression's value: a graph node for a tensor or routing, or a compile-time value.
    mutating func lower(_ e: Expr) throws(Diagnostic) -> Value {
        switch e {
        case .int(let v, _): return .int(v)
        case .float(let v, _): return .float(v)
        case .string(let s, _): return .string(s)
        case .bool(let b, _): return .bool(b)
        case .null: return .null
        case .name(let id):
            if let empty = emptyWeights[id.name] { throw empty }
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
            case .null: throw nullUse(inner, expecting: "a number")
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
                case .null: throw nullUse(item, expecting: "an integer")
                default: throw .error("lists hold integers known at compile time", at: item.range)
                }
            }
            return .ints(out)
        }
    }

    private func tensorOperand(_ id: ValueID, at r: SourceRange) throws(Diagnostic) -> ValueID {
        if builder.type(of: id).routing != nil {
            throw .error(
                "arithmetic on a routing is not defined", at: r,
                notes: [.init("use routing stages such as 'scale(f)', 'renormalize' or 'sqrt'")])
        }
        return id
    }

    private mutating func binary(_ op: BinaryOperator, _ a: Value, _ b: Value, lhs: Expr, rhs: Expr, at range: SourceRange) throws(Diagnostic) -> Value {
        if op == .equal || op == .notEqual {
            let same = try equal(a, b, lhs: lhs, rhs: rhs, at: range)
            return .bool(op == .equal ? same : !same)
        }
        if case .null = a { throw nullUse(lhs, expecting: "a number or a tensor") }
        if case .null = b { throw nullUse(rhs, expecting: "a number or a tensor") }
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
                    throw .error(
                        "\(x) / \(y) is not a whole number", at: range,
                        notes: [.init("integer params divide exactly; write a float (\(x).0 / \(y)) for a fraction")])
                }
                result = x.dividedReportingOverflow(by: y)
            case .equal, .notEqual: fatalError("unreachable: comparisons return above")
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
            case .equal, .notEqual: fatalError("unreachable: comparisons return above")
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
        case .equal, .notEqual: fatalError("unreachable: comparisons return above")
        }
        return .tensor(try builder.add(irOp, [x, y], at: range))
    }

    /// `a == b` on compile-time values: numbers by value (an int equals the same float), bools,
    /// strings, and `null`, which equals only `null`. Values of different kinds are an error,
    /// as a comparison that is always false is almost certainly a mistake.
    private func equal(_ a: Value, _ b: Value, lhs: Expr, rhs: Expr, at range: SourceRange) throws(Diagnostic) -> Bool {
        func kind(_ v: Value, _ e: Expr) throws(Diagnostic) -> String {
            switch v {
            case .int, .float: return "a number"
            case .bool: return "a bool"
            case .string: return "a string"
            case .null: return "null"
            case .ints: return "a list"
            case .poisoned: throw ASTToIR.alreadyReported
            case .symbol:
                if case .name(let id) = e { throw unknownName(id, expecting: "a param or a value to compare") }
                throw .error("expected a value known at compile time", at: e.range)
            case .tensor, .declaredWeight:
                throw .error("'==' and '!=' compare values known at compile time; this is a tensor", at: e.range)
            }
        }
        let ka = try kind(a, lhs), kb = try kind(b, rhs)
        switch (a, b) {
        case (.null, .null): return true
        case (.null, _), (_, .null): return false
        case (.int(let x), .int(let y)): return x == y
        case (.int, .float), (.float, .int), (.float, .float):
            func d(_ v: Value) -> Double {
                switch v {
                case .int(let i): return Double(i)
                case .float(let f): return f
                default: return .nan
                }
            }
            return d(a) == d(b)
        case (.bool(let x), .bool(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.ints(let x), .ints(let y)): return x == y
        default:
            throw .error("cannot compare \(ka) with \(kb)", at: range)
        }
    }

    /// A `null` where a value is needed: names the param and where its null came from.
    func nullUse(_ e: Expr, expecting what: String) -> Diagnostic {
        guard case .name(let id) = e else { return .error("null is not \(what)", at: e.range) }
        let source = params.first { $0.name == id.name }?.source
        return .error(
            "'\(id.name)' is null here, not \(what)", at: e.range,
            notes: [.init("its value is null\(source.map { " (from \($0))" } ?? ""); guard the use with 'if \(id.name) != null'")])
    }

    // MARK: Calls

    private mutating func call(_ c: Call) throws(Diagnostic) -> Value {
        if let cond = c.condition {
            let v = try constant(cond)
            guard case .bool(let keep) = v else {
                if case .null = v { throw nullUse(cond, expecting: "a bool") }
                throw .error("the condition of '\(c.callee.name) if …' must be a bool known at compile time", at: cond.range)
            }
            if !keep { return try lower(c.arguments[0].value) }
        }
        if scope[c.callee.name] != nil && !Builtins.functions.contains(c.callee.name) {
            throw .error("'\(c.callee.name)' is not a function", at: c.callee.range)
        }
        let (builtin, args) = try Builtins.bind(c)
        return try builtin.lower(&self, args)
    }

    /// Adds a node for a builtin's result.
    mutating func node(_ op: Op, _ operands: [ValueID], _ attributes: Attributes = [:], at: SourceRange) throws(Diagnostic) -> Value {
        .tensor(try builder.add(op, operands, attributes, at: at))
    }

    func isRouting(_ id: ValueID) -> Bool { builder.type(of: id).routing != nil }
}
