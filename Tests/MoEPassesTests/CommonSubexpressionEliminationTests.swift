import MoEIR
import MoEPasses
import Testing

/// `CommonSubexpressionElimination` from IR text (`Golden/CommonSubexpressionElimination`).
@Suite struct CommonSubexpressionEliminationTests {
    /// sqrtgate as lowered computes its router twice; afterwards once, read by the experts.
    @Test func duplicateRouterIsComputedOnce() throws {
        let (before, g) = try PassGolden.run(CommonSubexpressionElimination(), "duplicate_router")
        #expect(before.nodes.filter { $0.op == .linear }.count == 2)
        #expect(g.nodes.filter { $0.op == .linear }.count == 1 && g.nodes.filter { $0.op == .topk }.count == 1)
        #expect(g.nodes.count == before.nodes.count - 4)
    }

    /// MMoE as lowered repeats each tower's hidden linear; afterwards each tower has one hidden
    /// linear, one relu and one out linear.
    @Test func duplicateTowerLinearsAreComputedOnce() throws {
        let (before, g) = try PassGolden.run(CommonSubexpressionElimination(), "duplicate_tower_linear")
        #expect(before.nodes.filter { $0.op == .linear }.count == 14)
        #expect(g.nodes.filter { $0.op == .linear }.count == 6, "2 gates, and per tower one hidden and one out linear")
        #expect(g.nodes.filter { $0.op == .relu }.count == 2)
        #expect(g.outputs.map(\.name) == ["ctr", "cvr"])
    }

    @Test func distinctValuesAreLeftAlone() throws {
        try PassGolden.expectUnchanged(CommonSubexpressionElimination(), "distinct_values")
    }
}
