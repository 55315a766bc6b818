import Dispatch
import Foundation
import MoEIR
import MoEKernels

/// How an executable runs: threads and the matrix-multiply backend.
public struct ExecutionOptions: Sendable {
    public var threads: Int
    public var backend: MatMulBackend
    /// Run the MoE experts by an expert placement (native backend only): one thread per worker.
    public var placement: PlacementExecution?
    /// Under `mpirun`, with a placement: this process is worker `world.rank` of the placement and
    /// runs only that worker's experts; the ranks exchange the expert rows (`ShardedExperts` when
    /// each runs its share of the tokens, `DistributedExperts` when each runs them all).
    public var world: MPIWorld?

    public init(
        threads: Int = ExecutionOptions.defaultThreads, backend: MatMulBackend = .automatic,
        placement: PlacementExecution? = nil
    ) {
        self.threads = max(1, threads)
        self.backend = backend
        self.placement = placement
    }

    public static var defaultThreads: Int { ProcessInfo.processInfo.activeProcessorCount }
}

/// A graph ready to run: weights loaded (and packed for the native kernels) once, and for each
/// token count a flat schedule of shape-specialised closures over one preallocated arena.
/// Running the same token count again allocates nothing but the returned output arrays.
///
/// `run` may be called from several threads at once: each run checks out a schedule no other
/// run is using, and another is built for a token count only when all of its are busy.
public final class Executable: @unchecked Sendable {
    public let graph: Graph
    public let options: ExecutionOptions
    let weights: [AlignedBuffer?]
    /// Per weight-table entry: one matrix (2-D weights) or one per expert (3-D weights).
    /// Empty for weights that only the native MoE kernel reads (it has `expertMatrices`).
    let matrices: [[LinearWeight]]
    /// Native backend: per `moe_experts` node index, its experts' weights packed for the fused
    /// kernel (gate and up in one matrix when the graph asks for `fuse_gate_up`).
    let expertMatrices: [Int: ExpertMatrices]
    /// Per token count, every schedule built and whether a run has it checked out; `[0]` is the
    /// one `schedule(tokens:)` returns and the one serial runs use. Guarded by `lock`.
    private var pools: [Int: (schedules: [Schedule], busy: [Bool])] = [:]
    /// Under `mpirun`: where this rank's time went in the MoE blocks of the last run.
    public let distributedTimes: DistributedTimes?
    /// Under `mpirun` with a placement: whether each rank runs the graph on its share of the
    /// tokens (`DistributedExperts.share`) and exchanges only (token, expert) rows with the
    /// others (`ShardedExperts`); otherwise every rank runs every token (`DistributedExperts`).
    public let shardsTokens: Bool
    /// Under `mpirun` with a placement, when the ranks do not shard the tokens: why.
    public let allTokensReason: String?
    private let lock = NSLock()

