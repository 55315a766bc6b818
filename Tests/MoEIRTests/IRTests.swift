import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIR

/// A small MoE graph built by hand: router pipeline, experts, a shared expert.
func sampleGraph() throws -> Graph {
    let loc = SourceRange(SourceLocation(file: "sample.moe", line: 3, column: 5), length: 4)
    var b = GraphBuilder(name: "sample")
    b.setParams([ParamBinding(name: "hidden", value: .int(8), source: "default")])
    let x = b.addInput(name: "x", type: TensorType(.f32, [.tokens, .fixed(8)]), at: loc)
    let gate = b.addWeight(WeightInfo(name: "gate", pattern: "gate.weight", shape: [4, 8]))
    let w1 = b.addWeight(WeightInfo(name: "w1", pattern: "e.{e}.w1", shape: [4, 6, 8]))
    let w3 = b.addWeight(WeightInfo(name: "w3", pattern: "e.{e}.w3", shape: [4, 6, 8]))
    let w2 = b.addWeight(WeightInfo(name: "w2", pattern: "e.{e}.w2", shape: [4, 8, 6]))
    let s = try b.add(.linear, [x, gate], at: loc)
    let p = try b.add(.softmax, [s], at: loc)
    let r = try b.add(.topk, [p], ["k": .int(2)], at: loc)
    let rn = try b.add(.route_renormalize, [r], ["eps": .float(0)], at: loc)
    let y = try b.add(.moe_experts, [x, rn, w1, w3, w2], ["experts": .int(4), "kind": .string("swiglu")], at: [loc], name: "y")
    let two = b.addConstant(2)
    let out = try b.add(.mul, [y, two], at: loc, name: "out")
    b.addOutput(name: "out", value: out)
    return b.finish()
}

@Suite struct IRTests {
    @Test func printerMatchesGolden() throws {
        let text = IRPrinter().print(try sampleGraph())
        if let problem = Golden.check(text, against: RepoPaths.path("Tests/MoEIRTests/Golden/sample.ir")) {
            Issue.record(Comment(rawValue: problem))
        }
    }

    @Test func builderInfersTypes() throws {
        let g = try sampleGraph()
        #expect(g.nodes[5].type == .tensor(TensorType(.f32, [.tokens, .fixed(4)])))
        #expect(g.nodes[7].type == .routing(RoutingType(slots: 2, experts: 4)))
        #expect(g[g.outputs[0].value].type == .tensor(TensorType(.f32, [.tokens, .fixed(8)])))
    }

