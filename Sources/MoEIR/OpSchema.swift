/// What each op accepts and what it produces: the single source of type and shape rules,
/// used by the builder (to infer the type of a new node) and by the verifier (to check that
/// every node's recorded type still follows from its operands).

/// A type error in terms of the op's operands; the caller attaches the source location.
public struct TypeRuleError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var notes: [String]
    public init(_ message: String, notes: [String] = []) {
        self.message = message
        self.notes = notes
    }
    public var description: String { message }
}

public enum OpSchema {
    /// The result type of `op` applied to operands of these types, or nil for leaf ops
    /// (input, weight, constant), whose type is declared rather than inferred.
    public static func resultType(_ op: Op, _ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch op {
        case .input, .weight, .constant:
            guard operands.isEmpty else { throw TypeRuleError("'\(op)' takes no operands") }
            return nil

        case .linear:
            try arity(op, operands, 2...3)
            let x = try tensor(operands[0], "the input of linear")
            let w = try tensor(operands[1], "the weight of linear")
            guard w.rank == 2, let n = w.shape[0].fixedValue, let k = w.shape[1].fixedValue else {
                throw TypeRuleError("linear needs a weight of shape [out, in], got \(format(w))")
            }
            guard let xk = x.last, xk == .fixed(k) else {
                throw TypeRuleError("linear weight \(format(w)) expects inputs of width \(k), but the input is \(format(x))",
                                    notes: ["the weight is [out, in]: y = x·Wᵀ"])
            }
            if operands.count == 3 {
                let b = try tensor(operands[2], "the bias of linear")
                guard b.shape == [.fixed(n)] else { throw TypeRuleError("linear bias must be [\(n)], got \(format(b))") }
            }
            return .tensor(TensorType(.f32, Array(x.shape.dropLast()) + [.fixed(n)]))

        case .rmsnorm, .layernorm:
            try arity(op, operands, op == .rmsnorm ? 2...2 : 2...3)
            let x = try tensor(operands[0], "the input of \(op)")
            guard let d = x.last else { throw TypeRuleError("\(op) needs an input with at least one dimension") }
            for (i, o) in operands.dropFirst().enumerated() {
                let w = try tensor(o, i == 0 ? "the weight of \(op)" : "the bias of \(op)")
                guard w.shape == [d] else {
                    throw TypeRuleError("\(op) \(i == 0 ? "weight" : "bias") must be [\(format(d))] to match the input \(format(x)), got \(format(w))")
                }
            }
            if let eps = attrs.float("eps"), !(eps >= 0) { throw TypeRuleError("\(op) eps must be non-negative, got \(eps)") }
            return .tensor(x)

        case .softmax:
            try arity(op, operands, 1...1)
            let x = try tensor(operands[0], "the input of softmax")
            guard x.rank >= 1 else { throw TypeRuleError("softmax needs at least one dimension") }
            if let t = attrs.float("temperature"), !(t > 0) { throw TypeRuleError("softmax temperature must be positive, got \(t)") }
            return .tensor(x)

        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg:
            try arity(op, operands, 1...1)
            let x = try tensor(operands[0], "the input of \(op)")
            guard x.dtype == .f32 else { throw TypeRuleError("\(op) needs f32 values, got \(format(x))") }
            return .tensor(x)

        case .add, .sub, .mul, .div:
            try arity(op, operands, 2...2)
            let a = try tensor(operands[0], "the left operand of \(symbol(op))")
            let b = try tensor(operands[1], "the right operand of \(symbol(op))")
            guard a.dtype == .f32, b.dtype == .f32 else { throw TypeRuleError("'\(symbol(op))' needs f32 tensors, got \(format(a)) and \(format(b))") }
            return .tensor(TensorType(.f32, try broadcast(a, b, op)))

        case .swiglu, .mlp:
            try arity(op, operands, op == .swiglu ? 4...4 : 3...3)
            let x = try tensor(operands[0], "the input of \(op)")
            guard let h = x.last?.fixedValue else { throw TypeRuleError("\(op) input needs a fixed last dimension, got \(format(x))") }
            let names = op == .swiglu ? ["gate", "up", "down"] : ["up", "down"]
            var ffn: Int?
            for (i, name) in names.enumerated() {
                let w = try tensor(operands[i + 1], "the \(name) weight")
                let expect: (Int) -> [Dim] = { f in name == "down" ? [.fixed(h), .fixed(f)] : [.fixed(f), .fixed(h)] }
                guard w.rank == 2, let f = (name == "down" ? w.shape[1] : w.shape[0]).fixedValue else {
                    throw TypeRuleError("\(op) \(name) weight must be 2-D, got \(format(w))")
                }
                if ffn == nil { ffn = f }
                guard w.shape == expect(ffn!) else {
                    throw TypeRuleError("\(op) \(name) weight must be \(format(TensorType(.f32, expect(ffn!)))) for hidden \(h) and ffn \(ffn!), got \(format(w))")
                }
            }
            if op == .mlp { try activation(attrs) }
            return .tensor(x)

        case .topk:
            try arity(op, operands, 1...2)
            let s = try tensor(operands[0], "the scores of topk")
            guard s.rank == 2, let e = s.shape[1].fixedValue else {
                throw TypeRuleError("topk needs scores of shape [tokens, experts], got \(format(s))")
            }
            guard let k = attrs.int("k") else { throw TypeRuleError("topk needs k") }
            guard k >= 1 else { throw TypeRuleError("topk k must be at least 1, got \(k)") }
            guard k <= e else { throw TypeRuleError("topk k = \(k) is larger than the number of experts (\(e))") }
            if operands.count == 2 {
                let b = try tensor(operands[1], "the selection bias")
                guard b.shape == [.fixed(e)] else { throw TypeRuleError("selection bias must be [\(e)], got \(format(b))") }
            }
            let groups = attrs.int("groups") ?? 1
            let keep = attrs.int("keep_groups") ?? groups
            guard groups >= 1 else { throw TypeRuleError("groups must be at least 1, got \(groups)") }
            guard e % groups == 0 else {
                throw TypeRuleError("groups = \(groups) does not divide the \(e) experts")
            }
            guard keep >= 1, keep <= groups else {
                throw TypeRuleError("keep_groups = \(keep) must be between 1 and groups = \(groups)")
            }
            guard k <= keep * (e / groups) else {
                throw TypeRuleError("k = \(k) is larger than the \(keep * (e / groups)) experts in the \(keep) kept groups")
            }
            if groups > 1 {
                let top = attrs.int("group_top") ?? 2
                guard top >= 1, top <= e / groups else {
                    throw TypeRuleError("group_top = \(top) must be between 1 and the \(e / groups) experts of a group")
                }
            }
            return .routing(RoutingType(slots: k, experts: e))

        case .route_renormalize, .route_softmax, .route_scale, .route_sqrt, .route_capacity:
            try arity(op, operands, 1...1)
            guard let r = operands[0].routing else {
                throw TypeRuleError("'\(op.surfaceName)' applies to a routing (after topk), got a tensor",
                                    notes: ["select experts first, e.g. '|> topk(k) |> \(op.surfaceName)'"])
            }
            if op == .route_capacity {
                guard let c = attrs.int("capacity") else { throw TypeRuleError("capacity needs a value") }
                guard c >= 1 else { throw TypeRuleError("capacity must be positive, got \(c)") }
            }
            if op == .route_scale, attrs.float("factor") == nil { throw TypeRuleError("scale needs a factor") }
            return .routing(r)

        case .moe_experts:
            guard operands.count >= 2 else { throw TypeRuleError("moe_experts needs an input, a routing and expert weights") }
            let x = try tensor(operands[0], "the input of the moe block")
            guard x.rank == 2, let h = x.shape[1].fixedValue else {
                throw TypeRuleError("the moe block input must be [tokens, hidden], got \(format(x))")
            }
            guard let r = operands[1].routing else {
                throw TypeRuleError("the router must end in a routing (e.g. '|> topk(k)'), got a tensor \(format(operands[1].tensor!))")
            }
            guard let kindName = attrs.string("kind"), let kind = ExpertKind(rawValue: kindName) else {
                throw TypeRuleError("moe_experts needs a kind")
            }
            let count = attrs.int("experts") ?? r.experts
            guard count == r.experts else {
                throw TypeRuleError("the block declares \(count) experts but the router scores \(r.experts)")
            }
            let roles: [String]
            switch kind {
            case .swiglu: roles = ["gate", "up", "down"]
            case .swiglu_fused: roles = ["gate_up", "down"]
            case .mlp: roles = ["up", "down"]; try activation(attrs)
            }
            guard operands.count == 2 + roles.count else {
                throw TypeRuleError("\(kind) experts take \(roles.count) weights (\(roles.joined(separator: ", "))), got \(operands.count - 2)")
            }
            var ffn: Int?
            for (i, role) in roles.enumerated() {
                let w = try tensor(operands[2 + i], "the \(role) weight")
                guard w.rank == 3, let fixed = w.fixedShape else {
                    throw TypeRuleError("expert \(role) weight must be [experts, rows, cols], got \(format(w))")
                }
                guard fixed[0] == count else {
                    throw TypeRuleError("expert \(role) weight \(format(w)) holds \(fixed[0]) experts, but the block has \(count)")
                }
                let rows = role == "down" ? fixed[1] : fixed[2]
                guard rows == h else {
                    throw TypeRuleError("expert \(role) weight \(format(w)) does not fit hidden size \(h)",
                                        notes: [role == "down" ? "down weights are [experts, hidden, ffn]" : "\(role) weights are [experts, ffn, hidden]"])
                }
                var f = role == "down" ? fixed[2] : fixed[1]
                if role == "gate_up" {
                    guard f % 2 == 0 else { throw TypeRuleError("gate_up weight \(format(w)) must have an even number of rows (gate, then up)") }
                    f /= 2
                }
                if let prev = ffn, prev != f {
                    throw TypeRuleError("expert \(role) weight \(format(w)) has ffn width \(f), but the other expert weights have \(prev)")
                }
                ffn = f
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(h)]))
        }
    }

    // MARK: Helpers

    static func arity(_ op: Op, _ operands: [IRType], _ range: ClosedRange<Int>) throws(TypeRuleError) {
        guard range.contains(operands.count) else {
            let expected = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
            throw TypeRuleError("'\(op.surfaceName)' takes \(expected) operands, got \(operands.count)")
        }
    }

    static func tensor(_ t: IRType, _ what: String) throws(TypeRuleError) -> TensorType {
        switch t {
        case .tensor(let tt): return tt
        case .routing:
            throw TypeRuleError("\(what) must be a tensor, but it is a routing",
                                notes: ["a routing (the result of topk) can only feed routing stages and a moe block's router"])
        }
    }

    static func activation(_ attrs: Attributes) throws(TypeRuleError) {
        guard let a = attrs.string("act"), Activation(rawValue: a) != nil else {
            throw TypeRuleError("unknown activation \(attrs["act"].map { "\($0)" } ?? "(none)")",
                                notes: ["activations are " + Activation.allCases.map(\.rawValue).joined(separator: ", ")])
        }
    }

    /// NumPy-style broadcasting: shapes align at the right; a dimension of 1 stretches.
    public static func broadcast(_ a: TensorType, _ b: TensorType, _ op: Op) throws(TypeRuleError) -> [Dim] {
        let n = max(a.rank, b.rank)
        var out: [Dim] = []
        for i in 0..<n {
            let da = i < n - a.rank ? Dim.fixed(1) : a.shape[i - (n - a.rank)]
            let db = i < n - b.rank ? Dim.fixed(1) : b.shape[i - (n - b.rank)]
            if da == db { out.append(da) } else if da == .fixed(1) { out.append(db) } else if db == .fixed(1) { out.append(da) } else {
                throw TypeRuleError("cannot \(verb(op)) \(format(a)) and \(format(b)): dimensions \(format(da)) and \(format(db)) differ",
                                    notes: ["shapes must match, or have 1 where they differ"])
            }
        }
        return out
    }

    static func verb(_ op: Op) -> String {
        switch op {
        case .add: return "add"
        case .sub: return "subtract"
        case .mul: return "multiply"
        default: return "divide"
        }
    }

    static func symbol(_ op: Op) -> String {
        switch op {
        case .add: return "+"
        case .sub: return "-"
        case .mul: return "*"
        default: return "/"
        }
    }

    public static func format(_ d: Dim, tokens: String = "tokens") -> String {
        switch d {
        case .fixed(let n): return String(n)
        case .tokens: return tokens
        }
    }

    public static func format(_ t: TensorType, tokens: String = "tokens") -> String {
        "\(t.dtype)[" + t.shape.map { format($0, tokens: tokens) }.joined(separator: ", ") + "]"
    }
}

extension Op {
    /// The op's name as written in `.moe` source, for messages.
    public var surfaceName: String {
        switch self {
        case .route_renormalize: return "renormalize"
        case .route_softmax: return "softmax"
        case .route_scale: return "scale"
        case .route_sqrt: return "sqrt"
        case .route_capacity: return "capacity"
        default: return rawValue
        }
    }
}
