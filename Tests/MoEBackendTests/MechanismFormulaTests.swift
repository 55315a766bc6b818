import Foundation
import MoEBasics
import MoEIR
import Testing

@testable import MoEBackend

/// A second check of each selection rule, independent of both the numpy reference and the
/// reference interpreter: small cases worked out by hand from the documented formulas (the
/// edge cases: inclusive thresholds, the crossing expert of top-p, the Φ⁻¹ cut, ties), read out
/// through `RoutingTests.readout` (y[t, e] = the weight token t gives expert e).
@Suite struct MechanismFormulaTests {
    static func y(_ experts: Int, _ scores: [[Float]], _ pipeline: (inout TinyGraph, ValueID) throws -> ValueID) throws -> [[Float]] {
        let t = try RoutingTests.readout(experts: experts, pipeline)
        return RoutingTests.rows(try runEverywhere(t, RoutingTests.inputs(scores)), experts)
    }

    /// threshold(τ = 0.2, max_k: 2): 0.2 ≥ τ passes, but 0.3, 0.3 come first (ties to the lower
    /// index) and max_k cuts the rest.
    @Test func thresholdIsInclusiveAndCutBestFirst() throws {
        let row: [Float] = [0.3, 0.1, 0.3, 0.2, 0.05, 0.05]
        #expect(try Self.y(6, [row]) { t, s in try t.op(.threshold, [s], ["tau": .float(0.2), "max_k": .int(2)]) } == [[0.3, 0, 0.3, 0, 0, 0]])
        #expect(try Self.y(6, [row]) { t, s in try t.op(.threshold, [s], ["tau": .float(0.2)]) } == [[0.3, 0, 0.3, 0.2, 0, 0]])
    }

    /// top_p: best first until the sum reaches p, the expert that crosses p included.
    @Test func topPIncludesTheCrossingExpert() throws {
        let row: [Float] = [0.15, 0.5, 0.05, 0.3]
        #expect(try Self.y(4, [row]) { t, s in try t.op(.top_p, [s], ["p": .float(0.7)]) } == [[0, 0.5, 0, 0.3]])
        #expect(try Self.y(4, [row]) { t, s in try t.op(.top_p, [s], ["p": .float(0.85)]) } == [[0.15, 0.5, 0, 0.3]])
        #expect(try Self.y(4, [row]) { t, s in try t.op(.top_p, [s], ["p": .float(0.4)]) } == [[0, 0.5, 0, 0]])
    }

    /// stat_topk(k) on [1, 2, 3, 4]: mean 2.5, population std √1.25; k = 1 cuts at
    /// 2.5 + 1.118·Φ⁻¹(0.75) = 3.254 (only 4 passes), k = 2 at 2.5 + 0 (3 and 4 pass).
    @Test func statTopKCutsAtTheNormalQuantile() throws {
        let row: [Float] = [1, 2, 3, 4]
        #expect(try Self.y(4, [row]) { t, s in try t.op(.stat_topk, [s], ["k": .int(1)]) } == [[0, 0, 0, 4]])
        #expect(try Self.y(4, [row]) { t, s in try t.op(.stat_topk, [s], ["k": .int(2)]) } == [[0, 0, 3, 4]])
        #expect(abs(RoutingMath.normalQuantile(0.75) - 0.674_489_750_196_081_7) < 1e-12)
    }

    @Test func nonzeroKeepsExactlyTheNonZeroWeights() throws {
        #expect(try Self.y(4, [[0, 0.2, 0, 0.5]]) { t, s in try t.op(.nonzero, [s]) } == [[0, 0.2, 0, 0.5]])
    }

    /// expert_choice(k: 1, cf: 1) with T = 3, E = 2: C = ⌈3/2⌉ = 2. Expert 0 takes token 2 (0.9),
    /// then token 0 over token 1 (a tie: the lower token); expert 1 takes tokens 0 and 1.
    @Test func expertChoiceTiesGoToTheLowerToken() throws {
        let scores: [[Float]] = [[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]]
        let y = try Self.y(2, scores) { t, s in try t.op(.expert_choice, [s], ["k": .int(1), "capacity_factor": .float(1)]) }
        #expect(y == [[0.5, 0.5], [0, 0.5], [0.9, 0]])
    }

    /// random_fixed: splitmix64(seed·1000003 + uint32(id)) mod E, with the standard splitmix64
    /// step, whose first output from state 0 is 0xE220A8397B1DCDAF.
    @Test func randomFixedIsStandardSplitMix64() {
        #expect(SplitMix64.mix(0) == 0xE220_A839_7B1D_CDAF)
        #expect(RoutingMath.hashExpert(id: 0, experts: 1000, method: "random", seed: 0) == 535) // 0xE220A8397B1DCDAF mod 1000
        #expect(RoutingMath.hashExpert(id: 5, experts: 8, method: "random", seed: 1234) == 5)
        #expect(RoutingMath.hashExpert(id: 42, experts: 6, method: "random", seed: -1) == 1)
    }

    /// within(inner, k: 1) over 2 groups of 2: the outer top-1 over the group scores (s₀, s₂) =
    /// (0.1, 0.4) picks group 1 with weight 0.4; the inner best of group 1 is its second expert
    /// (index 1·2 + 1 = 3), weight 0.4 · 0.6.
    @Test func withinIndexesAndWeighsByBothLevels() throws {
        let y = try Self.y(4, [[0.1, 0.9, 0.4, 0.6]]) { t, s in
            let groups = t.weight("groups", [2, 4], [1, 0, 0, 0, 0, 0, 1, 0]) // group scores s₀, s₂
            let outer = try t.op(.topk, [try t.op(.linear, [s, groups])], ["k": .int(1)])
            return try t.op(.within, [outer, s], ["k": .int(1)])
        }
        #expect(y == [[0, 0, 0, 0.4 * 0.6]])
    }