    /// - Parameters:
    ///   - weights: one f32 buffer per weight-table entry, in the declared shape.
    ///   - consumeWeights: the caller hands `weights` over and will not read them again, so the
    ///     pages of weights kept only packed are given back as packing proceeds (peak memory near
    ///     one copy of the weights instead of two), and bf16 weights are rounded in place.
    ///
    /// A weight whose format is not f32 (`WeightInfo.format`: bf16, f16, int8, int4) is packed
    /// into panels of that format when only the packed experts kernel reads it, or (native
    /// backend) when every reader multiplies by it (`matricesPackedInFormat`: a shared expert's
    /// or a dense layer's matrices); any other reader (BLAS, an element-wise op) reads f32 values
    /// rounded to the format here, so every path computes with the same weights.
    ///
    /// `stored`: the weights `weights` holds as a GGUF file stores them
    /// (`WeightBinding.load(stored:)`, `Executable.weightsReadAsStored`), which the packed experts
    /// kernel repacks exactly; a GGUF-typed weight not in it holds its dequantized values.
    /// `exact`: weights whose values are already their format's (a GPTQ or AWQ checkpoint's int4
    /// linears, `WeightBinding.int4Rows`): read as floats, they are not rounded again.
    public init(
        graph: Graph, weights: [AlignedBuffer], options: ExecutionOptions = ExecutionOptions(),
        consumeWeights: Bool = false, stored: Set<Int> = [], exact: Set<Int> = [], fill: ((Int, Range<Int>) -> Void)? = nil
    ) {
        precondition(weights.count == graph.weights.count)
        self.graph = graph
        self.options = options
        distributedTimes = options.world.map(DistributedTimes.init)
        if options.world != nil, options.placement != nil, options.backend.isNative {
            let reason = TokenSharding.obstacle(graph)
            allTokensReason = reason
            shardsTokens = reason == nil
        } else {
            allTokensReason = nil
            shardsTokens = false
        }
        let native = options.backend.isNative
        let expertOnly = native ? Executable.weightsReadOnlyByExperts(graph) : []
        let keptAsStored = native ? Executable.weightsKeptAsStored(graph) : []
        let packedInFormat =
            native ? Executable.matricesPackedInFormat(graph, excluding: expertOnly.union(keptAsStored).union(exact.subtracting(stored)), stored: stored) : []
        var weights = weights
        // (GGUF types loaded as floats are the file's values exactly: nothing to round. Matrices
        // packed in their format are rounded by the packing, from the values as loaded.)
        for (i, w) in graph.weights.enumerated()
        where w.format != .f32 && !w.format.isGGUFType && !expertOnly.contains(i) && !exact.contains(i) && !packedInFormat.contains(i) {
            weights[i] = Executable.rounded(
                weights[i], to: ExpertMatrices.packedFormat(w.format), rows: w.elementCount / max(w.shape.last ?? 1, 1),
                k: max(w.shape.last ?? 1, 1), inPlace: consumeWeights, threads: options.threads)
        }
        var matrices: [[LinearWeight]] = []
        var keep: [AlignedBuffer?] = weights
        for (i, w) in graph.weights.enumerated() {
            let base = UnsafePointer(weights[i].floats)
            var list: [LinearWeight] = []
            if (w.shape.count == 2 || w.shape.count == 3) && !expertOnly.contains(i) {
                let count = w.shape.count == 3 ? w.shape[0] : 1
                let n = w.shape[w.shape.count - 2], k = w.shape[w.shape.count - 1]
                // A narrow matrix read lazily (`weightsReadByExpert`: a shared expert's from an f32
                // file, or its GPTQ int4 rows) is read now, just before it is packed (`fill` reads
                // only such weights).
                if let fill { fill(i, 0..<w.shape[0]) }
                for e in 0..<count {
                    let raw = base + e * n * k
                    if packedInFormat.contains(i), stored.contains(i), let type = StoredRows(w.format) {
                        // A GGUF file's blocks or GPTQ/AWQ int4 rows, repacked with their values (a
                        // shared expert's `ffn_*_shexp`, `shared_expert.*.qweight`).
                        let rowBytes = type.rowBytes(k: k), rows = UnsafeRawPointer(weights[i].floats) + e * n * rowBytes
                        list.append(
                            LinearWeight(
                                n: n, k: k, raw: nil,
                                packed: PackedWeight(n: n, k: k, format: PackedWeight.Format(w.format)) { r, set in
                                    type.forEachGroup(row: rows + r * rowBytes, k: k, set)
                                }))
                    } else if native && !keptAsStored.contains(i) {
                        // (A weight read as stored holds bytes, not floats: it took the branch above.)
                        assert(!stored.contains(i), "weight \(w.name) is read as stored but not packed from its rows")
                        list.append(
                            LinearWeight(
                                n: n, k: k, raw: nil,
                                packed: PackedWeight(
                                    weight: raw, n: n, k: k, threads: options.threads,
                                    format: packedInFormat.contains(i) ? PackedWeight.Format(w.format) : .f32)))
                    } else {
                        list.append(LinearWeight(n: n, k: k, raw: raw, packed: nil))
                    }
                }
                // Its panels are all that is kept: its pages go back before the next one is read.
                if consumeWeights && packedInFormat.contains(i) { weights[i].releasePages(floats: 0..<(weights[i].byteCount / 4)) }
            }
            matrices.append(list)
        }
        var experts: [Int: ExpertMatrices] = [:]
        if native {
            for (i, n) in graph.nodes.enumerated() where n.op == .moe_experts && Executable.runsPackedKernel(n, graph) {
                experts[i] = ExpertMatrices(
                    node: n, graph: graph, weights: weights, threads: options.threads,
                    releasable: consumeWeights ? Executable.readByOneNode(graph, among: expertOnly) : [],
                    held: Executable.heldExperts(node: i, graph, options), stored: stored, fill: fill)
            }
        }
        // Packed copies replace the originals for weights only read as matrices.
        for i in graph.weights.indices where native && !keptAsStored.contains(i) && Executable.onlyReadAsMatrix(graph, weight: i) {
            keep[i] = nil
        }
        self.expertMatrices = experts
        self.weights = keep
        self.matrices = matrices
    }

