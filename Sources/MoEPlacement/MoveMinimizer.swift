/// Keeps a new placement close to a previous one, so re-planning copies few expert weights.
///
/// A *move* is one expert's weights copied onto a worker: for each worker, the distinct experts it
/// holds in the new placement but did not hold in the previous one. (An expert that only changes
/// slot within its worker is a local copy and costs nothing.)
///
/// Algorithm (each step leaves worker loads and cross-node traffic unchanged or within the caps):
/// 1. `relabel`: workers are interchangeable, so renumber the new placement's nodes (as wholes), then
///    the workers within each node, to overlap the previous placement most (two assignment problems).
/// 2. `adapt`: alternatively start from the previous placement itself and change replica counts to
///    the new ones (surplus replicas leave the most loaded workers; new replicas, heaviest first, go
///    to the least loaded worker with a free slot); then `repair` it down to the load cap: while a
///    worker is over the cap, apply the swap with the most loaded worker that keeps the partner
///    within the cap and adds the fewest moves (ties: the larger load reduction).
/// 3. `reduceMoves`: swap pairs of slots when that saves moves and keeps both workers at or below
///    the load cap and the cross-node tokens at or below the traffic cap.
/// 4. `alignSlots`: within each worker, keep every expert that stays in the slot it had.
enum MoveMinimizer {
    /// Moved expert weights per worker (see the type's doc comment).
    static func moves(_ new: [Int], newPerWorker: Int, previous: [Int], previousPerWorker: Int, workers: Int) -> Int {
        var total = 0
        for w in 0..<workers {
            let had = Set(previous[w * previousPerWorker..<(w + 1) * previousPerWorker])
            total += Set(new[w * newPerWorker..<(w + 1) * newPerWorker]).subtracting(had).count
        }
        return total
    }

    /// Step 1.
    static func relabel(
        _ new: [Int], newPerWorker k: Int, previous: [Int], previousPerWorker kp: Int,
        workers: Int, nodes: Int, experts: Int
    ) -> [Int] {
        let perNode = workers / nodes
        func holders(_ map: [Int], _ per: Int) -> [[Int]] {
            var h = Array(repeating: [Int](), count: experts)
            for (s, x) in map.enumerated() where h[x].last != s / per { h[x].append(s / per) }
            return h
        }
        let newHolders = holders(new, k), oldHolders = holders(previous, kp)
        // Worker overlap: distinct experts in common.
        var overlap = Array(repeating: Array(repeating: 0.0, count: workers), count: workers)
        for x in 0..<experts { for a in newHolders[x] { for b in oldHolders[x] { overlap[a][b] += 1 } } }
        var nodeOf = Array(0..<nodes)
        if nodes > 1 {
            var nodeScore = Array(repeating: Array(repeating: 0.0, count: nodes), count: nodes)
            for a in 0..<workers { for b in 0..<workers { nodeScore[a / perNode][b / perNode] += overlap[a][b] } }
            nodeOf = Hungarian.maximise(nodeScore)
        }
        var target = Array(repeating: 0, count: workers) // new worker → worker number it takes
        for n in 0..<nodes {
            let m = nodeOf[n]
            let score = (0..<perNode).map { i in (0..<perNode).map { j in overlap[n * perNode + i][m * perNode + j] } }
            let col = Hungarian.maximise(score)
            for i in 0..<perNode { target[n * perNode + i] = m * perNode + col[i] }
        }
        var out = Array(repeating: 0, count: new.count)
        for w in 0..<workers {
            for i in 0..<k { out[target[w] * k + i] = new[w * k + i] }
        }
        return out
    }

