import MoEIR
import MoEPasses
import Testing

/// `RouterFusion` from IR text (`Golden/RouterFusion`).
@Suite struct RouterFusionTests {
    /// The fused router of `testCase`, and the graph after the pass.
    static func fused(_ testCase: String) throws -> (Node, Graph) {
        let (_, g) = try PassGolden.run(RouterFusion(), testCase)
        let routers = g.nodes.filter { $0.op == .fused_router }
        try #require(routers.count == 1, "\(testCase): \(routers.count) fused routers")
        return (routers[0], g)
    }

    /// softmax → topk → renormalize (Mixtral); the parts stay for dead-code elimination.
    @Test func softmaxTopkRenormalize() throws {
        let (r, g) = try Self.fused("softmax_topk_renormalize")
        #expect(r.attributes.string("score") == "softmax" && r.attributes.string("normalize") == "sum")
        #expect(g[r.operands[0]].op == .linear)
        #expect(r.locations.count == 3, "softmax, topk and renormalize")
        #expect(g.nodes.contains { $0.op == .softmax } && g.nodes.contains { $0.op == .topk })
    }

    /// topk on the logits, then a softmax over the chosen scores.
    @Test func topkSoftmax() throws {
        let (r, _) = try Self.fused("topk_softmax")
        #expect(r.attributes.string("score") == "identity" && r.attributes.string("normalize") == "softmax")
    }

    @Test func sigmoidBiasedGroupsAndScale() throws {
        let (r, g) = try Self.fused("sigmoid_biased_groups_scale")
        #expect(r.attributes.string("score") == "sigmoid" && r.attributes.float("scale") == 2.5 && r.attributes.int("groups") == 4)
        #expect(r.operands.count == 2 && g[r.operands[1]].name == "correction")
    }

    /// Probabilities that are also an output stay a tensor; the fused router reads them.
    @Test func probabilitiesReadElsewhereStay() throws {
        let (r, g) = try Self.fused("probabilities_read_elsewhere")
        #expect(r.attributes.string("score") == "identity" && g[r.operands[0]].name == "p")
        #expect(r.attributes.float("scale") == 2)
    }

    /// A softmax with a temperature is not absorbed.
    @Test func softmaxWithTemperatureStays() throws {
        let (r, g) = try Self.fused("softmax_with_temperature")
        #expect(r.attributes.string("score") == "identity" && g[r.operands[0]].op == .softmax)
    }

    @Test(arguments: ["topk_with_force", "topk_alone"])
    func routersItMustLeaveAlone(_ testCase: String) throws {
        try PassGolden.expectUnchanged(RouterFusion(), testCase)
    }
}
