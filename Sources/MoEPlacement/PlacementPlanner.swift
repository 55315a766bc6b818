import Foundation

/// Plans expert placement: `moec place`.
///
/// Pipeline, per layer (layers are independent and planned in parallel):
/// 1. EPLB's placement on the same loads (`EPLB.rebalance`): the baseline and a candidate.
/// 2. moec's candidates: the balanced planner over all workers (`BalancedPlanner`); with `--nodes`,
///    the same followed by `NodeSpreading`; and, when `groups % nodes == 0`, the hierarchical form
///    (groups packed onto nodes by LPT + swap search, then `BalancedPlanner` within each node).
/// 3. Keep only candidates whose largest worker load is at most EPLB's, so the result is never worse
///    than EPLB by construction; choose the smallest cost `max/mean + linkCost · crossNodeTokens/total`
///    (ties: smaller maximum, then the earlier candidate).
/// 4. With `--previous`, find the placement with the fewest moved expert weights whose largest load
///    and cross-node traffic are no worse than step 3's choice, up to `--move-tolerance`
///    (`MoveMinimizer`), and never worse than EPLB's. (With `--policy eplb`, EPLB's plan is only
///    renumbered to overlap the previous one.)
public enum PlacementPlanner {
    /// Checks the options against the loads (every error is a `PlacementError`) and plans.
    public static func plan(_ stats: LoadStatistics, _ options: PlacementOptions) throws(PlacementError) -> PlacementPlan {
        let e = stats.expertCount
        let w = options.workers
        if w <= 0 { throw .invalidOption(name: "--workers", message: "must be a positive integer, found \(w)") }
        if options.nodes <= 0 { throw .invalidOption(name: "--nodes", message: "must be a positive integer, found \(options.nodes)") }
        if options.groups <= 0 { throw .invalidOption(name: "--groups", message: "must be a positive integer, found \(options.groups)") }
        if !(options.linkCost.isFinite && options.linkCost >= 0) {
            throw .invalidOption(name: "--link-cost", message: "must be a non-negative number, found \(options.linkCost)")
        }
        if !(options.moveTolerance.isFinite && options.moveTolerance >= 0) {
            throw .invalidOption(name: "--move-tolerance", message: "must be a non-negative number, found \(options.moveTolerance)")
        }
        if options.searchEvaluations < 0 { throw .invalidOption(name: "search evaluations", message: "must not be negative") }
        let p = options.physicalSlots ?? e
        if p < e { throw .tooFewSlots(slots: p, experts: e) }
        if p % w != 0 {
            if options.physicalSlots == nil {
                throw .invalidOption(
                    name: "--workers",
                    message:
                        "\(w) workers cannot share \(e) experts equally without replicas; pass --replicas P with P ≥ \(e) a multiple of \(w) (for example \((e + w - 1) / w * w))")
            }
            throw .slotsNotMultipleOfWorkers(slots: p, workers: w)
        }
        if w % options.nodes != 0 { throw .nodesDoNotDivideWorkers(nodes: options.nodes, workers: w) }
        if e % options.groups != 0 { throw .groupsDoNotDivideExperts(groups: options.groups, experts: e) }
        let bytes = options.expertBytes ?? stats.expertBytes
        if let b = options.expertBytes, b <= 0 { throw .invalidOption(name: "--expert-bytes", message: "must be positive, found \(b)") }
        let k = p / w
        if let memory = options.memoryPerWorker {
            guard let b = bytes else {
                throw .invalidOption(name: "--memory-per-worker", message: "needs the size of one expert: pass --expert-bytes or add \"expert_bytes\" to the load file")
            }
            let (perLayer, o1) = k.multipliedReportingOverflow(by: b)
            let (needed, o2) = perLayer.multipliedReportingOverflow(by: stats.layerCount)
            if o1 || o2 || needed > memory {
                // Bytes of one slot over all layers; past Int.max not even one slot fits.
                let (slotBytes, o3) = b.multipliedReportingOverflow(by: stats.layerCount)
                let fit = o3 ? 0 : memory / max(1, slotBytes)
                var detail = "\(k) slots × \(stats.layerCount) layers × \(b) bytes per expert"
                detail +=
                    fit * w >= e
                    ? "; at most \(fit) slots per worker fit, so --replicas at most \(fit * w)"
                    : "; only \(fit) slots per worker fit, fewer than the \(e) experts need on \(w) workers"
                throw .memoryExceeded(needed: o1 || o2 ? Int.max : needed, available: memory, detail: detail)
            }
        }
        if let prev = options.previous {
            if prev.experts != e {
                throw .previousMismatch(message: "it places \(prev.experts) experts per layer but the load statistics have \(e)")
            }
            if prev.layers.count != stats.layerCount {
                throw .previousMismatch(message: "it has \(prev.layers.count) layers but the load statistics have \(stats.layerCount)")
            }
            if prev.workers != w {
                throw .previousMismatch(message: "it is for \(prev.workers) workers but --workers is \(w)")
            }
        }

        var problem = LayerProblem(
            slots: p, workers: w, nodes: options.nodes, groups: options.groups,
            linkCost: options.linkCost, policy: options.policy,
            evaluations: options.searchEvaluations)
        problem.moveTolerance = options.moveTolerance
        let layerProblem = problem
        let results = parallelMap(stats.layerCount) { l in
            layerProblem.plan(loads: stats.layers[l], previous: options.previous?.layers[l])
        }
        let placement = try ExpertPlacement(workers: w, nodes: options.nodes, experts: e, phy2log: results.map(\.phy2log))
        return PlacementPlan(placement: placement, layers: results.map(\.report), policy: options.policy, expertBytes: bytes)
    }
}

