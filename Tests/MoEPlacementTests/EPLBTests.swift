import Testing

@testable import MoEPlacement

@Suite struct EPLBTests {
    /// The example in EPLB's README: 2 layers of 12 experts, 16 replicas, 4 groups, 2 nodes, 8 GPUs.
    @Test func reproducesTheReadmeExample() {
        let weights: [[Double]] = [
            [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
            [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]
        ]
        let expected = [
            [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
            [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]
        ]
        for (w, e) in zip(weights, expected) {
            #expect(EPLB.rebalance(w, physical: 16, groups: 4, nodes: 2, workers: 8) == e)
        }
    }

    @Test func replicateGivesSlotsToTheLargestLoadPerReplica() {
        let (phy2log, rank, count) = EPLB.replicate([10, 1, 6], physical: 6)
        // 10 → 5 (second replica), then 6 (6 > 5), then 10 again (5 > 3 > 1).
        #expect(phy2log == [0, 1, 2, 0, 2, 0])
        #expect(rank == [0, 0, 0, 1, 1, 2])
        #expect(count == [3, 1, 2])
    }

    @Test func balancedPackingFillsEveryPackEqually() {
        let weights: [Double] = [9, 8, 7, 6, 5, 4, 3, 2, 1]
        let (pack, rank) = EPLB.balancedPacking(weights, packs: 3)
        for p in 0..<3 { #expect(pack.filter { $0 == p }.count == 3) }
        // Heaviest first into the lightest pack with room: 9|8|7, then 6→7's pack…
        #expect(pack == [0, 1, 2, 2, 1, 0, 0, 1, 2])
        #expect(Set(zip(pack, rank).map { "\($0)-\($1)" }).count == 9)
    }

    @Test func globalPolicyWhenGroupsDoNotSplitOverNodes() {
        let w: [Double] = [5, 1, 1, 1, 9, 2, 2, 3]
        #expect(!EPLB.usesHierarchy(groups: 3, nodes: 2))
        #expect(
            EPLB.rebalance(w, physical: 8, groups: 1, nodes: 2, workers: 4)
                == EPLB.rebalanceHierarchical(w, physical: 8, groups: 1, nodes: 1, workers: 4).phy2log)
    }
}
