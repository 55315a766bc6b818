import Testing

@testable import MoEPlacement

@Suite struct PlannerTests {
    static func zipf(_ experts: Int, _ exponent: Double, layers: Int = 2, seed: UInt64 = 3) -> LoadStatistics {
        var rng = SeededRandom(seed: seed)
        return try! LoadStatistics(
            layers: (0..<layers).map { _ in
                SyntheticLoads.zipf(experts: experts, exponent: exponent, tokens: 50_000, random: &rng)
            })
    }

    /// Every invariant a plan must hold, checked from the placement alone.
    static func checkValid(_ plan: PlacementPlan, _ stats: LoadStatistics, _ options: PlacementOptions) {
        let p = options.physicalSlots ?? stats.expertCount
        #expect(plan.placement.workers == options.workers)
        #expect(plan.placement.slotsPerWorker == p / options.workers)
        for (l, layer) in plan.placement.layers.enumerated() {
            #expect(layer.phy2log.count == p)
            #expect(layer.replicas.allSatisfy { $0 >= 1 })
            #expect(layer.replicas.reduce(0, +) == p)
            let loads = PlacementMetrics.workerLoads(phy2log: layer.phy2log, loads: stats.layers[l], workers: options.workers)
            #expect(loads == plan.layers[l].after.workerLoads)
            #expect(plan.layers[l].after.maxLoad <= plan.layers[l].eplb.maxLoad)
            #expect(plan.layers[l].after.maxLoad >= plan.layers[l].lowerBound * (1 - 1e-12))
        }
    }

    @Test(arguments: [(0.0, 8, 64), (0.8, 8, 72), (1.2, 16, 80), (1.5, 4, 68)])
    func neverWorseThanEPLBAndValid(exponent: Double, workers: Int, slots: Int) throws {
        let stats = Self.zipf(64, exponent)
        let options = PlacementOptions(workers: workers, physicalSlots: slots)
        let plan = try PlacementPlanner.plan(stats, options)
        Self.checkValid(plan, stats, options)
    }

    @Test func clearlyBetterThanEPLBOnSkewedLoads() throws {
        let stats = Self.zipf(128, 1.4, layers: 3, seed: 11)
        let plan = try PlacementPlanner.plan(stats, PlacementOptions(workers: 16, physicalSlots: 144))
        for r in plan.layers {
            #expect(r.after.imbalance < r.eplb.imbalance)
            #expect(r.after.distance(toBound: r.lowerBound) < 0.5 * r.eplb.distance(toBound: r.lowerBound))
        }
    }

    @Test func deterministic() throws {
        let stats = Self.zipf(96, 1.1, layers: 3)
        let options = PlacementOptions(workers: 8, physicalSlots: 112, nodes: 2, groups: 4)
        let a = try PlacementPlanner.plan(stats, options), b = try PlacementPlanner.plan(stats, options)
        #expect(a == b)
        #expect(a.json.pretty == b.json.pretty)
    }

    @Test func eplbPolicyReturnsEPLB() throws {
        let stats = Self.zipf(64, 1.0)
        let plan = try PlacementPlanner.plan(stats, PlacementOptions(workers: 8, physicalSlots: 72, policy: .eplb))
        for (l, layer) in plan.placement.layers.enumerated() {
            #expect(layer.phy2log == EPLB.rebalance(stats.layers[l], physical: 72, groups: 1, nodes: 1, workers: 8))
            #expect(plan.layers[l].strategy == .eplbGlobal)
        }
        // With a previous placement EPLB's plan is only renumbered: same loads per worker, as a multiset.
        let shifted = try ExpertPlacement(workers: 8, experts: 64, phy2log: plan.placement.layers.map { Array($0.phy2log[9...] + $0.phy2log[..<9]) })
        let again = try PlacementPlanner.plan(stats, PlacementOptions(workers: 8, physicalSlots: 72, previous: shifted, policy: .eplb))
        #expect(again.movedExperts == 0)
        #expect(again.placement == shifted)
    }

