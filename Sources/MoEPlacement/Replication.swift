/// How many physical slots each expert gets. Every expert gets at least one; the rest are handed out
/// by a divisor rule. All rules are deterministic (ties go to the lowest expert index).
enum Replication {
    /// Divisor rule with offset `alpha`: give each extra slot to the expert with the largest
    /// `load / (replicas + alpha)`. `alpha = 0` is EPLB's rule (largest load per replica now), which
    /// minimises the largest load per replica; `alpha = 1` looks at the load per replica after the
    /// slot is added, which spreads slots to mid-sized experts and packs better.
    static func divisor(_ loads: [Double], slots: Int, alpha: Double) -> [Int] {
        let e = loads.count
        precondition(slots >= e)
        var count = Array(repeating: 1, count: e)
        if slots == e { return count }
        var heap = MinHeap((0..<e).map { Ranked(-loads[$0] / (1 + alpha), $0) })
        for _ in e..<slots {
            let x = heap.top!.index
            count[x] += 1
            heap.replaceTop(Ranked(-loads[x] / (Double(count[x]) + alpha), x))
        }
        return count
    }

    /// The smallest achievable value of `max_e load_e / replicas_e` with `Σ replicas = slots` and
    /// every expert at least once; EPLB's greedy rule reaches it.
    static func minimalLargestReplicaLoad(_ loads: [Double], slots: Int) -> Double {
        let r = divisor(loads, slots: slots, alpha: 0)
        return zip(loads, r).reduce(0.0) { max($0, $1.0 / Double($1.1)) }
    }

    /// Removes the replicas that change the largest load per replica least, or adds by EPLB's rule,
    /// until the counts sum to `slots`. Used to adapt another allocation (a previous plan's) to `slots`.
    static func adjust(_ counts: [Int], loads: [Double], slots: Int) -> [Int] {
        var r = counts.map { max(1, $0) }
        var total = r.reduce(0, +)
        while total < slots {
            var best = 0
            for x in 1..<r.count where loads[x] / Double(r[x]) > loads[best] / Double(r[best]) { best = x }
            r[best] += 1
            total += 1
        }
        while total > slots {
            var best = -1
            for x in 0..<r.count where r[x] > 1 {
                if best < 0 || loads[x] / Double(r[x] - 1) < loads[best] / Double(r[best] - 1) { best = x }
            }
            r[best] -= 1
            total -= 1
        }
        return r
    }
}
