import MoEIR
import MoEPasses
import Testing

/// `ExpertGateUpFusion` from IR text (`Golden/ExpertGateUpFusion`).
@Suite struct ExpertGateUpFusionTests {
    @Test func separateGateAndUpWeightsAreMarked() throws {
        let (_, g) = try PassGolden.run(ExpertGateUpFusion(), "separate_gate_up")
        #expect(g.nodes.first { $0.op == .moe_experts }?.attributes.bool("fuse_gate_up") == true)
    }

    /// MLP experts have no gate; a computed gate cannot be interleaved at load time.
    @Test(arguments: ["mlp_experts", "computed_gate"])
    func blocksItMustLeaveAlone(_ testCase: String) throws {
        try PassGolden.expectUnchanged(ExpertGateUpFusion(), testCase)
    }
}
