/// Load and traffic figures of a placement, all for one layer.
///
/// Load model (the same as EPLB's): the tokens of an expert are split evenly over its replicas, and
/// a worker's load is the sum of the tokens its slots receive.
///
/// Cross-node traffic model: tokens originate uniformly across nodes (each node sends `1/N` of every
/// expert's tokens), and a token is served on its own node whenever that node holds a replica of
/// its expert. So expert `e` sends `load_e · (N − nodes holding e) / N` tokens across nodes. (The
/// load model's even split and this locality preference are both idealisations; together they
/// price replicas spread over nodes as cheaper to reach, which they are.)
public enum PlacementMetrics {
    /// Per-worker load of a placement: slot `s` is on worker `s / (P / W)`. Each worker's slot loads
    /// are summed smallest first, so the result does not depend on the order of slots in a worker
    /// (relabelling workers or reordering slots never changes a load, not even by rounding).
    public static func workerLoads(phy2log: [Int], loads: [Double], workers: Int) -> [Double] {
        var replicas = Array(repeating: 0, count: loads.count)
        for e in phy2log { replicas[e] += 1 }
        let perWorker = phy2log.count / workers
        var out = Array(repeating: 0.0, count: workers)
        var parts = Array(repeating: 0.0, count: perWorker)
        for w in 0..<workers {
            for i in 0..<perWorker {
                let e = phy2log[w * perWorker + i]
                parts[i] = loads[e] / Double(replicas[e])
            }
            parts.sort()
            out[w] = parts.reduce(0, +)
        }
        return out
    }

    /// The naive static placement: expert `e` alone on worker `e·W/E` (contiguous blocks), no replicas.
    public static func staticWorkerLoads(loads: [Double], workers: Int) -> [Double] {
        var out = Array(repeating: 0.0, count: workers)
        for (e, n) in loads.enumerated() { out[e * workers / loads.count] += n }
        return out
    }

    /// `max / mean` of the worker loads; 1 (perfect) when nothing is loaded.
    public static func imbalance(_ workerLoads: [Double]) -> Double {
        let total = workerLoads.reduce(0, +)
        guard total > 0 else { return 1 }
        return workerLoads.max()! / (total / Double(workerLoads.count))
    }

    /// A lower bound on the largest worker load of any placement with `slots` slots on `workers`
    /// workers: `max(total / W, min over replica counts of max_e load_e / replicas_e)`.
    public static func lowerBound(loads: [Double], slots: Int, workers: Int) -> Double {
        let total = loads.reduce(0, +)
        return max(total / Double(workers), Replication.minimalLargestReplicaLoad(loads, slots: slots))
    }

    /// Expected tokens that cross nodes under the traffic model above; 0 with one node.
    public static func crossNodeTokens(phy2log: [Int], loads: [Double], nodes: Int) -> Double {
        guard nodes > 1 else { return 0 }
        let slotsPerNode = phy2log.count / nodes
        var held = Array(repeating: 0, count: loads.count) // nodes holding each expert
        var lastNode = Array(repeating: -1, count: loads.count) // slots ascend, so nodes do too
        for (s, e) in phy2log.enumerated() where lastNode[e] != s / slotsPerNode {
            lastNode[e] = s / slotsPerNode
            held[e] += 1
        }
        var cross = 0.0
        for (e, n) in loads.enumerated() { cross += n * Double(nodes - held[e]) / Double(nodes) }
        return cross
    }

    /// Cross-node tokens of the naive static placement (each expert on one worker, so one node).
    public static func staticCrossNodeTokens(loads: [Double], nodes: Int) -> Double {
        guard nodes > 1 else { return 0 }
        return loads.reduce(0, +) * Double(nodes - 1) / Double(nodes)
    }
}