    /// `buffer` (`rows` rows of `k` floats) rounded to the values `format` holds: in place, or in a copy.
    static func rounded(_ buffer: AlignedBuffer, to format: PackedWeight.Format, rows: Int, k: Int, inPlace: Bool, threads: Int) -> AlignedBuffer {
        let out = inPlace ? buffer : AlignedBuffer(floats: rows * k, zeroed: false)
        if !inPlace { out.floats.update(from: buffer.floats, count: rows * k) }
        let p = SendablePointer(out.floats)
        Parallel.forEachChunk(count: rows, threads: threads) { r in Kernels.roundTo(format, p.pointer + r.lowerBound * k, rows: r.count, k: k) }
        return out
    }

    /// Under `mpirun`, the experts of MoE node `i` this rank holds (its worker's slots), which
    /// it alone packs; nil when it holds every expert (one process, or `--llep`).
    static func heldExperts(node i: Int, _ graph: Graph, _ options: ExecutionOptions) -> Set<Int>? {
        guard let world = options.world, let placement = options.placement, let experts = graph.nodes[i].expertsView else { return nil }
        return placement.experts(
            ofWorker: world.rank, layer: graph.moeLayers.firstIndex { $0.nodes.contains(ValueID(i)) }!,
            experts: graph[experts.routing].type.routing!.experts)
    }

    /// Per weight-table index, the experts of a stacked expert weight this process needs, for
    /// `WeightBinding.load(slices:)`: under `mpirun`, the weights only one packed MoE block reads
    /// (as expert matrices) need only the experts this rank holds. Empty (read everything) in
    /// one process.
    public static func expertSlicesToLoad(_ graph: Graph, options: ExecutionOptions) -> [Int: Set<Int>] {
        guard options.world != nil, options.placement != nil, options.backend.isNative else { return [:] }
        let readOnlyHere = readByOneNode(graph, among: weightsReadOnlyByExperts(graph))
        var slices: [Int: Set<Int>] = [:]
        for (i, n) in graph.nodes.enumerated() where n.op == .moe_experts && runsPackedKernel(n, graph) {
            guard let held = heldExperts(node: i, graph, options) else { continue }
            for m in n.expertsView!.matrices {
                if let index = graph[m].attributes.int("index"), readOnlyHere.contains(index) { slices[index] = held }
            }
        }
        return slices
    }

    /// The BLAS thread count this executable's runs set: all of `options.threads`, because under
    /// the BLAS backend moec's own steps run on the calling thread. Should moec run its own work
    /// on several threads as well (Dispatch), this must be 1: idle OpenBLAS workers compete with
    /// moec's threads (see `BLAS.setThreads`).
    public var blasThreads: Int { options.threads }

    /// Runs `body` with BLAS at `blasThreads`. BLAS's thread count is process-wide, so it is set
    /// per run, under `BLAS.withThreads`'s gate, not once at construction.
    func withBLASThreads<R>(_ body: () -> R) -> R {
        guard case .blas(let b) = options.backend else { return body() }
        return b.withThreads(blasThreads, body)
    }

    /// Whether every reader of weight `i` multiplies by it (so the packed form suffices): it is
    /// no graph output and no other operand.
    static func onlyReadAsMatrix(_ g: Graph, weight i: Int) -> Bool {
        for (node, w) in g.nodes.enumerated() where w.op == .weight && w.attributes.int("index") == i {
            let id = ValueID(node)
            if g.outputs.contains(where: { $0.value == id }) { return false }
            for n in g.nodes where n.operands.contains(id) {
                switch n.op {
                case .linear: if n.operands[0] == id || n.operands.count == 3 && n.operands[2] == id { return false }
                case .swiglu, .mlp: if n.operands[0] == id { return false }
                case .moe_experts:
                    if let experts = n.expertsView, !experts.matrices.contains(id) { return false }
                default: return false
                }
            }
        }
        return true
    }

