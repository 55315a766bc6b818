/// Plain layers: a linear map, the norms, and dense (non-expert) FFNs.
public enum DenseOp: String, OpFamily {
    case linear // x[…, K], W[N, K] (, b[N]) → x·Wᵀ + b : […, N]
    case rmsnorm // x[…, D], w[D/g]; attrs: eps, groups (g: each of g contiguous parts of the last axis alone)
    case layernorm // x[…, D], w[D/g] (, b[D/g]); attrs: eps, groups
    case swiglu // dense SwiGLU FFN: x, W_gate[F, H], W_up[F, H], W_down[H, F]
    case mlp // dense MLP: x, W_up[F, H], W_down[H, F]; attrs: act

    public var surfaceName: String { rawValue }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch self {
        case .linear:
            try OpSchema.arity(self, operands, 2...3)
            let x = try OpSchema.tensor(operands[0], "the input of linear")
            let w = try OpSchema.tensor(operands[1], "the weight of linear")
            guard w.rank == 2, let n = w.shape[0].fixedValue, let k = w.shape[1].fixedValue else {
                throw TypeRuleError("linear needs a weight of shape [out, in], got \(OpSchema.format(w))")
            }
            guard let xk = x.last, xk == .fixed(k) else {
                throw TypeRuleError(
                    "linear weight \(OpSchema.format(w)) expects inputs of width \(k), but the input is \(OpSchema.format(x))",
                    notes: ["the weight is [out, in]: y = x·Wᵀ"])
            }
            if operands.count == 3 {
                let b = try OpSchema.tensor(operands[2], "the bias of linear")
                guard b.shape == [.fixed(n)] else { throw TypeRuleError("linear bias must be [\(n)], got \(OpSchema.format(b))") }
            }
            return .tensor(TensorType(.f32, Array(x.shape.dropLast()) + [.fixed(n)]))

        case .rmsnorm, .layernorm:
            try OpSchema.arity(self, operands, self == .rmsnorm ? 2...2 : 2...3)
            let x = try OpSchema.tensor(operands[0], "the input of \(self)")
            guard var d = x.last else { throw TypeRuleError("\(self) needs an input with at least one dimension") }
            if let g = attrs.int("groups"), g != 1 {
                // Each of g contiguous parts of the last axis is normalised alone (one head of
                // a [tokens, heads · head_dim] projection), all with the same weight.
                guard g >= 1, let width = d.fixedValue, width % g == 0 else {
                    throw TypeRuleError(
                        "\(self) groups = \(g) must divide the last dimension of its input \(OpSchema.format(x))",
                        notes: ["each of the groups contiguous parts of the last axis is normalised alone"])
                }
                d = .fixed(width / g)
            }
            let grouped = attrs.int("groups").map { $0 == 1 ? "" : " in \($0) groups" } ?? ""
            for (i, o) in operands.dropFirst().enumerated() {
                let w = try OpSchema.tensor(o, i == 0 ? "the weight of \(self)" : "the bias of \(self)")
                guard w.shape == [d] else {
                    throw TypeRuleError(
                        "\(self) \(i == 0 ? "weight" : "bias") must be [\(OpSchema.format(d))] to match the input \(OpSchema.format(x))\(grouped), got \(OpSchema.format(w))"
                    )
                }
            }
            if let eps = attrs.float("eps"), !(eps >= 0) { throw TypeRuleError("\(self) eps must be non-negative, got \(eps)") }
            return .tensor(x)

        case .swiglu, .mlp:
            try OpSchema.arity(self, operands, self == .swiglu ? 4...4 : 3...3)
            let x = try OpSchema.tensor(operands[0], "the input of \(self)")
            guard let h = x.last?.fixedValue else { throw TypeRuleError("\(self) input needs a fixed last dimension, got \(OpSchema.format(x))") }
            let names = self == .swiglu ? ["gate", "up", "down"] : ["up", "down"]
            var ffn: Int?
            for (i, name) in names.enumerated() {
                let w = try OpSchema.tensor(operands[i + 1], "the \(name) weight")
                let expect: (Int) -> [Dim] = { f in name == "down" ? [.fixed(h), .fixed(f)] : [.fixed(f), .fixed(h)] }
                guard w.rank == 2, let f = (name == "down" ? w.shape[1] : w.shape[0]).fixedValue else {
                    throw TypeRuleError("\(self) \(name) weight must be 2-D, got \(OpSchema.format(w))")
                }
                if ffn == nil { ffn = f }
                guard w.shape == expect(ffn!) else {
                    throw TypeRuleError(
                        "\(self) \(name) weight must be \(OpSchema.format(TensorType(.f32, expect(ffn!)))) for hidden \(h) and ffn \(ffn!), got \(OpSchema.format(w))")
                }
            }
            if self == .mlp { try OpSchema.activation(attrs) }
            return .tensor(x)
        }
    }

    public var isNonNegative: Bool {
        switch self {
        case .linear, .rmsnorm, .layernorm, .swiglu, .mlp: return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .linear, .rmsnorm, .layernorm, .swiglu, .mlp: return false
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .linear, .rmsnorm, .layernorm, .swiglu, .mlp: return nil
        }
    }
}

extension Op {
    public static let linear = Op.dense(.linear)
    public static let rmsnorm = Op.dense(.rmsnorm)
    public static let layernorm = Op.dense(.layernorm)
    public static let swiglu = Op.dense(.swiglu)
    public static let mlp = Op.dense(.mlp)
}