/// One layer's planning problem (everything but the loads), shared by all layers.
struct LayerProblem: Sendable {
    let slots: Int, workers: Int, nodes: Int, groups: Int
    let linkCost: Double
    let policy: PlacementOptions.Policy
    let evaluations: Int
    var moveTolerance: Double = 0

    struct Candidate {
        var strategy: PlacementStrategy
        var phy2log: [Int]
        var summary: LoadSummary
        var cost: Double
    }

    func evaluate(_ strategy: PlacementStrategy, _ phy2log: [Int], _ loads: [Double]) -> Candidate {
        let s = LoadSummary(
            workerLoads: PlacementMetrics.workerLoads(phy2log: phy2log, loads: loads, workers: workers),
            crossNodeTokens: PlacementMetrics.crossNodeTokens(phy2log: phy2log, loads: loads, nodes: nodes))
        let total = loads.reduce(0, +)
        let traffic = nodes > 1 && total > 0 ? linkCost * s.crossNodeTokens / total : 0
        return Candidate(strategy: strategy, phy2log: phy2log, summary: s, cost: s.imbalance + traffic)
    }

    /// Steps 1–3 of `PlacementPlanner`: the best candidate that is no worse than EPLB.
    func choose(_ loads: [Double]) -> (chosen: Candidate, eplb: Candidate) {
        let eplbMap = EPLB.rebalance(loads, physical: slots, groups: groups, nodes: nodes, workers: workers)
        let eplb = evaluate(EPLB.usesHierarchy(groups: groups, nodes: nodes) ? .eplbHierarchical : .eplbGlobal, eplbMap, loads)
        guard policy == .moec else { return (eplb, eplb) }
        var candidates: [Candidate] = []
        let flat = BalancedPlanner(loads: loads, slots: slots, workers: workers, evaluations: evaluations).plan().phy2log
        candidates.append(evaluate(.moecGlobal, flat, loads))
        if nodes > 1 {
            var spread = flat
            NodeSpreading.apply(&spread, loads: loads, workers: workers, nodes: nodes)
            candidates.append(evaluate(.moecGlobalSpread, spread, loads))
            if groups % nodes == 0 {
                candidates.append(evaluate(.moecHierarchical, hierarchical(loads), loads))
            }
        }
        candidates.append(eplb)
        // EPLB comes last, so on a tie moec's candidate is kept.
        var best: Candidate? = nil
        for c in candidates where c.summary.maxLoad <= eplb.summary.maxLoad {
            if best == nil || (c.cost, c.summary.maxLoad) < (best!.cost, best!.summary.maxLoad) { best = c }
        }
        return (best!, eplb)
    }

    /// Groups onto nodes (LPT + swap search on group loads), then `BalancedPlanner` within each node.
    func hierarchical(_ loads: [Double]) -> [Int] {
        let e = loads.count, groupSize = e / groups
        let groupLoad = (0..<groups).map { g in loads[g * groupSize..<(g + 1) * groupSize].reduce(0, +) }
        var nodePacking = SlotPacking.greedy(experts: Array(0..<groups), weights: groupLoad, workers: nodes)
        nodePacking.improve()
        let slotsPerNode = slots / nodes, workersPerNode = workers / nodes
        var phy2log: [Int] = []
        phy2log.reserveCapacity(slots)
        for n in 0..<nodes {
            let experts = nodePacking.bins[n].map { nodePacking.experts[$0] }.sorted().flatMap { g in g * groupSize..<(g + 1) * groupSize }
            let local = BalancedPlanner(
                loads: experts.map { loads[$0] }, slots: slotsPerNode, workers: workersPerNode,
                evaluations: evaluations / nodes + 1
            ).plan().phy2log
            phy2log += local.map { experts[$0] }
        }
        return phy2log
    }

    func plan(loads: [Double], previous: ExpertPlacement.Layer?) -> (phy2log: [Int], report: LayerReport) {
        let (chosen, eplb) = choose(loads)
        var final = chosen
        var moved: Int? = nil
        if let prev = previous {
            (final, moved) = keepClose(chosen, eplb: eplb, to: prev, loads: loads)
        }
        let before = LoadSummary(
            workerLoads: PlacementMetrics.staticWorkerLoads(loads: loads, workers: workers),
            crossNodeTokens: PlacementMetrics.staticCrossNodeTokens(loads: loads, nodes: nodes))
        let report = LayerReport(
            strategy: final.strategy, before: before, eplb: eplb.summary, after: final.summary,
            lowerBound: PlacementMetrics.lowerBound(loads: loads, slots: slots, workers: workers),
            movedExperts: moved)
        return (final.phy2log, report)
    }

