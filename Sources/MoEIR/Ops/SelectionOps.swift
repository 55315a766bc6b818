/// Expert selection: scores → a routing (for each token, up to `slots` (expert, weight) pairs).
public enum SelectionOp: String, OpFamily {
    case topk // scores[T, E] (, bias[E]) (, by[T, E]) → routing
    // attrs: k, with_bias, with_by, groups, keep_groups, group_top, masked, force, disable
    case fused_router // logits[T, E] (, bias[E]) → routing: score function, top-k and weight stages in one
    // pass per token (made by the router-fusion pass; see `RouterFusion`)
    // attrs: score (softmax | sigmoid | identity), the topk attrs, normalize (sum | softmax), eps, scale
    case threshold // scores[T, E] → every expert with score ≥ tau; attrs: tau, max_k
    case top_p // probs[T, E] → smallest set with cumulative prob ≥ p; attrs: p, max_k
    case stat_topk // scores[T, E] → score ≥ mean + std·Φ⁻¹(1 − k/E); attrs: k, max_k
    case expert_choice // scores[T, E] (, cf[]) → each expert its top-C tokens; attrs: k, capacity_factor
    case dense_route // scores[T, E] → every expert, weight = score
    case nonzero // weights[T, E] → the experts with non-zero weight; attrs: max_k
    case hash_route // ids i32[T] → one expert per token id; attrs: experts, method, seed
    case within // outer routing over G groups, inner scores[T, G·S] → routing over G·S; attrs: k
    case sparsemixer // logits[T, E] → 2 slots, each the best remaining expert weighted by its softmax over
    // the experts within a relative margin 2·jitter_eps of it (PhiMoE's inference router); attrs: jitter_eps