    /// `op` on input x [T, width] with one weight, as a graph output, by the executor and the
    /// reference interpreter (which must agree); the reference's values.
    static func scores(
        _ x: [[Float]], weight: (name: String, shape: [Int], values: [Float])?, _ make: (inout TinyGraph, ValueID, ValueID?) throws -> ValueID
    ) throws -> [Float] {
        var t = TinyGraph("scores")
        let input = t.input("x", [.tokens, .fixed(x[0].count)])
        let w = weight.map { t.weight($0.name, $0.shape, $0.values) }
        t.output("y", try make(&t, input, w))
        return try runEverywhere(t, ["x": HostTensor(shape: [x.count, x[0].count], floats: x.flatMap { $0 })])
    }

    static func close(_ a: [Float], _ b: [Double], _ tolerance: Double = 1e-6) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= tolerance }
    }

    /// cosine: (3, 4)·(1, 0) / 5 = 0.6; a zero centroid gives 0 (the 1e-8 floor), not NaN.
    /// distance: ‖(3, 4) − (0, 0)‖ = 5, ‖(3, 4) − (3, 0)‖ = 4.
    @Test func centroidScoresByHand() throws {
        let cosine = try Self.scores([[3, 4]], weight: ("c", [2, 2], [1, 0, 0, 0])) { t, x, c in try t.op(.cosine, [x, c!]) }
        #expect(Self.close(cosine, [0.6, 0]))
        let distance = try Self.scores([[3, 4]], weight: ("c", [2, 2], [0, 0, 3, 0])) { t, x, c in try t.op(.distance, [x, c!]) }
        #expect(Self.close(distance, [5, 4]))
    }

    /// subspace: U₀ = span(e₁), U₁ = span(e₂, e₃); x = (3, 4, 0) scores 3/5 and 4/5; a zero
    /// token scores 0 (the 1e-12 floor).
    @Test func subspaceScoresByHand() throws {
        // bases [E = 2, d = 3, r = 2]: U₀'s second column is zero.
        let bases: [Float] = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1]
        let y = try Self.scores([[3, 4, 0], [0, 0, 0]], weight: ("u", [2, 3, 2], bases)) { t, x, u in try t.op(.subspace, [x, u!]) }
        #expect(Self.close(y, [0.6, 0.8, 0, 0]))
    }

    /// sinkhorn(1) on logits [[0, ln 3], [0, 0]]: row softmax [[1/4, 3/4], [1/2, 1/2]]; columns
    /// to T/E = 1: [[1/3, 3/5], [2/3, 2/5]]; rows to 1: [[5/14, 9/14], [5/8, 3/8]].
    @Test func sinkhornByHand() throws {
        let y = try Self.scores([[0, Float(log(3.0))], [0, 0]], weight: nil) { t, x, _ in try t.op(.sinkhorn, [x], ["iterations": .int(1)]) }
        let expected: [Double] = [5.0 / 14, 9.0 / 14, 5.0 / 8, 3.0 / 8]
        #expect(Self.close(y, expected))
    }

    /// DSelect-k per task, E = 4 (m = 2), one selector, γ = 1, z = (0, 0.25): S = (1/2, 27/32).
    /// Codes most significant bit first: r₀ = ½·(5/32), r₁ = ½·(27/32), r₂ = r₀, r₃ = r₁.
    @Test func dselectByHand() throws {
        var t = TinyGraph("dselect")
        let x = t.input("x", [.tokens, .fixed(1)])
        let z = t.weight("z", [2], [0, 0.25]), alpha = t.weight("alpha", [1], [0])
        t.output("y", try t.op(.dselect, [x, z, alpha], ["experts": .int(4), "gamma": .float(1)]))
        let y = try runEverywhere(t, ["x": HostTensor(shape: [1, 1], floats: [0])])
        let expected: [Double] = [5.0 / 64, 27.0 / 64, 5.0 / 64, 27.0 / 64]
        #expect(Self.close(y, expected))
    }

    /// Steering: topk(3, force: [2], disable: [3]) on (0.1, 0.5, 0.3, 0.9): the forced expert 2
    /// first, the disabled 3 never (though best), then the best others, 1 and 0.
    @Test func forcedFirstDisabledNever() throws {
        let y = try Self.y(4, [[0.1, 0.5, 0.3, 0.9]]) { t, s in
            try t.op(.topk, [s], ["k": .int(3), "force": .ints([2]), "disable": .ints([3])])
        }
        #expect(y == [[0.1, 0.5, 0.3, 0]])
    }

    /// Multi-hop halting: a token stays active while ‖Δh‖ ≥ τ·‖h‖ (h before the update):
    /// ‖(0.6, 0.8)‖ = 1 ≥ 0.19·5 stays, ‖(0.1, 0)‖ = 0.1 < 0.19·1 halts.
    @Test func haltingComparesTheUpdateWithHBeforeIt() throws {
        var t = TinyGraph("halt")
        let h = t.input("h", [.tokens, .fixed(2)]), d = t.input("d", [.tokens, .fixed(2)])
        t.output("y", try t.op(.halt_mask, [h, d], ["tau": .float(0.19)]))
        let y = try runEverywhere(
            t, ["h": HostTensor(shape: [2, 2], floats: [3, 4, 1, 0]), "d": HostTensor(shape: [2, 2], floats: [0.6, 0.8, 0.1, 0])])
        #expect(y == [1, 0])
    }
}
