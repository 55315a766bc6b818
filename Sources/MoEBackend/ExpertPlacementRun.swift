import Dispatch
import MoEKernels
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
    /// LLEP moves a worker's excess only to workers holding a replica of the expert, never to
    /// one that would have to fetch its weights: so each worker needs only its own experts' weights.
    /// Set for MPI ranks, which hold nothing else.
    public var spillsToHoldersOnly = false

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

    /// The experts whose weights worker `w` needs in MoE layer `layer` (of `experts` experts):
    /// those of its slots. nil (all of them) under LLEP, which may hand any expert's tokens to
    /// any worker, unless it `spillsToHoldersOnly`.
    func experts(ofWorker w: Int, layer: Int, experts: Int) -> Set<Int>? {
        guard dynamicThreshold == nil || spillsToHoldersOnly else { return nil }
        let run = ExpertPlacementRun(self, layer: layer, experts: experts)
        return Set((0..<run.layer.slotCount).filter { run.layer.worker(ofSlot: $0) == w }.map { run.layer.phy2log[$0] })
    }
}

/// One MoE layer's share of a `PlacementExecution`: turns per-expert row counts into groups with
/// workers, and runs each worker's groups on its own thread.
struct ExpertPlacementRun: Sendable {
    let layer: ExpertPlacement.Layer
    let dynamicThreshold: Double?
    let spillsToHoldersOnly: Bool
    /// Per slot: its position among its expert's replicas, and how many replicas the expert has
    /// (so the static dispatch needs no per-batch arrays).
    let replicaIndex: [Int]
    let replicaCount: [Int]

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
        spillsToHoldersOnly = p.spillsToHoldersOnly
        var index = [Int](repeating: 0, count: layer.slotCount), count = [Int](repeating: 1, count: layer.slotCount)
        for slots in layer.log2phy {
            for (r, slot) in slots.enumerated() { index[slot] = r; count[slot] = slots.count }
        }
        replicaIndex = index
        replicaCount = count
    }

    var workers: Int { layer.workerCount }

    /// Groups: each replica slot's equal share of its expert's rows, or LLEP's assignments.
    func makeGroups(_ groups: GroupTable, starts: UnsafePointer<Int32>, experts: Int) {
        groups.removeAll()
        if let threshold = dynamicThreshold {
            // LLEP plans per batch with arrays (it allocates; the static dispatch below does not).
            // Fixed experts (past `experts`) have no rows here: the step adds their outputs.
            let counts = (0..<layer.log2phy.count).map { $0 < experts ? Int(starts[$0 + 1] - starts[$0]) : 0 }
            let fetches = spillsToHoldersOnly ? 0 : Int.max
            for a in layer.leastLoadedDispatch(tokenCounts: counts, threshold: threshold, maxFetchedExpertsPerWorker: fetches).assignments {
                groups.append(
                    expert: a.expert, rowBegin: Int(starts[a.expert]) + a.tokens.lowerBound,
                    rows: a.tokens.count, worker: a.worker)
            }
            return
        }
        // Each replica slot's equal share of its expert's rows, as `replicaRanges` (and
        // `TokenSplit.equal`) cut them, computed in place: no per-batch arrays.
        for slot in 0..<layer.slotCount {
            let e = layer.phy2log[slot]
            guard e < experts else { continue } // a fixed expert: no rows
            let rows = Int(starts[e + 1] - starts[e]), r = replicaIndex[slot], n = replicaCount[slot]
            let lo = r * rows / n, hi = (r + 1) * rows / n
            guard hi > lo else { continue }
            groups.append(expert: e, rowBegin: Int(starts[e]) + lo, rows: hi - lo, worker: layer.worker(ofSlot: slot))
        }
    }

    /// A job running every group of one worker per chunk index (a worker's groups in order, on
    /// one thread), made once per step so that a run allocates nothing: run it with
    /// `Parallel.forEachChunk(count: workers, threads: workers, job:)`.
    func job(_ groups: GroupTable, _ body: @escaping @Sendable (Int) -> Void) -> ChunkJob {
        ChunkJob { ws in
            for w in ws {
                for g in 0..<groups.count where groups.worker(g) == w { body(g) }
            }
        }
    }
}
