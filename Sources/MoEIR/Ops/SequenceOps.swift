/// Sequence mixing, for a whole decoder layer around a MoE block: rotary position embeddings and
/// causal self-attention. A run's tokens are one sequence, at positions 0, 1, … in row order (a
/// prefill): a row's result depends on its position and on the rows before it, so a graph with
/// these ops cannot be split by tokens (`mixesTokens`).
public enum SequenceOp: String, OpFamily {
    /// x[T, n·D]; attrs: head_dim (D), theta, and YaRN's factor, beta_fast, beta_slow,
    /// original_max, truncate, attention_factor → each head's pairs (i, i + D/2) of row t
    /// rotated by t·θ^(−2i/D) (YaRN: blended frequencies, scaled cos and sin).
    case rope
    case attention // q[T, H·D], k[T, G·D], v[T, G·Dv] (, sinks[H]); attrs: heads (H), kv_heads (G), scale, window → [T, H·Dv]

    public var surfaceName: String { rawValue }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch self {
        case .rope:
            try OpSchema.arity(self, operands, 1...1)
            let x = try Self.rows(operands[0], "the input of rope")
            guard let d = attrs.int("head_dim"), d >= 2, d % 2 == 0 else {
                throw TypeRuleError("rope head_dim must be a positive even number, got \(attrs["head_dim"]?.description ?? "none")")
            }
            guard let width = x.shape[1].fixedValue, width % d == 0 else {
                throw TypeRuleError(
                    "rope head_dim = \(d) must divide the width of its input \(OpSchema.format(x))",
                    notes: ["the input holds whole heads side by side: [tokens, heads · head_dim]"])
            }
            if let theta = attrs.float("theta"), !(theta > 0 && theta.isFinite) {
                throw TypeRuleError("rope theta must be a positive number, got \(theta)")
            }
            if let factor = attrs.float("factor") {
                // YaRN (gpt-oss): checked here so that a plan file cannot bring a bad one either.
                guard factor >= 1, factor.isFinite else { throw TypeRuleError("rope YaRN factor must be at least 1, got \(factor)") }
                guard let fast = attrs.float("beta_fast"), let slow = attrs.float("beta_slow"), fast > 0, slow > 0 else {
                    throw TypeRuleError("rope YaRN needs positive beta_fast and beta_slow")
                }
                guard let original = attrs.int("original_max"), original >= 1 else {
                    throw TypeRuleError("rope YaRN needs original_max, the context length the model was trained for")
                }
                if let a = attrs.float("attention_factor"), !(a > 0 && a.isFinite) {
                    throw TypeRuleError("rope attention_factor must be a positive number, got \(a)")
                }
            }
            return .tensor(x)

        case .attention:
            try OpSchema.arity(self, operands, 3...4)
            let q = try Self.rows(operands[0], "the queries of attention")
            let k = try Self.rows(operands[1], "the keys of attention")
            let v = try Self.rows(operands[2], "the values of attention")
            guard q.shape[0] == k.shape[0], k.shape[0] == v.shape[0] else {
                throw TypeRuleError(
                    "attention needs one row per token in the queries, keys and values; got \(OpSchema.format(q)), \(OpSchema.format(k)) and \(OpSchema.format(v))")
            }
            guard let heads = attrs.int("heads"), heads >= 1 else {
                throw TypeRuleError("attention heads must be a positive number, got \(attrs["heads"]?.description ?? "none")")
            }
            let kvHeads = attrs.int("kv_heads") ?? heads
            guard kvHeads >= 1, heads % kvHeads == 0 else {
                throw TypeRuleError(
                    "attention kv_heads = \(kvHeads) must divide heads = \(heads)",
                    notes: ["each group of heads / kv_heads query heads shares one key and value head"])
            }
            let qw = q.shape[1].fixedValue!, kw = k.shape[1].fixedValue!, vw = v.shape[1].fixedValue!
            guard qw % heads == 0 else {
                throw TypeRuleError("attention heads = \(heads) must divide the width of the queries \(OpSchema.format(q))")
            }
            let d = qw / heads
            guard kw == kvHeads * d else {
                throw TypeRuleError(
                    "attention keys must be [tokens, \(kvHeads * d)] (kv_heads \(kvHeads) × head_dim \(d)), got \(OpSchema.format(k))",
                    notes: ["head_dim is the queries' width over heads: \(qw) / \(heads)"])
            }
            guard vw % kvHeads == 0 else {
                throw TypeRuleError("attention kv_heads = \(kvHeads) must divide the width of the values \(OpSchema.format(v))")
            }
            if operands.count == 4 {
                // gpt-oss's attention sinks: one logit per query head that joins each row's
                // softmax and takes its share of the weight without adding a value row.
                let sinks = try OpSchema.tensor(operands[3], "the sinks of attention")
                guard sinks.shape == [.fixed(heads)] else {
                    throw TypeRuleError("attention sinks must be [\(heads)] (one per query head), got \(OpSchema.format(sinks))")
                }
            }
            if let s = attrs.float("scale"), !(s > 0 && s.isFinite) { throw TypeRuleError("attention scale must be a positive number, got \(s)") }
            if let w = attrs.int("window"), w < 0 { throw TypeRuleError("attention window must be 0 (none) or a number of tokens, got \(w)") }
            return .tensor(TensorType(.f32, [q.shape[0], .fixed(heads * (vw / kvHeads))]))
        }
    }

    /// A `[rows, width]` f32 operand with a fixed width.
    private static func rows(_ t: IRType, _ what: String) throws(TypeRuleError) -> TensorType {
        let x = try OpSchema.tensor(t, what)
        guard x.rank == 2, x.shape[1].fixedValue != nil else {
            throw TypeRuleError("\(what) must be [tokens, width], got \(OpSchema.format(x))")
        }
        return x
    }

    public var isNonNegative: Bool {
        switch self {
        case .rope, .attention: return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .rope: return true // a row's rotation is its position in the run
        case .attention: return true
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .rope, .attention: return nil
        }
    }
}

extension Op {
    public static let rope = Op.sequence(.rope)
    public static let attention = Op.sequence(.attention)
}
