/// Lowers cross-node traffic of a flat (global) placement without raising its largest worker load.
///
/// Under the traffic model of `PlacementMetrics`, expert `e` costs `load_e · (N − nodes holding e) / N`
/// cross-node tokens, so a second replica on a node that already holds `e` is wasted for traffic.
/// Algorithm:
/// 1. For each slot holding a replica of `e` on a node with another replica of `e`, consider every
///    slot on a node without `e`, holding some expert `f`.
/// 2. Swapping the two moves `e` to a new node (saves `load_e / N`), may take `f` off its node (costs
///    `load_f / N` if that was `f`'s only replica there) and may bring `f` to a new node (saves `load_f / N`).
/// 3. Apply the best saving swap whose two worker loads stay at or below the current maximum; sweep
///    until a sweep changes nothing or the work budget is spent.
struct NodeSpreading {
    static func apply(_ phy2log: inout [Int], loads: [Double], workers: Int, nodes: Int, budget: Int = 4_000_000) {
        guard nodes > 1 else { return }
        let e = loads.count, p = phy2log.count
        let perWorker = p / workers, perNode = p / nodes
        var replicas = Array(repeating: 0, count: e)
        var held = Array(repeating: 0, count: e * nodes) // held[x * nodes + n]: replicas of x on node n
        for (s, x) in phy2log.enumerated() {
            replicas[x] += 1
            held[x * nodes + s / perNode] += 1
        }
        let weight = (0..<e).map { loads[$0] / Double(replicas[$0]) }
        var workerLoad = PlacementMetrics.workerLoads(phy2log: phy2log, loads: loads, workers: workers)
        let limit = workerLoad.max() ?? 0
        let n = Double(nodes)
        var work = 0
        var changed = true
        while changed && work < budget {
            changed = false
            for s in 0..<p {
                let x = phy2log[s], na = s / perNode, a = s / perWorker
                guard held[x * nodes + na] >= 2, loads[x] > 0 else { continue }
                var best: (saving: Double, t: Int)? = nil
                for t in 0..<p {
                    let nb = t / perNode
                    if nb == na || held[x * nodes + nb] > 0 { continue }
                    let f = phy2log[t], b = t / perWorker
                    var saving = loads[x] / n
                    if held[f * nodes + nb] == 1 { saving -= loads[f] / n }
                    if held[f * nodes + na] == 0 { saving += loads[f] / n }
                    if saving <= 1e-12 * loads[x] { continue }
                    if workerLoad[a] - weight[x] + weight[f] > limit || workerLoad[b] - weight[f] + weight[x] > limit { continue }
                    if best == nil || saving > best!.saving { best = (saving, t) }
                }
                work += p
                guard let swap = best else { continue }
                let t = swap.t, f = phy2log[t], nb = t / perNode, b = t / perWorker
                phy2log[s] = f
                phy2log[t] = x
                held[x * nodes + na] -= 1
                held[x * nodes + nb] += 1
                held[f * nodes + nb] -= 1
                held[f * nodes + na] += 1
                workerLoad[a] += weight[f] - weight[x]
                workerLoad[b] += weight[x] - weight[f]
                changed = true
                if work >= budget { break }
            }
        }
        // Keep each worker's slots in ascending expert order, as the planners write them.
        for w in 0..<workers { phy2log[w * perWorker..<(w + 1) * perWorker].sort() }
    }
}
