import Foundation
import MoEIR
import Testing

@testable import MoEBackend

/// Expert selection and the routing stages. A routing is not a tensor, so each test reads it
/// out through a `moe_experts` block whose experts are "readouts": x is all ones, expert e's
/// FFN is relu(x[0]) = 1 times the unit vector e, so y[t, e] = Σ of the weights of token t's
/// slots that chose e, exactly. A wrong choice or a wrong weight shows up directly in y.
@Suite(.serialized) struct RoutingTests {
    /// scores [T, E] (input `s`) → `pipeline` → readout experts → y [T, E].
    static func readout(
        experts e: Int, seed: UInt64 = 1,
        _ pipeline: (inout TinyGraph, ValueID) throws -> ValueID
    ) throws -> TinyGraph {
        var t = TinyGraph("routing", seed: seed)
        let s = t.input("s", [.tokens, .fixed(e)])
        let x = t.input("x", [.tokens, .fixed(e)])
        let routing = try pipeline(&t, s)
        var up = [Float](repeating: 0, count: e * e) // [E, 1, E]: x[0] = 1
        for i in 0..<e { up[i * e] = 1 }
        var down = [Float](repeating: 0, count: e * e) // [E, E, 1]: unit vector e
        for i in 0..<e { down[i * e + i] = 1 }
        let wu = t.weight("up", [e, 1, e], up), wd = t.weight("down", [e, e, 1], down)
        t.output(
            "y",
            try t.op(
                .moe_experts, [x, routing, wu, wd],
                ["experts": .int(e), "kind": .string("mlp"), "act": .string("relu")]))
        return t
    }

    /// Inputs for a readout graph: the given scores and x = 1.
    static func inputs(_ scores: [[Float]]) -> [String: HostTensor] {
        let t = scores.count, e = scores[0].count
        return [
            "s": HostTensor(shape: [t, e], floats: scores.flatMap { $0 }),
            "x": HostTensor(shape: [t, e], floats: [Float](repeating: 1, count: t * e))
        ]
    }

    /// Random scores: normal (`raw`), or sigmoid of normal (in (0, 1), as DeepSeek scores are).
    static func randomInputs(experts e: Int, sigmoid: Bool = false, seed: UInt64 = 0) -> (Int) -> [String: HostTensor] {
        { n in
            var rng = SeededRandom(seed: seed &+ UInt64(n))
            let v = rng.normals(n * e, scale: 1.5)
            return inputs(
                (0..<n).map { r in
                    (0..<e).map { j in
                        let x = v[r * e + j]
                        return sigmoid ? 1 / (1 + Foundation.exp(-x)) : x
                    }
                })
        }
    }

    static func rows(_ y: [Float], _ e: Int) -> [[Float]] { stride(from: 0, to: y.count, by: e).map { Array(y[$0..<($0 + e)]) } }

    // MARK: topk