    /// Weights (not in `excluding`) the native backend packs as matrices in their own format
    /// (`WeightInfo.format`: bf16, f16, int8 or int4; a shared expert's or a dense layer's, or
    /// any weight the source gives a format): every reader multiplies by them, so no f32 copy is
    /// kept, and the kernels read the narrow panels as the packed experts kernel does. A GGUF
    /// type is packed in its panels when its blocks were read as stored (`stored`,
    /// `weightsReadAsStored`), else (its dequantized values, loaded as floats) as f32.
    static func matricesPackedInFormat(_ g: Graph, excluding: Set<Int>, stored: Set<Int>) -> Set<Int> {
        Set(
            g.weights.indices.filter { i in
                let f = g.weights[i].format
                return f != .f32 && (!f.isGGUFType || stored.contains(i)) && !excluding.contains(i) && (2...3).contains(g.weights[i].shape.count)
                    && onlyReadAsMatrix(g, weight: i)
            })
    }

    /// Those of `candidates` that exactly one node reads (through exactly one weight node).
    static func readByOneNode(_ g: Graph, among candidates: Set<Int>) -> Set<Int> {
        candidates.filter { index in
            let ids = g.nodes.indices.filter { g.nodes[$0].op == .weight && g.nodes[$0].attributes.int("index") == index }
            guard ids.count == 1 else { return false }
            return g.nodes.filter { $0.operands.contains(ValueID(ids[0])) }.count == 1
        }
    }

    /// Whether MoE node `n` runs as the packed experts kernel on the native backend: its tokens
    /// are permuted (`token-permutation`) and its expert matrices are weights packed at load
    /// (`expert-weight-prepacking`).
    public static func runsPackedKernel(_ n: Node, _ g: Graph) -> Bool {
        guard let experts = n.expertsView, experts.kind != .program else { return false }
        return experts.has(.permute) && experts.has(.prepacked) && ExpertMatrices.expertsAreWeights(n, g)
    }

    /// The GGUF-typed weights (`WeightFormat.isGGUFType`) to load as the file stores them: on the
    /// native backend, those only packed MoE blocks read as expert matrices, when each such
    /// block's first-layer matrices (gate and up, interleaved into one matrix) share the type,
    /// and 2-D ones every reader multiplies by (a shared expert's matrices). The others are
    /// loaded as floats (their dequantized values, exactly). `int4Rows`: weights
    /// whose tensors the checkpoint holds as int4 groups of their format's size (a GPTQ or AWQ
    /// checkpoint's linears, `WeightBinding.int4Rows`), read as stored the same way.
    public static func weightsReadAsStored(_ g: Graph, options: ExecutionOptions, int4Rows: Set<Int> = []) -> Set<Int> {
        guard options.backend.isNative else { return [] }
        let expertOnly = weightsReadOnlyByExperts(g), keptAsStored = weightsKeptAsStored(g)
        var out = expertOnly.filter {
            (g.weights[$0].format.isGGUFType || int4Rows.contains($0)) && g.weights[$0].repeats == nil
        }
        // A GGUF-typed matrix, or GPTQ/AWQ int4 rows, that every reader multiplies by (a shared
        // expert's): packed from its blocks or rows as well (`matricesPackedInFormat`).
        let dense = g.weights.indices.filter { i in
            let w = g.weights[i]
            return (w.format.isGGUFType || int4Rows.contains(i)) && w.repeats == nil && w.shape.count == 2 && !expertOnly.contains(i) && !keptAsStored.contains(i)
                && onlyReadAsMatrix(g, weight: i)
        }
        for n in g.nodes where n.op == .moe_experts {
            guard let view = n.expertsView else { continue }
            let all = view.matrices.compactMap { g[$0].attributes.int("index") }
            let first = Array(all.dropLast())
            // (A stored gate_up is split by rows of floats: its type is read as floats.)
            if view.kind == .swiglu_fused { out.subtract(all) }
            if Set(first.map { g.weights[$0].format }).count > 1 || !first.allSatisfy(out.contains) { out.subtract(first) }
        }
        return out.union(dense)
    }

