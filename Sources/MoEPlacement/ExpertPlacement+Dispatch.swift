/// Running a batch "by the plan": which replica (and so which worker) takes which of an expert's
/// tokens. Tokens of expert `e` in a batch are numbered `0..<counts[e]` (in the order the router
/// produced them); every function here hands out contiguous ranges of those numbers, deterministically.

/// Contiguous splits of `count` tokens.
public enum TokenSplit {
    /// `parts` ranges covering `0..<count` in order, sizes differing by at most one (larger last).
    public static func equal(_ count: Int, parts: Int) -> [Range<Int>] {
        precondition(parts > 0 && count >= 0)
        return (0..<parts).map { i in (i * count / parts)..<((i + 1) * count / parts) }
    }

    /// Ranges covering `0..<count` in order, sized in proportion to `weights` (non-negative): range
    /// `i` ends at `round(count · (w_0 + … + w_i) / Σw)`, so each size is within one token of its
    /// exact share. All-zero weights split equally.
    public static func proportional(_ count: Int, weights: [Double]) -> [Range<Int>] {
        precondition(!weights.isEmpty && count >= 0 && weights.allSatisfy { $0 >= 0 && $0.isFinite })
        let total = weights.reduce(0, +)
        guard total > 0 else { return equal(count, parts: weights.count) }
        var out: [Range<Int>] = []
        var start = 0, cumulative = 0.0
        for (i, w) in weights.enumerated() {
            cumulative += w
            let end = i == weights.count - 1 ? count : min(count, max(start, Int((Double(count) * cumulative / total).rounded())))
            out.append(start..<end)
            start = end
        }
        return out
    }
}

/// One piece of work: tokens `tokens` of expert `expert` run on `worker`.
public struct TokenAssignment: Sendable, Equatable {
    public var expert: Int
    public var tokens: Range<Int>
    public var worker: Int
    /// The worker's slot holding the expert, or nil when the worker must first fetch its weights.
    public var slot: Int?

    public init(expert: Int, tokens: Range<Int>, worker: Int, slot: Int?) {
        self.expert = expert
        self.tokens = tokens
        self.worker = worker
        self.slot = slot
    }
}

/// The result of `leastLoadedDispatch`.
public struct DynamicDispatch: Sendable, Equatable {
    /// Sorted by expert, then first token; the ranges of each expert cover `0..<counts[e]` exactly.
    public var assignments: [TokenAssignment]
    /// Tokens per worker after spilling.
    public var workerLoads: [Int]
    /// The per-worker token budget: `ceil(threshold · total / W)`.
    public var capacity: Int
    /// Tokens moved off their planned worker.
    public var spilledTokens: Int
    /// Distinct (worker, expert) pairs whose weights had to be fetched.
    public var fetchedWeights: Int
}

extension ExpertPlacement.Layer {
    /// Each slot's share of its expert's tokens: an equal contiguous split over the expert's
    /// replicas in ascending slot order. Indexed by slot; `counts[e]` is expert `e`'s token count.
    public func replicaRanges(tokenCounts counts: [Int]) -> [Range<Int>] {
        precondition(counts.count == log2phy.count, "one token count per expert")
        var out = Array(repeating: 0..<0, count: phy2log.count)
        for (e, slots) in log2phy.enumerated() {
            for (slot, range) in zip(slots, TokenSplit.equal(counts[e], parts: slots.count)) { out[slot] = range }
        }
        return out
    }

    /// The static dispatch (`replicaRanges`) with Least-Loaded Expert Parallelism on top: when a
    /// worker's tokens exceed `capacity = ceil(threshold · total / W)`, its excess moves to workers
    /// below capacity.
    ///
    /// 1. Overloaded workers are handled most loaded first (ties: lower index). Their pieces are
    ///    visited largest first, and tokens leave from the end of a piece's range.
    /// 2. A receiver is a worker below capacity: the least loaded one already holding the expert (no
    ///    weight transfer) if any, else the least loaded one that may still fetch weights
    ///    (`maxFetchedExpertsPerWorker` models its spare memory). Ties go to the lower index.
    /// 3. It takes `min(excess, its room, the piece)`; amounts below `minimumChunk` are not moved.
    public func leastLoadedDispatch(
        tokenCounts counts: [Int], threshold: Double = 1.1,
        maxFetchedExpertsPerWorker: Int = .max, minimumChunk: Int = 1
    ) -> DynamicDispatch {
        let workers = workerCount
        let ranges = replicaRanges(tokenCounts: counts)
        var pieces: [TokenAssignment] = []
        var load = Array(repeating: 0, count: workers)
        for (s, r) in ranges.enumerated() where !r.isEmpty {
            pieces.append(TokenAssignment(expert: phy2log[s], tokens: r, worker: worker(ofSlot: s), slot: s))
            load[worker(ofSlot: s)] += r.count
        }
        let total = counts.reduce(0, +)
        let capacity = max(1, Int((max(threshold, 1) * Double(total) / Double(workers)).rounded(.up)))
        var fetched = Array(repeating: [Int](), count: workers) // experts fetched by each worker
        var spilled = 0
        let overloaded = (0..<workers).filter { load[$0] > capacity }.map { Ranked(-Double(load[$0]), $0) }.sorted().map(\.index)
        for o in overloaded {
            let mine = pieces.indices.filter { pieces[$0].worker == o }
                .sorted { (-pieces[$0].tokens.count, pieces[$0].expert, $0) < (-pieces[$1].tokens.count, pieces[$1].expert, $1) }
            for p in mine {
                let e = pieces[p].expert
                while load[o] > capacity && !pieces[p].tokens.isEmpty {
                    var holder = -1, other = -1
                    for r in 0..<workers where r != o && load[r] < capacity {
                        let holds = log2phy[e].contains { worker(ofSlot: $0) == r } || fetched[r].contains(e)
                        if holds {
                            if holder < 0 || load[r] < load[holder] { holder = r }
                        } else if fetched[r].count < maxFetchedExpertsPerWorker {
                            if other < 0 || load[r] < load[other] { other = r }
                        }
                    }
                    let r = holder >= 0 ? holder : other
                    if r < 0 { break }
                    let amount = min(load[o] - capacity, capacity - load[r], pieces[p].tokens.count)
                    if amount < minimumChunk { break }
                    let end = pieces[p].tokens.upperBound
                    pieces[p].tokens = pieces[p].tokens.lowerBound..<end - amount
                    let slot = log2phy[e].first { worker(ofSlot: $0) == r }
                    if slot == nil && !fetched[r].contains(e) { fetched[r].append(e) }
                    pieces.append(TokenAssignment(expert: e, tokens: end - amount..<end, worker: r, slot: slot))
                    load[o] -= amount
                    load[r] += amount
                    spilled += amount
                }
            }
        }
        let assignments = pieces.filter { !$0.tokens.isEmpty }
            .sorted { ($0.expert, $0.tokens.lowerBound) < ($1.expert, $1.tokens.lowerBound) }
        return DynamicDispatch(
            assignments: assignments, workerLoads: load, capacity: capacity,
            spilledTokens: spilled, fetchedWeights: fetched.reduce(0) { $0 + $1.count })
    }
}
