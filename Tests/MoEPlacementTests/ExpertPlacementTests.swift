import MoEBasics
import Testing

@testable import MoEPlacement

@Suite struct ExpertPlacementTests {
    func read(_ text: String) throws(PlacementError) -> ExpertPlacement {
        try ExpertPlacement(json: PlacementError.parseJSON(text, file: "p.json"), file: "p.json")
    }

    @Test func mapsSlotsWorkersAndReplicas() throws {
        let p = try ExpertPlacement(workers: 2, nodes: 1, experts: 3, phy2log: [[0, 2, 1, 2]])
        let l = p.layers[0]
        #expect(p.slotsPerWorker == 2 && p.physicalSlots == 4)
        #expect(l.log2phy == [[0], [2], [1, 3]])
        #expect(l.replicas == [1, 1, 2])
        #expect(l.worker(ofSlot: 3) == 1)
        #expect(Array(l.experts(onWorker: 1)) == [1, 2])
        #expect(l.workers(ofExpert: 2) == [0, 1])
    }

    @Test func roundTripsThroughJSONIncludingAWholePlan() throws {
        var rng = SeededRandom(seed: 4)
        let stats = try LoadStatistics(layers: [SyntheticLoads.zipf(experts: 16, exponent: 1, tokens: 1000, random: &rng)])
        let plan = try PlacementPlanner.plan(stats, PlacementOptions(workers: 4, physicalSlots: 20, nodes: 2))
        #expect(try read(plan.json.pretty) == plan.placement)
        #expect(try read(plan.placement.json.compact) == plan.placement)
    }

    @Test func rejectsBrokenPlacementsWithAllIssues() {
        func issues(_ text: String) -> [String] {
            do { _ = try read(text); return [] } catch {
                if case .invalidPlacement(_, let i) = error { return i.map(\.description) }
                return ["\(error)"]
            }
        }
        #expect(
            issues(#"{"workers": 2, "experts": 3, "phy2log": [[0, 1, 1, 5]]}"#) == [
                "layer 0: slot 3 holds expert 5, outside 0..<3",
                "layer 0, expert 2: has no slot (every expert needs at least one replica)"
            ])
        #expect(issues(#"{"workers": 3, "phy2log": [[0, 1, 2, 3]]}"#) == ["4 physical slots cannot be shared equally by 3 workers"])
        #expect(issues(#"{"workers": 2, "phy2log": [[0, 1], [1, 0, 0]]}"#) == ["layer 1: has 3 slots but layer 0 has 2"])
        #expect(issues(#"{"workers": 2, "phy2log": [[0, 1]], "replicas": [[2, 0]]}"#) == ["layer 0: \"replicas\" does not match \"phy2log\" (expected [1, 1])"])
        #expect(issues(#"{"workers": 2, "phy2log": [[0, 1]], "log2phy": [[[1], [0]]]}"#) == ["layer 0: \"log2phy\" does not match \"phy2log\""])
        #expect(issues(#"{"workers": 2, "phy2log": [[0, "a"]]}"#) == ["layer 0: slot 1: expected an integer expert index, found a string"])
        #expect(issues(#"{"phy2log": [[0]]}"#) == ["missing or non-integer \"workers\""])
        #expect(issues(#"{"workers": 2, "nodes": 3, "phy2log": [[0, 1]]}"#) == ["\"nodes\" (3) must be positive and divide \"workers\" (2)"])
        #expect(issues(#"{"workers": 2, "slots_per_worker": 2, "phy2log": [[0, 1]]}"#).first?.contains("\"slots_per_worker\" is 2") == true)
    }
}

