/// Every operation the IR knows, grouped into families. One node type carries any of them (as in
/// tinygrad): the op says what the node computes, attributes hold its compile-time settings.
///
/// Each family is an enum of its own in `Ops/` (`DenseOps.swift`, `ScoringOps.swift`, …) with its
/// type rules and per-op properties (`OpFamily`), and the other layers have one file per family of
/// the same name: the builtins in the compiler's lowering, the executor steps and the reference
/// implementation in the backend. Those files switch exhaustively over their family's enum, so an
/// op added to a family without its rule, step or reference does not compile.
///
/// Ops are written as members of `Op` everywhere (`Op.linear`, `n.op == .topk`): each family file
/// declares its ops as static members, and the text name (`rawValue`, used by the printer and by
/// plan files) is the family member's.
public enum Op: Hashable, Sendable, CaseIterable, RawRepresentable, CustomStringConvertible {
    /// Values from outside the graph: inputs, weights, constants.
    case leaf(LeafOp)
    /// Plain layers: linear, norms, dense FFNs.
    case dense(DenseOp)
    /// Element-wise activations and broadcasting arithmetic.
    case elementwise(ElementwiseOp)
    /// Router scoring beyond `linear`: softmax, centroids, subspaces, balancing, DSelect-k.
    case scoring(ScoringOp)
    /// Scores → a routing (which experts each token uses, with weights).
    case selection(SelectionOp)
    /// Routing → routing: stages on the chosen weights.
    case routingStage(RoutingStageOp)
    /// The experts of a MoE block, and multi-hop halting.
    case experts(ExpertsOp)
    /// Sequence mixing around a block: rotary embeddings and causal self-attention.
    case sequence(SequenceOp)

    /// The family member, for the properties every family has (`OpFamily`).
    public var member: any OpFamily {
        switch self {
        case .leaf(let o): return o
        case .dense(let o): return o
        case .elementwise(let o): return o
        case .scoring(let o): return o
        case .selection(let o): return o
        case .routingStage(let o): return o
        case .experts(let o): return o
        case .sequence(let o): return o
        }
    }

    public init?(rawValue: String) {
        if let o = LeafOp(rawValue: rawValue) {
            self = .leaf(o)
        } else if let o = DenseOp(rawValue: rawValue) {
            self = .dense(o)
        } else if let o = ElementwiseOp(rawValue: rawValue) {
            self = .elementwise(o)
        } else if let o = ScoringOp(rawValue: rawValue) {
            self = .scoring(o)
        } else if let o = SelectionOp(rawValue: rawValue) {
            self = .selection(o)
        } else if let o = RoutingStageOp(rawValue: rawValue) {
            self = .routingStage(o)
        } else if let o = ExpertsOp(rawValue: rawValue) {
            self = .experts(o)
        } else if let o = SequenceOp(rawValue: rawValue) {
            self = .sequence(o)
        } else {
            return nil
        }
    }

    /// The op's name in printed IR and plan files.
    public var rawValue: String { member.rawValue }
    public var description: String { rawValue }

    public static var allCases: [Op] {
        LeafOp.allCases.map(Op.leaf) + DenseOp.allCases.map(Op.dense) + ElementwiseOp.allCases.map(Op.elementwise)
            + ScoringOp.allCases.map(Op.scoring) + SelectionOp.allCases.map(Op.selection)
            + RoutingStageOp.allCases.map(Op.routingStage) + ExpertsOp.allCases.map(Op.experts) + SequenceOp.allCases.map(Op.sequence)
    }

    /// The op's name as written in `.moe` source, for messages.
    public var surfaceName: String { member.surfaceName }

    /// Whether every value the op produces is ≥ 0, whatever its operands.
    public var isNonNegative: Bool { member.isNonNegative }

    /// The part of a fused router this op can become (`RouterFusion`).
    public var routerFusionPart: RouterFusionPart? { member.routerFusionPart }

    /// Whether a token's result can depend on other tokens (`OpFamily.mixesTokens`).
    public var mixesTokens: Bool { member.mixesTokens }

    /// Element-wise functions of one tensor.
    public var isElementwiseUnary: Bool { if case .elementwise(let o) = self { return !o.isBinary }; return false }
    /// Ops that turn scores into a routing.
    public var isSelection: Bool { if case .selection = self { return true }; return false }
    /// Ops whose value is a routing: selections and the stages after them.
    public var isRouting: Bool {
        switch self {
        case .selection, .routingStage: return true
        default: return false
        }
    }
}

/// What a fused router (`RouterFusion`) can absorb.
public enum RouterFusionPart: Hashable, Sendable {
    /// A score function applied to the logits before top-k: the fused router's `score`
    /// attribute takes this name (`softmax`, `sigmoid`).
    case scoreFunction(String)
    /// A normalisation of the chosen weights: the fused router's `normalize` attribute.
    case normalize(String)
    /// A constant factor on the chosen weights.
    case scale
}

/// What every op family says about each of its ops. Families implement each member with an
/// exhaustive `switch`, so a new op cannot be added without its rules.
public protocol OpFamily: CaseIterable, Hashable, Sendable {
    /// The name in printed IR and plan files.
    var rawValue: String { get }
    /// The name as written in `.moe` source, for messages.
    var surfaceName: String { get }
    /// The result type of the op on operands of these types, or nil for leaves, whose type is
    /// declared rather than inferred. Throws with a message about the operands when they do not fit.
    func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType?
    /// Whether every value the op produces is ≥ 0 whatever its operands: router statistics read
    /// such scores as probabilities up to a sum, other scores through a softmax (`RouterProbe`).
    var isNonNegative: Bool { get }
    /// What the op can become inside a fused router, or nil.
    var routerFusionPart: RouterFusionPart? { get }
    /// Whether a token's result can depend on other tokens' values (a balancing or a capacity
    /// across the batch): a graph with such an op cannot run on a share of the tokens alone
    /// (`TokenSharding`). Ops that reduce over the last axis mix tokens only on a `[T]` operand,
    /// which `TokenSharding` checks apart.
    var mixesTokens: Bool { get }
}

/// The activation of an `mlp` (dense or expert).
public enum Activation: String, Hashable, Sendable, CaseIterable {
    case relu, gelu, gelu_tanh, silu

    /// The element-wise op that computes it.
    public var op: ElementwiseOp {
        switch self {
        case .relu: return .relu
        case .gelu: return .gelu
        case .gelu_tanh: return .gelu_tanh
        case .silu: return .silu
        }
    }
}

/// How each expert's FFN is laid out.
public enum ExpertKind: String, Hashable, Sendable, CaseIterable {
    /// `(silu(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ` with gate [E, F, H], up [E, F, H], down [E, H, F].
    case swiglu
    /// SwiGLU with gate and up stacked in one tensor [E, 2F, H], gate rows first.
    case swiglu_fused
    /// `act(x·W_upᵀ)·W_downᵀ` with up [E, F, H], down [E, H, F].
    case mlp
    /// An expert written as an expression the packed kernel's shapes do not cover: its
    /// `ExpertProgram` (attribute `body`) over its weight operands, run on a general path.
    case program

    /// The roles of the expert matrices, in operand order.
    public var matrixRoles: [String] {
        switch self {
        case .swiglu: return ["gate", "up", "down"]
        case .swiglu_fused: return ["gate_up", "down"]
        case .mlp: return ["up", "down"]
        case .program: return []
        }
    }
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