    public var surfaceName: String {
        switch self {
        case .dense_route: return "dense"
        case .hash_route: return "hash"
        case .topk, .fused_router, .threshold, .top_p, .stat_topk, .expert_choice, .nonzero, .within, .sparsemixer:
            return rawValue
        }
    }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch self {
        case .topk:
            let withBias = attrs.bool("with_bias") ?? false, withBy = attrs.bool("with_by") ?? false
            let count = 1 + (withBias ? 1 : 0) + (withBy ? 1 : 0)
            try OpSchema.arity(self, operands, count...count)
            let (_, e) = try OpSchema.scores(operands[0], "topk")
            guard let k = attrs.int("k") else { throw TypeRuleError("topk needs k") }
            guard k >= 1 else { throw TypeRuleError("topk k must be at least 1, got \(k)") }
            guard k <= e else { throw TypeRuleError("topk k = \(k) is larger than the number of experts (\(e))") }
            if withBias {
                let b = try OpSchema.tensor(operands[1], "the selection bias")
                guard b.shape == [.fixed(e)] else { throw TypeRuleError("selection bias must be [\(e)], got \(OpSchema.format(b))") }
            }
            if withBy {
                let by = try OpSchema.tensor(operands[withBias ? 2 : 1], "the selection scores (by:)")
                let s0 = try OpSchema.tensor(operands[0], "the scores")
                guard by.shape == s0.shape else {
                    throw TypeRuleError("selection scores (by:) must have the shape of the scores \(OpSchema.format(s0)), got \(OpSchema.format(by))")
                }
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
            return try SelectionOp.topk.resultType(operands, attrs)

        case .threshold, .top_p, .stat_topk, .dense_route, .nonzero:
            try OpSchema.arity(self, operands, 1...1)
            let (_, e) = try OpSchema.scores(operands[0], rawValue)
            switch self {
            case .threshold: guard attrs.float("tau") != nil else { throw TypeRuleError("threshold needs tau") }
            case .top_p:
                guard let p = attrs.float("p"), p > 0, p <= 1 else {
                    throw TypeRuleError("top_p needs p in (0, 1], got \(attrs.float("p").map { "\($0)" } ?? "none")")
                }
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
            try OpSchema.arity(self, operands, 1...2)
            let (_, e) = try OpSchema.scores(operands[0], "expert_choice")
            guard let k = attrs.int("k"), k >= 1, k <= e else { throw TypeRuleError("expert_choice k must be between 1 and \(e)") }
            if operands.count == 2 {
                let cf = try OpSchema.tensor(operands[1], "the capacity factor")
                guard cf.isScalar || cf.shape == [.fixed(1)] else { throw TypeRuleError("the capacity factor must be a scalar, got \(OpSchema.format(cf))") }
            } else {
                guard let cf = attrs.float("capacity_factor"), cf > 0 else { throw TypeRuleError("expert_choice capacity factor must be positive") }
            }
            return .routing(RoutingType(slots: e, experts: e))

        case .hash_route:
            try OpSchema.arity(self, operands, 1...1)
            let ids = try OpSchema.tensor(operands[0], "the token ids", dtype: nil)
            guard ids.dtype == .i32, ids.rank == 1 else {
                throw TypeRuleError(
                    "hash routing reads integer token ids i32[tokens], got \(OpSchema.format(ids))",
                    notes: ["declare them as 'input ids: i32[tokens]'"])
            }
            guard let e = attrs.int("experts"), e >= 1 else { throw TypeRuleError("hash routing needs experts ≥ 1") }
            guard ["hash", "random"].contains(attrs.string("method") ?? "") else { throw TypeRuleError("unknown hash method") }
            return .routing(RoutingType(slots: 1, experts: e))

        case .within:
            try OpSchema.arity(self, operands, 2...2)
            guard let outer = operands[0].routing else { throw TypeRuleError("'within' needs an outer routing first") }
            let (_, inner) = try OpSchema.scores(operands[1], "within")
            guard inner % outer.experts == 0 else {
                throw TypeRuleError("the inner scores' \(inner) experts do not split into the outer routing's \(outer.experts) groups")
            }
            let size = inner / outer.experts
            guard let k = attrs.int("k"), k >= 1, k <= size else {
                throw TypeRuleError("within k must be between 1 and the \(size) experts of a group")
            }
            return .routing(RoutingType(slots: outer.slots * k, experts: inner))

        case .sparsemixer:
            try OpSchema.arity(self, operands, 1...1)
            let (_, e) = try OpSchema.scores(operands[0], "sparsemixer")
            guard e >= 2 else { throw TypeRuleError("sparsemixer chooses 2 experts, but there is only \(e)") }
            guard let eps = attrs.float("jitter_eps"), eps >= 0, eps.isFinite else {
                throw TypeRuleError("sparsemixer needs jitter_eps ≥ 0, got \(attrs.float("jitter_eps").map { "\($0)" } ?? "none")")
            }
            // PhiMoE's sparsemixer always takes two experts, whatever num_experts_per_tok says.
            return .routing(RoutingType(slots: 2, experts: e))
        }
    }

    /// A routing is not a tensor of scores.
    public var isNonNegative: Bool {
        switch self {
        case .topk, .fused_router, .threshold, .top_p, .stat_topk, .expert_choice, .dense_route, .nonzero, .hash_route, .within,
            .sparsemixer:
            return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .topk, .fused_router, .threshold, .top_p, .stat_topk, .dense_route, .nonzero, .hash_route, .within, .sparsemixer:
            return false
        case .expert_choice: return true // each expert picks its top tokens of the batch
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .topk, .fused_router, .threshold, .top_p, .stat_topk, .expert_choice, .dense_route, .nonzero, .hash_route, .within,
            .sparsemixer:
            return nil
        }
    }
}

extension Op {
    public static let topk = Op.selection(.topk)
    public static let fused_router = Op.selection(.fused_router)
    public static let threshold = Op.selection(.threshold)
    public static let top_p = Op.selection(.top_p)
    public static let stat_topk = Op.selection(.stat_topk)
    public static let expert_choice = Op.selection(.expert_choice)
    public static let dense_route = Op.selection(.dense_route)
    public static let nonzero = Op.selection(.nonzero)
    public static let hash_route = Op.selection(.hash_route)
    public static let within = Op.selection(.within)
    public static let sparsemixer = Op.selection(.sparsemixer)
}
