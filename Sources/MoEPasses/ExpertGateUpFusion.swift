import MoEIR

/// Gate/up fusion: a SwiGLU expert block whose gate and up projections are separate weights
/// (`swiglu(gate: w1, up: w3, …)`, as Mixtral, OLMoE, Qwen2-MoE and DeepSeek checkpoints store
/// them) is marked `fuse_gate_up`. The executor then packs each expert's gate and up rows into
/// one `[2F, H]` matrix at load time, interleaved by 16-column panel (gate features 16j..<16j+16,
/// then the same up features), so the first layer is one GEMM per expert that streams one
/// weight, and the SwiGLU runs in that GEMM's epilogue: as soon as a strip of 16 gate and 16 up
/// columns is final, `silu(g)·u` is computed and written (times the routing weight, with
/// `combine_in_down`) into the down projection's packed operand while the strip is in cache.
/// Blocks stored fused (`swiglu(gate_up: …)`) get the same layout and epilogue without a mark.
/// All of this is the packed experts kernel's (moec's kernels, blocks also `permute`d and
/// `prepacked`); the unfused path (BLAS, or those passes disabled) runs gate and up as two
/// products either way.
///
/// Nothing changes in the checkpoint or in the numbers: each output column is the same dot
/// product either way. Without the mark, gate and up are two GEMMs and the SwiGLU a separate
/// pass over their outputs.
public struct ExpertGateUpFusion: Pass {
    public static let name = "expert-gate-up-fusion"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        markingExperts(graph, .fuseGateUp) { experts in
            guard experts.kind == .swiglu, let gateID = experts.matrix("gate"), let upID = experts.matrix("up") else { return false }
            let gate = graph[gateID], up = graph[upID]
            guard gate.op == .weight, up.op == .weight, let gt = gate.tensorType?.fixedShape else { return false }
            return gt == up.tensorType?.fixedShape
        }
    }
}
