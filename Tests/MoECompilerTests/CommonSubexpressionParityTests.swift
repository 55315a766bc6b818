import Foundation
import MoEBackend
import MoECompiler
import MoEIO
import MoEIR
import MoETestSupport
import Testing

/// `common-subexpression-elimination` on the graphs that once lowered with repeated work
/// (sqrtgate's router, MMoE's tower linears: the lowering evaluated an activation's argument
/// twice, since fixed), and on a source that writes the same expression twice: with dead-code
/// elimination left out, so that only CSE can remove repeats, each value is computed once and
/// the outputs do not change.
@Suite struct CommonSubexpressionParityTests {
    static let cases = [
        "mechanisms/sqrtgate_h16-f16-sf24-e8-k2-p025-n13", "mechanisms/mmoe_ranking_f16-e4-ffn24-t8-n13"
    ]

    static func run(_ fixture: String, disabled: Set<String>) throws -> (graph: Graph, outputs: [String: HostTensor]) {
        let f = try #require(ParityTests.loadFixture(RepoPaths.fixtures + "/" + fixture, name: fixture))
        let session = CompilerSession(
            CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides, verifyEachPass: true, disabledPasses: disabled))
        let graph = try session.boundGraph()
        let x = try NpyArray(path: f.path + "/x.npy")
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try session.checkpoint()))
        return (graph, try interpreter.run(["x": HostTensor(shape: x.shape, floats: x.floats())]))
    }

    @Test(arguments: cases)
    func repeatsGoAndOutputsStay(_ fixture: String) throws {
        let without = try Self.run(fixture, disabled: ["dead-code-elimination", "common-subexpression-elimination"])
        let with = try Self.run(fixture, disabled: ["dead-code-elimination"])
        func repeats(_ g: Graph) -> Int {
            var seen = Set<String>(), count = 0
            for n in g.nodes where n.op != .input {
                let key = "\(n.op) \(n.operands) \(n.attributes) \(n.type)"
                if !seen.insert(key).inserted { count += 1 }
            }
            return count
        }
        #expect(repeats(with.graph) == 0)
        for (name, value) in without.outputs { #expect(with.outputs[name]?.floats == value.floats, "\(name)") }
    }

    /// The same router written twice (as a shared expert's gate and as the routed one): CSE
    /// leaves one linear and one sigmoid, and DCE is off so only CSE can have merged them.
    @Test func theSameExpressionWrittenTwiceIsComputedOnce() throws {
        let source = """
            input x: [tokens, 8]
            weight w: [4, 8] = "w"
            let a = x |> linear(w) |> sigmoid
            let b = x |> linear(w) |> sigmoid
            output y = a * b
            """
        let dir = TemporaryDirectory()
        let path = dir.path + "/twice.moe"
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        for (disabled, expected) in [(["dead-code-elimination"], 1), (["dead-code-elimination", "common-subexpression-elimination"], 2)] {
            let g = try CompilerSession(CompileOptions(graphPath: path, disabledPasses: Set(disabled))).optimize()
            #expect(g.nodes.filter { $0.op == .linear }.count == expected, "\(disabled)")
            #expect(g.nodes.filter { $0.op == .sigmoid }.count == expected, "\(disabled)")
        }
    }
}