    /// Weights to read expert by expert while they are packed (`WeightBinding.load(deferred:)`,
    /// the `fill` of `init`): on the native backend, those in a format other than f32 that only
    /// packed MoE blocks read as expert matrices and that can be read by slices, so a bf16, int8
    /// or int4 plan never holds them whole in f32. (A weight read by a gate/up pair packed
    /// together is read with its partner, expert by expert, as well; a GPTQ/AWQ int4 weight read
    /// as stored is read expert by expert as int4 rows, `WeightBinding.loadSlices(asStored:)`.)
    /// Likewise the other narrow matrices packed in their format (`matricesPackedInFormat`: a
    /// shared expert's), each read whole just before it is packed, its pages given back after.
    public static func weightsReadByExpert(_ g: Graph, options: ExecutionOptions, readsBySlice: (WeightInfo) -> Bool) -> Set<Int> {
        guard options.backend.isNative, options.world == nil else { return [] }
        let expertOnly = weightsReadOnlyByExperts(g)
        let dense = matricesPackedInFormat(g, excluding: expertOnly.union(weightsKeptAsStored(g)), stored: [])
        return expertOnly.union(dense).filter { g.weights[$0].format != .f32 && !g.weights[$0].format.isGGUFType && readsBySlice(g.weights[$0]) }
    }

    /// Weights the native backend keeps as stored, to be packed per call: every reader is a MoE
    /// block that reads them as expert matrices and is not `prepacked`.
    static func weightsKeptAsStored(_ g: Graph) -> Set<Int> {
        weightsReadOnlyAsExpertMatrices(g) { !$0.has(.prepacked) }
    }

    /// Weights whose every reader is a fused `moe_experts` node using them as expert matrices.
    static func weightsReadOnlyByExperts(_ g: Graph) -> Set<Int> {
        weightsReadOnlyAsExpertMatrices(g, excludingOutputs: true) { Executable.runsPackedKernel($0.node, g) }
    }

    /// The weight-table indices of weight nodes that some node reads, and that every reader reads
    /// only as an expert matrix of a `moe_experts` block for which `block` holds (and, with
    /// `excludingOutputs`, that are no graph output).
    private static func weightsReadOnlyAsExpertMatrices(
        _ g: Graph, excludingOutputs: Bool = false,
        of block: (ExpertsNode) -> Bool
    ) -> Set<Int> {
        var out = Set<Int>()
        for (node, n) in g.nodes.enumerated() where n.op == .weight {
            let id = ValueID(node)
            if excludingOutputs && g.outputs.contains(where: { $0.value == id }) { continue }
            let readers = g.nodes.filter { $0.operands.contains(id) }
            let onlyAsExpertMatrix = readers.allSatisfy { r in
                guard let experts = r.expertsView, block(experts) else { return false }
                // Read as an expert matrix and as nothing else (not as the input or the active mask).
                return r.operands.filter { $0 == id }.count == experts.matrices.filter { $0 == id }.count && experts.matrices.contains(id)
            }
            if !readers.isEmpty && onlyAsExpertMatrix { out.insert(n.attributes.int("index")!) }
        }
        return out
    }

    /// Bytes of weights held (after packing).
    public var weightBytes: Int {
        var total = 0
        for (i, m) in matrices.enumerated() {
            if let b = weights[i] { total += b.byteCount }
            total += m.reduce(0) { $0 + ($1.packed?.byteCount ?? 0) }
        }
        for m in expertMatrices.values { total += m.byteCount }
        return total
    }

    /// The first schedule for `tokens`, built on first use and kept: the one serial runs use,
    /// for benchmarks and expert loads. Not checked out: running it directly (`execute`) while
    /// another thread calls `run` with the same token count is a race. The token count's
    /// buffers must be addressable (`Schedule.memoryPlan` does not throw).
    public func schedule(tokens: Int) -> Schedule {
        lock.lock()
        if let s = pools[tokens]?.schedules.first { lock.unlock(); return s }
        lock.unlock()
        do { checkIn(try checkOut(tokens: tokens)) } catch { preconditionFailure("\(error)") }
        lock.lock()
        defer { lock.unlock() }
        return pools[tokens]!.schedules[0]
    }

    /// A schedule for `tokens` that no other run is using: the first idle one, or a new one.
    private func checkOut(tokens: Int) throws(Schedule.ArenaTooLarge) -> Schedule {
        lock.lock()
        if let i = pools[tokens]?.busy.firstIndex(of: false) {
            pools[tokens]!.busy[i] = true
            let s = pools[tokens]!.schedules[i]
            lock.unlock()
            return s
        }
        lock.unlock()
        let s = try Schedule(executable: self, tokens: tokens) // built outside the lock
        lock.lock()
        pools[tokens, default: ([], [])].schedules.append(s)
        pools[tokens]!.busy.append(true)
        lock.unlock()
        return s
    }

