/// The experts of a MoE block, and the halting test between the hops of a multi-hop block.
public enum ExpertsOp: String, OpFamily {
    case moe_experts // x[T, H], routing, stacked expert weights (, active[T]) → Σ w·expert(x) : [T, H]
    // attrs: experts, kind (swiglu | swiglu_fused | mlp), act, with_active, upcycle,
    // the passes' marks (`ExpertPassMark`); a multi-hop block's hops: block (its name),
    // hop (0, 1, …): see `MoELayer`. Read them through `ExpertsNode`.
    case halt_mask // h[T, H], delta[T, H] (, active[T]) → 1 where ‖delta‖/‖h‖ ≥ tau and active : [T]
    // attrs: tau

    public var surfaceName: String {
        switch self {
        case .moe_experts: return "moe"
        case .halt_mask: return "halt"
        }
    }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch self {
        case .moe_experts:
            return try ExpertsNode.resultType(operands, attrs)

        case .halt_mask:
            try OpSchema.arity(self, operands, 2...3)
            let h = try OpSchema.tensor(operands[0], "the state"), d = try OpSchema.tensor(operands[1], "the update")
            guard h.rank == 2, h == d else { throw TypeRuleError("halting compares a state and an update of one shape [tokens, hidden]") }
            if operands.count == 3 {
                let a = try OpSchema.tensor(operands[2], "the active mask")
                guard a.shape == [h.shape[0]] else { throw TypeRuleError("the active mask must be [tokens]") }
            }
            guard let tau = attrs.float("tau"), tau >= 0 else { throw TypeRuleError("halting needs a threshold tau ≥ 0") }
            return .tensor(TensorType(.f32, [h.shape[0]]))
        }
    }

    public var isNonNegative: Bool {
        switch self {
        case .moe_experts: return false
        case .halt_mask: return true
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .moe_experts, .halt_mask: return false
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .moe_experts, .halt_mask: return nil
        }
    }
}

extension Op {
    public static let moe_experts = Op.experts(.moe_experts)
    public static let halt_mask = Op.experts(.halt_mask)
}