    /// Step 2: the previous placement with replica counts changed to `counts` (not yet balanced).
    static func adapt(previous: [Int], counts: [Int], loads: [Double], workers: Int) -> [Int] {
        let k = previous.count / workers
        var have = Array(repeating: 0, count: counts.count)
        for x in previous { have[x] += 1 }
        let weight = (0..<counts.count).map { loads[$0] / Double(max(counts[$0], 1)) }
        var lists = (0..<workers).map { Array(previous[$0 * k..<($0 + 1) * k]) }
        var load = lists.map { $0.reduce(0.0) { $0 + weight[$1] } }
        // Free surplus replicas, from the most loaded workers first.
        for x in 0..<counts.count where have[x] > counts[x] {
            var surplus = have[x] - counts[x]
            let order = (0..<workers).filter { lists[$0].contains(x) }.map { Ranked(-load[$0], $0) }.sorted()
            for r in order where surplus > 0 {
                let w = r.index
                while surplus > 0, let i = lists[w].firstIndex(of: x) {
                    lists[w][i] = -1
                    load[w] -= weight[x]
                    surplus -= 1
                }
            }
        }
        // Add missing replicas, heaviest first, to the least loaded worker with a free slot.
        var missing: [Int] = []
        for x in 0..<counts.count where counts[x] > have[x] { missing += Array(repeating: x, count: counts[x] - have[x]) }
        missing.sort { (weight[$0], -$0) > (weight[$1], -$1) }
        for x in missing {
            var best = -1
            for w in 0..<workers where lists[w].contains(-1) {
                if best < 0 || load[w] < load[best] { best = w }
            }
            lists[best][lists[best].firstIndex(of: -1)!] = x
            load[best] += weight[x]
        }
        return lists.flatMap { $0 }
    }

    /// Step 2, balancing: brings every worker to at most `cap` with swaps that add as few moves as
    /// possible. Returns nil when no swap can lower an over-cap worker without pushing its partner over.
    static func repair(
        _ start: [Int], previous: [Int], previousPerWorker kp: Int, loads: [Double],
        workers: Int, cap: Double
    ) -> [Int]? {
        var map = start
        let e = loads.count, k = map.count / workers
        var replicas = Array(repeating: 0, count: e)
        for x in map { replicas[x] += 1 }
        let weight = (0..<e).map { loads[$0] / Double(max(replicas[$0], 1)) }
        var had = Array(repeating: false, count: workers * e)
        for (s, x) in previous.enumerated() { had[(s / kp) * e + x] = true }
        var count = Array(repeating: 0, count: workers * e)
        var load = Array(repeating: 0.0, count: workers)
        for (s, x) in map.enumerated() {
            count[(s / k) * e + x] += 1
            load[s / k] += weight[x]
        }
        func arrival(_ w: Int, _ x: Int) -> Int { count[w * e + x] == 0 && !had[w * e + x] ? 1 : 0 }
        func departure(_ w: Int, _ x: Int) -> Int { count[w * e + x] == 1 && !had[w * e + x] ? 1 : 0 }
        for _ in 0..<4 * map.count {
            var a = 0
            for w in 1..<workers where load[w] > load[a] { a = w }
            if load[a] <= cap { return map }
            var best: (moves: Int, excess: Double, s: Int, t: Int)? = nil
            for s in a * k..<(a + 1) * k {
                let x = map[s]
                for t in 0..<map.count where t / k != a {
                    let y = map[t], b = t / k
                    let d = weight[x] - weight[y]
                    if d <= 0 || load[b] + d > cap { continue }
                    let moves = arrival(a, y) - departure(a, x) + arrival(b, x) - departure(b, y)
                    let excess = max(load[a] - d - cap, 0)
                    if best == nil || (moves, excess) < (best!.moves, best!.excess) { best = (moves, excess, s, t) }
                }
            }
            guard let swap = best else { return nil }
            let x = map[swap.s], y = map[swap.t], b = swap.t / k
            map[swap.s] = y
            map[swap.t] = x
            count[a * e + x] -= 1; count[a * e + y] += 1
            count[b * e + y] -= 1; count[b * e + x] += 1
            load[a] += weight[y] - weight[x]
            load[b] += weight[x] - weight[y]
        }
        return nil
    }

