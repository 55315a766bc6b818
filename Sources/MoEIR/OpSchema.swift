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
    /// A result too large to address (`Addressable`) is an error too.
    public static func resultType(_ op: Op, _ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        guard let t = try derivedType(op, operands, attrs) else { return nil }
        guard t.isAddressable else {
            let described: String
            switch t {
            case .tensor(let tt): described = "the shape \(format(tt)), which has more elements" + (tt.shape.contains(.tokens) ? " per token" : "")
            case .routing(let r): described = "a routing of \(r.slots) slots among \(r.experts) experts, which has more elements per token"
            }
            let name = [.add, .sub, .mul, .div].contains(op) ? "'\(symbol(op))'" : op.surfaceName
            throw TypeRuleError("\(name) gives \(described) than moec can address", notes: [Addressable.limitNote])
        }
        return t
    }

    private static func derivedType(_ op: Op, _ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
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
            if let g = attrs.int("groups") {
                guard let d = x.last?.fixedValue, g >= 1, d % g == 0 else {
                    throw TypeRuleError("softmax groups = \(g) must divide the last dimension of \(format(x))")
                }
            }
            return .tensor(x)

        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg:
            try arity(op, operands, 1...1)
            let x = try tensor(operands[0], "the input of \(op)")
            return .tensor(x)

        case .add, .sub, .mul, .div:
            try arity(op, operands, 2...2)
            let a = try tensor(operands[0], "the left operand of \(symbol(op))")
            let b = try tensor(operands[1], "the right operand of \(symbol(op))")
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
            let withBias = attrs.bool("with_bias") ?? false, withBy = attrs.bool("with_by") ?? false
            try arity(op, operands, (1 + (withBias ? 1 : 0) + (withBy ? 1 : 0))...(1 + (withBias ? 1 : 0) + (withBy ? 1 : 0)))
            let (_, e) = try scores(operands[0], "topk")
            guard let k = attrs.int("k") else { throw TypeRuleError("topk needs k") }
            guard k >= 1 else { throw TypeRuleError("topk k must be at least 1, got \(k)") }
            guard k <= e else { throw TypeRuleError("topk k = \(k) is larger than the number of experts (\(e))") }
            if withBias {
                let b = try tensor(operands[1], "the selection bias")
                guard b.shape == [.fixed(e)] else { throw TypeRuleError("selection bias must be [\(e)], got \(format(b))") }
            }
            if withBy {
                let by = try tensor(operands[withBias ? 2 : 1], "the selection scores (by:)")
                let s0 = try tensor(operands[0], "the scores")
                guard by.shape == s0.shape else { throw TypeRuleError("selection scores (by:) must have the shape of the scores \(format(s0)), got \(format(by))") }
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
            let force = attrs.ints("force") ?? [], disable = attrs.ints("disable") ?? []
            for x in force + disable where x < 0 || x >= e {
                throw TypeRuleError("expert \(x) does not exist (experts are 0 to \(e - 1))")
            }
            if let both = Set(force).intersection(disable).sorted().first {
                throw TypeRuleError("expert \(both) is both forced and disabled")
            }
            guard Set(force).count <= k else { throw TypeRuleError("\(Set(force).count) forced experts do not fit in k = \(k)") }
            guard e - Set(disable).count >= k else {
                throw TypeRuleError("with \(Set(disable).count) experts disabled, fewer than k = \(k) remain")
            }
            return .routing(RoutingType(slots: k, experts: e))

        case .fused_router:
            // The top-k rules on the logits, plus the fused stages.
            guard attrs.bool("with_by") != true, attrs["force"] == nil, attrs["disable"] == nil else {
                throw TypeRuleError("fused_router does not take by:, force or disable")
            }
            guard let score = attrs.string("score"), ["softmax", "sigmoid", "identity"].contains(score) else {
                throw TypeRuleError("fused_router needs score = softmax, sigmoid or identity")
            }
            if let normalize = attrs["normalize"], !["sum", "softmax"].contains(attrs.string("normalize") ?? "") {
                throw TypeRuleError("fused_router normalize must be sum or softmax, got \(attrs.string("normalize") ?? "\(normalize)")")
            }
            for key in ["eps", "scale"] where attrs[key] != nil && attrs.float(key) == nil {
                throw TypeRuleError("fused_router \(key) must be a number")
            }
            return try resultType(.topk, operands, attrs)

        case .threshold, .top_p, .stat_topk, .dense_route, .nonzero:
            try arity(op, operands, 1...1)
            let (_, e) = try scores(operands[0], op.rawValue)
            switch op {
            case .threshold: guard attrs.float("tau") != nil else { throw TypeRuleError("threshold needs tau") }
            case .top_p:
                guard let p = attrs.float("p"), p > 0, p <= 1 else { throw TypeRuleError("top_p needs p in (0, 1], got \(attrs.float("p").map { "\($0)" } ?? "none")") }
            case .stat_topk:
                guard let k = attrs.int("k"), k >= 1, k < e else {
                    throw TypeRuleError("stat_topk k must be between 1 and \(e - 1) (the threshold is Φ⁻¹(1 − k/E)), got \(attrs.int("k").map(String.init) ?? "none")")
                }
            default: break
            }
            let maxK = attrs.int("max_k") ?? e
            guard maxK >= 1, maxK <= e else { throw TypeRuleError("max_k = \(maxK) must be between 1 and the \(e) experts") }
            return .routing(RoutingType(slots: maxK, experts: e))

        case .expert_choice:
            try arity(op, operands, 1...2)
            let (_, e) = try scores(operands[0], "expert_choice")
            guard let k = attrs.int("k"), k >= 1, k <= e else { throw TypeRuleError("expert_choice k must be between 1 and \(e)") }
            if operands.count == 2 {
                let cf = try tensor(operands[1], "the capacity factor")
                guard cf.isScalar || cf.shape == [.fixed(1)] else { throw TypeRuleError("the capacity factor must be a scalar, got \(format(cf))") }
            } else {
                guard let cf = attrs.float("capacity_factor"), cf > 0 else { throw TypeRuleError("expert_choice capacity factor must be positive") }
            }
            return .routing(RoutingType(slots: e, experts: e))

        case .hash_route:
            try arity(op, operands, 1...1)
            let ids = try tensor(operands[0], "the token ids", dtype: nil)
            guard ids.dtype == .i32, ids.rank == 1 else {
                throw TypeRuleError("hash routing reads integer token ids i32[tokens], got \(format(ids))",
                                    notes: ["declare them as 'input ids: i32[tokens]'"])
            }
            guard let e = attrs.int("experts"), e >= 1 else { throw TypeRuleError("hash routing needs experts ≥ 1") }
            guard ["hash", "random"].contains(attrs.string("method") ?? "") else { throw TypeRuleError("unknown hash method") }
            return .routing(RoutingType(slots: 1, experts: e))

        case .within:
            try arity(op, operands, 2...2)
            guard let outer = operands[0].routing else { throw TypeRuleError("'within' needs an outer routing first") }
            let (_, inner) = try scores(operands[1], "within")
            guard inner % outer.experts == 0 else {
                throw TypeRuleError("the inner scores' \(inner) experts do not split into the outer routing's \(outer.experts) groups")
            }
            let size = inner / outer.experts
            guard let k = attrs.int("k"), k >= 1, k <= size else {
                throw TypeRuleError("within k must be between 1 and the \(size) experts of a group")
            }
            return .routing(RoutingType(slots: outer.slots * k, experts: inner))

        case .cosine, .distance:
            try arity(op, operands, 2...2)
            let x = try tensor(operands[0], "the input of \(op)")
            let c = try tensor(operands[1], "the centroids")
            guard x.rank == 2, let d = x.last?.fixedValue else { throw TypeRuleError("\(op) needs an input [tokens, width], got \(format(x))") }
            guard c.rank == 2, let e = c.shape[0].fixedValue, c.shape[1] == .fixed(d) else {
                throw TypeRuleError("\(op) centroids must be [experts, \(d)] to match the input \(format(x)), got \(format(c))")
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(e)]))

        case .subspace:
            try arity(op, operands, 2...2)
            let x = try tensor(operands[0], "the input of subspace")
            let u = try tensor(operands[1], "the bases")
            guard x.rank == 2, let d = x.last?.fixedValue else { throw TypeRuleError("subspace needs an input [tokens, width], got \(format(x))") }
            guard u.rank == 3, let e = u.shape[0].fixedValue, u.shape[1] == .fixed(d) else {
                throw TypeRuleError("subspace bases must be [experts, \(d), rank], got \(format(u))")
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(e)]))

        case .sinkhorn:
            try arity(op, operands, 1...1)
            let (t, _) = try scores(operands[0], "sinkhorn")
            guard let n = attrs.int("iterations"), n >= 1, n <= 1000 else { throw TypeRuleError("sinkhorn iterations must be between 1 and 1000") }
            return .tensor(t)

        case .dselect:
            try arity(op, operands, 3...3)
            let x = try tensor(operands[0], "the input of dselect")
            let z = try tensor(operands[1], "the selector logits z")
            let alpha = try tensor(operands[2], "the selector mix alpha")
            guard let e = attrs.int("experts"), e >= 2 else { throw TypeRuleError("dselect needs experts ≥ 2") }
            guard let g = attrs.float("gamma"), g > 0 else { throw TypeRuleError("dselect gamma must be positive") }
            guard let kSel = alpha.last?.fixedValue, kSel >= 1 else { throw TypeRuleError("alpha must end in the number of selectors") }
            let m = selectorBits(e)
            let (width, overflow) = kSel.multipliedReportingOverflow(by: m)
            guard !overflow, z.last == .fixed(width) else {
                throw TypeRuleError("z must have k·⌈log₂E⌉ = \(kSel)·\(m)\(overflow ? "" : " = \(width)") values per row for \(kSel) selectors over \(e) experts, got \(format(z))")
            }
            for t in [z, alpha] where !(t.rank == 1 || (t.rank == 2 && t.shape[0] == x.shape[0])) {
                throw TypeRuleError("z and alpha are one row for all tokens or one row per token, got \(format(t))")
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(e)]))

        case .halt_mask:
            try arity(op, operands, 2...3)
            let h = try tensor(operands[0], "the state"), d = try tensor(operands[1], "the update")
            guard h.rank == 2, h == d else { throw TypeRuleError("halting compares a state and an update of one shape [tokens, hidden]") }
            if operands.count == 3 {
                let a = try tensor(operands[2], "the active mask")
                guard a.shape == [h.shape[0]] else { throw TypeRuleError("the active mask must be [tokens]") }
            }
            guard let tau = attrs.float("tau"), tau >= 0 else { throw TypeRuleError("halting needs a threshold tau ≥ 0") }
            return .tensor(TensorType(.f32, [h.shape[0]]))

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
            // The passes' marks (plans can be edited by hand): flags, when present.
            for flag in ["with_active", "fuse_gate_up", "permute", "prepacked", "combine_in_down"] where attrs[flag] != nil {
                guard attrs.bool(flag) != nil else { throw TypeRuleError("moe_experts attribute '\(flag)' must be true or false") }
            }
            let withActive = attrs.bool("with_active") ?? false
            guard operands.count == 2 + roles.count + (withActive ? 1 : 0) else {
                throw TypeRuleError("\(kind) experts take \(roles.count) weights (\(roles.joined(separator: ", "))), got \(operands.count - 2)")
            }
            if withActive {
                let a = try tensor(operands[operands.count - 1], "the active mask")
                guard a.shape == [x.shape[0]] else { throw TypeRuleError("the active mask must be [tokens], got \(format(a))") }
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

    /// Scores: a tensor [tokens, experts].
    static func scores(_ t: IRType, _ op: String) throws(TypeRuleError) -> (TensorType, Int) {
        let s = try tensor(t, "the scores of \(op)")
        guard s.rank == 2, let e = s.shape[1].fixedValue else {
            throw TypeRuleError("\(op) needs scores of shape [tokens, experts], got \(format(s))")
        }
        return (s, e)
    }

    /// Operand `t` as a tensor of `dtype` (nil: any dtype). Only hash routing reads i32 values:
    /// every other op computes in f32, and the executor would read an i32's bits as a float.
    static func tensor(_ t: IRType, _ what: String, dtype: DType? = .f32) throws(TypeRuleError) -> TensorType {
        switch t {
        case .tensor(let tt):
            if let dtype, tt.dtype != dtype {
                throw TypeRuleError("\(what) must hold \(dtype) values, got \(format(tt))",
                                    notes: tt.dtype == .i32 ? ["i32 values are token ids, read only by hash routing"] : [])
            }
            return tt
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

    /// Bits DSelect-k needs to index E experts: ⌈log₂E⌉ (0 for one expert). Counted from the
    /// leading zeros, not by shifting 1 left until it passes E, which never ends beyond 2⁶².
    public static func selectorBits(_ experts: Int) -> Int {
        experts <= 1 ? 0 : Int.bitWidth - (experts - 1).leadingZeroBitCount
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
