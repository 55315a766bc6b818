/// Router scoring beyond `linear`: row normalisations and scores that are not a matrix product.
public enum ScoringOp: String, OpFamily {
    case softmax // over the last axis; an all −∞ row gives zeros; attrs: temperature, groups
    case cosine // h[T, r], centroids[E, r] → cos(h, c_e) : [T, E]
    case distance // x[T, d], centroids[E, d] → ‖x − c_e‖₂ : [T, E]
    case subspace // x[T, d], bases[E, d, r] → ‖x·U_e‖ / ‖x‖ : [T, E]
    case sinkhorn // scores[T, E] → balanced probabilities [T, E]; attrs: iterations
    case dselect // x[T, …], z[(T,) k·m], alpha[(T,) k] → dense weights [T, E]; attrs: experts, gamma
    case sparsemax // over the last axis: the Euclidean projection onto the simplex, a sparse probability vector

    public var surfaceName: String { rawValue }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch self {
        case .sparsemax:
            try OpSchema.arity(self, operands, 1...1)
            let x = try OpSchema.tensor(operands[0], "the input of sparsemax")
            guard x.rank >= 1 else { throw TypeRuleError("sparsemax needs at least one dimension") }
            return .tensor(x)

        case .softmax:
            try OpSchema.arity(self, operands, 1...1)
            let x = try OpSchema.tensor(operands[0], "the input of softmax")
            guard x.rank >= 1 else { throw TypeRuleError("softmax needs at least one dimension") }
            if let t = attrs.float("temperature"), !(t > 0) { throw TypeRuleError("softmax temperature must be positive, got \(t)") }
            if let g = attrs.int("groups") {
                guard let d = x.last?.fixedValue, g >= 1, d % g == 0 else {
                    throw TypeRuleError("softmax groups = \(g) must divide the last dimension of \(OpSchema.format(x))")
                }
            }
            return .tensor(x)

        case .cosine, .distance:
            try OpSchema.arity(self, operands, 2...2)
            let x = try OpSchema.tensor(operands[0], "the input of \(self)")
            let c = try OpSchema.tensor(operands[1], "the centroids")
            guard x.rank == 2, let d = x.last?.fixedValue else { throw TypeRuleError("\(self) needs an input [tokens, width], got \(OpSchema.format(x))") }
            guard c.rank == 2, let e = c.shape[0].fixedValue, c.shape[1] == .fixed(d) else {
                throw TypeRuleError("\(self) centroids must be [experts, \(d)] to match the input \(OpSchema.format(x)), got \(OpSchema.format(c))")
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(e)]))

        case .subspace:
            try OpSchema.arity(self, operands, 2...2)
            let x = try OpSchema.tensor(operands[0], "the input of subspace")
            let u = try OpSchema.tensor(operands[1], "the bases")
            guard x.rank == 2, let d = x.last?.fixedValue else { throw TypeRuleError("subspace needs an input [tokens, width], got \(OpSchema.format(x))") }
            guard u.rank == 3, let e = u.shape[0].fixedValue, u.shape[1] == .fixed(d) else {
                throw TypeRuleError("subspace bases must be [experts, \(d), rank], got \(OpSchema.format(u))")
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(e)]))

        case .sinkhorn:
            try OpSchema.arity(self, operands, 1...1)
            let (t, _) = try OpSchema.scores(operands[0], "sinkhorn")
            guard let n = attrs.int("iterations"), n >= 1, n <= 1000 else { throw TypeRuleError("sinkhorn iterations must be between 1 and 1000") }
            return .tensor(t)

        case .dselect:
            try OpSchema.arity(self, operands, 3...3)
            let x = try OpSchema.tensor(operands[0], "the input of dselect")
            let z = try OpSchema.tensor(operands[1], "the selector logits z")
            let alpha = try OpSchema.tensor(operands[2], "the selector mix alpha")
            guard let e = attrs.int("experts"), e >= 2 else { throw TypeRuleError("dselect needs experts ≥ 2") }
            guard let g = attrs.float("gamma"), g > 0 else { throw TypeRuleError("dselect gamma must be positive") }
            guard let kSel = alpha.last?.fixedValue, kSel >= 1 else { throw TypeRuleError("alpha must end in the number of selectors") }
            let m = OpSchema.selectorBits(e)
            let (width, overflow) = kSel.multipliedReportingOverflow(by: m)
            guard !overflow, z.last == .fixed(width) else {
                throw TypeRuleError(
                    "z must have k·⌈log₂E⌉ = \(kSel)·\(m)\(overflow ? "" : " = \(width)") values per row for \(kSel) selectors over \(e) experts, got \(OpSchema.format(z))")
            }
            for t in [z, alpha] where !(t.rank == 1 || (t.rank == 2 && t.shape[0] == x.shape[0])) {
                throw TypeRuleError("z and alpha are one row for all tokens or one row per token, got \(OpSchema.format(t))")
            }
            return .tensor(TensorType(.f32, [x.shape[0], .fixed(e)]))
        }
    }

    public var isNonNegative: Bool {
        switch self {
        case .softmax, .distance, .subspace, .sinkhorn, .dselect, .sparsemax: return true
        case .cosine: return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .softmax, .cosine, .distance, .subspace, .dselect, .sparsemax: return false
        case .sinkhorn: return true // balances every expert's column over the batch
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .softmax: return .scoreFunction("softmax")
        case .cosine, .distance, .subspace, .sinkhorn, .dselect, .sparsemax: return nil
        }
    }
}

extension Op {
    public static let softmax = Op.scoring(.softmax)
    public static let cosine = Op.scoring(.cosine)
    public static let distance = Op.scoring(.distance)
    public static let subspace = Op.scoring(.subspace)
    public static let sinkhorn = Op.scoring(.sinkhorn)
    public static let dselect = Op.scoring(.dselect)
    public static let sparsemax = Op.scoring(.sparsemax)
}
