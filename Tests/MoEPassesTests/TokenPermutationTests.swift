import MoEIR
import MoEPasses
import Testing

/// `TokenPermutation` from IR text (`Golden/TokenPermutation`).
@Suite struct TokenPermutationTests {
    @Test(arguments: ["moe_block", "multihop"])
    func everyBlockIsMarked(_ testCase: String) throws {
        let (before, g) = try PassGolden.run(TokenPermutation(), testCase)
        let blocks = g.nodes.filter { $0.op == .moe_experts }
        #expect(!blocks.isEmpty && blocks.allSatisfy { $0.attributes.bool("permute") == true })
        #expect(g.nodes.count == before.nodes.count)
    }

    @Test func graphsWithoutBlocksAreLeftAlone() throws {
        try PassGolden.expectUnchanged(TokenPermutation(), "dense_only")
    }
}
