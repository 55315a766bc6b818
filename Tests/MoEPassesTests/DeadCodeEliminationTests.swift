import MoEIR
import MoEPasses
import Testing

/// `DeadCodeElimination` from IR text (`Golden/DeadCodeElimination`).
@Suite struct DeadCodeEliminationTests {
    @Test func unusedChainAndItsWeightGo() throws {
        let (before, g) = try PassGolden.run(DeadCodeElimination(), "unused_chain")
        #expect(g.nodes.count == before.nodes.count - 4, "the unread logits linear, the chain's linear and silu, and its weight node go")
        #expect(!g.weights.contains { $0.name == "unused" } && g.weights.count == 4)
        #expect(g.inputs.map(\.name) == ["x", "mask"], "inputs stay even when unread")
    }

    @Test func routerFusionLeftoversGo() throws {
        let (_, g) = try PassGolden.run(DeadCodeElimination(), "router_fusion_leftovers")
        #expect(!g.nodes.contains { $0.op == .softmax || $0.op == .topk })
    }

    @Test func liveGraphsAreLeftAlone() throws {
        try PassGolden.expectUnchanged(DeadCodeElimination(), "all_live")
    }
}
