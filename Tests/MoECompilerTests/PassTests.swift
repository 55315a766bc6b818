import Foundation
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

    static let small: [String: [(name: String, value: String)]] = [
        "mixtral.moe": [("hidden", "24"), ("ffn", "40")],
        "deepseek_v3.moe": [("hidden", "16"), ("ffn", "8"), ("num_experts", "16"), ("top_k", "4"), ("n_group", "4"), ("topk_group", "2")],
        "mechanisms/topk_softmax.moe": [],
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
        let dir = TemporaryDirectory("moec-fusion")
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
        let path = dir.path + "/shared.moe"
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        let g = try Self.optimized(path)
        let fused = try #require(g.nodes.first { $0.op == .fused_router })
        #expect(fused.attributes.string("score") == "identity")
        #expect(g[fused.operands[0]].op == .softmax)
        #expect(fused.attributes.string("normalize") == "sum" && fused.attributes.float("scale") == 2)
        #expect(fused.locations.count == 3, "the fused node keeps the locations of topk, renormalize and scale")
    }
}