    /// Step 4 of `PlacementPlanner`: the fewest moves at no worse balance and traffic than `chosen`.
    ///
    /// "No worse" allows `moveTolerance` of slack: the largest load may exceed the choice's by
    /// `moveTolerance · mean` (never EPLB's), cross-node tokens by `moveTolerance · total`.
    func keepClose(_ chosen: Candidate, eplb: Candidate, to prev: ExpertPlacement.Layer, loads: [Double]) -> (Candidate, Int) {
        let kp = prev.slotsPerWorker, k = slots / workers
        let total = loads.reduce(0, +)
        let maxLoad = min(eplb.summary.maxLoad, chosen.summary.maxLoad + moveTolerance * chosen.summary.meanLoad)
        let maxCross = chosen.summary.crossNodeTokens + moveTolerance * total
        func moves(_ map: [Int]) -> Int {
            MoveMinimizer.moves(map, newPerWorker: k, previous: prev.phy2log, previousPerWorker: kp, workers: workers)
        }
        func valid(_ c: Candidate) -> Bool {
            c.summary.maxLoad <= maxLoad && c.summary.crossNodeTokens <= maxCross * (1 + 1e-12) + 1e-9
        }
        // Move reduction tracks loads incrementally; if rounding pushed a load over the cap, the
        // start (a pure relabelling or a swap-searched adaptation) is checked on its own.
        func finish(_ strategy: PlacementStrategy, _ start: [Int]) -> (Candidate, Int)? {
            var map = start
            MoveMinimizer.reduceMoves(
                &map, previous: prev.phy2log, previousPerWorker: kp, loads: loads,
                workers: workers, nodes: nodes, maxLoad: maxLoad, maxCross: maxCross)
            for m in [map, start] {
                let aligned = MoveMinimizer.alignSlots(m, previous: prev.phy2log, previousPerWorker: kp, workers: workers)
                let c = evaluate(strategy, aligned, loads)
                if valid(c) { return (c, moves(aligned)) }
            }
            return nil
        }
        var options: [(Candidate, Int)] = []
        if kp == k {
            let kept = evaluate(.previous, prev.phy2log, loads)
            if valid(kept) && kept.cost <= chosen.cost {
                return (kept, 0)
            }
        }
        let relabelled = MoveMinimizer.relabel(
            chosen.phy2log, newPerWorker: k, previous: prev.phy2log, previousPerWorker: kp,
            workers: workers, nodes: nodes, experts: loads.count)
        // EPLB's plan is only renumbered (workers, and slots within a worker), so it stays EPLB's.
        if policy == .eplb {
            let aligned = MoveMinimizer.alignSlots(relabelled, previous: prev.phy2log, previousPerWorker: kp, workers: workers)
            return (evaluate(chosen.strategy, aligned, loads), moves(aligned))
        }
        if let r = finish(chosen.strategy, relabelled) { options.append(r) }
        if kp == k {
            var counts = Array(repeating: 0, count: loads.count)
            for x in chosen.phy2log { counts[x] += 1 }
            var allocations = [counts]
            let adjusted = Replication.adjust(prev.replicas, loads: loads, slots: slots)
            if adjusted != counts { allocations.append(adjusted) }
            for c in allocations {
                let start = MoveMinimizer.adapt(previous: prev.phy2log, counts: c, loads: loads, workers: workers)
                if let repaired = MoveMinimizer.repair(
                    start, previous: prev.phy2log, previousPerWorker: kp, loads: loads,
                    workers: workers, cap: maxLoad),
                    let r = finish(chosen.strategy, repaired)
                {
                    options.append(r)
                }
                // Swap local search from the adapted start sometimes balances better than the
                // fresh plan, at more moves; it is a candidate like the others.
                let weights = start.map { loads[$0] / Double(c[$0]) }
                var packing = SlotPacking(experts: start, weights: weights, bins: (0..<workers).map { Array($0 * k..<($0 + 1) * k) })
                packing.improve()
                if let r = finish(chosen.strategy, packing.bins.flatMap { $0.map { start[$0] } }) { options.append(r) }
            }
        }
        guard var best = options.first else { return (chosen, moves(chosen.phy2log)) }
        for o in options.dropFirst() where (o.1, o.0.summary.maxLoad, o.0.cost) < (best.1, best.0.summary.maxLoad, best.0.cost) {
            best = o
        }
        return best
    }
}

/// Maps `0..<n` in parallel, keeping the results in order (each index is computed exactly once,
/// so the output does not depend on scheduling).
func parallelMap<T: Sendable>(_ n: Int, _ body: @Sendable (Int) -> T) -> [T] {
    let buffer = UnsafeMutablePointer<T?>.allocate(capacity: n)
    buffer.initialize(repeating: nil, count: n)
    defer { buffer.deinitialize(count: n); buffer.deallocate() }
    nonisolated(unsafe) let out = buffer
    DispatchQueue.concurrentPerform(iterations: n) { i in out[i] = body(i) }
    return (0..<n).map { buffer[$0]! }
}
