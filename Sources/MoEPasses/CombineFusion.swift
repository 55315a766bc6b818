import MoEIR

/// Combine fusion: every MoE block is marked `combine_in_down`, and the executor then folds the
/// weighted combine into the down projection. A token's output is
/// `y[t] = Σ_slot w[t, slot] · (h[row] · W_downᵀ)`, and `(w·h)·W_downᵀ = w·(h·W_downᵀ)`, so each
/// row of the activation `h` is scaled by its routing weight as it is written into the down
/// GEMM's operand. The down GEMM's output rows are then already weighted, and the combine is a
/// plain per-token sum of its k rows, in slot order: no multiply and no scatter-add pass over y.
///
/// The packed experts kernel does this (it writes the down operand anyway, so the multiply is
/// free there). The unfused path (BLAS, or blocks not permuted and pre-packed) ignores the mark:
/// its scatter-add `y[t] += w · row` multiplies at the cost of an add, and scaling the rows
/// first would be an extra pass.
///
/// Without the mark (`--disable-pass combine-fusion`) the packed kernel's down projection writes
/// unweighted rows and each token's output sums `w · row` over its slots. The same numbers up to
/// rounding (the weight multiplies before the sum over F instead of after).
///
/// Blocks with `weighting: "input"` are not marked: their weight scales the input rows, and
/// their outputs are summed unweighted, so there is no combine weight to fold in.
public struct CombineFusion: Pass {
    public static let name = "combine-fusion"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph { markingExperts(graph, .combineInDown, where: { !$0.weightOnInput }) }
}
