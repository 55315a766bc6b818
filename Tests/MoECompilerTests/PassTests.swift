import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// The optimisation passes as `--emit ir-opt` shows them: golden files of optimised graphs
/// (`Golden/NAME.ir-opt`; re-record with MOEC_BLESS=1 and review the diff), and the conditions
/// under which a pass must leave a graph alone.
@Suite struct PassTests {
    static func optimized(_ path: String, _ overrides: [(name: String, value: String)] = [], disabled: Set<String> = []) throws -> Graph {
        try CompilerSession(CompileOptions(graphPath: path, overrides: overrides, verifyEachPass: true, disabledPasses: disabled)).optimize()
    }

    /// `source` written to a temporary `.moe` file and optimised.
    static func optimized(source: String) throws -> Graph {
        let dir = TemporaryDirectory("moec-passes")
        let path = dir.path + "/graph.moe"
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return try optimized(path)
    }

    static let small: [String: [(name: String, value: String)]] = [
        "mixtral.moe": [("hidden", "24"), ("ffn", "40")],
        "deepseek_v3.moe": [("hidden", "16"), ("ffn", "8"), ("num_experts", "16"), ("top_k", "4"), ("n_group", "4"), ("topk_group", "2")],
        "mechanisms/topk_softmax.moe": []
    ]

    /// Router fusion: softmax → topk → renormalize (Mixtral), sigmoid → biased group top-k →
    /// renormalize → scale (DeepSeek-V3) and topk → softmax (on raw logits) each become one
    /// `fused_router`; gate/up fusion marks the experts.
    @Test(arguments: ["mixtral.moe", "deepseek_v3.moe", "mechanisms/topk_softmax.moe"])
    func optimizedGraphsMatchTheirGoldenFiles(_ file: String) throws {
        let g = try Self.optimized(RepoPaths.graphs + "/" + file, Self.small[file]!)
        let text = IRPrinter(showLocations: true).print(g).replacingOccurrences(of: RepoPaths.graphs + "/", with: "")
        let golden = RepoPaths.path("Tests/MoECompilerTests/Golden/" + file.replacingOccurrences(of: "mechanisms/", with: "") + ".ir-opt")
        if let problem = Golden.check(text, against: golden) { Issue.record(Comment(rawValue: problem)) }
        #expect(g.nodes.filter { $0.op == .fused_router }.count == 1)
        #expect(!g.nodes.contains { [.topk, .softmax, .sigmoid, .route_renormalize, .route_scale, .route_softmax].contains($0.op) })
    }

    /// Disabling the pass leaves the router as written.
    @Test func routerFusionCanBeLeftOut() throws {
        let g = try Self.optimized(RepoPaths.graphs + "/mixtral.moe", Self.small["mixtral.moe"]!, disabled: ["router-fusion"])
        #expect(g.nodes.map(\.op).filter { $0.isRouting } == [.topk, .route_renormalize])
        #expect(g.nodes.contains { $0.op == .softmax } && !g.nodes.contains { $0.op == .fused_router })
    }

    /// Probabilities read by something other than the selection stay a tensor: the softmax is
    /// not fused (the fused router then selects on them as they are), and a routing read twice
    /// ends the chain there.
    @Test func valuesReadElsewhereAreNotFusedAway() throws {
        let source = """
            model shared_probabilities
            param hidden = 8
            param ffn = 16
            input x: [tokens, hidden]
            weights "" {
              gate: [4, hidden] = "gate"
              w_gate: [4, ffn, hidden] = "e.{e}.g"
              w_up: [4, ffn, hidden] = "e.{e}.u"
              w_down: [4, hidden, ffn] = "e.{e}.d"
            }
            let p = x |> linear(gate) |> softmax
            let y = moe(x) {
              router:  p |> topk(2) |> renormalize |> scale(2.0)
              experts: 4 of swiglu(gate: w_gate, up: w_up, down: w_down)
            }
            output y
            output p

            """
        let g = try Self.optimized(source: source)
        let fused = try #require(g.nodes.first { $0.op == .fused_router })
        #expect(fused.attributes.string("score") == "identity")
        #expect(g[fused.operands[0]].op == .softmax)
        #expect(fused.attributes.string("normalize") == "sum" && fused.attributes.float("scale") == 2)
        #expect(fused.locations.count == 3, "the fused node keeps the locations of topk, renormalize and scale")
    }

