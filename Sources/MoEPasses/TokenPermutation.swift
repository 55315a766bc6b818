import MoEIR

/// Token permutation: every MoE block is marked `permute`, and the executor then dispatches its
/// tokens with a counting sort of the (token, slot) pairs by expert before any expert runs:
///
/// 1. count the pairs per expert (one pass over the routing), prefix-sum the counts;
/// 2. place each pair at its expert's next row (a second pass), recording its token, its routing
///    weight and, per pair, its row (for the combine).
///
/// Each expert's rows are then contiguous, so each expert runs one GEMM over all of its tokens
/// and streams its weights once per batch, whatever the batch size. Both passes are O(T·k) and
/// stable, so the row order (and every sum over rows) is the same on every run.
///
/// Without the mark (`--disable-pass token-permutation`) the executor dispatches pair by pair:
/// each (token, slot) pair runs its expert's FFN on its one row (a matrix-vector product per
/// projection), as a loop over the routing would. Same numbers up to rounding; every expert's
/// weights then stream once per pair instead of once per batch.
public struct TokenPermutation: Pass {
    public static let name = "token-permutation"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph { markingExperts(graph, .permute) }
}
