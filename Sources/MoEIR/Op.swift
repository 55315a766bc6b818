/// Every operation the IR knows. One node type carries any of them (as in tinygrad): the op
/// says what the node computes, attributes hold its compile-time settings. What each op
/// accepts and produces is written once, in `OpSchema.swift`; the verifier and the reference
/// interpreter each have a case per op.
public enum Op: String, Hashable, Sendable, CaseIterable {
    // Values from outside the graph.
    case input                  // attrs: name
    case weight                 // attrs: index (into Graph.weights)
    case constant               // attrs: value (a scalar f32)

    // Plain layers.
    case linear                 // x[…, K], W[N, K] (, b[N]) → x·Wᵀ + b : […, N]
    case rmsnorm                // x[…, D], w[D]; attrs: eps
    case layernorm              // x[…, D], w[D] (, b[D]); attrs: eps
    case softmax                // over the last axis; an all −∞ row gives zeros; attrs: temperature
    case silu, gelu, gelu_tanh, relu, sigmoid, tanh, exp, sqrt, neg
    case add, sub, mul, div     // broadcasting: equal dims, or 1, or a scalar
    case swiglu                 // dense SwiGLU FFN: x, W_gate[F, H], W_up[F, H], W_down[H, F]
    case mlp                    // dense MLP: x, W_up[F, H], W_down[H, F]; attrs: act

    // Scoring beyond linear.
    case cosine                 // h[T, r], centroids[E, r] → cos(h, c_e) : [T, E]
    case distance               // x[T, d], centroids[E, d] → ‖x − c_e‖₂ : [T, E]
    case subspace               // x[T, d], bases[E, d, r] → ‖x·U_e‖ / ‖x‖ : [T, E]
    case sinkhorn               // scores[T, E] → balanced probabilities [T, E]; attrs: iterations
    case dselect                // x[T, …], z[(T,) k·m], alpha[(T,) k] → dense weights [T, E]; attrs: experts, gamma

    // Routing: scores → a routing → weights.
    case topk                   // scores[T, E] (, bias[E]) (, by[T, E]) → routing
                                // attrs: k, with_bias, with_by, groups, keep_groups, group_top, masked, force, disable
    case threshold              // scores[T, E] → every expert with score ≥ tau; attrs: tau, max_k
    case top_p                  // probs[T, E] → smallest set with cumulative prob ≥ p; attrs: p, max_k
    case stat_topk              // scores[T, E] → score ≥ mean + std·Φ⁻¹(1 − k/E); attrs: k, max_k
    case expert_choice          // scores[T, E] (, cf[]) → each expert its top-C tokens; attrs: k, capacity_factor
    case dense_route            // scores[T, E] → every expert, weight = score
    case nonzero                // weights[T, E] → the experts with non-zero weight; attrs: max_k
    case hash_route             // ids i32[T] → one expert per token id; attrs: experts, method, seed
    case within                 // outer routing over G groups, inner scores[T, G·S] → routing over G·S; attrs: k
    case fused_router           // logits[T, E] (, bias[E]) → routing: score function, top-k and weight stages in one
                                // pass per token (made by the router-fusion pass; see `RouterFusion`)
                                // attrs: score (softmax | sigmoid | identity), the topk attrs, normalize (sum | softmax), eps, scale
    case route_renormalize      // weights / their sum; attrs: eps
    case route_softmax          // softmax over each token's chosen scores (all −∞ → zeros)
    case route_scale            // weights · factor; attrs: factor
    case route_sqrt             // √weight (SqrtGate)
    case route_capacity         // each expert keeps its first `capacity` tokens; attrs: capacity

    // Experts.
    case moe_experts            // x[T, H], routing, stacked expert weights (, active[T]) → Σ w·expert(x) : [T, H]
                                // attrs: experts, kind (swiglu | swiglu_fused | mlp), act, with_active, fuse_gate_up;
                                // a multi-hop block's hops: block (its name), hop (0, 1, …): see MoELayer
    case halt_mask              // h[T, H], delta[T, H] (, active[T]) → 1 where ‖delta‖/‖h‖ ≥ tau and active : [T]
                                // attrs: tau

    /// Ops that compute element by element with broadcasting.
    public var isElementwiseBinary: Bool { [.add, .sub, .mul, .div].contains(self) }
    public var isElementwiseUnary: Bool { [.silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg].contains(self) }
    /// Ops that turn scores into a routing.
    public var isSelection: Bool {
        [.topk, .fused_router, .threshold, .top_p, .stat_topk, .expert_choice, .dense_route, .nonzero, .hash_route, .within].contains(self)
    }
    public var isRouting: Bool { isSelection || [.route_renormalize, .route_softmax, .route_scale, .route_sqrt, .route_capacity].contains(self) }
}

/// The activation of an `mlp` (dense or expert).
public enum Activation: String, Hashable, Sendable, CaseIterable {
    case relu, gelu, gelu_tanh, silu
}

/// How each expert's FFN is laid out.
public enum ExpertKind: String, Hashable, Sendable, CaseIterable {
    /// `(silu(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ` with gate [E, F, H], up [E, F, H], down [E, H, F].
    case swiglu
    /// SwiGLU with gate and up stacked in one tensor [E, 2F, H], gate rows first.
    case swiglu_fused
    /// `act(x·W_upᵀ)·W_downᵀ` with up [E, F, H], down [E, H, F].
    case mlp
}

/// A compile-time attribute value.
public enum Attribute: Hashable, Sendable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case ints([Int])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v):
            if v.isInfinite { return v > 0 ? "inf" : "-inf" }
            return String(v)
        case .bool(let v): return String(v)
        case .string(let s): return "\"\(s)\""
        case .ints(let v): return "[" + v.map(String.init).joined(separator: ", ") + "]"
        }
    }
}

/// Attributes in the order they were set, so printing is deterministic.
public struct Attributes: Hashable, Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var pairs: [(key: String, value: Attribute)] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, Attribute)...) {
        for (k, v) in elements { self[k] = v }
    }

    public subscript(key: String) -> Attribute? {
        get { pairs.first { $0.key == key }?.value }
        set {
            if let i = pairs.firstIndex(where: { $0.key == key }) {
                if let v = newValue { pairs[i].value = v } else { pairs.remove(at: i) }
            } else if let v = newValue {
                pairs.append((key, v))
            }
        }
    }

    public func int(_ key: String) -> Int? { if case .int(let v)? = self[key] { return v }; return nil }
    public func float(_ key: String) -> Double? {
        switch self[key] {
        case .float(let v)?: return v
        case .int(let v)?: return Double(v)
        default: return nil
        }
    }
    public func bool(_ key: String) -> Bool? { if case .bool(let v)? = self[key] { return v }; return nil }
    public func string(_ key: String) -> String? { if case .string(let v)? = self[key] { return v }; return nil }
    public func ints(_ key: String) -> [Int]? { if case .ints(let v)? = self[key] { return v }; return nil }

    public var isEmpty: Bool { pairs.isEmpty }
    public func makeIterator() -> IndexingIterator<[(key: String, value: Attribute)]> { pairs.makeIterator() }

    public static func == (a: Attributes, b: Attributes) -> Bool {
        a.pairs.count == b.pairs.count && zip(a.pairs, b.pairs).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
    public func hash(into h: inout Hasher) { for p in pairs { h.combine(p.key); h.combine(p.value) } }
}