    /// Step 3.
    static func reduceMoves(
        _ map: inout [Int], previous: [Int], previousPerWorker kp: Int, loads: [Double],
        workers: Int, nodes: Int, maxLoad: Double, maxCross: Double
    ) {
        let e = loads.count, k = map.count / workers
        let perNode = map.count / nodes
        var replicas = Array(repeating: 0, count: e)
        for x in map { replicas[x] += 1 }
        let weight = (0..<e).map { loads[$0] / Double(max(replicas[$0], 1)) }
        var had = Array(repeating: false, count: workers * e) // had[w * e + x]
        var prevHolders = Array(repeating: [Int](), count: e)
        for (s, x) in previous.enumerated() {
            let w = s / kp
            if !had[w * e + x] { had[w * e + x] = true; prevHolders[x].append(w) }
        }
        var count = Array(repeating: 0, count: workers * e) // copies of x on worker w
        var held = Array(repeating: 0, count: e * nodes) // replicas of x on node n
        var load = Array(repeating: 0.0, count: workers)
        for (s, x) in map.enumerated() {
            count[(s / k) * e + x] += 1
            held[x * nodes + s / perNode] += 1
            load[s / k] += weight[x]
        }
        var cross = PlacementMetrics.crossNodeTokens(phy2log: map, loads: loads, nodes: nodes)
        let n = Double(nodes)
        var changed = true
        var rounds = 0
        while changed && rounds < 4 * map.count {
            changed = false
            rounds += 1
            for s in 0..<map.count {
                let x = map[s], a = s / k
                // Only a replica that is the worker's sole copy of a newly brought expert can save a move.
                guard !had[a * e + x], count[a * e + x] == 1 else { continue }
                var best: (saving: Int, t: Int, crossDelta: Double)? = nil
                for b in prevHolders[x] where b != a && count[b * e + x] == 0 {
                    for t in b * k..<(b + 1) * k {
                        let y = map[t]
                        if y == x { continue }
                        var saving = 1 // x leaves a
                        if count[a * e + y] == 0 && !had[a * e + y] { saving -= 1 } // y new on a
                        if count[b * e + y] == 1 && !had[b * e + y] { saving += 1 } // y leaves b
                        if saving <= 0 { continue }
                        if load[a] - weight[x] + weight[y] > maxLoad || load[b] - weight[y] + weight[x] > maxLoad { continue }
                        var crossDelta = 0.0
                        let na = a * k / (perNode), nb = b * k / (perNode)
                        if nodes > 1 && na != nb {
                            if held[x * nodes + na] == 1 { crossDelta += loads[x] / n }
                            if held[x * nodes + nb] == 0 { crossDelta -= loads[x] / n }
                            if held[y * nodes + nb] == 1 { crossDelta += loads[y] / n }
                            if held[y * nodes + na] == 0 { crossDelta -= loads[y] / n }
                            if cross + crossDelta > maxCross { continue }
                        }
                        if best == nil || saving > best!.saving { best = (saving, t, crossDelta) }
                    }
                }
                guard let swap = best else { continue }
                let t = swap.t, y = map[t], b = t / k
                let na = s / perNode, nb = t / perNode
                map[s] = y
                map[t] = x
                count[a * e + x] -= 1; count[a * e + y] += 1
                count[b * e + y] -= 1; count[b * e + x] += 1
                held[x * nodes + na] -= 1; held[x * nodes + nb] += 1
                held[y * nodes + nb] -= 1; held[y * nodes + na] += 1
                load[a] += weight[y] - weight[x]
                load[b] += weight[x] - weight[y]
                cross += swap.crossDelta
                changed = true
            }
        }
    }

    /// Step 4: within each worker, experts that were already in a slot stay in it; the others fill
    /// the remaining slots in ascending order.
    static func alignSlots(_ map: [Int], previous: [Int], previousPerWorker kp: Int, workers: Int) -> [Int] {
        let k = map.count / workers
        var out = map
        for w in 0..<workers {
            var rest = Array(map[w * k..<(w + 1) * k]).sorted()
            var row = Array(repeating: -1, count: k)
            for i in 0..<min(k, kp) {
                let x = previous[w * kp + i]
                if let j = rest.firstIndex(of: x) { row[i] = x; rest.remove(at: j) }
            }
            var next = 0
            for i in 0..<k where row[i] < 0 { row[i] = rest[next]; next += 1 }
            out.replaceSubrange(w * k..<(w + 1) * k, with: row)
        }
        return out
    }
}