    @Test func builderRejectsShapeErrorsWithLocation() throws {
        var b = GraphBuilder(name: "bad")
        let loc = SourceRange(SourceLocation(file: "bad.moe", line: 7, column: 2), length: 3)
        let x = b.addInput(name: "x", type: TensorType(.f32, [.tokens, .fixed(8)]))
        let w = b.addWeight(WeightInfo(name: "w", pattern: "w", shape: [4, 9]))
        #expect {
            _ = try b.add(.linear, [x, w], at: loc)
        } throws: { e in
            let d = e as! Diagnostic
            return d.location?.line == 7 && d.message.contains("expects inputs of width 9")
        }
    }

    @Test func verifierAcceptsBuiltGraph() throws {
        #expect(Verifier.verify(try sampleGraph()).isEmpty)
    }

    @Test func verifierReportsEveryBrokenInvariant() throws {
        var g = try sampleGraph()
        g.nodes[5].operands = [ValueID(9), ValueID(1)] // use before definition
        g.nodes[6].type = .tensor(TensorType(.f32, [.tokens, .fixed(5)])) // wrong recorded type
        g.nodes[1].attributes["index"] = .int(17) // weight table entry missing
        g.outputs.append(("route", ValueID(7))) // routing as an output
        g.outputs.append(("out", ValueID(10))) // duplicate output
        let messages = Verifier.verify(g).map(\.message)
        #expect(messages.contains { $0.contains("operand %9 is not defined before its use") }, "\(messages)")
        #expect(messages.contains { $0.contains("recorded type f32[tokens, 5]") }, "\(messages)")
        #expect(messages.contains { $0.contains("refers to no entry of the weight table") }, "\(messages)")
        #expect(messages.contains { $0.contains("output 'route' is a routing") }, "\(messages)")
        #expect(messages.contains { $0.contains("duplicate output name 'out'") }, "\(messages)")
    }

    @Test func verifierChecksTokenDimensionPlacement() {
        var g = Graph(name: "g")
        g.nodes.append(Node(op: .input, operands: [], attributes: ["name": .string("x")], type: .tensor(TensorType(.f32, [.fixed(3), .tokens]))))
        g.outputs = [("x", ValueID(0))]
        #expect(Verifier.verify(g).map(\.message).contains { $0.contains("token dimension may only be the first") })
    }

    @Test func jsonRoundTrip() throws {
        let g = try sampleGraph()
        let back = try Graph(json: try JSON.parse(g.toJSON().pretty))
        #expect(back == g)
        #expect(IRPrinter().print(back) == IRPrinter().print(g))
    }

    @Test func jsonDecodingRejectsDamage() throws {
        var j = try sampleGraph().toJSON()
        guard case .object(var o) = j, case .array(var nodes)? = o["nodes"], case .object(var n5) = nodes[5] else { Issue.record("shape"); return }
        n5["op"] = .string("no_such_op")
        nodes[5] = .object(n5)
        o["nodes"] = .array(nodes)
        j = .object(o)
        #expect(throws: GraphDecodingError.self) { try Graph(json: j) }
        #expect(throws: GraphDecodingError.self) { try Graph(json: .object(JSONObject([("name", .string("x"))]))) }
    }

    @Test func addressableShapes() {
        #expect(Addressable.elementCount([8, 14336, 4096]) == 8 * 14336 * 4096)
        #expect(Addressable.elementCount([]) == 1)
        #expect(Addressable.elementCount([Int.max, 0]) == 0)
        #expect(Addressable.elementCount([Addressable.maxElements]) == Addressable.maxElements)
        #expect(Addressable.elementCount([Addressable.maxElements + 1]) == nil) // elements fit, bytes do not
        #expect(Addressable.elementCount([8, Int.max]) == nil)
        #expect(Addressable.elementCount([8, 1 << 32, 1 << 32]) == nil)
        #expect(TensorType(.f32, [.tokens, .fixed(1 << 40)]).addressableElementsPerToken == 1 << 40)
        #expect(TensorType(.f32, [.tokens, .fixed(1 << 40), .fixed(1 << 30)]).addressableElementsPerToken == nil)
        #expect(IRType.routing(RoutingType(slots: 2, experts: 8)).isAddressable)
        #expect(!IRType.routing(RoutingType(slots: Addressable.maxElements, experts: Addressable.maxElements)).isAddressable)
    }

    @Test func resultsTooLargeToAddressAreTypeErrors() throws {
        // Each operand fits; their broadcast product does not.
        let a = IRType.tensor(TensorType(.f32, [.tokens, .fixed(1 << 31), .fixed(1)]))
        let b = IRType.tensor(TensorType(.f32, [.fixed(1 << 31)]))
        #expect(throws: TypeRuleError.self) { try OpSchema.resultType(.mul, [a, b], [:]) }
        #expect(try OpSchema.resultType(.mul, [a, .tensor(TensorType(.f32, [.fixed(1)]))], [:]) == a)
    }

    @Test func verifierRejectsShapesTooLargeToAddress() throws {
        // A plan file can say anything: a weight table entry or an input that no Int can count.
        var g = try sampleGraph()
        g.weights[0].shape = [4, Int.max / 2, 8]
        g.nodes[0].type = .tensor(TensorType(.f32, [.tokens, .fixed(1 << 62)]))
        let messages = Verifier.verify(g).map(\.message)
        #expect(messages.contains { $0.contains("weight @gate: the shape [4, \(Int.max / 2), 8] has more elements than moec can address") }, "\(messages)")
        #expect(messages.contains { $0.contains("the shape f32[tokens, \(1 << 62)] has more elements per token than moec can address") }, "\(messages)")
    }

    @Test func selectorBitsForEveryExpertCount() {
        // ⌈log₂E⌉, also beyond 2⁶², where shifting 1 left until it passes E never ends.
        for (e, bits) in [
            (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (1 << 40, 40), ((1 << 40) + 1, 41),
            ((1 << 62) + 1, 63), (Int.max, 63)
        ] {
            #expect(OpSchema.selectorBits(e) == bits, "E = \(e)")
        }
        let x = IRType.tensor(TensorType(.f32, [.tokens, .fixed(4)]))
        let alpha = IRType.tensor(TensorType(.f32, [.tokens, .fixed(Addressable.maxElements)]))
        #expect(throws: TypeRuleError.self) {
            try OpSchema.resultType(.dselect, [x, x, alpha], ["experts": .int((1 << 62) + 1), "gamma": .float(1)])
        }
    }

    @Test func broadcastRules() throws {
        let a = TensorType(.f32, [.tokens, .fixed(8)])
        #expect(try OpSchema.broadcast(a, TensorType(.f32, [.tokens, .fixed(1)]), .mul) == [.tokens, .fixed(8)])
        #expect(try OpSchema.broadcast(a, TensorType(.f32, []), .add) == [.tokens, .fixed(8)])
        #expect(try OpSchema.broadcast(a, TensorType(.f32, [.fixed(8)]), .add) == [.tokens, .fixed(8)])
        #expect(throws: TypeRuleError.self) { try OpSchema.broadcast(a, TensorType(.f32, [.fixed(3)]), .add) }
    }
}
