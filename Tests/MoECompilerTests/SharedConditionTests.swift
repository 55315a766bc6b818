import Foundation
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// `shared: … if COND`: shared experts a param switches off, with their weights declared at a
/// width of 0 (as transformers drops them when the config's count is 0).
@Suite struct SharedConditionTests {
    static let source = """
        param hidden = 16
        param n_shared = 1
        input x: [tokens, hidden]
        weight gate: [4, hidden] = "gate.weight"
        weight w1: [4, 8, hidden] = "e.{e}.w1"
        weight w2: [4, hidden, 8] = "e.{e}.w2"
        weight s_up: [n_shared * 8, hidden] = "shared.up"
        weight s_down: [hidden, n_shared * 8] = "shared.down"
        let y = moe(x) {
          router:  x |> linear(gate) |> softmax |> topk(2)
          experts: 4 of mlp(up: w1, down: w2, act: relu)
          shared:  mlp(x, up: s_up, down: s_down, act: relu) if n_shared != 0
        }
        output y
        """

    func graph(nShared: Int) throws -> Graph {
        let dir = TemporaryDirectory()
        try Self.source.write(toFile: dir.file("g.moe"), atomically: true, encoding: .utf8)
        return try CompilerSession(CompileOptions(graphPath: dir.file("g.moe"), overrides: [("n_shared", String(nShared))])).lower()
    }

    @Test func aSwitchedOffSharedExpertIsNotInTheGraph() throws {
        let on = try graph(nShared: 1), off = try graph(nShared: 0)
        #expect(on.nodes.contains { $0.op == .mlp } && on.weights.contains { $0.name == "s_up" })
        #expect(!off.nodes.contains { $0.op == .mlp } && !off.weights.contains { $0.name == "s_up" })
        #expect(off.nodes.contains { $0.op == .moe_experts })
    }
}
