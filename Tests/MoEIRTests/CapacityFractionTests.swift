import MoEIR
import Testing

/// `capacity(fraction: f)`: ⌈f · tokens⌉ pairs per expert, computed in Double as NLLB-MoE's
/// router (`math.ceil(moe_eval_capacity_token_fraction * nb_tokens)`) computes it.
@Suite struct CapacityFractionTests {
    @Test func fractionOfTheRunsTokensRoundsUpInDouble() {
        func cap(_ f: Double, _ t: Int) -> Int { RoutingStageOp.capacity(["capacity_fraction": .float(f)], tokens: t) }
        #expect(cap(1.0, 9) == 9)
        #expect(cap(0.3, 9) == 3) // 2.6999999999999997 → 3
        #expect(cap(1.1, 50) == 56) // 55.00000000000001 in Double → 56, as Python's math.ceil gives
        #expect(cap(0.5, 1) == 1)
        #expect(cap(0.25, 0) == 0)
        #expect(RoutingStageOp.capacity(["capacity": .int(7)], tokens: 1000) == 7)
    }
}
