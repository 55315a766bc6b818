import Foundation
import MoEIR
import MoETestSupport
import Testing

@testable import MoEBackend

/// The `moe_experts` kernel (dispatch, per-expert FFNs, weighted combine) for each expert kind,
/// against the reference interpreter.
@Suite(.serialized) struct MoEExpertsTests {
    struct Case: CustomStringConvertible, Sendable {
        var kind: ExpertKind
        var act: Activation? = nil
        var hidden = 23, ffn = 17, experts = 8, k = 2
        /// Route with a capacity after topk (dropped slots).
        var capacity: Int? = nil
        /// `weighting: "input"`: the routing weight scales the expert's input row (Llama 4).
        var weightOnInput = false
        var description: String {
            "\(kind)\(act.map { "/\($0)" } ?? "") H\(hidden) F\(ffn) E\(experts) k\(k)\(capacity.map { " cap\($0)" } ?? "")"
                + (weightOnInput ? " weight-on-input" : "")
        }
    }

    static let cases: [Case] = [
        Case(kind: .swiglu),
        Case(kind: .swiglu_fused),
        Case(kind: .mlp, act: .relu),
        Case(kind: .mlp, act: .gelu),
        Case(kind: .mlp, act: .gelu_tanh),
        Case(kind: .mlp, act: .silu),
        // One expert, every token to it.
        Case(kind: .swiglu, hidden: 9, ffn: 5, experts: 1, k: 1),
        // k = E: every expert sees every token.
        Case(kind: .swiglu_fused, hidden: 16, ffn: 24, experts: 5, k: 5),
        // Many experts, few tokens: most experts get no rows.
        Case(kind: .mlp, act: .relu, hidden: 12, ffn: 7, experts: 64, k: 3),
        // Dropped slots: experts hold at most 3 (token, slot) pairs.
        Case(kind: .swiglu, hidden: 11, ffn: 13, experts: 4, k: 2, capacity: 3),
        Case(kind: .mlp, act: .gelu, hidden: 11, ffn: 13, experts: 4, k: 1, capacity: 1),
        // Larger FFN: per-expert GEMMs over several k blocks and column panels.
        Case(kind: .swiglu, hidden: 70, ffn: 300, experts: 4, k: 2),
        // The routing weight on the input rows, on every kind, with drops and with k = 1.
        Case(kind: .swiglu, weightOnInput: true),
        Case(kind: .swiglu_fused, hidden: 16, ffn: 24, experts: 5, k: 1, weightOnInput: true),
        Case(kind: .mlp, act: .gelu, hidden: 11, ffn: 13, experts: 4, k: 2, capacity: 3, weightOnInput: true),
        Case(kind: .swiglu, hidden: 70, ffn: 300, experts: 4, k: 2, weightOnInput: true)
    ]

    static func graph(_ c: Case, seed: UInt64 = 1) throws -> TinyGraph {
        var t = TinyGraph("experts", seed: seed)
        let x = t.input("x", [.tokens, .fixed(c.hidden)])
        let logits = try t.op(.linear, [x, t.randomWeight("gate", [c.experts, c.hidden])])
        var r = try t.op(.topk, [try t.op(.softmax, [logits])], ["k": .int(c.k)])
        if let cap = c.capacity { r = try t.op(.route_capacity, [r], ["capacity": .int(cap)]) }
        let e = c.experts, h = c.hidden, f = c.ffn
        var weights: [ValueID]
        switch c.kind {
        case .swiglu:
            weights = [t.randomWeight("w_gate", [e, f, h]), t.randomWeight("w_up", [e, f, h]), t.randomWeight("w_down", [e, h, f])]
        case .swiglu_fused:
            weights = [t.randomWeight("w_gate_up", [e, 2 * f, h]), t.randomWeight("w_down", [e, h, f])]
        case .mlp:
            weights = [t.randomWeight("w_up", [e, f, h]), t.randomWeight("w_down", [e, h, f])]
        }
        var attrs: Attributes = ["experts": .int(e), "kind": .string(c.kind.rawValue)]
        if let act = c.act { attrs["act"] = .string(act.rawValue) }
        if c.weightOnInput { attrs[ExpertsNode.weightOnInputAttribute] = .bool(true) }
        t.output("y", try t.op(.moe_experts, [x, r] + weights, attrs))
        return t
    }

    @Test(arguments: cases)
    func expertsMatchReference(_ c: Case) throws {
        try expectMatchesReference(try Self.graph(c))
    }

    /// Fused gate_up [E, 2F, H] with the gate rows first equals separate gate and up weights.
    @Test func fusedEqualsSeparate() throws {
        let h = 10, f = 6, e = 3
        var rng = SeededRandom(seed: 5)
        let gate = rng.normals(e * f * h, scale: 0.3), up = rng.normals(e * f * h, scale: 0.3)
        let down = rng.normals(e * h * f, scale: 0.3), router = rng.normals(e * h, scale: 0.3)
        var fused: [Float] = []
        for i in 0..<e {
            let rows = (i * f * h)..<((i + 1) * f * h)
            fused.append(contentsOf: gate[rows])
            fused.append(contentsOf: up[rows])
        }
        func build(_ isFused: Bool) throws -> TinyGraph {
            var t = TinyGraph()
            let x = t.input("x", [.tokens, .fixed(h)])
            let r = try t.op(.topk, [try t.op(.linear, [x, t.weight("gate", [e, h], router)])], ["k": .int(2)])
            let ws =
                isFused
                ? [t.weight("gu", [e, 2 * f, h], fused), t.weight("d", [e, h, f], down)]
                : [t.weight("g", [e, f, h], gate), t.weight("u", [e, f, h], up), t.weight("d", [e, h, f], down)]
            t.output(
                "y",
                try t.op(
                    .moe_experts, [x, r] + ws,
                    ["experts": .int(e), "kind": .string(isFused ? "swiglu_fused" : "swiglu")]))
            return t
        }
        let inputs = randomInputs(try build(true).graph, tokens: 9, seed: 1)
        let a = try runEverywhere(try build(true), inputs), b = try runEverywhere(try build(false), inputs)
        #expect(relativeError(a, b) <= 1e-6)
    }

    /// The expert load counters of a schedule count (token, slot) pairs per expert, as the
    /// reference routing does.
    @Test func expertLoadsMatchTheRouting() throws {
        let c = Case(kind: .swiglu, hidden: 11, ffn: 13, experts: 6, k: 2, capacity: 9)
        let t = try Self.graph(c)
        let inputs = randomInputs(t.graph, tokens: 64, seed: 3)
        let (_, routings) = try ReferenceInterpreter(graph: t.graph, weights: t.weights).runAll(inputs)
        let capacityNode = t.graph.nodes.lastIndex { $0.op == .route_capacity }!
        let routing = try #require(routings[capacityNode])
        var expected = [Int](repeating: 0, count: c.experts)
        for e in routing.expert where e >= 0 { expected[e] += 1 }
        #expect(expected.allSatisfy { $0 <= 9 } && expected.reduce(0, +) < 128, "the capacity must drop some pairs")
        for (label, options) in Backends.configurations {
            let exe = Executable(graph: t.graph, weights: t.buffers(), options: options)
            _ = try exe.run(inputs)
            #expect(exe.schedule(tokens: 64).lastExpertLoads() == [expected], "\(label)")
        }
    }
}
