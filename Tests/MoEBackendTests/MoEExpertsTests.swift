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
        /// An expression expert: biases on every projection, an epilogue program (`ExpertProgram`
        /// text), or for `.program` the whole body.
        var biased = false
        var epilogue: String? = nil
        var body: String? = nil
        /// The passes' marks set (fused gate/up, permuted, pre-packed, combine in down): the
        /// packed kernel; otherwise the unfused path.
        var marked = false
        /// Fixed experts after the computed ones (zero, copy, constant).
        var fixed: [String] = []
        var description: String {
            "\(kind)\(act.map { "/\($0)" } ?? "") H\(hidden) F\(ffn) E\(experts) k\(k)\(capacity.map { " cap\($0)" } ?? "")"
                + (weightOnInput ? " weight-on-input" : "") + (biased ? " biased" : "") + (epilogue != nil ? " epilogue" : "")
                + (marked ? " packed" : "") + (fixed.isEmpty ? "" : " fixed: " + fixed.joined(separator: ","))
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
        Case(kind: .swiglu, hidden: 70, ffn: 300, experts: 4, k: 2, weightOnInput: true),
        // Expression experts: biases and gpt-oss's epilogue, on the unfused path and the packed
        // kernel (F not a multiple of 16: a partial last strip), with drops and weight on input.
        Case(kind: .swiglu, hidden: 70, ffn: 300, experts: 4, k: 2, biased: true, epilogue: gptOss),
        Case(kind: .swiglu, hidden: 70, ffn: 300, experts: 4, k: 2, biased: true, epilogue: gptOss, marked: true),
        Case(kind: .swiglu, hidden: 11, ffn: 13, experts: 4, k: 2, capacity: 3, biased: true, epilogue: gptOss, marked: true),
        Case(kind: .swiglu_fused, hidden: 16, ffn: 24, experts: 5, k: 2, weightOnInput: true, biased: true, epilogue: gptOss, marked: true),
        Case(kind: .swiglu, biased: true, marked: true),
        Case(kind: .mlp, act: .gelu, hidden: 11, ffn: 13, experts: 4, k: 2, capacity: 3, biased: true, marked: true),
        Case(kind: .mlp, act: .relu, hidden: 40, ffn: 37, biased: true, epilogue: "%1 = tanh %0; %2 = mul %1 %0; %3 = max %2 -0.2", marked: true),
        Case(kind: .mlp, act: .relu, hidden: 40, ffn: 37, biased: true, epilogue: "%1 = tanh %0; %2 = mul %1 %0; %3 = max %2 -0.2"),
        // The general path: a body with three projections, with drops and weight on input.
        Case(kind: .program, hidden: 23, ffn: 17, body: threeLayers),
        Case(kind: .program, hidden: 23, ffn: 17, experts: 5, k: 2, capacity: 3, weightOnInput: true, body: threeLayers),
        // Fixed experts (zero, copy, constant) after the computed ones, on every path.
        Case(kind: .swiglu, experts: 6, k: 3, fixed: ["copy", "zero", "constant", "copy", "constant"]),
        Case(kind: .swiglu, experts: 6, k: 3, marked: true, fixed: ["copy", "zero", "constant", "copy", "constant"]),
        Case(kind: .mlp, act: .gelu, experts: 4, k: 2, capacity: 3, weightOnInput: true, marked: true, fixed: ["constant", "copy"]),
        Case(kind: .program, experts: 4, k: 2, body: threeLayers, fixed: ["zero", "copy", "constant"])
    ]

    static let gptOss = "%2 = min %0 0.5; %3 = max %1 -0.5; %4 = min %3 0.5; %5 = add %4 1; %6 = mul 1.702 %2; %7 = sigmoid %6; %8 = mul %2 %7; %9 = mul %5 %8"
    /// w0 [E, F, H] + w1, gelu, w2 [E, F, F], silu · the first, w3 [E, H, F] + w4.
    static let threeLayers = "%1 = linear %0 w0 w1; %2 = gelu %1; %3 = linear %2 w2; %4 = silu %3; %5 = mul %4 %1; %6 = sub %5 0.25; %7 = linear %6 w3 w4"

    static func graph(_ c: Case, seed: UInt64 = 1) throws -> TinyGraph {
        var t = TinyGraph("experts", seed: seed)
        let x = t.input("x", [.tokens, .fixed(c.hidden)])
        let logits = try t.op(.linear, [x, t.randomWeight("gate", [c.experts + c.fixed.count, c.hidden])])
        var r = try t.op(.topk, [try t.op(.softmax, [logits])], ["k": .int(c.k)])
        let constants = c.fixed.filter { $0 == "constant" }.count
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
        case .program:
            weights = [
                t.randomWeight("w0", [e, f, h]), t.randomWeight("w1", [e, f]), t.randomWeight("w2", [e, f, f]),
                t.randomWeight("w3", [e, h, f]), t.randomWeight("w4", [e, h])
            ]
        }
        var attrs: Attributes = ["experts": .int(e), "kind": .string(c.kind.rawValue)]
        if c.biased {
            let roles = c.kind.matrixRoles
            for role in roles {
                let rows = role == "down" ? h : role == "gate_up" ? 2 * f : f
                weights.append(t.randomWeight("b_\(role)", [e, rows]))
            }
            attrs["bias"] = .string(roles.joined(separator: " "))
        }
        if let epilogue = c.epilogue { attrs["epilogue"] = .string(epilogue) }
        if !c.fixed.isEmpty {
            attrs["experts"] = .int(e + c.fixed.count)
            attrs["fixed"] = .string(c.fixed.joined(separator: " "))
            if constants > 0 { weights.append(t.randomWeight("constants", [constants, h])) }
        }
        if let body = c.body { attrs["body"] = .string(body) }
        if c.marked {
            for mark in ExpertPassMark.allCases where mark != .fuseGateUp || c.kind == .swiglu { attrs[mark.rawValue] = .bool(true) }
            if c.weightOnInput { attrs[ExpertPassMark.combineInDown.rawValue] = nil }
        }
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
