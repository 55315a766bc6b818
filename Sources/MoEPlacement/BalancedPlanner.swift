/// moec's planner for one layer on one flat set of workers (a whole cluster, or one node of the
/// hierarchical policy): chooses replica counts and packs the replicas so that the most loaded
/// worker carries as little as possible, with every worker holding exactly `slots / workers` slots.
///
/// Algorithm:
/// 1. Replica counts from three divisor rules (`load / (replicas + α)` for α = 0, ½, 1; α = 0 is
///    EPLB's rule). Each is packed by longest-processing-time first (EPLB's balanced packing) and
///    then improved by pairwise-swap local search (`SlotPacking.improve`). The best is kept.
/// 2. Replica-count search from the best: move one replica from an expert that can spare it (the
///    smallest `load / (replicas − 1)` first) to an expert on the most loaded worker; the freed slot
///    takes the new replica, then swap local search runs again from that warm start. The first move
///    that lowers the maximum is kept; repeat until no move helps or the evaluation budget is spent.
/// Everything is deterministic: candidates are visited in index order and ties keep the earlier one.
struct BalancedPlanner {
    let loads: [Double]
    let slots: Int
    let workers: Int
    /// How many packings step 2 may evaluate.
    var evaluations: Int

    init(loads: [Double], slots: Int, workers: Int, evaluations: Int = 300) {
        precondition(slots >= loads.count && slots % workers == 0)
        self.loads = loads
        self.slots = slots
        self.workers = workers
        self.evaluations = evaluations
    }

    func plan() -> SlotPacking {
        var best: SlotPacking? = nil
        var tried: [[Int]] = []
        for alpha in [0.0, 0.5, 1.0] {
            let counts = Replication.divisor(loads, slots: slots, alpha: alpha)
            if tried.contains(counts) { continue }
            tried.append(counts)
            let items = SlotPacking.items(loads: loads, counts: counts)
            var p = SlotPacking.greedy(experts: items.experts, weights: items.weights, workers: workers)
            p.improve()
            if best == nil || p.maxLoad < best!.maxLoad { best = p }
        }
        return searchCounts(from: best!)
    }

    /// Step 2: replica-count local search, warm-started from `start`.
    func searchCounts(from start: SlotPacking) -> SlotPacking {
        var best = start
        guard slots > loads.count, workers > 1 else { return best }
        var counts = Array(repeating: 0, count: loads.count)
        for e in best.experts { counts[e] += 1 }
        var budget = evaluations
        while budget > 0 {
            var a = 0
            for w in 1..<workers where best.loads[w] > best.loads[a] { a = w }
            // Experts on the bottleneck worker, heaviest replica first.
            var receivers: [Int] = []
            let heaviestFirst = best.bins[a].map { Ranked(-best.weights[$0], best.experts[$0]) }.sorted()
            for r in heaviestFirst where !receivers.contains(r.index) { receivers.append(r.index) }
            // Experts that can spare a replica, cheapest first.
            let donors = (0..<loads.count).filter { counts[$0] > 1 }
                .map { Ranked(loads[$0] / Double(counts[$0] - 1), $0) }
                .sorted().prefix(6).map(\.index)
            var improved = false
            search: for y in receivers {
                for x in donors where x != y {
                    if budget == 0 { break search }
                    budget -= 1
                    let candidate = moveReplica(in: best, counts: counts, from: x, to: y)
                    if candidate.maxLoad < best.maxLoad * (1 - 1e-12) {
                        best = candidate
                        counts[x] -= 1
                        counts[y] += 1
                        improved = true
                        break search
                    }
                }
            }
            if !improved { break }
        }
        return best
    }

    /// `packing` with one replica of `x` (the one on the least loaded worker holding `x`) turned
    /// into a replica of `y`, weights recomputed, then improved by swap local search.
    func moveReplica(in packing: SlotPacking, counts: [Int], from x: Int, to y: Int) -> SlotPacking {
        var newCounts = counts
        newCounts[x] -= 1
        newCounts[y] += 1
        var holder = -1
        for (w, bin) in packing.bins.enumerated() where bin.contains(where: { packing.experts[$0] == x }) {
            if holder < 0 || packing.loads[w] < packing.loads[holder] { holder = w }
        }
        var experts: [Int] = [], weights: [Double] = [], bins: [[Int]] = []
        experts.reserveCapacity(slots)
        weights.reserveCapacity(slots)
        for (w, bin) in packing.bins.enumerated() {
            var list = bin.map { packing.experts[$0] }
            if w == holder { list[list.firstIndex(of: x)!] = y }
            bins.append(Array(experts.count..<experts.count + list.count))
            for e in list {
                experts.append(e)
                weights.append(loads[e] / Double(newCounts[e]))
            }
        }
        var p = SlotPacking(experts: experts, weights: weights, bins: bins)
        p.improve()
        return p
    }
}
