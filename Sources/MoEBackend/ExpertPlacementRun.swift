import Dispatch
import MoEPlacement

/// How the executor follows an expert placement: which worker thread runs which experts is data
/// (an `ExpertPlacement`, as `moec place` writes it), not code.
public struct PlacementExecution: Sendable {
    /// Per MoE layer (in graph order), the experts of each physical slot; slot s lives on worker
    /// s / slotsPerWorker, and each worker is one thread.
    public var placement: ExpertPlacement
    /// LLEP-style dynamic mode: per batch, a worker whose tokens exceed `threshold ×` the mean
    /// spills the excess to the least-loaded workers (those holding the expert first). nil: static.
    public var dynamicThreshold: Double?

    public init(placement: ExpertPlacement, dynamicThreshold: Double? = nil) {
        self.placement = placement
        self.dynamicThreshold = dynamicThreshold
    }

    /// The naive static split: experts in order, E/W consecutive experts per worker, no replicas
    /// (the baseline a placement has to beat).
    public static func staticSplit(experts: Int, workers: Int, layers: Int) throws -> PlacementExecution {
        let p = try ExpertPlacement(workers: workers, experts: experts,
                                    phy2log: Array(repeating: Array(0..<experts), count: layers))
        return PlacementExecution(placement: p)
    }
}

/// One MoE layer's share of a `PlacementExecution`: turns per-expert row counts into groups with
/// workers, and runs each worker's groups on its own thread.
struct ExpertPlacementRun: Sendable {
    let layer: ExpertPlacement.Layer
    let dynamicThreshold: Double?

    init(_ p: PlacementExecution, layer index: Int) {
        precondition(index < p.placement.layers.count, "the placement has no layer \(index)")
        layer = p.placement.layers[index]
        dynamicThreshold = p.dynamicThreshold
    }

    var workers: Int { layer.workerCount }

    /// Groups: each replica slot's equal share of its expert's rows, or LLEP's assignments.
    func makeGroups(_ groups: GroupTable, starts: UnsafePointer<Int32>, experts: Int) {
        groups.removeAll()
        let counts = (0..<experts).map { Int(starts[$0 + 1] - starts[$0]) }
        if let threshold = dynamicThreshold {
            for a in layer.leastLoadedDispatch(tokenCounts: counts, threshold: threshold).assignments {
                groups.append(expert: a.expert, rowBegin: Int(starts[a.expert]) + a.tokens.lowerBound,
                              rows: a.tokens.count, worker: a.worker)
            }
            return
        }
        for (slot, r) in layer.replicaRanges(tokenCounts: counts).enumerated() where !r.isEmpty {
            let e = layer.phy2log[slot]
            groups.append(expert: e, rowBegin: Int(starts[e]) + r.lowerBound, rows: r.count, worker: layer.worker(ofSlot: slot))
        }
    }

    /// Runs `body(group)` for every group, each on its worker's thread.
    func run(_ groups: GroupTable, _ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for g in 0..<groups.count where groups.worker(g) == w { body(g) }
        }
    }
}
