import MoEIR
import MoEPasses
import Testing

/// `ExpertUpcycling` from IR text (`Golden/ExpertUpcycling`).
@Suite struct ExpertUpcyclingTests {
    /// Four experts with counts [2, 1, 3, 2] become eight: the expert weights and the gate get
    /// repeated copies; the originals stay in the table until dead-code elimination.
    @Test func countsRepeatExpertsAndGateRows() throws {
        let (_, g) = try PassGolden.run(ExpertUpcycling(), "counts")
        let experts = try #require(g.nodes.first { $0.op == .moe_experts })
        #expect(experts.attributes.int("experts") == 8 && experts.attributes["upcycle"] == nil)
        #expect(
            g.weights.filter { $0.repeats == [2, 1, 3, 2] }.map(\.name).sorted()
                == ["gate.upcycled", "w_down.upcycled", "w_gate.upcycled", "w_up.upcycled"])
        #expect(g.nodes.contains { $0.op == .topk && $0.type == .routing(RoutingType(slots: 2, experts: 8)) })
    }

    /// The selection bias is indexed by expert: it is repeated with the gate rows.
    @Test func selectionBiasIsRepeatedToo() throws {
        let (_, g) = try PassGolden.run(ExpertUpcycling(), "biased_router")
        #expect(g.weights.contains { $0.name == "correction.upcycled" && $0.shape == [16] && $0.repeats == Array(repeating: 2, count: 8) })
    }

    @Test func blocksWithoutCountsAreLeftAlone() throws {
        try PassGolden.expectUnchanged(ExpertUpcycling(), "no_counts")
    }
}
