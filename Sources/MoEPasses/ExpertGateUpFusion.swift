import MoEIR

/// Gate/up fusion: a SwiGLU expert block whose gate and up projections are separate weights
/// (`swiglu(gate: w1, up: w3, …)`, as Mixtral, OLMoE, Qwen2-MoE and DeepSeek checkpoints store
/// them) is marked `fuse_gate_up`. The executor then packs each expert's gate and up rows into
/// one `[2F, H]` matrix at load time, so the first layer is one GEMM per expert that streams one
/// weight and writes `[rows, 2F]`, and the SwiGLU runs on its output while it is still in cache.
///
/// Nothing changes in the checkpoint or in the numbers: each output column is the same dot
/// product either way. Blocks already stored fused (`swiglu(gate_up: …)`) need no rewrite.
public struct ExpertGateUpFusion: Pass {
    public static let name = "expert-gate-up-fusion"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        for i in g.nodes.indices where g.nodes[i].op == .moe_experts {
            let n = g.nodes[i]
            guard n.attributes.string("kind") == ExpertKind.swiglu.rawValue, n.operands.count >= 5 else { continue }
            let gate = g[n.operands[2]], up = g[n.operands[3]]
            guard gate.op == .weight, up.op == .weight,
                  let gt = gate.tensorType?.fixedShape, gt == up.tensorType?.fixedShape else { continue }
            g.nodes[i].attributes["fuse_gate_up"] = .bool(true)
        }
        return g
    }
}