    private func checkIn(_ s: Schedule) {
        lock.lock()
        let i = pools[s.tokens]!.schedules.firstIndex { $0 === s }!
        pools[s.tokens]!.busy[i] = false
        lock.unlock()
    }

    /// Runs the graph on `inputs` and returns its outputs. Safe to call concurrently. Throws
    /// `InputError` for inputs that do not fit the graph, `Schedule.ArenaTooLarge` for a token
    /// count whose buffers no Int can count.
    public func run(_ inputs: [String: HostTensor]) throws -> [String: HostTensor] {
        try run(inputs, sequence: nil)
    }

    /// Runs the graph on `inputs` as the next tokens of `sequence` (see `SequenceState`), or as a
    /// sequence of its own from position 0 when nil. Safe to call concurrently for different
    /// sequences. Throws `InputError` also when the sequence is full, running, or another plan's.
    public func run(_ inputs: [String: HostTensor], sequence: SequenceState?) throws -> [String: HostTensor] {
        let tokens = try graph.tokenCount(for: inputs)
        let s = try checkOut(tokens: scheduleTokens(tokens))
        defer { checkIn(s) }
        if let sequence {
            precondition(!shardsTokens, "a graph with a sequence's ops does not shard its tokens")
            s.load(inputs)
            try s.execute(continuing: sequence)
            return s.outputs()
        }
        if shardsTokens {
            s.load(inputs, rows: tokenShare(tokens))
            s.execute()
            return gatheredOutputs(s, tokens: tokens)
        }
        s.load(inputs)
        s.execute()
        return s.outputs()
    }

    /// What a run on caller-owned buffers returns besides the outputs it copied: the outputs
    /// it had no buffer for, and the expert loads and token counts of the schedule that ran
    /// (`Schedule.lastExpertLoads`, `lastTokenCounts`).
    public struct BufferRun: Sendable {
        public var outputs: [String: HostTensor]
        public var expertLoads: [[Int]]
        public var tokenCounts: [(unrouted: Int, invalid: Int)]
    }

    /// Runs the graph on `inputs`, buffers a caller owns (the graph's inputs in order, each with
    /// its type's elements for `tokens` tokens: the caller checked the shapes with
    /// `Graph.tokenCount(shapes:)`), and copies each output into its buffer in `outputs` (the
    /// graph's outputs in order). Safe to call concurrently; not for ranks that shard the tokens.
    /// With `sequence`, the run's tokens are its next ones (`run(_:sequence:)`).
    public func run(
        tokens: Int, inputs: [UnsafeRawPointer], outputs: [UnsafeMutableRawPointer?], sequence: SequenceState? = nil
    ) throws -> BufferRun {
        precondition(!shardsTokens, "a run on caller buffers cannot shard its tokens over ranks")
        precondition(inputs.count == graph.inputs.count && outputs.count == graph.outputs.count, "one buffer per input and output")
        let s = try checkOut(tokens: tokens)
        defer { checkIn(s) }
        if let sequence {
            s.load(inputs)
            try s.execute(continuing: sequence)
        } else {
            s.load(inputs)
            s.execute()
        }
        var kept: [String: HostTensor] = [:]
        let all = outputs.contains(nil) ? s.outputs() : [:]
        for (i, buffer) in outputs.enumerated() {
            if let buffer { s.copyOutput(i, to: buffer) } else { kept[graph.outputs[i].name] = all[graph.outputs[i].name] }
        }
        return BufferRun(outputs: kept, expertLoads: s.lastExpertLoads(), tokenCounts: s.lastTokenCounts())
    }

    /// A sequence of at most `capacity` tokens for this executable's runs (`SequenceState`).
    public func makeSequence(capacity: Int) throws(InputError) -> SequenceState {
        try SequenceState(executable: self, capacity: capacity)
    }

    /// The tokens of a run of `tokens` that this process runs the graph on: its rank's share
    /// when the ranks shard the tokens, else all of them.
    public func tokenShare(_ tokens: Int) -> Range<Int> {
        guard shardsTokens, let world = options.world else { return 0..<tokens }
        return DistributedExperts.share(world.rank, of: tokens, ranks: world.size)
    }

