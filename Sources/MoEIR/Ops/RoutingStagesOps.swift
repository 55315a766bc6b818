/// Stages on a routing's chosen weights: routing → routing of the same slots and experts.
public enum RoutingStageOp: String, OpFamily {
    case route_renormalize // weights / their sum; attrs: eps
    case route_softmax // softmax over each token's chosen scores (all −∞ → zeros)
    case route_scale // weights · factor; attrs: factor
    case route_sqrt // √weight (SqrtGate)
    case route_capacity // each expert keeps its first `capacity` pairs; attrs: capacity, or capacity_fraction (⌈f·tokens⌉)

    /// The capacity of a `route_capacity` node for a run of `tokens` tokens: its `capacity`, or
    /// ⌈fraction · tokens⌉ computed in Double, as NLLB-MoE (fairseq, transformers) computes it.
    public static func capacity(_ attrs: Attributes, tokens: Int) -> Int {
        if let f = attrs.float("capacity_fraction") {
            let c = (f * Double(tokens)).rounded(.up)
            return c >= Double(Int.max / 2) ? Int.max / 2 : max(Int(c), 0)
        }
        return attrs.int("capacity") ?? 0
    }

    public var surfaceName: String {
        switch self {
        case .route_renormalize: return "renormalize"
        case .route_softmax: return "softmax"
        case .route_scale: return "scale"
        case .route_sqrt: return "sqrt"
        case .route_capacity: return "capacity"
        }
    }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        try OpSchema.arity(self, operands, 1...1)
        guard let r = operands[0].routing else {
            throw TypeRuleError(
                "'\(surfaceName)' applies to a routing (after topk), got a tensor",
                notes: ["select experts first, e.g. '|> topk(k) |> \(surfaceName)'"])
        }
        switch self {
        case .route_capacity:
            if let f = attrs.float("capacity_fraction") {
                guard f > 0, f.isFinite, attrs["capacity"] == nil else {
                    throw TypeRuleError("capacity_fraction must be a positive number, and given without capacity")
                }
            } else {
                guard let c = attrs.int("capacity") else { throw TypeRuleError("capacity needs a value") }
                guard c >= 1 else { throw TypeRuleError("capacity must be positive, got \(c)") }
            }
        case .route_scale:
            if attrs.float("factor") == nil { throw TypeRuleError("scale needs a factor") }
        case .route_renormalize, .route_softmax, .route_sqrt:
            break
        }
        return .routing(r)
    }

    /// A routing is not a tensor of scores.
    public var isNonNegative: Bool {
        switch self {
        case .route_renormalize, .route_softmax, .route_scale, .route_sqrt, .route_capacity: return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .route_renormalize, .route_softmax, .route_scale, .route_sqrt: return false
        case .route_capacity: return true // each expert's first pairs in token order
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .route_renormalize: return .normalize("sum")
        case .route_softmax: return .normalize("softmax")
        case .route_scale: return .scale
        case .route_sqrt, .route_capacity: return nil
        }
    }
}

extension Op {
    public static let route_renormalize = Op.routingStage(.route_renormalize)
    public static let route_softmax = Op.routingStage(.route_softmax)
    public static let route_scale = Op.routingStage(.route_scale)
    public static let route_sqrt = Op.routingStage(.route_sqrt)
    public static let route_capacity = Op.routingStage(.route_capacity)
}
