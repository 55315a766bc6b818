import MoEIR

/// Where one MoE block's router probabilities live in the graph, so that load statistics can
/// read them after a run.
///
/// A block is a `moe_experts` node. Its routing operand is walked back through the stages on
/// chosen weights (`route_renormalize`, `route_scale`, `route_capacity`, …) to the selection
/// op (`topk`, `threshold`, `expert_choice`, …); the selection's score operand `[tokens, E]`
/// is what the router saw. Those scores become a probability distribution per token:
///
/// - scores that are non-negative by construction (the output of `softmax`, `sigmoid`, `exp`,
///   `relu`, `sqrt`, `sinkhorn`, `dselect`, `subspace`) are divided by their sum, which leaves
///   a softmax unchanged and normalises sigmoid gates (DeepSeek) to sum to 1;
/// - any other scores (raw logits, cosines, negative distances) go through a softmax, as in a
///   top-k → softmax router.
///
/// Selection biases (DeepSeek's `e_score_correction_bias`) and `by:` scores only steer the
/// choice; they are not part of the probabilities. Hash routing has no scores, and `within`
/// (hierarchical) routing has no single distribution over all experts: for those blocks only
/// expert loads are recorded.
public struct RouterProbe: Sendable, Equatable {
    /// How scores become probabilities.
    public enum Distribution: String, Sendable {
        case scoresOverSum = "scores / sum"
        case softmaxOfScores = "softmax(scores)"
        /// A fused sigmoid router: its logits are read, so the sigmoid is applied when measuring.
        case sigmoidOverSum = "sigmoid(scores) / sum"
    }

    /// The `moe_experts` node.
    public var block: ValueID
    /// The selection op that chose the experts.
    public var selection: ValueID
    /// The `[tokens, E]` scores the selection read, when the router has usable scores.
    public var scores: ValueID?
    public var distribution: Distribution?
    /// Why `scores` is nil.
    public var unavailable: String?
    /// The block's name in the source (`let y = moe(…)`), else its value (`%9`).
    public var name: String
    public var experts: Int
    /// Expert slots per token (k for top-k).
    public var slots: Int
    /// Bytes of one expert's weights, as moec holds them (f32).
    public var expertBytes: Int

    /// The name under which a run returns this probe's scores.
    public static func outputName(_ index: Int) -> String { "#router-scores-\(index)" }

    /// One probe per `moe_experts` node, in graph order (the order of `Schedule.lastExpertLoads()`).
    public static func find(in g: Graph) -> [RouterProbe] {
        var probes: [RouterProbe] = []
        for id in g.ids where g[id].op == .moe_experts {
            let block = g[id]
            let routing = g[block.operands[1]].type.routing!
            var selection = block.operands[1]
            while g[selection].op.isRouting && !g[selection].op.isSelection, let first = g[selection].operands.first {
                selection = first
            }
            let withActive = block.attributes.bool("with_active") ?? false
            let weights = block.operands[2..<(block.operands.count - (withActive ? 1 : 0))]
            let experts = routing.experts
            let bytes = weights.reduce(0) { $0 + (g[$1].tensorType?.fixedShape?.reduce(4, *) ?? 0) / max(experts, 1) }
            var probe = RouterProbe(block: id, selection: selection, scores: nil, distribution: nil, unavailable: nil,
                                    name: block.name ?? id.description, experts: experts, slots: routing.slots, expertBytes: bytes)
            switch g[selection].op {
            case .hash_route:
                probe.unavailable = "hash routing has no router scores"
            case .within:
                probe.unavailable = "hierarchical ('within') routing has no single distribution over all experts"
            case let op where op.isSelection:
                let s = g[selection].operands[0]
                if let t = g[s].tensorType, t.rank == 2, t.shape[0] == .tokens, t.shape[1] == .fixed(experts),
                   ![.weight, .constant].contains(g[s].op) {
                    probe.scores = s
                    probe.distribution = nonNegativeOps.contains(g[s].op) ? .scoresOverSum : .softmaxOfScores
                    // A fused router reads logits and applies its score function itself.
                    switch g[selection].op == .fused_router ? g[selection].attributes.string("score") : nil {
                    case "softmax"?: probe.distribution = .softmaxOfScores
                    case "sigmoid"?: probe.distribution = .sigmoidOverSum
                    default: break
                    }
                } else {
                    probe.unavailable = "the router's scores are not a [tokens, \(experts)] tensor"
                }
            default:
                probe.unavailable = "no selection op found before the block"
            }
            probes.append(probe)
        }
        return probes
    }

    /// The op that made the router scores (`softmax`, `sigmoid`, `linear`, …), for reports; for a
    /// fused router, its score function.
    public func scoresFrom(_ g: Graph) -> String? {
        guard let s = scores else { return nil }
        if g[selection].op == .fused_router, let score = g[selection].attributes.string("score"), score != "identity" { return score }
        return g[s].op.rawValue
    }

    /// Ops whose output is never negative.
    static let nonNegativeOps: Set<Op> = [.softmax, .sigmoid, .exp, .relu, .sqrt, .sinkhorn, .dselect, .subspace]
}

extension Graph {
    /// This graph with each probe's scores added as an output named `RouterProbe.outputName(i)`:
    /// the executor then keeps them alive to the end of the run (the arena would otherwise reuse
    /// their memory) and returns them with the outputs.
    public func exposingRouterScores(_ probes: [RouterProbe]) -> Graph {
        var g = self
        for (i, p) in probes.enumerated() {
            if let s = p.scores { g.outputs.append((RouterProbe.outputName(i), s)) }
        }
        return g
    }
}