@Suite struct DispatchTests {
    /// Found by the placement fuzz target: without "experts", the count came from the largest
    /// slot entry, and a slot naming expert 78888888888 made an array of that many flags (ASan:
    /// out of memory). More experts than slots is an error before anything is sized by it.
    @Test func aHugeExpertIndexIsAnErrorNotAnAllocation() {
        #expect(throws: PlacementError.self) {
            let text = #"{"workers": 4, "phy2log": [[1, 1, 0, 0, 2, 3, 78888888888, 7]]}"#
            _ = try ExpertPlacement(json: PlacementError.parseJSON(text, file: "p.json"), file: "p.json")
        }
        #expect(throws: PlacementError.self) {
            try ExpertPlacement(workers: 2, experts: 1 << 40, phy2log: [[0, 1, 2, 3]])
        }
    }

    @Test func equalAndProportionalSplitsAreContiguousAndComplete() {
        #expect(TokenSplit.equal(10, parts: 3) == [0..<3, 3..<6, 6..<10])
        #expect(TokenSplit.equal(2, parts: 4) == [0..<0, 0..<1, 1..<1, 1..<2])
        #expect(TokenSplit.proportional(10, weights: [1, 1, 2]) == [0..<3, 3..<5, 5..<10])
        #expect(TokenSplit.proportional(7, weights: [0, 0]) == TokenSplit.equal(7, parts: 2))
        #expect(TokenSplit.proportional(100, weights: [0.25, 0, 0.75]) == [0..<25, 25..<25, 25..<100])
        var rng = SeededRandom(seed: 1)
        for _ in 0..<200 {
            let n = rng.below(50), parts = 1 + rng.below(6)
            let w = (0..<parts).map { _ in rng.unit() }
            let r = TokenSplit.proportional(n, weights: w)
            #expect(r.first!.lowerBound == 0 && r.last!.upperBound == n)
            #expect(zip(r, r.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            let total = w.reduce(0, +)
            for (range, x) in zip(r, w) { #expect(abs(Double(range.count) - Double(n) * x / total) < 1.0001) }
        }
    }

    @Test func replicaRangesSplitEachExpertOverItsSlots() throws {
        let p = try ExpertPlacement(workers: 2, experts: 3, phy2log: [[0, 2, 1, 2]])
        #expect(p.layers[0].replicaRanges(tokenCounts: [4, 5, 7]) == [0..<4, 0..<3, 0..<5, 3..<7])
    }

    /// Worker 0 holds the hot expert 0 alone; LLEP moves its excess to the idle workers.
    @Test func leastLoadedDispatchSpillsExcess() throws {
        let p = try ExpertPlacement(workers: 4, experts: 8, phy2log: [[0, 1, 2, 3, 4, 5, 6, 7]])
        let counts = [100, 0, 10, 10, 10, 10, 10, 10]
        let d = p.layers[0].leastLoadedDispatch(tokenCounts: counts, threshold: 1.0)
        #expect(d.capacity == 40)
        #expect(d.workerLoads == [40, 40, 40, 40])
        #expect(d.spilledTokens == 60)
        // Expert 0's 100 tokens: 0..<40 stay on worker 0 (slot 0); the rest go to workers 1–3,
        // which do not hold expert 0 and must fetch its weights.
        let zero = d.assignments.filter { $0.expert == 0 }
        #expect(zero.map(\.tokens) == [0..<40, 40..<60, 60..<80, 80..<100])
        #expect(zero.first?.slot == 0 && zero.dropFirst().allSatisfy { $0.slot == nil })
        #expect(Set(zero.dropFirst().map(\.worker)) == [1, 2, 3])
        #expect(d.fetchedWeights == 3)
        #expect(p.layers[0].leastLoadedDispatch(tokenCounts: counts, threshold: 1.0) == d)
    }

    @Test func leastLoadedDispatchPrefersReplicaHoldersAndRespectsMemory() throws {
        // Expert 0 has replicas on workers 0 and 1. Worker 0 is over capacity (65); worker 1 holds
        // expert 0 and has room, so it takes the spill without fetching weights, although the
        // idle worker 2 is less loaded.
        let p = try ExpertPlacement(workers: 3, experts: 5, phy2log: [[0, 1, 0, 2, 3, 4]])
        let counts = [80, 40, 10, 0, 0]
        let d = p.layers[0].leastLoadedDispatch(tokenCounts: counts, threshold: 1.5)
        #expect(d.capacity == 65)
        #expect(d.workerLoads == [65, 65, 0])
        #expect(d.fetchedWeights == 0)
        #expect(
            d.assignments.filter { $0.expert == 0 } == [
                TokenAssignment(expert: 0, tokens: 0..<25, worker: 0, slot: 0),
                TokenAssignment(expert: 0, tokens: 25..<40, worker: 1, slot: 2),
                TokenAssignment(expert: 0, tokens: 40..<80, worker: 1, slot: 2)
            ])
        // No memory for foreign weights and no holder with room: nothing can move.
        let capped = p.layers[0].leastLoadedDispatch(tokenCounts: counts, threshold: 1.0, maxFetchedExpertsPerWorker: 0)
        #expect(capped.fetchedWeights == 0 && capped.spilledTokens == 0)
        #expect(capped.workerLoads == [80, 50, 0])
    }

    @Test(arguments: [1.0, 1.1, 1.5])
    func leastLoadedDispatchKeepsEveryTokenOnce(threshold: Double) throws {
        var rng = SeededRandom(seed: 8)
        let loads = SyntheticLoads.zipf(experts: 32, exponent: 1.3, tokens: 5000, random: &rng)
        let plan = try PlacementPlanner.plan(try LoadStatistics(layers: [loads]), PlacementOptions(workers: 8, physicalSlots: 40))
        let layer = plan.placement.layers[0]
        var batch = SeededRandom(seed: 9)
        let counts = SyntheticLoads.zipf(experts: 32, exponent: 1.3, tokens: 3000, random: &batch).map { Int($0) }
        let d = layer.leastLoadedDispatch(tokenCounts: counts, threshold: threshold)
        for e in 0..<32 {
            let ranges = d.assignments.filter { $0.expert == e }.map(\.tokens)
            #expect(ranges.reduce(0) { $0 + $1.count } == counts[e])
            #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        }
        #expect(d.workerLoads.allSatisfy { $0 <= d.capacity })
        for a in d.assignments where a.slot != nil { #expect(layer.worker(ofSlot: a.slot!) == a.worker && layer.phy2log[a.slot!] == a.expert) }
    }
}
