/// DeepSeek's Expert Parallelism Load Balancer (github.com/deepseek-ai/EPLB, `eplb.py`), ported to
/// Swift step for step so moec can compare itself with it on the same input. It works on one layer
/// at a time (the original works on a batch of layers with the same steps).
///
/// Algorithm (`rebalance`):
/// 1. If `groups % nodes == 0`, use the hierarchical policy; otherwise the global policy, which is
///    the hierarchical one with one group and one node.
/// 2. Hierarchical policy:
///    a. Sum the loads of each expert group (groups are contiguous runs of `E / groups` experts) and
///       pack the groups onto nodes with `balancedPacking` (each node gets `groups / nodes` groups).
///    b. Renumber experts so each node's experts are contiguous ("meta-logical" experts).
///    c. Within each node, `replicate` the node's experts into the node's `P / nodes` slots.
///    d. Pack each node's replicas (load = expert load / replica count) onto the node's workers
///       with `balancedPacking`; a replica's slot is `worker · P/W + rank within the worker`.
/// 3. `replicate`: start with one replica per expert, then give each extra slot, one at a time, to the
///    expert with the largest load per replica.
/// 4. `balancedPacking`: visit items heaviest first and put each into the lightest pack that still has
///    room; every pack ends with the same number of items.
///
/// Ties: the original sorts with `torch.sort` and takes the first minimum / maximum; here sorting is
/// stable and ties go to the lowest index, which is one of the orders the original can produce.
public enum EPLB {
    /// Packs `weights.count` items into `packs` packs of equal item count, as balanced as the greedy
    /// rule gets. Returns each item's pack and its rank (position) within the pack.
    public static func balancedPacking(_ weights: [Double], packs: Int) -> (pack: [Int], rank: [Int]) {
        let n = weights.count
        precondition(packs > 0 && n % packs == 0, "item count must be a multiple of the pack count")
        let perPack = n / packs
        if perPack == 1 { return (Array(0..<n), Array(repeating: 0, count: n)) }
        let order = (0..<n).sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
        var pack = Array(repeating: -1, count: n), rank = Array(repeating: -1, count: n)
        var packWeight = Array(repeating: 0.0, count: packs), packItems = Array(repeating: 0, count: packs)
        // The lightest non-full pack, ties to the lowest index: a heap of (weight, pack).
        var open = MinHeap((0..<packs).map { Ranked(0, $0) })
        for item in order {
            let p = open.top!.index
            pack[item] = p
            rank[item] = packItems[p]
            packWeight[p] += weights[item]
            packItems[p] += 1
            if packItems[p] == perPack { open.pop() } else { open.replaceTop(Ranked(packWeight[p], p)) }
        }
        return (pack, rank)
    }

    /// Replicates `weights.count` logical experts into `physical` slots, giving each extra slot to
    /// the expert with the largest load per replica. Returns, per physical slot, its logical expert
    /// and replica rank (slots `0..<E` are the experts themselves), and each expert's replica count.
    public static func replicate(_ weights: [Double], physical: Int) -> (phy2log: [Int], rank: [Int], count: [Int]) {
        let e = weights.count
        precondition(physical >= e)
        var phy2log = Array(0..<e), rank = Array(repeating: 0, count: e)
        var count = Array(repeating: 1, count: e)
        phy2log.reserveCapacity(physical)
        rank.reserveCapacity(physical)
        // The largest load per replica, ties to the lowest index: a heap of (−load/count, expert).
        var heap = MinHeap((0..<e).map { Ranked(-weights[$0], $0) })
        for _ in e..<physical {
            let x = heap.top!.index
            phy2log.append(x)
            rank.append(count[x])
            count[x] += 1
            heap.replaceTop(Ranked(-(weights[x] / Double(count[x])), x))
        }
        return (phy2log, rank, count)
    }

    /// The hierarchical policy (step 2 above). Requires `E % groups == 0`, `groups % nodes == 0`,
    /// `workers % nodes == 0` and `physical % workers == 0`.
    public static func rebalanceHierarchical(_ weights: [Double], physical: Int, groups: Int, nodes: Int, workers: Int)
        -> (phy2log: [Int], rank: [Int], count: [Int])
    {
        let e = weights.count
        precondition(e % groups == 0 && groups % nodes == 0 && workers % nodes == 0 && physical % workers == 0)
        let groupSize = e / groups, groupsPerNode = groups / nodes
        let slotsPerWorker = physical / workers
        let expertsPerNode = e / nodes, slotsPerNode = physical / nodes, workersPerNode = workers / nodes

        // a. Pack groups onto nodes.
        let groupLoad = (0..<groups).map { g in (0..<groupSize).reduce(0.0) { $0 + weights[g * groupSize + $1] } }
        let (groupPack, groupRank) = balancedPacking(groupLoad, packs: nodes)
        // b. Meta-logical numbering: node-contiguous; mlog2log maps it back to logical experts.
        var mlog2log = Array(repeating: 0, count: e)
        for x in 0..<e {
            let g = x / groupSize
            let m = (groupPack[g] * groupsPerNode + groupRank[g]) * groupSize + x % groupSize
            mlog2log[m] = x
        }
        var phy2log = Array(repeating: 0, count: physical), rank = Array(repeating: 0, count: physical)
        var count = Array(repeating: 0, count: e)
        for node in 0..<nodes {
            // c. Replicate the node's experts within the node.
            let nodeLoad = (0..<expertsPerNode).map { weights[mlog2log[node * expertsPerNode + $0]] }
            let (phy2mlog, phyRank, mlogCount) = replicate(nodeLoad, physical: slotsPerNode)
            // d. Pack the node's replicas onto its workers.
            let replicaLoad = phy2mlog.map { nodeLoad[$0] / Double(mlogCount[$0]) }
            let (pack, packRank) = balancedPacking(replicaLoad, packs: workersPerNode)
            for j in 0..<slotsPerNode {
                let slot = node * slotsPerNode + pack[j] * slotsPerWorker + packRank[j]
                phy2log[slot] = mlog2log[node * expertsPerNode + phy2mlog[j]]
                rank[slot] = phyRank[j]
            }
            for m in 0..<expertsPerNode { count[mlog2log[node * expertsPerNode + m]] = mlogCount[m] }
        }
        return (phy2log, rank, count)
    }

    /// EPLB's entry point for one layer: hierarchical when `groups % nodes == 0`, else global.
    /// Returns the logical expert of each physical slot (slot `s` is on worker `s / (physical / workers)`).
    public static func rebalance(_ weights: [Double], physical: Int, groups: Int, nodes: Int, workers: Int) -> [Int] {
        if groups % nodes == 0 {
            return rebalanceHierarchical(weights, physical: physical, groups: groups, nodes: nodes, workers: workers).phy2log
        }
        return rebalanceHierarchical(weights, physical: physical, groups: 1, nodes: 1, workers: workers).phy2log
    }

    /// Whether `rebalance` takes the hierarchical path.
    public static func usesHierarchy(groups: Int, nodes: Int) -> Bool { groups % nodes == 0 && nodes > 1 }
}
