import MoEIR
import MoEPasses
import Testing

/// `MemoryPlanning` from IR text (`Golden/MemoryPlanning`).
@Suite struct MemoryPlanningTests {
    @Test func optimisedMixtralIsPlanned() throws {
        let (before, g) = try PassGolden.run(MemoryPlanning(), "mixtral_optimized")
        #expect(before.lastReaders == nil)
        // x (0), the expert weights and the routing (6) are last read by the experts (7); the gate (4)
        // by the logits linear (5), the logits by the router (6); the output y (7) lives to the end (8).
        #expect(g.lastReaders == [7, 7, 7, 7, 5, 6, 7, 8])
    }

    @Test func outputsLiveToTheEndAndUnreadValuesDieAtOnce() throws {
        let (_, g) = try PassGolden.run(MemoryPlanning(), "outputs_and_unread_values")
        // x w h c a u y: h is an output read by a and y; u is unread; y is an output.
        #expect(g.lastReaders == [5, 2, 7, 4, 6, 5, 7])
    }

    @Test func planningAgainChangesNothing() throws {
        try PassGolden.expectUnchanged(MemoryPlanning(), "already_planned")
    }
}