    /// Per MoE node, each expert's (token, slot) pairs in the last run of `tokens` tokens
    /// (`Schedule.lastExpertLoads`). When the ranks shard the tokens, every rank's summed: a
    /// collective call then, which every rank must make.
    public func lastExpertLoads(tokens: Int) -> [[Int]] {
        var loads = schedule(tokens: scheduleTokens(tokens)).lastExpertLoads()
        guard shardsTokens, let d = distributedTimes else { return loads }
        let all = d.gather(loads.flatMap { $0.map(Double.init) })
        var at = 0
        for (i, l) in loads.enumerated() {
            loads[i] = (0..<l.count).map { e in Int(all.reduce(0) { $0 + $1[at + e] }) }
            at += l.count
        }
        return loads
    }

    /// Per MoE node, the tokens of the last run of `tokens` tokens routed to no expert and those
    /// whose input or scores were not finite (`Schedule.lastTokenCounts`). When the ranks shard
    /// the tokens, every rank's summed: a collective call then, which every rank must make.
    public func lastTokenCounts(tokens: Int) -> [(unrouted: Int, invalid: Int)] {
        let counts = schedule(tokens: scheduleTokens(tokens)).lastTokenCounts()
        guard shardsTokens, let d = distributedTimes else { return counts }
        let all = d.gather(counts.flatMap { [Double($0.unrouted), Double($0.invalid)] })
        return counts.indices.map { i in
            (all.reduce(0) { $0 + Int($1[2 * i]) }, all.reduce(0) { $0 + Int($1[2 * i + 1]) })
        }
    }

    /// The token count of the schedule that runs a run of `tokens` here (`tokenShare`).
    public func scheduleTokens(_ tokens: Int) -> Int { tokenShare(tokens).count }

    /// After a sharded run of `s` (this rank's share of `tokens`): every output, all tokens'
    /// rows, on every rank (one `MPI_Allgatherv` per output). A collective call. Its time counts
    /// as the combine's (`distributedTimes`).
    public func gatheredOutputs(_ s: Schedule, tokens: Int) -> [String: HostTensor] {
        let world = options.world!
        var clock = DispatchTime.now().uptimeNanoseconds
        defer { distributedTimes?.combine += DistributedTimes.lap(&clock) }
        var out: [String: HostTensor] = [:]
        var counts = [Int32](repeating: 0, count: 2 * world.size)
        for o in graph.outputs {
            let t = graph[o.value].tensorType!
            let shape = t.shape.map { $0.resolve(tokens: tokens) }
            let width = shape.dropFirst().reduce(1, *)
            precondition(tokens * width <= Int(Int32.max), "output \(o.name) has more elements than MPI's 32-bit counts")
            for r in 0..<world.size {
                let share = DistributedExperts.share(r, of: tokens, ranks: world.size)
                counts[r] = Int32(share.count * width)
                counts[world.size + r] = Int32(share.lowerBound * width)
            }
            let mine = tokenShare(tokens), local = s.pointer(o.value)
            if t.dtype == .i32 {
                var all = [Int32](repeating: 0, count: tokens * width)
                all.withUnsafeMutableBufferPointer { b in
                    (b.baseAddress! + mine.lowerBound * width).update(from: local.assumingMemoryBound(to: Int32.self), count: mine.count * width)
                    counts.withUnsafeBufferPointer { world.allGatherInPlace(b.baseAddress!, counts: $0.baseAddress!, displacements: $0.baseAddress! + world.size) }
                }
                out[o.name] = HostTensor(shape: shape, ints: all)
            } else {
                var all = [Float](repeating: 0, count: tokens * width)
                all.withUnsafeMutableBufferPointer { b in
                    (b.baseAddress! + mine.lowerBound * width).update(from: local.assumingMemoryBound(to: Float.self), count: mine.count * width)
                    counts.withUnsafeBufferPointer { world.allGatherInPlace(b.baseAddress!, counts: $0.baseAddress!, displacements: $0.baseAddress! + world.size) }
                }
                out[o.name] = HostTensor(shape: shape, floats: all)
            }
        }
        return out
    }

    func weightPointer(_ index: Int) -> UnsafePointer<Float>? {
        weights[index].map { UnsafePointer($0.floats) }
    }
}
