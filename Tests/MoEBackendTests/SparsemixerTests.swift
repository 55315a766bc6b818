import Foundation
import MoEIR
import Testing

@testable import MoEBackend

/// PhiMoE's `sparsemixer` (inference form): values worked out by hand from transformers'
/// `modeling_phimoe.sparsemixer` with `training=False`, read out through `RoutingTests.readout`
/// (y[t, e] = the weight token t gives expert e), then the executor against the reference on
/// random rows. Per round: m = best remaining logit, j masked when (m − s_j) / max(|s_j|, m) > 2ε,
/// weight = 1 / Σ_{unmasked remaining j} exp(s_j − m).
@Suite struct SparsemixerTests {
    static let cases: [(s: [Float], eps: Double, y: [Float])] = [
        // 1.9 within the margin of 2 (0.05 ≤ 0.2), 0 and −1 not; then 1.9 alone.
        ([2, 1.9, 0, -1], 0.1, [Float(1 / (1 + exp(-0.1))), 1, 0, 0]),
        // ε = 0: every other expert masked, both weights 1.
        ([1, 3, 2], 0, [0, 1, 1]),
        // A wide margin: plain softmax over the remaining experts.
        ([0, 1, 2], 10, [0, Float(1 / (1 + exp(-1.0))), Float(1 / (1 + exp(-1.0) + exp(-2.0)))]),
        // A tie: the lower index first, and the tied expert is within any margin of it.
        ([1, 1, 0], 0, [0.5, 1, 0]),
        // Negative logits: the denominator is |s_j|; 0.5 is not > 2ε = 0.5.
        ([-1, -2, -3], 0.25, [Float(1 / (1 + exp(-1.0))), Float(1 / (1 + exp(-1.0))), 0]),
        // A masked (−∞) expert is never chosen and adds nothing.
        ([-.infinity, 1, 0.5], 10, [0, Float(1 / (1 + exp(-0.5))), 1]),
        // One finite logit: the second slot stays empty.
        ([-.infinity, 2, -.infinity], 0.01, [0, 1, 0])
    ]

    @Test(arguments: cases.indices)
    func handWorked(_ i: Int) throws {
        let (s, eps, expected) = Self.cases[i]
        let t = try RoutingTests.readout(experts: s.count) { t, scores in
            try t.op(.sparsemixer, [scores], ["jitter_eps": .float(eps)])
        }
        let y = try runEverywhere(t, RoutingTests.inputs([s]))
        for j in 0..<s.count {
            #expect(abs(y[j] - expected[j]) <= 1e-6, "sparsemixer(\(s), ε = \(eps)) = \(y), expected \(expected)")
        }
    }

    /// Random logits at several margins: the executor (Float) matches the reference (Double).
    @Test(arguments: [0.0, 0.01, 0.3, 5.0])
    func randomRows(eps: Double) throws {
        for e in [2, 6, 16] {
            let t = try RoutingTests.readout(experts: e) { t, scores in
                try t.op(.sparsemixer, [scores], ["jitter_eps": .float(eps)])
            }
            try expectMatchesReference(t, inputs: RoutingTests.randomInputs(experts: e, seed: UInt64(e)))
        }
    }

    /// Two slots whatever the expert count; fewer than 2 experts or a negative margin are refused.
    @Test func typeRule() throws {
        let scores: IRType = .tensor(TensorType(.f32, [.tokens, .fixed(6)]))
        let r = try SelectionOp.sparsemixer.resultType([scores], ["jitter_eps": .float(0.01)])
        #expect(r?.routing == RoutingType(slots: 2, experts: 6))
        let one: IRType = .tensor(TensorType(.f32, [.tokens, .fixed(1)]))
        #expect(throws: TypeRuleError.self) { try SelectionOp.sparsemixer.resultType([one], ["jitter_eps": .float(0.01)]) }
        #expect(throws: TypeRuleError.self) { try SelectionOp.sparsemixer.resultType([scores], ["jitter_eps": .float(-1)]) }
        #expect(throws: TypeRuleError.self) { try SelectionOp.sparsemixer.resultType([scores], [:]) }
        #expect(Op(rawValue: "sparsemixer") == .sparsemixer)
    }
}
