import MoEIR
import MoEPasses
import Testing

/// `CombineFusion` from IR text (`Golden/CombineFusion`).
@Suite struct CombineFusionTests {
    @Test func blocksAreMarked() throws {
        let (_, g) = try PassGolden.run(CombineFusion(), "moe_block")
        #expect(g.nodes.first { $0.op == .moe_experts }?.attributes.bool("combine_in_down") == true)
    }

    @Test func graphsWithoutBlocksAreLeftAlone() throws {
        try PassGolden.expectUnchanged(CombineFusion(), "dense_only")
    }
}
