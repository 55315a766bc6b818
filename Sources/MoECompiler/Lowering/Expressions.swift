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
            throw .error(
                "arithmetic on a routing is not defined", at: r,
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
                    throw .error(
                        "\(x) / \(y) is not a whole number", at: range,
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
