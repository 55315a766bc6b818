import Foundation
import MoEIR
import Testing

@testable import MoEBackend

/// Routing rules checked against the papers' formulas and the cases that once disagreed with them
/// (hash bits, DSelect-k bit order, capacity factors as written, Sinkhorn ties).
@Suite struct RoutingSemanticsTests {
    /// The capacity factor counts as written: f32 1.2 is 1.2, so ⌈20·2·1.2/8⌉ = 6, not 7.
    @Test func expertChoiceCapacityUsesTheWrittenFactor() {
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, runTimeFactor: Float(1.2), experts: 8) == 6)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 40, k: 2, runTimeFactor: Float(1.1), experts: 8) == 11)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, factor: 1.2, experts: 8) == 6)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 40, k: 2, factor: 1.1, experts: 8) == 11)
        // Just above an integer still rounds up.
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, runTimeFactor: Float(1.21), experts: 8) == 7)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, factor: 1e-5, experts: 8) == 1)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, factor: 2.5e1, experts: 8) == 20)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, runTimeFactor: .greatestFiniteMagnitude, experts: 8) == 20)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 20, k: 2, runTimeFactor: .leastNonzeroMagnitude, experts: 8) == 1)
    }

    @Test func decimalReadsShortestRepresentations() {
        #expect(RoutingMath.decimal("1.2")! == (12, 1))
        #expect(RoutingMath.decimal("1e-05")! == (1, 5))
        #expect(RoutingMath.decimal("2.5e+20")! == (25, -19))
        #expect(RoutingMath.decimal("3.0")! == (30, 1))
        #expect(RoutingMath.decimal("nan") == nil && RoutingMath.decimal("1.2.3") == nil && RoutingMath.decimal("e5") == nil)
    }

    /// Knuth's multiplicative hash keeps the high bits: ⌊E · frac(id · A / 2³²)⌋, computed here in
    /// exact Double arithmetic for small ids (id · A < 2⁵³).
    @Test func hashKeepsTheHighBits() {
        for e in [2, 5, 8, 64] {
            var striping = true
            for id in 0..<2000 {
                let product = Double(id) * 2_654_435_761
                let fraction = product / 4_294_967_296 - (product / 4_294_967_296).rounded(.down)
                let expected = Int((Double(e) * fraction).rounded(.down))
                #expect(RoutingMath.hashExpert(id: Int32(id), experts: e, method: "hash", seed: 0) == expected)
                if expected != id % e { striping = false }
            }
            #expect(!striping, "E = \(e): the hash must not be id mod E")
        }
        // A negative id is read as its uint32: −1 is 2³² − 1.
        #expect(RoutingMath.hashExpert(id: -1, experts: 8, method: "hash", seed: 0) == Int((UInt64(UInt32.max &* 2_654_435_761) * 8) >> 32))
        #expect(RoutingMath.hashExpert(id: 1, experts: 8, method: "hash", seed: 0) == 4)
    }

    /// DSelect-k: selector bit j is bit j of the expert index from the most significant end, as
    /// the official code's `np.binary_repr` codes. Saturated z = (+, −, −) picks 0b100 = 4 of 8.
    @Test func dselectCodesAreMostSignificantBitFirst() throws {
        for (z, expert) in [([1.0, -1.0, -1.0], 4), ([-1.0, -1.0, 1.0], 1), ([1.0, 1.0, -1.0], 6), ([-1.0, 1.0, 1.0], 3)] as [([Float], Int)] {
            let t = try RoutingTests.readout(experts: 8) { t, s in
                let zw = t.weight("z", [3], z), aw = t.weight("alpha", [1], [0])
                let w = try t.op(.dselect, [s, zw, aw], ["experts": .int(8), "gamma": .float(1)])
                return try t.op(.nonzero, [w])
            }
            let y = try runEverywhere(t, RoutingTests.inputs([[Float](repeating: 0, count: 8)]))
            var expected = [Float](repeating: 0, count: 8)
            expected[expert] = 1
            #expect(y == expected, "z = \(z)")
        }
    }

    /// Sinkhorn balances a one-token batch to 1/E everywhere: the tie goes to the token's own
    /// best experts (not to experts 0 and 1).
    @Test func sinkhornTiesGoToTheOriginalScores() throws {
        let t = try RoutingTests.readout(experts: 6) { t, s in
            let balanced = try t.op(.sinkhorn, [s], ["iterations": .int(3)])
            let p = try t.op(.softmax, [s])
            return try t.op(.topk, [p, balanced], ["k": .int(2), "with_by": .bool(true)])
        }
        let scores: [Float] = [0.1, -0.3, 2.0, 0.4, 1.5, -1.0]
        let y = try runEverywhere(t, RoutingTests.inputs([scores]))
        #expect(y.enumerated().filter { $0.element > 0 }.map(\.offset) == [2, 4])
    }

    /// Every selection, on scores where token 1's row holds a NaN (or a +∞): its block output row
    /// is NaN in the executor and the reference alike, and the other tokens get what they get
    /// without it (no capacity, no balancing, no expert taken from them).
    static let selections: [(String, @Sendable (inout TinyGraph, ValueID) throws -> ValueID)] = [
        ("topk", { t, s in try t.op(.topk, [s], ["k": .int(2)]) }),
        ("softmax topk renormalize", { t, s in try t.op(.route_renormalize, [try t.op(.topk, [try t.op(.softmax, [s])], ["k": .int(2)])], ["eps": .float(0)]) }),
        ("fused_router", { t, s in try t.op(.fused_router, [s], ["k": .int(2), "score": .string("softmax"), "normalize": .string("sum")]) }),
        ("topk by sinkhorn", { t, s in try t.op(.topk, [try t.op(.softmax, [s]), try t.op(.sinkhorn, [s], ["iterations": .int(3)])], ["k": .int(2), "with_by": .bool(true)]) }),
        ("threshold", { t, s in try t.op(.threshold, [try t.op(.softmax, [s])], ["tau": .float(0.2)]) }),
        ("top_p", { t, s in try t.op(.top_p, [try t.op(.softmax, [s])], ["p": .float(0.7)]) }),
        ("stat_topk", { t, s in try t.op(.stat_topk, [s], ["k": .int(2)]) }),
        ("nonzero", { t, s in try t.op(.nonzero, [try t.op(.softmax, [s])]) }),
        ("dense", { t, s in try t.op(.dense_route, [try t.op(.softmax, [s])]) }),
        ("expert_choice", { t, s in try t.op(.expert_choice, [try t.op(.softmax, [s])], ["k": .int(2), "capacity_factor": .float(1)]) }),
        ("capacity", { t, s in try t.op(.route_capacity, [try t.op(.topk, [s], ["k": .int(2)])], ["capacity": .int(2)]) }),
        (
            "dselect",
            { t, s in
                let z = try t.op(.linear, [s, t.randomWeight("z", [6, 6])]), alpha = try t.op(.linear, [s, t.randomWeight("alpha", [2, 6])])
                return try t.op(.nonzero, [try t.op(.dselect, [s, z, alpha], ["experts": .int(6), "gamma": .float(1)])])
            }
        ),
        (
            "within",
            { t, s in
                let w = t.randomWeight("groups", [2, 6])
                let outer = try t.op(.topk, [try t.op(.softmax, [try t.op(.linear, [s, w])])], ["k": .int(1)])
                return try t.op(.within, [outer, try t.op(.softmax, [s], ["groups": .int(2)])], ["k": .int(2)])
            }
        )
    ]

    @Test(arguments: [Float.nan, .infinity])
    func invalidScoresGiveANaNRowAndLeaveTheOthers(_ bad: Float) throws {
        var rng = SeededRandom(seed: 5)
        let v = rng.normals(5 * 6, scale: 1.5)
        let rows = (0..<5).map { r in (0..<6).map { v[r * 6 + $0] } }
        var broken = rows
        broken.insert(rows[1].enumerated().map { $0.offset == 2 ? bad : $0.element }, at: 1)
        for (name, pipeline) in Self.selections {
            let t = try RoutingTests.readout(experts: 6, pipeline)
            let clean = try runEverywhere(t, RoutingTests.inputs(rows))
            let y = try runEverywhere(t, RoutingTests.inputs(broken))
            #expect(y[6..<12].allSatisfy { $0.isNaN }, "\(name): the invalid token's row is \(Array(y[6..<12]))")
            #expect(Array(y[0..<6]) + Array(y[12...]) == clean, "\(name): the other tokens changed")
        }
    }
}
