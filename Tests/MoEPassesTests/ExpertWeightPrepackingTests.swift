import MoEIR
import MoEPasses
import Testing

/// `ExpertWeightPrepacking` from IR text (`Golden/ExpertWeightPrepacking`).
@Suite struct ExpertWeightPrepackingTests {
    /// Expert matrices that are weights; a multi-hop block's computed active mask is not one.
    @Test(arguments: ["weights", "multihop_active_mask"])
    func blocksOfWeightsAreMarked(_ testCase: String) throws {
        let (_, g) = try PassGolden.run(ExpertWeightPrepacking(), testCase)
        let blocks = g.nodes.filter { $0.op == .moe_experts }
        #expect(!blocks.isEmpty && blocks.allSatisfy { $0.attributes.bool("prepacked") == true })
    }

    /// A computed expert matrix cannot be packed when the plan is loaded.
    @Test func computedExpertMatricesAreRefused() throws {
        try PassGolden.expectUnchanged(ExpertWeightPrepacking(), "computed_expert_matrix")
    }
}
