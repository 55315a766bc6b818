import MoEBasics
import MoEIR
import MoESyntax

/// Experts written as an expression: `experts: n of expert(h) { let … ; RESULT }`.
///
/// The body is lowered to an `ExpertProgram` over the token's row `h` and the block's stacked
/// weights (each `[experts, …]`, read per expert): `linear(v, W)` / `linear(v, W, bias: b)`,
/// the activations, `clamp(v, min:, max:)`, `min`, `max`, `+ - * /` with numbers and params.
/// Then the shape is recognised (`packedShape`): one or two projections of the row, an
/// element-wise program of them, and a down projection is the packed kernel's shape, and the
/// block becomes a `swiglu` (two projections) or `mlp` (one) block with biases and an
/// `epilogue` (none when the program is plain SwiGLU or an activation). Any other body is a
/// `program` block, run on the general path.
extension ASTToIR {
    /// A value inside an expert body.
    enum BodyValue {
        case register(Int, width: Int)
        case constant(Double)
        case weight(ValueID, name: String)
    }

    /// What a body becomes: the block's kind, its weight operands and the attributes that say
    /// what the experts compute.
    struct LoweredBody {
        var kind: ExpertKind
        var weights: [ValueID]
        var attributes: Attributes
    }

    /// The body's functions, for errors.
    static let bodyFunctions = ["linear", "clamp", "min", "max"] + Activation.allCases.map(\.rawValue) + ["sigmoid", "tanh", "exp"]

    mutating func lowerExpertBody(_ kindCall: Call, _ body: ExpertBody, experts: Int, hidden: Int) throws(Diagnostic) -> LoweredBody {
        let b = try buildExpertBody(kindCall, body, experts: experts, hidden: hidden)
        return Self.packedShape(b) ?? LoweredBody(kind: .program, weights: b.weights, attributes: ["body": .string(b.program.description)])
    }

    /// One group of a block whose computed experts differ (`experts: 4 of swiglu(…), 2 of
    /// expert(h) { … }`): the group's program over its own weights, which the caller renumbers.
    mutating func groupProgram(_ kindCall: Call, _ body: ExpertBody?, experts: Int, hidden: Int) throws(Diagnostic) -> (ExpertProgram, [ValueID]) {
        if let body {
            guard kindCall.callee.name == "expert" else {
                throw .error("an expert body follows 'expert(row)', not '\(kindCall.callee.name)(…)'", at: kindCall.callee.range)
            }
            let b = try buildExpertBody(kindCall, body, experts: experts, hidden: hidden)
            return (b.program, b.weights)
        }
        let at = kindCall.callee.range
        switch kindCall.callee.name {
        case "swiglu":
            let args = try BoundArguments.bind(kindCall, params: ["gate", "up", "down"], positional: 0)
            let ws = [try args.tensor("gate", &self), try args.tensor("up", &self), try args.tensor("down", &self)]
            let program = ExpertProgram(
                inputs: 1,
                instructions: [
                    .linear(0, weight: 0, bias: nil), .linear(0, weight: 1, bias: nil), .unary("silu", .register(1)),
                    .binary("mul", .register(3), .register(2)), .linear(4, weight: 2, bias: nil)
                ])
            return (program, ws)
        case "mlp":
            let args = try BoundArguments.bind(kindCall, params: ["up", "down", "act"], positional: 0)
            let ws = [try args.tensor("up", &self), try args.tensor("down", &self)]
            let act = try args.symbol("act", &self, among: Activation.allCases.map(\.rawValue))
            let program = ExpertProgram(
                inputs: 1, instructions: [.linear(0, weight: 0, bias: nil), .unary(act, .register(1)), .linear(2, weight: 1, bias: nil)])
            return (program, ws)
        default:
            throw .error(
                "a group of computed experts is swiglu(gate:, up:, down:), mlp(up:, down:, act:) or expert(h) { … }, not '\(kindCall.callee.name)'",
                at: at)
        }
    }