    @Test(arguments: [(8, 2), (8, 1), (6, 6), (13, 5)])
    func topkPlain(experts: Int, k: Int) throws {
        let t = try Self.readout(experts: experts) { t, s in try t.op(.topk, [s], ["k": .int(k)]) }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: experts))
    }

    @Test func topkWithBias() throws {
        let e = 12
        let t = try Self.readout(experts: e) { t, s in
            let bias = t.weight("bias", [e], t.rng.normals(e, scale: 0.3))
            return try t.op(.topk, [s, bias], ["k": .int(3), "with_bias": .bool(true)])
        }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: e, sigmoid: true))
    }

    struct GroupCase: CustomStringConvertible, Sendable {
        var experts, k, groups, keep: Int
        var groupTop: Int?
        var masked: Double?
        var bias: Bool
        var description: String {
            "E\(experts) k\(k) g\(groups) keep\(keep) top\(groupTop.map(String.init) ?? "-") masked\(masked.map { "\($0)" } ?? "-inf") bias\(bias)"
        }
    }

    static let groupCases: [GroupCase] = [
        GroupCase(experts: 16, k: 4, groups: 4, keep: 2, groupTop: nil, masked: nil, bias: true),
        GroupCase(experts: 16, k: 4, groups: 4, keep: 2, groupTop: 1, masked: nil, bias: true),
        GroupCase(experts: 16, k: 3, groups: 4, keep: 1, groupTop: 4, masked: nil, bias: false),
        GroupCase(experts: 32, k: 8, groups: 8, keep: 3, groupTop: 2, masked: nil, bias: true),
        GroupCase(experts: 12, k: 4, groups: 4, keep: 2, groupTop: nil, masked: 0, bias: false),
        GroupCase(experts: 12, k: 6, groups: 4, keep: 2, groupTop: 3, masked: 0, bias: true),
        GroupCase(experts: 12, k: 12, groups: 4, keep: 4, groupTop: nil, masked: nil, bias: true),
        GroupCase(experts: 10, k: 5, groups: 5, keep: 5, groupTop: 1, masked: nil, bias: false)
    ]

    static func groupGraph(_ c: GroupCase) throws -> TinyGraph {
        try readout(experts: c.experts) { t, s in
            var attrs: Attributes = ["k": .int(c.k), "groups": .int(c.groups), "keep_groups": .int(c.keep)]
            if let top = c.groupTop { attrs["group_top"] = .int(top) }
            if let m = c.masked { attrs["masked"] = .float(m) }
            if c.bias { attrs["with_bias"] = .bool(true) }
            let operands = c.bias ? [s, t.weight("bias", [c.experts], t.rng.normals(c.experts, scale: 0.3))] : [s]
            return try t.op(.topk, operands, attrs)
        }
    }

    @Test(arguments: groupCases)
    func topkGroups(_ c: GroupCase) throws {
        // Raw normal scores with masked 0, so that masking with 0 beats negative kept scores.
        try expectMatchesReference(try Self.groupGraph(c), inputs: Self.randomInputs(experts: c.experts, sigmoid: c.masked == nil))
    }

    /// `masked: 0` and the default −∞ are different models; the inputs here tell them apart.
    @Test func maskedZeroDiffersFromMinusInfinity() throws {
        var c = GroupCase(experts: 12, k: 4, groups: 4, keep: 2, groupTop: nil, masked: 0, bias: false)
        let zero = try Self.groupGraph(c)
        c.masked = nil
        let inf = try Self.groupGraph(c)
        let inputs = Self.randomInputs(experts: 12)(64)
        let a = try runEverywhere(zero, inputs), b = try runEverywhere(inf, inputs)
        #expect(a != b)
    }

    // MARK: Hand-checked selections (reference and executor)

    @Test func topkTiesGoToTheLowerIndex() throws {
        let t = try Self.readout(experts: 4) { t, s in try t.op(.topk, [s], ["k": .int(2)]) }
        let y = try runEverywhere(t, Self.inputs([[1, 1, 1, 1], [0, 2, 2, 2], [3, 1, 3, 1], [-1, -1, -2, -1]]))
        #expect(Self.rows(y, 4) == [[1, 1, 0, 0], [0, 2, 2, 0], [3, 0, 3, 0], [-1, -1, 0, 0]])
    }

    @Test func biasSelectsButDoesNotWeigh() throws {
        let t = try Self.readout(experts: 2) { t, s in try t.op(.topk, [s, t.weight("bias", [2], [0, 0.5])], ["k": .int(1), "with_bias": .bool(true)]) }
        let y = try runEverywhere(t, Self.inputs([[0.5, 0.25], [0.875, 0.25]]))
        // Token 0: choice scores 0.5, 0.75 → expert 1 with its unbiased score 0.25.
        #expect(Self.rows(y, 2) == [[0, 0.25], [0.875, 0]])
    }

    @Test func groupSelection() throws {
        // Groups {0, 1} and {2, 3}; scores 0.25 0.5 | 0.75 0.
        let scores: [[Float]] = [[0.25, 0.5, 0.75, 0]]
        // group_top 1: group scores 0.5 vs 0.75 → the second group → expert 2.
        let top1 = try Self.readout(experts: 4) { t, s in
            try t.op(.topk, [s], ["k": .int(1), "groups": .int(2), "keep_groups": .int(1), "group_top": .int(1)])
        }
        #expect(try runEverywhere(top1, Self.inputs(scores)) == [0, 0, 0.75, 0])
        // group_top 2: 0.75 vs 0.75, a tie → the lower group → expert 1.
        let top2 = try Self.readout(experts: 4) { t, s in
            try t.op(.topk, [s], ["k": .int(1), "groups": .int(2), "keep_groups": .int(1), "group_top": .int(2)])
        }
        #expect(try runEverywhere(top2, Self.inputs(scores)) == [0, 0.5, 0, 0])
    }

    @Test func maskedValueIsAChoiceScore() throws {
        // Group {0, 1} scores -1 (top 1), group {2, 3} scores 0.5: the second group stays.
        let scores: [[Float]] = [[-1, -2, 0.5, -3]]
        func graph(_ masked: Double?) throws -> TinyGraph {
            try Self.readout(experts: 4) { t, s in
                var a: Attributes = ["k": .int(2), "groups": .int(2), "keep_groups": .int(1), "group_top": .int(1)]
                if let masked { a["masked"] = .float(masked) }
                return try t.op(.topk, [s], a)
            }
        }
        // −∞: experts 2 and 3.
        #expect(try runEverywhere(try graph(nil), Self.inputs(scores)) == [0, 0, 0.5, -3])
        // 0: expert 2, then expert 0 (masked to 0, beating −3; tie with expert 1 → lower index),
        // weighted by its unmasked score −1.
        #expect(try runEverywhere(try graph(0), Self.inputs(scores)) == [-1, 0, 0.5, 0])
    }

    // MARK: Routing stages

    @Test(arguments: [nil, 1e-2] as [Double?])
    func renormalize(eps: Double?) throws {
        let t = try Self.readout(experts: 8) { t, s in
            let r = try t.op(.topk, [s], ["k": .int(3)])
            return try t.op(.route_renormalize, [r], eps.map { ["eps": .float($0)] } ?? [:])
        }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: 8, sigmoid: true))
    }

    @Test func renormalizeByHand() throws {
        let t = try Self.readout(experts: 3) { t, s in
            try t.op(.route_renormalize, [try t.op(.topk, [s], ["k": .int(2)])], ["eps": .float(0.25)])
        }
        // 0.5 + 0.25 + eps 0.25 = 1.
        #expect(try runEverywhere(t, Self.inputs([[0.5, 0.125, 0.25]])) == [0.5, 0, 0.25])
    }

    @Test func routeSoftmax() throws {
        let t = try Self.readout(experts: 9) { t, s in try t.op(.route_softmax, [try t.op(.topk, [s], ["k": .int(4)])]) }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: 9))
    }

    @Test(arguments: [2.5, -0.5])
    func routeScale(factor: Double) throws {
        let t = try Self.readout(experts: 8) { t, s in
            try t.op(.route_scale, [try t.op(.topk, [s], ["k": .int(2)])], ["factor": .float(factor)])
        }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: 8))
    }

    /// On raw scores, so that negative weights (clamped to 0 before the root) occur.
    @Test func routeSqrt() throws {
        let t = try Self.readout(experts: 8) { t, s in try t.op(.route_sqrt, [try t.op(.topk, [s], ["k": .int(3)])]) }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: 8))
    }

    /// Capacities beyond Int32 (3·10⁹, Int.max) keep every pair, like any capacity ≥ tokens · k.
    @Test(arguments: [(1, 1), (2, 1), (2, 3), (3, 7), (1, 40), (2, 3_000_000_000), (3, Int.max)])
    func capacity(k: Int, capacity: Int) throws {
        let t = try Self.readout(experts: 6) { t, s in
            try t.op(.route_capacity, [try t.op(.topk, [s], ["k": .int(k)])], ["capacity": .int(capacity)])
        }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: 6))
    }

    @Test func hugeCapacityKeepsEveryPair() throws {
        func graph(_ capacity: Int) throws -> TinyGraph {
            try Self.readout(experts: 6) { t, s in
                try t.op(.route_capacity, [try t.op(.topk, [s], ["k": .int(2)])], ["capacity": .int(capacity)])
            }
        }
        let inputs = Self.randomInputs(experts: 6)(9)
        let all = try runEverywhere(try graph(18), inputs)
        #expect(try runEverywhere(try graph(3_000_000_000), inputs) == all)
        #expect(try runEverywhere(try graph(Int.max), inputs) == all)
        #expect(try runEverywhere(try graph(1), inputs) != all)
    }

    /// The expert-choice capacity ⌈T·k·cf / E⌉ clamped to 0 ... T, also for factors given at run
    /// time that no Int holds.
    @Test func expertChoiceCapacityClamps() {
        #expect(RoutingMath.expertChoiceCapacity(tokens: 10, k: 2, factor: 1, experts: 4) == 5)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 10, k: 2, factor: 0.1, experts: 4) == 1)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 10, k: 2, factor: 1e300, experts: 4) == 10)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 10, k: 2, factor: .infinity, experts: 4) == 10)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 10, k: 2, factor: .nan, experts: 4) == 0)
        #expect(RoutingMath.expertChoiceCapacity(tokens: 10, k: 2, factor: -1, experts: 4) == 0)
    }

    /// Capacity admits all first choices (in token order) before any second choice.
    @Test func capacityIsSlotMajor() throws {
        let t = try Self.readout(experts: 2) { t, s in
            try t.op(.route_capacity, [try t.op(.topk, [s], ["k": .int(2)])], ["capacity": .int(1)])
        }
        // Token 0 prefers expert 0, token 1 expert 1. Slot-major: both first choices fit, both
        // second choices are dropped. (Token-major would fill both experts with token 0.)
        let y = try runEverywhere(t, Self.inputs([[0.875, 0.125], [0.25, 0.75]]))
        #expect(Self.rows(y, 2) == [[0.875, 0], [0, 0.75]])
    }

    /// Stages after a capacity drop must ignore the empty slots.
    @Test(arguments: [Op.route_renormalize, .route_softmax, .route_sqrt, .route_scale])
    func stagesAfterCapacity(_ stage: Op) throws {
        let t = try Self.readout(experts: 5) { t, s in
            let r = try t.op(.route_capacity, [try t.op(.topk, [s], ["k": .int(3)])], ["capacity": .int(4)])
            return try t.op(stage, [r], stage == .route_scale ? ["factor": .float(1.5)] : [:])
        }
        try expectMatchesReference(t, tokens: [1, 7, 64], inputs: Self.randomInputs(experts: 5, sigmoid: true))
    }

    /// The DeepSeek-V3 router written out: sigmoid → grouped topk with bias → renormalize(eps) → scale.
    @Test func deepseekStyleChain() throws {
        let e = 16
        let t = try Self.readout(experts: e) { t, s in
            let probs = try t.op(.sigmoid, [s])
            let r = try t.op(
                .topk, [probs, t.weight("bias", [e], t.rng.normals(e, scale: 0.3))],
                ["k": .int(4), "groups": .int(4), "keep_groups": .int(2), "with_bias": .bool(true)])
            let n = try t.op(.route_renormalize, [r], ["eps": .float(1e-20)])
            return try t.op(.route_scale, [n], ["factor": .float(2.5)])
        }
        try expectMatchesReference(t, inputs: Self.randomInputs(experts: e))
    }
}
