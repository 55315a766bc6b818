/// Where one MoE layer's router probabilities live in the graph, so that load statistics can
/// read them after a run.
///
/// A layer is one source-level moe block (`MoELayer`): one `moe_experts` node, or one per hop
/// of a multi-hop block. For each of those nodes, the routing operand is walked back through the
/// stages on chosen weights (`route_renormalize`, `route_scale`, `route_capacity`, …) to the
/// selection op (`topk`, `threshold`, `expert_choice`, …); the selection's score operand
/// `[tokens, E]` is what the router saw at that hop. Those scores become a probability
/// distribution per token:
///
/// - scores that are non-negative by construction (made by an op whose `isNonNegative` holds:
///   `softmax`, `sigmoid`, `exp`, `relu`, `sqrt`, `distance`, `sinkhorn`, `dselect`, `subspace`)
///   are divided by their sum, which leaves a softmax unchanged and normalises sigmoid gates
///   (DeepSeek) to sum to 1;
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

    /// One hop of the block: its `moe_experts` node and the router that fed it.
    public struct Hop: Sendable, Equatable {
        /// The `moe_experts` node.
        public var block: ValueID
        /// Its index in `Schedule.lastExpertLoads()` (its position among the graph's MoE nodes).
        public var loadIndex: Int
        /// The selection op that chose the experts.
        public var selection: ValueID
        /// The `[tokens, E]` scores the selection read, when the router has usable scores.
        public var scores: ValueID?
    }

    /// One hop for a single-hop block; a multi-hop block's hops in order.
    public var hops: [Hop]
    /// How every hop's scores become probabilities (nil when `unavailable`).
    public var distribution: Distribution?
    /// Why the hops have no `scores`.
    public var unavailable: String?
    /// The block's name in the source (`let y = moe(…)`), else its value (`%9`): `MoELayer.name`.
    public var name: String
    public var experts: Int
    /// Expert slots per token (k for top-k).
    public var slots: Int
    /// Bytes of one expert's weights, as moec holds them (f32).
    public var expertBytes: Int

    /// The name under which a run returns the scores of hop `hop` of layer `layer`.
    public static func outputName(layer: Int, hop: Int) -> String { "#router-scores-\(layer).\(hop)" }

    /// Whether graph output `name` is router scores exposed for statistics (`outputName`), not
    /// one of the source's outputs (a source name never starts with `#`).
    public static func isScoresOutput(_ name: String) -> Bool { name.hasPrefix("#router-scores-") }

    /// One probe per MoE layer (`Graph.moeLayers`), in the order of the source's blocks.
    public static func find(in g: Graph) -> [RouterProbe] {
        g.moeLayers.map { layer in
            let analysed = zip(layer.nodes, layer.nodePositions).map { hop(g, $0, loadIndex: $1) }
            let block = g[layer.nodes[0]].expertsView!
            let routing = g[block.routing].type.routing!
            let weights = block.matrices
            let experts = routing.experts
            let bytes = weights.reduce(0) { $0 + (g[$1].tensorType?.fixedShape?.reduce(4, *) ?? 0) / max(experts, 1) }
            var probe = RouterProbe(
                hops: analysed.map(\.hop), distribution: analysed[0].distribution, unavailable: nil,
                name: layer.name, experts: experts, slots: routing.slots, expertBytes: bytes)
            if let why = analysed.lazy.compactMap(\.unavailable).first {
                probe.unavailable = why
            } else if analysed.contains(where: { $0.distribution != probe.distribution }) {
                probe.unavailable = "the hops' routers make probabilities in different ways"
            }
            if probe.unavailable != nil {
                probe.distribution = nil
                for h in probe.hops.indices { probe.hops[h].scores = nil }
            }
            return probe
        }
    }

    /// The router of one `moe_experts` node: its selection, and its scores or why there are none.
    private static func hop(_ g: Graph, _ id: ValueID, loadIndex: Int) -> (hop: Hop, distribution: Distribution?, unavailable: String?) {
        let block = g[id].expertsView!
        let experts = g[block.routing].type.routing!.experts
        var selection = block.routing
        while g[selection].op.isRouting && !g[selection].op.isSelection, let first = g[selection].operands.first {
            selection = first
        }
        var hop = Hop(block: id, loadIndex: loadIndex, selection: selection, scores: nil)
        switch g[selection].op {
        case .hash_route:
            return (hop, nil, "hash routing has no router scores")
        case .within:
            return (hop, nil, "hierarchical ('within') routing has no single distribution over all experts")
        case let op where op.isSelection:
            let s = g[selection].operands[0]
            guard let t = g[s].tensorType, t.rank == 2, t.shape[0] == .tokens, t.shape[1] == .fixed(experts),
                ![.weight, .constant].contains(g[s].op)
            else {
                return (hop, nil, "the router's scores are not a [tokens, \(experts)] tensor")
            }
            hop.scores = s
            var distribution: Distribution = g[s].op.isNonNegative ? .scoresOverSum : .softmaxOfScores
            // A fused router reads logits and applies its score function itself.
            switch g[selection].op == .fused_router ? g[selection].attributes.string("score") : nil {
            case "softmax"?: distribution = .softmaxOfScores
            case "sigmoid"?: distribution = .sigmoidOverSum
            default: break
            }
            return (hop, distribution, nil)
        default:
            return (hop, nil, "no selection op found before the block")
        }
    }

    /// The op that made the router scores (`softmax`, `sigmoid`, `linear`, …), for reports; for a
    /// fused router, its score function.
    public func scoresFrom(_ g: Graph) -> String? {
        guard let hop = hops.first, let s = hop.scores else { return nil }
        if g[hop.selection].op == .fused_router, let score = g[hop.selection].attributes.string("score"), score != "identity" {
            return score
        }
        return g[s].op.rawValue
    }
}