    private mutating func buildExpertBody(_ kindCall: Call, _ body: ExpertBody, experts: Int, hidden: Int) throws(Diagnostic) -> BodyBuilder {
        guard kindCall.arguments.count == 1, kindCall.arguments[0].label == nil, case .name(let row) = kindCall.arguments[0].value else {
            throw .error(
                "an expert body names the token's row: 'expert(h) { … }'", at: kindCall.callee.range,
                notes: [.init("e.g. 'experts: n of expert(h) { h |> linear(up) |> relu |> linear(down) }'")])
        }
        var b = BodyBuilder(row: row.name, hidden: hidden, experts: experts)
        var env: [String: BodyValue] = [row.name: .register(0, width: hidden)]
        for l in body.lets {
            if env[l.name.name] != nil {
                throw .error("'\(l.name.name)' is already defined in this expert body", at: l.name.range)
            }
            env[l.name.name] = try bodyValue(l.value, env, &b)
        }
        let result = try bodyValue(body.result, env, &b)
        guard case .register(let r, let width) = result, r == b.program.result, r > 0 else {
            throw .error(
                "an expert's result must be computed from its row: end the body with its output, e.g. '… |> linear(down)'", at: body.result.range)
        }
        guard width == hidden else {
            throw .error(
                "the expert's result has \(width) values per token, but the block's hidden size is \(hidden)", at: body.result.range,
                notes: [.init("end the body with the down projection, a [experts, \(hidden), ffn] weight")])
        }
        return b
    }

    /// The program the body builds, and the weights it reads (w0, w1, … in first-use order).
    struct BodyBuilder {
        let row: String
        let hidden: Int
        let experts: Int
        var program = ExpertProgram(inputs: 1, instructions: [])
        var widths: [Int]
        var weights: [ValueID] = []
        var weightShapes: [[Int]] = []

        init(row: String, hidden: Int, experts: Int) {
            self.row = row
            self.hidden = hidden
            self.experts = experts
            self.widths = [hidden]
        }

        mutating func emit(_ i: ExpertProgram.Instruction, width: Int) -> BodyValue {
            program.instructions.append(i)
            widths.append(width)
            return .register(widths.count - 1, width: width)
        }

        mutating func weightIndex(_ id: ValueID, shape: [Int]) -> Int {
            if let i = weights.firstIndex(of: id) { return i }
            weights.append(id)
            weightShapes.append(shape)
            return weights.count - 1
        }
    }