    /// Expert matrices computed in the graph (`w_gate * 2`) cannot be packed at load time:
    /// `expert-weight-prepacking` leaves the block unmarked (it runs unfused, packing per call),
    /// and a plan edited to claim otherwise fails the verifier.
    @Test func computedExpertMatricesAreNotPrepacked() throws {
        let source = """
            model computed_experts
            param hidden = 8
            param ffn = 16
            input x: [tokens, hidden]
            weights "" {
              gate: [4, hidden] = "gate"
              w_gate: [4, ffn, hidden] = "e.{e}.g"
              w_up: [4, ffn, hidden] = "e.{e}.u"
              w_down: [4, hidden, ffn] = "e.{e}.d"
            }
            let y = moe(x) {
              router:  x |> linear(gate) |> softmax |> topk(2)
              experts: 4 of swiglu(gate: w_gate * 2.0, up: w_up, down: w_down)
            }
            output y

            """
        var g = try Self.optimized(source: source)
        let i = try #require(g.nodes.firstIndex { $0.op == .moe_experts })
        #expect(g.nodes[i].attributes["prepacked"] == nil)
        #expect(g.nodes[i].attributes.bool("permute") == true)
        #expect(Verifier.verify(g).isEmpty)
        g.nodes[i].attributes["prepacked"] = .bool(true)
        let problems = Verifier.verify(g).map(\.message)
        #expect(problems.contains { $0.contains("marked prepacked, but its expert matrix") && $0.contains("is computed, not a weight") }, "\(problems)")
    }
}

/// `--emit plan` shows how each MoE block runs: the fused router, the packed weights and, per
/// batch size, the regime the machine model predicts.
@Suite struct ExpertBlockPlanTests {
    @Test func mixtralBlockIsDescribed() throws {
        let g = try PassTests.optimized(RepoPaths.graphs + "/mixtral.moe", PassTests.small["mixtral.moe"]!)
        let model = MachineModel(flopsPerThread: 50e9, bytesPerSecondPerThread: 10e9, source: "test")
        let plans = ExpertBlockPlan.plans(g, tokens: [1, 4096], threads: 2, model: model)
        let b = try #require(plans.first)
        #expect(plans.count == 1 && b.name == "y" && b.experts == 8 && b.slots == 2 && b.hidden == 24 && b.ffn == 40)
        #expect(b.router == "fused_router (softmax → top-2 → renormalize)")
        #expect(b.gateUpFused && b.permuted && b.prepacked && b.combineInDown && b.packedKernel, "\(b)")
        // Three [40, 24] and [24, 40] matrices per expert; packed rows round up to panels of 16.
        #expect(b.packedBytes == Double(8 * 4 * (48 * 24 + 48 * 24 + 32 * 40)))
        // One token touches exactly k = 2 experts: 2 × 3 × 24 × 40 × 4 bytes, 2 FLOPs per weight each.
        let one = b.regimes[0]
        #expect(abs(one.expertsTouched - 2) < 1e-12 && one.weightBytes == 23_040 && one.flops == 2 * 2 * 2880)
        #expect(abs(one.bandwidthSeconds - 23_040 / 20e9) < 1e-15 && one.bandwidthBound)
        // 4096 tokens touch all 8 and are compute-bound.
        #expect(abs(b.regimes[1].expertsTouched - 8) < 1e-9 && !b.regimes[1].bandwidthBound)
    }

    /// Upcycling multiplies the experts: a result no Int can count is an error at the block,
    /// not a trap in the pass or a weight table entry that traps later.
    @Test func upcyclingBeyondWhatCanBeAddressedIsAnError() throws {
        let dir = TemporaryDirectory()
        func failure(_ upcycle: String) throws -> [Diagnostic] {
            let source = try String(contentsOfFile: RepoPaths.graphs + "/mechanisms/upcycling.moe", encoding: .utf8)
            try #require(source.contains("upcycle: [2, 1, 3, 2]"))
            try source.replacingOccurrences(of: "upcycle: [2, 1, 3, 2]", with: "upcycle: " + upcycle)
                .write(toFile: dir.file("g.moe"), atomically: true, encoding: .utf8)
            // Each weight [4, 1, 2^58] fits; 9 copies of it do not.
            let session = CompilerSession(CompileOptions(graphPath: dir.file("g.moe"), overrides: [("hidden", "288230376151711744"), ("ffn", "1")]))
            do {
                _ = try session.optimize()
            } catch let e as DiagnosticError {
                return e.diagnostics
            }
            Issue.record("upcycle: \(upcycle) compiled")
            return []
        }
        let copies = try failure("[3, 2, 2, 2]")
        #expect(
            copies.contains { $0.message == "upcycling gives weight 'w_gate' the shape [9, 1, 288230376151711744], which has more elements than moec can address" }, "\(copies)")
        #expect(copies.allSatisfy { $0.location?.line == 24 }, "\(copies)")
        let sum = try failure("[9223372036854775807, 1, 1, 1]")
        #expect(sum.map(\.message) == ["upcycle: the copy counts add up to more experts than moec can address"])
        #expect(sum.first?.location?.line == 24)
    }
}
