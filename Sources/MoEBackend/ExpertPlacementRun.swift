import Dispatch
import MoEPlacement

/// How the executor follows an expert placement: which worker thread runs which experts is data
/// (an `ExpertPlacement`, as `moec place` writes it), not code.
public struct PlacementExecution: Sendable {
    public enum Layout: Sendable {
        /// Per MoE layer (in graph order), the experts of each physical slot; slot s lives on
        /// worker s / slotsPerWorker, and each worker is one thread.
        case placement(ExpertPlacement)
        /// The naive static split: experts in order, E/W consecutive experts per worker, no
        /// replicas (the baseline a placement has to beat).
        case staticSplit(workers: Int)
    }
    public var layout: Layout
    /// LLEP-style dynamic mode: per batch, a worker whose tokens exceed `threshold ×` the mean
    /// spills the excess to the least-loaded workers (those holding the expert first). nil: static.
    public var dynamicThreshold: Double?

    public init(_ layout: Layout, dynamicThreshold: Double? = nil) {
        self.layout = layout
        self.dynamicThreshold = dynamicThreshold
    }

    public var workers: Int {
        switch layout {
        case .placement(let p): return p.workers
        case .staticSplit(let w): return w
        }
    }
}

/// One MoE layer's share of a `PlacementExecution`: turns per-expert row counts into groups with
/// workers, and runs each worker's groups on its own thread.
struct ExpertPlacementRun: Sendable {
    let layer: ExpertPlacement.Layer
    let dynamicThreshold: Double?

    /// `experts`: the block's expert count. The placement was checked against the graph when
    /// the model was loaded (`PlacementBinding`), the static split's divisibility too.
    init(_ p: PlacementExecution, layer index: Int, experts: Int) {
        switch p.layout {
        case .placement(let placement):
            precondition(index < placement.layers.count, "the placement has no layer \(index)")
            layer = placement.layers[index]
        case .staticSplit(let workers):
            // swiftlint:disable:next force_try
            layer = try! ExpertPlacement(workers: workers, experts: experts, phy2log: [Array(0..<experts)]).layers[0]
        }
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