    private mutating func bodyValue(_ e: Expr, _ env: [String: BodyValue], _ b: inout BodyBuilder) throws(Diagnostic) -> BodyValue {
        func register(_ v: BodyValue, _ at: Expr) throws(Diagnostic) -> ExpertProgram.Operand {
            switch v {
            case .register(let r, _): return .register(r)
            case .constant(let c): return .constant(c)
            case .weight(_, let name):
                throw .error(
                    "'\(name)' is an expert weight: use it in 'linear(…, \(name))'", at: at.range,
                    notes: [.init("in an expert body, weights are read per expert by linear; other values are rows of that token")])
            }
        }
        func width(_ v: BodyValue) -> Int? { if case .register(_, let w) = v { return w }; return nil }
        switch e {
        case .int(let v, _): return .constant(Double(v))
        case .float(let v, _): return .constant(v)
        case .name(let id):
            if let v = env[id.name] { return v }
            switch try lower(e) {
            case .int(let v): return .constant(Double(v))
            case .float(let v): return .constant(v)
            case .null: throw nullUse(e, expecting: "a number")
            case .tensor(let vid):
                let node = builder.graph[vid]
                guard node.op == .weight, let shape = node.tensorType?.fixedShape else {
                    throw .error(
                        "an expert body works on one token's row '\(b.row)': '\(id.name)' is a tensor of the whole batch, and an expert cannot mix tokens",
                        at: id.range, notes: [.init("an expert body reads its row, numbers, params and stacked expert weights")])
                }
                guard shape.first == b.experts, shape.count >= 2 else {
                    throw .error(
                        "'\(id.name)' is \(shape) but the block has \(b.experts) experts: a weight an expert reads holds one slice per expert",
                        at: id.range, notes: [.init("stack expert weights as [experts, out, in] (biases [experts, out])")])
                }
                return .weight(vid, name: id.name)
            case .poisoned: throw ASTToIR.alreadyReported
            default: throw unknownName(id, expecting: "a value in the expert body")
            }
        case .negate(let inner, _):
            let v = try bodyValue(inner, env, &b)
            if case .constant(let c) = v { return .constant(-c) }
            return b.emit(.unary("neg", try register(v, inner)), width: width(v)!)
        case .binary(let op, let l, let r, let range):
            let lv = try bodyValue(l, env, &b), rv = try bodyValue(r, env, &b)
            let name: String
            switch op {
            case .add: name = "add"
            case .sub: name = "sub"
            case .mul: name = "mul"
            case .div: name = "div"
            case .equal, .notEqual: throw .error("'\(op.rawValue)' compares compile-time values; it has no meaning on an expert's row", at: range)
            }
            return try binary(name, lv, rv, l, r, at: range, &b)
        case .call(let c):
            if let cond = c.condition {
                guard case .bool(let keep) = try constant(cond) else {
                    throw .error("the condition of '\(c.callee.name) if …' must be a bool known at compile time", at: cond.range)
                }
                if !keep { return try bodyValue(c.arguments[0].value, env, &b) }
            }
            return try bodyCall(c, env, &b)
        default:
            throw .error(
                "this cannot appear in an expert body", at: e.range,
                notes: [.init("an expert body computes one token's row with " + Self.bodyFunctions.joined(separator: ", ") + " and + - * /")])
        }
    }

    private mutating func binary(
        _ name: String, _ lv: BodyValue, _ rv: BodyValue, _ l: Expr, _ r: Expr, at range: SourceRange, _ b: inout BodyBuilder
    ) throws(Diagnostic) -> BodyValue {
        switch (lv, rv) {
        case (.constant(let x), .constant(let y)): return .constant(ExpertProgram.apply(name, x, y))
        case (.weight(_, let n), _), (_, .weight(_, let n)):
            throw .error(
                "'\(n)' is an expert weight: use it in 'linear(…, \(n))'", at: range,
                notes: [.init("in an expert body, weights are read per expert by linear; other values are rows of that token")])
        case (.register(let a, let wa), .register(let c, let wc)):
            guard wa == wc else {
                throw .error("'\(name)' of rows with \(wa) and \(wc) values", at: range, notes: [.init("both sides of an element-wise op must have one width")])
            }
            return b.emit(.binary(name, .register(a), .register(c)), width: wa)
        case (.register(let a, let w), .constant(let c)): return b.emit(.binary(name, .register(a), .constant(c)), width: w)
        case (.constant(let c), .register(let a, let w)): return b.emit(.binary(name, .constant(c), .register(a)), width: w)
        }
    }

