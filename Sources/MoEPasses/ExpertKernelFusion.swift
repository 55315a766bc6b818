import MoEIR

/// Expert kernel fusion: a MoE block whose expert matrices are all weights is marked
/// `fused_kernel`, and the native executor then runs it as one fused kernel
/// (`PackedExpertsKernel`) instead of a gather, one GEMM per expert and a scatter-add:
///
/// - weight pre-packing: each expert's matrices are packed once at load time into the panel
///   layout the GEMM micro-kernel streams (gate and up as one matrix with `fuse_gate_up`), and
///   the unpacked copies are dropped;
/// - token permutation into the packed operand: after the counting sort by expert, each expert's
///   rows of x are gathered straight into the packed left operand of its GEMM (no gathered copy);
/// - combine fused into the down projection: the activation writes the down GEMM's packed operand
///   with each row scaled by its routing weight, so the down GEMM's output rows are already
///   weighted and the combine is a per-token sum of its k rows (no scatter-add pass over y);
/// - one cut of every GEMM phase between threads, by the machine model's cost per
///   (expert, 16-column panel) unit.
///
/// Without the mark (`--disable-pass expert-kernel-fusion`, or under BLAS) the block runs the
/// unfused way, which gives the same numbers up to rounding. Blocks whose expert matrices are
/// computed (`swiglu(gate: w * 2, …)`) stay unfused: there is nothing to pack at load time.
public struct ExpertKernelFusion: Pass {
    public static let name = "expert-kernel-fusion"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        for i in g.nodes.indices where g.nodes[i].op == .moe_experts {
            let n = g.nodes[i]
            let withActive = n.attributes.bool("with_active") ?? false
            let matrices = n.operands[2..<(n.operands.count - (withActive ? 1 : 0))]
            guard matrices.allSatisfy({ g[$0].op == .weight }) else { continue }
            g.nodes[i].attributes["fused_kernel"] = .bool(true)
        }
        return g
    }
}