    @Test func topologyReportsAndLowersCrossNodeTraffic() throws {
        let stats = Self.zipf(64, 1.2, layers: 2, seed: 5)
        let options = PlacementOptions(workers: 8, physicalSlots: 80, nodes: 4, groups: 8)
        let plan = try PlacementPlanner.plan(stats, options)
        Self.checkValid(plan, stats, options)
        for (l, r) in plan.layers.enumerated() {
            #expect(r.eplb.crossNodeTokens > 0)
            #expect(r.before.crossNodeTokens == stats.layers[l].reduce(0, +) * 3 / 4)
            // EPLB here is hierarchical (8 groups % 4 nodes == 0): replicas stay in their node.
            #expect(r.eplb.crossNodeTokens == r.before.crossNodeTokens)
            #expect(r.after.crossNodeTokens < r.eplb.crossNodeTokens)
            #expect(
                r.after.crossNodeTokens
                    == PlacementMetrics.crossNodeTokens(
                        phy2log: plan.placement.layers[l].phy2log,
                        loads: stats.layers[l], nodes: 4))
        }
    }

    @Test func hierarchicalCandidateKeepsGroupsOnNodes() {
        let loads = PlannerTests.zipf(32, 0.5, layers: 1).layers[0]
        let problem = LayerProblem(slots: 40, workers: 8, nodes: 2, groups: 4, linkCost: 1, policy: .moec, evaluations: 50)
        let map = problem.hierarchical(loads)
        #expect(map.count == 40)
        // Each group's experts (and replicas) live on one node.
        for g in 0..<4 {
            let nodes = Set(map.enumerated().filter { $0.element / 8 == g }.map { $0.offset / 20 })
            #expect(nodes.count == 1)
        }
    }

    @Test func previousPlacementSameLoadsMovesNothing() throws {
        let stats = Self.zipf(64, 1.0)
        let first = try PlacementPlanner.plan(stats, PlacementOptions(workers: 8, physicalSlots: 72))
        let again = try PlacementPlanner.plan(stats, PlacementOptions(workers: 8, physicalSlots: 72, previous: first.placement))
        #expect(again.movedExperts == 0)
        #expect(again.placement == first.placement)
    }

    @Test func previousPlacementCutsMovesAtTheSameBalance() throws {
        let old = Self.zipf(64, 1.0, seed: 1)
        // New loads: the same experts, drifted by up to ±30 %.
        var rng = SeededRandom(seed: 99)
        let drifted = try LoadStatistics(layers: old.layers.map { $0.map { ($0 * (0.7 + 0.6 * rng.unit())).rounded() } }, expertBytes: 1000)
        let previous = try PlacementPlanner.plan(old, PlacementOptions(workers: 8, physicalSlots: 72)).placement
        let fresh = try PlacementPlanner.plan(drifted, PlacementOptions(workers: 8, physicalSlots: 72))
        let kept = try PlacementPlanner.plan(drifted, PlacementOptions(workers: 8, physicalSlots: 72, previous: previous))
        Self.checkValid(kept, drifted, PlacementOptions(workers: 8, physicalSlots: 72))
        let naiveMoves = zip(fresh.placement.layers, previous.layers).reduce(0) {
            $0 + MoveMinimizer.moves($1.0.phy2log, newPerWorker: 9, previous: $1.1.phy2log, previousPerWorker: 9, workers: 8)
        }
        #expect(kept.movedExperts! < naiveMoves / 2)
        #expect(kept.movedBytes == kept.movedExperts! * 1000)
        for (a, b) in zip(kept.layers, fresh.layers) {
            #expect(a.after.maxLoad <= b.after.maxLoad + 0.001 * b.after.meanLoad)
            #expect(a.after.maxLoad <= a.eplb.maxLoad)
        }
        #expect(kept.json["moved"]?["experts"]?.int == kept.movedExperts)
        // Strict: exactly the fresh plan's balance (or better), and still fewer moves than not trying.
        let strict = try PlacementPlanner.plan(drifted, PlacementOptions(workers: 8, physicalSlots: 72, previous: previous, moveTolerance: 0))
        for (a, b) in zip(strict.layers, fresh.layers) { #expect(a.after.maxLoad <= b.after.maxLoad) }
        #expect(strict.movedExperts! < naiveMoves)
        #expect(kept.movedExperts! <= strict.movedExperts!)
    }

    @Test func typedErrorsForBadOptions() {
        let stats = Self.zipf(64, 0.5, layers: 1)
        func error(_ o: PlacementOptions) -> PlacementError? {
            do { _ = try PlacementPlanner.plan(stats, o); return nil } catch { return error }
        }
        #expect(error(PlacementOptions(workers: 0)) == .invalidOption(name: "--workers", message: "must be a positive integer, found 0"))
        #expect(error(PlacementOptions(workers: 8, physicalSlots: 60)) == .tooFewSlots(slots: 60, experts: 64))
        #expect(error(PlacementOptions(workers: 8, physicalSlots: 70)) == .slotsNotMultipleOfWorkers(slots: 70, workers: 8))
        #expect("\(error(PlacementOptions(workers: 8, physicalSlots: 70))!)".contains("try 64 or 72"))
        #expect(error(PlacementOptions(workers: 8, nodes: 3)) == .nodesDoNotDivideWorkers(nodes: 3, workers: 8))
        #expect(error(PlacementOptions(workers: 8, groups: 5)) == .groupsDoNotDivideExperts(groups: 5, experts: 64))
        #expect(error(PlacementOptions(workers: 8, nodes: 0)) != nil)
        #expect(error(PlacementOptions(workers: 8, linkCost: -1)) != nil)
        if case .invalidOption(let name, _)? = error(PlacementOptions(workers: 6)) { #expect(name == "--workers") } else { Issue.record("expected an option error") }
        // 9 slots × 1 layer × 100 bytes = 900 > 800.
        let memory = error(PlacementOptions(workers: 8, physicalSlots: 72, memoryPerWorker: 800, expertBytes: 100))
        #expect(
            memory == .memoryExceeded(needed: 900, available: 800, detail: "9 slots × 1 layers × 100 bytes per expert; at most 8 slots per worker fit, so --replicas at most 64"))
        #expect(error(PlacementOptions(workers: 8, physicalSlots: 72, memoryPerWorker: 900, expertBytes: 100)) == nil)
        if case .invalidOption(let name, _)? = error(PlacementOptions(workers: 8, memoryPerWorker: 800)) {
            #expect(name == "--memory-per-worker")
        } else {
            Issue.record("expected an option error")
        }
    }

    /// Found by the stats fuzz target: when slots × layers × bytes overflowed, the message's
    /// "slots that fit" multiplied bytes × layers again, unchecked, and trapped
    /// (`moec place --memory-per-worker 1 --expert-bytes 8000000T` on two layers).
    @Test func memoryCheckWithOverflowingBytesIsAnError() throws {
        let stats = try LoadStatistics(layers: [[1, 2, 3, 4], [4, 3, 2, 1]])
        let options = PlacementOptions(workers: 1, memoryPerWorker: 1, expertBytes: 8_000_000_000_000_000_000)
        #expect(
            throws: PlacementError.memoryExceeded(
                needed: Int.max, available: 1,
                detail: "4 slots × 2 layers × 8000000000000000000 bytes per expert; only 0 slots per worker fit, fewer than the 4 experts need on 1 workers")
        ) {
            try PlacementPlanner.plan(stats, options)
        }
    }

    @Test func previousMismatchesAreTypedErrors() throws {
        let stats = Self.zipf(64, 0.5, layers: 1)
        let other = try ExpertPlacement(workers: 8, experts: 32, phy2log: [Array(0..<32)])
        #expect(throws: PlacementError.previousMismatch(message: "it places 32 experts per layer but the load statistics have 64")) {
            try PlacementPlanner.plan(stats, PlacementOptions(workers: 8, previous: other))
        }
        let fourWorkers = try ExpertPlacement(workers: 4, experts: 64, phy2log: [Array(0..<64)])
        #expect(throws: PlacementError.previousMismatch(message: "it is for 4 workers but --workers is 8")) {
            try PlacementPlanner.plan(stats, PlacementOptions(workers: 8, previous: fourWorkers))
        }
    }

    @Test func lowerBoundIsTightWhenOneExpertDominates() {
        // One expert with 90 % of the load and two spare slots: it gets 3 replicas of 30 each.
        let loads: [Double] = [90, 2, 2, 2, 2, 2]
        #expect(Replication.minimalLargestReplicaLoad(loads, slots: 8) == 30)
        #expect(PlacementMetrics.lowerBound(loads: loads, slots: 8, workers: 4) == 30)
    }

    @Test func edgeCases() throws {
        // All-zero layer, one worker, one expert, more workers than experts (with replicas).
        let zero = try PlacementPlanner.plan(try LoadStatistics(layers: [[0, 0, 0, 0]]), PlacementOptions(workers: 2, physicalSlots: 6))
        #expect(zero.layers[0].after.imbalance == 1 && zero.placement.layers[0].replicas.allSatisfy { $0 >= 1 })
        let one = try PlacementPlanner.plan(try LoadStatistics(layers: [[5, 7, 1]]), PlacementOptions(workers: 1, physicalSlots: 5))
        #expect(one.layers[0].after.workerLoads == [13])
        let single = try PlacementPlanner.plan(try LoadStatistics(layers: [[42]]), PlacementOptions(workers: 4, physicalSlots: 4))
        #expect(single.placement.layers[0].phy2log == [0, 0, 0, 0] && single.layers[0].after.imbalance == 1)
        let wide = try PlacementPlanner.plan(Self.zipf(8, 1.0), PlacementOptions(workers: 16, physicalSlots: 16))
        #expect(wide.placement.layers.allSatisfy { $0.replicas.reduce(0, +) == 16 })
        #expect(throws: PlacementError.self) { try PlacementPlanner.plan(Self.zipf(8, 1.0), PlacementOptions(workers: 16)) }
    }
}