    private mutating func bodyCall(_ c: Call, _ env: [String: BodyValue], _ b: inout BodyBuilder) throws(Diagnostic) -> BodyValue {
        let name = c.callee.name
        var positional: [Expr] = []
        var labeled: [String: Expr] = [:]
        for a in c.arguments {
            if let l = a.label {
                if labeled[l.name] != nil { throw .error("argument '\(l.name)' is given twice", at: l.range) }
                labeled[l.name] = a.value
            } else {
                positional.append(a.value)
            }
        }
        func expect(positional n: Int, labels: [String], _ usage: String) throws(Diagnostic) {
            if let bad = labeled.keys.sorted().first(where: { !labels.contains($0) }) {
                throw .error("'\(name)' has no argument '\(bad)'", at: c.callee.range, notes: [.init("usage: \(usage)")])
            }
            guard positional.count == n else {
                throw .error("'\(name)' takes \(n) value\(n == 1 ? "" : "s") here, got \(positional.count)", at: c.callee.range, notes: [.init("usage: \(usage)")])
            }
        }
        switch name {
        case "linear":
            try expect(positional: 2, labels: ["bias"], "linear(row, W) or linear(row, W, bias: b) with W [experts, out, in], b [experts, out]")
            let v = try bodyValue(positional[0], env, &b)
            guard case .register(let src, let inWidth) = v else {
                throw .error("linear's input must be a row of the expert's token", at: positional[0].range)
            }
            guard case .weight(let wid, let wname) = try bodyValue(positional[1], env, &b) else {
                throw .error("linear's matrix must be a stacked expert weight [experts, out, in]", at: positional[1].range)
            }
            let shape = builder.graph[wid].tensorType!.fixedShape!
            guard shape.count == 3 else {
                throw .error("'\(wname)' is \(shape): linear needs a stacked matrix [experts, out, in]", at: positional[1].range)
            }
            guard shape[2] == inWidth else {
                throw .error(
                    "'\(wname)' is \(shape): it takes rows of \(shape[2]) values, but its input has \(inWidth)", at: positional[1].range,
                    notes: [.init("a linear weight is [experts, out, in]; a checkpoint stored input-first needs '|> transpose' where it is bound")])
            }
            let w = b.weightIndex(wid, shape: shape)
            var biasIndex: Int?
            if let be = labeled["bias"] {
                guard case .weight(let bid, let bname) = try bodyValue(be, env, &b) else {
                    throw .error("linear's bias must be a stacked expert weight [experts, out]", at: be.range)
                }
                let bshape = builder.graph[bid].tensorType!.fixedShape!
                guard bshape == [shape[0], shape[1]] else {
                    throw .error("'\(bname)' is \(bshape), but the bias of '\(wname)' must be [\(shape[0]), \(shape[1])]", at: be.range)
                }
                biasIndex = b.weightIndex(bid, shape: bshape)
            }
            return b.emit(.linear(src, weight: w, bias: biasIndex), width: shape[1])
        case "clamp":
            try expect(positional: 1, labels: ["min", "max"], "clamp(v, min: a, max: b), either bound optional")
            guard labeled["min"] != nil || labeled["max"] != nil else {
                throw .error("clamp needs 'min:', 'max:' or both", at: c.callee.range)
            }
            var v = try bodyValue(positional[0], env, &b)
            for (bound, op) in [("min", "max"), ("max", "min")] {
                guard let be = labeled[bound] else { continue }
                guard case .constant(let limit) = try bodyValue(be, env, &b) else {
                    throw .error("clamp's \(bound) must be a number known at compile time", at: be.range)
                }
                v = try binary(op, v, .constant(limit), positional[0], be, at: c.callee.range, &b)
            }
            return v
        case "min", "max":
            try expect(positional: 2, labels: [], "\(name)(a, b)")
            let a = try bodyValue(positional[0], env, &b), d = try bodyValue(positional[1], env, &b)
            return try binary(name, a, d, positional[0], positional[1], at: c.callee.range, &b)
        case _ where ExpertProgram.unaryOps.contains(name) && name != "neg":
            try expect(positional: 1, labels: [], "\(name)(v)")
            let v = try bodyValue(positional[0], env, &b)
            if case .constant(let x) = v { return .constant(ExpertProgram.apply(name, x)) }
            return b.emit(
                .unary(name, try registerOperand(v, positional[0])),
                width: {
                    if case .register(_, let w) = v { return w }; return 0
                }())
        default:
            var notes: [Diagnostic.Note] = [
                .init("an expert works on one token's row; its body can use " + Self.bodyFunctions.joined(separator: ", ") + " and + - * /")
            ]
            if let s = NameSuggestions.best(for: name, in: Self.bodyFunctions) { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
            throw .error("'\(name)' cannot be used in an expert body", at: c.callee.range, notes: notes)
        }
    }

    private func registerOperand(_ v: BodyValue, _ at: Expr) throws(Diagnostic) -> ExpertProgram.Operand {
        switch v {
        case .register(let r, _): return .register(r)
        case .constant(let c): return .constant(c)
        case .weight(_, let name):
            throw .error("'\(name)' is an expert weight: use it in 'linear(…, \(name))'", at: at.range)
        }
    }

    /// The packed kernel's shape, when the body has it: `down(epilogue(first…))` where the first
    /// layer is one or two projections of the row (same width), the epilogue reads only them, and
    /// `down` is the last instruction.
    static func packedShape(_ b: BodyBuilder) -> LoweredBody? {
        let ins = b.program.instructions, inputs = b.program.inputs
        guard case .linear(let downSrc, let down, let downBias)? = ins.last else { return nil }
        var first: [(register: Int, weight: Int, bias: Int?)] = []
        var elementwise: [(register: Int, instruction: ExpertProgram.Instruction)] = []
        for (i, instruction) in ins.dropLast().enumerated() {
            let reg = inputs + i
            switch instruction {
            case .linear(let src, let w, let bias):
                // A projection of the row (the element-wise work may start before the second).
                guard src == 0 else { return nil }
                first.append((reg, w, bias))
            case .unary(_, let a):
                if case .register(0) = a { return nil }
                elementwise.append((reg, instruction))
            case .binary(_, let a, let c):
                if case .register(0) = a { return nil }
                if case .register(0) = c { return nil }
                elementwise.append((reg, instruction))
            }
        }
        guard (1...2).contains(first.count), downSrc != 0, Set(first.map { b.widths[$0.register] }).count == 1 else { return nil }
        // Registers renumbered: the projections first (gate, up), then the element-wise results.
        var renumber: [Int: Int] = [:]
        for (k, f) in first.enumerated() { renumber[f.register] = k }
        for (k, e) in elementwise.enumerated() { renumber[e.register] = first.count + k }
        func mapped(_ o: ExpertProgram.Operand) -> ExpertProgram.Operand {
            if case .register(let r) = o { return .register(renumber[r]!) }
            return o
        }
        var epilogue = ExpertProgram(
            inputs: first.count,
            instructions: elementwise.map {
                switch $0.instruction {
                case .unary(let op, let a): return .unary(op, mapped(a))
                case .binary(let op, let a, let c): return .binary(op, mapped(a), mapped(c))
                case .linear: preconditionFailure("no linear in the epilogue")
                }
            })
        if renumber[downSrc] != epilogue.result || epilogue.instructions.isEmpty {
            epilogue.instructions.append(.binary("add", .register(renumber[downSrc]!), .constant(0)))
        }
        let gated = first.count == 2
        var weights = first.map { b.weights[$0.weight] } + [b.weights[down]]
        var biasRoles: [String] = []
        let roles = gated ? ["gate", "up"] : ["up"]
        for (k, f) in first.enumerated() {
            if let bias = f.bias {
                biasRoles.append(roles[k])
                weights.append(b.weights[bias])
            }
        }
        if let downBias {
            biasRoles.append("down")
            weights.append(b.weights[downBias])
        }
        var activation: Activation?
        var program: ExpertProgram? = epilogue
        if gated, epilogue == .swiglu { program = nil }
        if !gated, epilogue.instructions.count == 1, case .unary(let op, .register(0)) = epilogue.instructions[0], let act = Activation(rawValue: op) {
            activation = act
            program = nil
        }
        var attributes = ExpertsNode.attributes(kind: gated ? .swiglu : .mlp, experts: b.experts, activation: activation)
        if let program { attributes["epilogue"] = .string(program.description) }
        if !biasRoles.isEmpty { attributes["bias"] = .string(biasRoles.joined(separator: " ")) }
        return LoweredBody(kind: gated ? .swiglu : .mlp, weights: weights, attributes: attributes)
    }
}
