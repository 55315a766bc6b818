import MoEIR

/// Expert weight pre-packing: a MoE block whose expert matrices are all weights (not computed)
/// is marked `prepacked`, and moec's own kernels then pack its experts' matrices once, when the
/// plan is loaded, into the layout the GEMM micro-kernel streams: panels of 16 output columns,
/// each panel K steps of 16 contiguous floats (`PackedWeight`). With `fuse_gate_up`, gate and up
/// are interleaved panel by panel into one matrix, so the SwiGLU can run in the first GEMM's
/// epilogue. The unpacked copies are then dropped, so the weights are held once.
///
/// A block that is permuted (`permute`) and pre-packed runs as the packed experts kernel:
/// tokens gathered straight into the packed operand, one GEMM per expert and phase, the phases
/// cut between threads by the machine model.
///
/// Without the mark (`--disable-pass expert-weight-prepacking`) the block keeps its weights as
/// stored ([rows, cols], row-major) and the native kernels pack each expert's matrices into a
/// scratch buffer on every call before multiplying: the same numbers, plus a pass over every
/// touched expert's weights per run. BLAS reads the stored layout either way (it packs inside
/// each call), so the mark matters to moec's kernels only.
public struct ExpertWeightPrepacking: Pass {
    public static let name = "expert-weight-prepacking"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        markingExperts(graph, .prepacked) { experts in experts.kind != .program && experts.matrices.allSatisfy { graph[$0].op == .weight } }
    }
}
