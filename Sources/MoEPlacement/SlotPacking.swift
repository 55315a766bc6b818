/// Replicas packed onto workers: `bins[w]` holds the item indices on worker `w`, every bin holds the
/// same number of items, and `loads[w]` is the sum of its items' weights. An item is one replica of
/// expert `experts[i]` carrying `weights[i]` tokens.
struct SlotPacking {
    let experts: [Int]
    let weights: [Double]
    var bins: [[Int]]
    var loads: [Double]

    init(experts: [Int], weights: [Double], bins: [[Int]]) {
        self.experts = experts
        self.weights = weights
        self.bins = bins
        self.loads = bins.map { $0.reduce(0.0) { $0 + weights[$1] } }
    }

    /// One item per replica: expert `e` with `counts[e]` replicas gives `counts[e]` items of weight
    /// `loads[e] / counts[e]`, in expert order.
    static func items(loads: [Double], counts: [Int]) -> (experts: [Int], weights: [Double]) {
        var experts: [Int] = [], weights: [Double] = []
        for (e, c) in counts.enumerated() {
            for _ in 0..<c {
                experts.append(e)
                weights.append(loads[e] / Double(c))
            }
        }
        return (experts, weights)
    }

    /// Longest-processing-time first with equal item counts (EPLB's `balancedPacking`).
    static func greedy(experts: [Int], weights: [Double], workers: Int) -> SlotPacking {
        let (pack, rank) = EPLB.balancedPacking(weights, packs: workers)
        let perWorker = weights.count / workers
        var bins = Array(repeating: Array(repeating: 0, count: perWorker), count: workers)
        for i in 0..<weights.count { bins[pack[i]][rank[i]] = i }
        return SlotPacking(experts: experts, weights: weights, bins: bins)
    }

    var maxLoad: Double { loads.max() ?? 0 }

    /// The logical expert of each physical slot: worker `w`'s slots are `w·K ..< (w+1)·K`, and within
    /// a worker the experts are listed in ascending order.
    var phy2log: [Int] {
        bins.flatMap { $0.map { experts[$0] }.sorted() }
    }

    /// Local search on the most loaded worker: swap one of its replicas with a lighter replica on
    /// another worker when that lowers the larger of the two loads below the current maximum.
    ///
    /// 1. Take the most loaded worker `a` (lowest index on ties).
    /// 2. For each other worker `b` (the `partnerLimit` least loaded when there are more) and each
    ///    item `i` on `a`, find by binary search the item `j` on `b` whose weight is closest to
    ///    `w_i − (L_a − L_b)/2`, the swap that evens the pair out best.
    /// 3. Apply the swap with the smallest resulting `max(L_a − d, L_b + d)` if it is below `L_a`;
    ///    otherwise stop: no single swap lowers the maximum.
    /// Every step makes the sorted load vector lexicographically smaller, so the search ends; it is
    /// also capped at `maxIterations`.
    mutating func improve(partnerLimit: Int = 256, maxIterations: Int? = nil) {
        let w = bins.count
        guard w > 1, (bins.first?.count ?? 0) > 0 else { return }
        let limit = maxIterations ?? 20 * weights.count + 100
        // Each bin's items sorted by weight ascending (ties by item index), for the binary search.
        var sorted = bins.map { bin in bin.sorted { (weights[$0], $0) < (weights[$1], $1) } }
        // Workers in ascending (load, index) order, kept sorted as loads change: the most loaded
        // worker and the least loaded partners are read off its ends.
        var order = (0..<w).map { Ranked(loads[$0], $0) }.sorted()
        func reposition(_ x: Int, from old: Double) {
            let i = Self.lowerBound(Ranked(old, x), in: order)
            order.remove(at: i)
            order.insert(Ranked(loads[x], x), at: Self.lowerBound(Ranked(loads[x], x), in: order))
        }
        var iteration = 0
        while iteration < limit {
            iteration += 1
            // The most loaded worker, lowest index on ties.
            var top = w - 1
            while top > 0 && order[top - 1].value == order[w - 1].value { top -= 1 }
            let a = order[top].index
            let la = loads[a]
            let tolerance = la * 1e-12
            let partnerCount = min(w, partnerLimit + 1)
            var best: (pairMax: Double, b: Int, ia: Int, jb: Int)? = nil
            for p in 0..<partnerCount {
                let b = order[p].index
                if b == a { continue }
                let lb = loads[b]
                let gap = la - lb
                if gap <= tolerance { continue }
                let sb = sorted[b]
                for (ia, i) in sorted[a].enumerated() {
                    let wi = weights[i]
                    let target = wi - gap / 2
                    // First index in sb with weight >= target; the best partner is there or just before.
                    var lo = 0, hi = sb.count
                    while lo < hi {
                        let mid = (lo + hi) / 2
                        if weights[sb[mid]] < target { lo = mid + 1 } else { hi = mid }
                    }
                    for jb in (lo - 1)...lo where jb >= 0 && jb < sb.count {
                        let d = wi - weights[sb[jb]]
                        if d <= 0 || d >= gap { continue }
                        let pm = max(la - d, lb + d)
                        if best == nil || pm < best!.pairMax {
                            best = (pm, b, ia, jb)
                        }
                    }
                }
            }
            guard let s = best, s.pairMax < la - tolerance else { return }
            let i = sorted[a][s.ia], j = sorted[s.b][s.jb]
            let d = weights[i] - weights[j]
            let oldA = loads[a], oldB = loads[s.b]
            loads[a] -= d
            loads[s.b] += d
            reposition(a, from: oldA)
            reposition(s.b, from: oldB)
            sorted[a].remove(at: s.ia)
            sorted[s.b].remove(at: s.jb)
            Self.insert(j, into: &sorted[a], weights)
            Self.insert(i, into: &sorted[s.b], weights)
            bins[a][bins[a].firstIndex(of: i)!] = j
            bins[s.b][bins[s.b].firstIndex(of: j)!] = i
        }
    }

    private static func lowerBound(_ x: Ranked, in list: [Ranked]) -> Int {
        var lo = 0, hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func insert(_ item: Int, into list: inout [Int], _ weights: [Double]) {
        var lo = 0, hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if (weights[list[mid]], list[mid]) < (weights[item], item) { lo = mid + 1 } else { hi = mid }
        }
        list.insert(item, at: lo)
    }
}
