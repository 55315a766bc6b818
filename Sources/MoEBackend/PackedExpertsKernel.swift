import Dispatch
import MoEIR
import MoEKernels

/// The experts of an MoE block on moec's own packed kernels: the whole layer in five parallel
/// phases with no per-expert synchronisation, allocation-free after the schedule is built.
///
/// 0. **Permute.** A counting sort of the (token, slot) pairs by expert makes each expert's rows
///    contiguous (`perm`: their tokens, `permWeight`: their routing weights, `rowOf`: the row of
///    each pair). The rows are cut into *groups* (normally one per expert that received tokens),
///    and each group's token rows of x are gathered straight into the packed GEMM layout.
/// 1. **First layer.** One GEMM per group through the expert's gate/up weights, into
///    `hidden [rows, firstWidth]`. When they are one matrix (the `ExpertGateUpFusion` pass, or
///    an MLP), the GEMM runs strip by strip (`ExpertMatrices.stripPanels`: the gate and up
///    panels of 16 features), and its epilogue does phase 2 for the strip while the strip is
///    in L1: no second pass over `hidden`, and no barrier between the phases.
/// 2. **Activation.** SwiGLU (or the MLP's activation) on each row, and the result packed for the
///    down projection; with `combine_in_down` (the `combine-fusion` pass) each row's routing
///    weight is folded in as it is packed: `(w·h)·W_down = w·(h·W_down)`, so the combine needs
///    no multiply.
/// 3. **Down projection** into `ys [rows, H]`.
/// 4. **Combine.** `y[t] = Σ_slot ys[rowOf[t, slot]]` (times the slot's weight without
///    `combine_in_down`), a per-token gather in slot order: no scatter, no races, the same bits
///    whatever the thread count.
///
/// Phases 1 and 3 cut the flattened list of (group, 16-column weight panel) units (phase 1 with
/// an epilogue: (group, strip) units, so a strip never straddles two threads) into one
/// contiguous range per thread, balanced by the machine model's cost of a unit
/// (`MachineModel.gemmSeconds`): with few tokens every panel costs its bytes, so threads take
/// whole experts or weight halves and each weight streams once (decode); with many tokens panels
/// cost their FLOPs, and big experts are shared out by columns (prefill). Every output element
/// is one FMA chain over k in order, so the cut never changes the result.
///
/// With an `ExpertPlacement`, groups follow the placement instead (see `ExpertPlacementRun`):
/// each worker thread runs exactly the groups of its slots, all phases without a barrier. Under
/// `mpirun` each worker is a rank instead of a thread (see `DistributedExperts`, and
/// `ShardedExperts` when each rank runs only its share of the tokens).
enum PackedExpertsKernel {
    /// Upper bound on groups in one run: one per expert, plus replicas and spills of a placement.
    static func maxGroups(experts: Int) -> Int { 2 * experts + 64 }

    /// Scratch buffers: counts/starts, perm, permWeight, rowOf, group table, packed x, hidden,
    /// packed hidden, ys.
    static func scratchBytes(_ z: MoEExpertsKernel.Sizes, firstWidth: Int) throws(ByteCount.Overflow) -> [Int] {
        typealias B = ByteCount
        let twoE = try B.product(2, z.experts)
        let g = try B.sum(twoE, 64) // maxGroups(experts:)
        let pairs = try B.product(z.tokens, z.slots)
        let padded = try B.sum(pairs, try B.product(PackedRows.rowsPerPanel - 1, g))
        return [
            try B.product(try B.sum(twoE, 2), 4), try B.product(pairs, 4), try B.product(pairs, 4), try B.product(pairs, 4),
            try GroupTable.bytes(groups: g),
            try B.product(padded, z.hidden, 4), try B.product(pairs, firstWidth, 4), try B.product(padded, z.ffn, 4),
            try B.product(pairs, z.hidden, 4)
        ]
    }

    static func step(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let z = MoEExpertsKernel.sizes(n, g, tokens: s.tokens)
        let experts = n.expertsView!
        let kind = experts.kind
        let act = experts.activation.op
        let matrices = s.executable.expertMatrices[i]!
        let threads = s.executable.options.threads
        // Under mpirun with the tokens sharded, the groups run on the rows the ranks send this
        // one, in `ShardedExperts`'s buffers: x rows of h + 1 floats (the routing weight last).
        let sharded = s.executable.shardsTokens ? ShardedExperts(s.executable.options.world!, sizes: z, firstWidth: matrices.firstWidth, times: s.executable.distributedTimes) : nil
        let x = SendablePointer(UnsafePointer(sharded?.incoming ?? s.floats(experts.input)))
        let ldx = sharded == nil ? z.hidden : z.hidden + 1
        let routing = RoutingBuffer(s.pointer(experts.routing), tokens: s.tokens, slots: z.slots)
        let y = SendablePointer(s.floats(ValueID(i)))
        // `weighting: "input"` scales the gathered rows of x instead (phase 0), so the weight is
        // neither folded into the down operand nor applied at the combine.
        let weightOnInput = experts.weightOnInput
        let weightInDown = experts.has(.combineInDown) && !weightOnInput
        let routingWeights = SendablePointer(routing.weights)
        let active = experts.active.map { UnsafePointer(s.floats($0)) }
        let counts = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let starts = counts + z.experts + 1
        let perm = SendablePointer(sharded?.perm ?? s.scratch(i, 1).assumingMemoryBound(to: Int32.self))
        let permWeight = SendablePointer(sharded?.permWeight ?? s.scratch(i, 2).assumingMemoryBound(to: Float.self))
        let rowOf = SendablePointer(s.scratch(i, 3).assumingMemoryBound(to: Int32.self))
        let groups = GroupTable(sharded?.groupMemory ?? s.scratch(i, 4), capacity: maxGroups(experts: z.experts))
        let packedX = SendablePointer(sharded?.packedX ?? s.scratch(i, 5).assumingMemoryBound(to: Float.self))
        let hidden = SendablePointer(sharded?.hiddenRows ?? s.scratch(i, 6).assumingMemoryBound(to: Float.self))
        let packedH = SendablePointer(sharded?.packedH ?? s.scratch(i, 7).assumingMemoryBound(to: Float.self))
        let ys = SendablePointer(sharded?.ys ?? s.scratch(i, 8).assumingMemoryBound(to: Float.self))
        let loads = s.loadCounts(i)
        let h = z.hidden, f = z.ffn, fw = matrices.firstWidth
        // An expression expert's extras: per-expert biases (the first layer's added in the
        // epilogue, the down projection's to each output row) and its element-wise program.
        let extras = ExpertExtras(s, experts, ffn: f, hidden: h)
        let firstPanels = matrices.firstPanels
        // With an epilogue, phase 1 is cut in strips (units of `stripPanels` panels).
        let stripPanels = matrices.stripPanels
        let firstUnits = stripPanels.map { firstPanels / $0 } ?? firstPanels
        let unitPanels = stripPanels ?? 1
        let downPanels = matrices.downPanels
        // The placement covers every expert the router scores, fixed ones included (they have no rows here).
        let placement = s.executable.options.placement.map {
            ExpertPlacementRun($0, layer: s.moeLayerIndex(i), experts: g[experts.routing].type.routing!.experts)
        }

        // bf16 matrices: a widening strip per thread that runs a GEMM at once (the phase cuts'
        // thread index, or a lane claimed by a group run on its own worker's thread).
        let strips = WideningStrips(lanes: min(max(threads, placement?.workers ?? 0), 64), floatsPerLane: matrices.bf16StripFloats)

        /// Phase 1 work of thread t: its range of (group, first-layer panel) units.
        @Sendable func firstLayer(_ units: Range<Int>, strip: UnsafeMutablePointer<Float>?) {
            groups.forEachPiece(of: units, panelsPerGroup: firstPanels) { gi, local in
                let e = groups.expert(gi), m = groups.rows(gi), begin = groups.rowBegin(gi)
                var offset = 0
                for piece in matrices.first[e] {
                    let p = piece.matrix.panels
                    let lo = max(local.lowerBound - offset, 0), hi = min(local.upperBound - offset, p)
                    if lo < hi {
                        let r = lo..<hi
                        Kernels.gemmPacked(
                            packedX.pointer + groups.offsetX(gi), m: m, piece.matrix, panels: r,
                            hidden.pointer + begin * fw + piece.column, ldy: fw, bf16Strip: strip)
                    }
                    offset += p
                }
            }
        }
        /// Phases 1 and 2 of thread t, for a first layer with an epilogue: its range of (group,
        /// strip) units. Each strip: the GEMM of its panels into `hidden`, the activation on the
        /// strip's 16 features, and those features packed into the down GEMM's operand (with
        /// the routing weight under `combine_in_down`).
        @Sendable func firstLayerWithEpilogue(_ units: Range<Int>, strip: UnsafeMutablePointer<Float>?) {
            let sp = stripPanels!, panel = PackedWeight.panelWidth
            groups.forEachPiece(of: units, panelsPerGroup: firstUnits) { gi, local in
                let e = groups.expert(gi), m = groups.rows(gi), begin = groups.rowBegin(gi)
                let rows = hidden.pointer + begin * fw
                let scale = weightInDown ? UnsafePointer(permWeight.pointer + begin) : nil
                let into = packedH.pointer + groups.offsetH(gi)
                // Panel p lands in columns 16p ..< 16p+16 of the rows; strip j (panels j·sp
                // ..< (j+1)·sp) holds features 16j ..< 16j+16 (gate, then up for SwiGLU).
                Kernels.gemmPacked(
                    packedX.pointer + groups.offsetX(gi), m: m, matrices.first[e][0].matrix,
                    panels: local.lowerBound * sp..<local.upperBound * sp, rows, ldy: fw,
                    bf16Strip: strip, epilogueEvery: sp
                ) { r0, r1, p0, _ in
                    let j = p0 / sp, c0 = p0 * panel, features = min(panel, f - j * panel)
                    let strip = rows + r0 * fw + c0
                    if let program = extras.program {
                        // Gate at c0 ..< c0+16 (the MLP's projection), up at c0+16 ..< c0+32.
                        extras.run(program, expert: e, rows: r1 - r0, features: j * panel..<j * panel + features, strip, ld: fw, second: strip + panel)
                    } else {
                        switch kind {
                        case .swiglu, .swiglu_fused:
                            // Gate at c0 ..< c0+16, up at c0+16 ..< c0+32; padded features are 0.
                            Kernels.swiglu(strip, strip, rows: r1 - r0, f: panel, ldIn: fw, ldOut: fw)
                        case .mlp:
                            for r in 0..<(r1 - r0) { act.apply(strip + r * fw, strip + r * fw, count: features) }
                        case .program: preconditionFailure("program experts are not packed")
                        }
                    }
                    PackedRows.packColumns(
                        rows + c0, ld: fw, scale: scale, m: m, k: f, columns: j * panel, count: features,
                        rows: r0..<r1, into: into)
                }
            }
        }
        @Sendable func downLayer(_ units: Range<Int>, strip: UnsafeMutablePointer<Float>?) {
            groups.forEachPiece(of: units, panelsPerGroup: downPanels) { gi, local in
                let e = groups.expert(gi), begin = groups.rowBegin(gi)
                Kernels.gemmPacked(
                    packedH.pointer + groups.offsetH(gi), m: groups.rows(gi), matrices.down[e]!,
                    panels: local, ys.pointer + begin * h, ldy: h, bf16Strip: strip)
                if let bias = extras.downBias {
                    // The bias of these panels' columns, scaled like the rows (`combine_in_down`).
                    let c0 = local.lowerBound * PackedWeight.panelWidth, c1 = min(h, local.upperBound * PackedWeight.panelWidth)
                    for r in 0..<groups.rows(gi) {
                        Kernels.axpy(
                            alpha: weightInDown ? permWeight.pointer[begin + r] : 1, bias + e * h + c0, ys.pointer + (begin + r) * h + c0,
                            count: c1 - c0)
                    }
                }
            }
        }
        /// Phase 0 on row panels `units` (of the flattened groups): gather x into the packed layout.
        @Sendable func packX(_ units: Range<Int>) {
            groups.forEachRowPanel(of: units) { gi, panels in
                let begin = groups.rowBegin(gi)
                PackedRows.pack(
                    x.pointer, ld: ldx, rows: perm.pointer + begin, scale: weightOnInput ? permWeight.pointer + begin : nil,
                    m: groups.rows(gi), k: h,
                    into: packedX.pointer + groups.offsetX(gi), panels: panels)
            }
        }
        /// Phase 2 on row panels `units`: activation, then pack with the routing weight folded in.
        @Sendable func activate(_ units: Range<Int>) {
            groups.forEachRowPanel(of: units) { gi, panels in
                let begin = groups.rowBegin(gi), m = groups.rows(gi)
                let r0 = panels.lowerBound * PackedRows.rowsPerPanel
                let r1 = min(m, panels.upperBound * PackedRows.rowsPerPanel)
                let rowsHere = hidden.pointer + (begin + r0) * fw
                if let program = extras.program {
                    extras.run(program, expert: groups.expert(gi), rows: r1 - r0, features: 0..<f, rowsHere, ld: fw, second: rowsHere + f)
                } else {
                    switch kind {
                    case .swiglu, .swiglu_fused:
                        Kernels.swiglu(rowsHere, rowsHere, rows: r1 - r0, f: f, ldIn: fw, ldOut: fw)
                    case .mlp:
                        act.apply(rowsHere, rowsHere, count: (r1 - r0) * fw)
                    case .program: preconditionFailure("program experts are not packed")
                    }
                }
                PackedRows.pack(
                    hidden.pointer + begin * fw, ld: fw, scale: weightInDown ? permWeight.pointer + begin : nil, m: m, k: f,
                    into: packedH.pointer + groups.offsetH(gi), panels: panels)
            }
        }
        @Sendable func combine(_ tokens: Range<Int>) {
            for t in tokens {
                let out = y.pointer + t * h
                var first = true
                for slot in 0..<z.slots {
                    let p = t * z.slots + slot
                    let r = Int(rowOf.pointer[p])
                    guard r >= 0 else { continue }
                    if weightInDown || weightOnInput {
                        if first { out.update(from: ys.pointer + r * h, count: h) } else { Kernels.add(out, ys.pointer + r * h, out, count: h) }
                    } else {
                        if first { out.initialize(repeating: 0, count: h) }
                        Kernels.axpy(alpha: routingWeights.pointer[p], ys.pointer + r * h, out, count: h)
                    }
                    first = false
                }
                if first { out.initialize(repeating: 0, count: h) }
            }
        }

        // The parallel regions, made once so that a run allocates nothing (see `ChunkJob`). The
        // phase cuts are read from the group table's cut array, which `balanceCuts` refills.
        let cuts = SendablePointer(groups.cutsBase)
        let packXJob = ChunkJob(packX), activateJob = ChunkJob(activate), combineJob = ChunkJob(combine)
        let epilogue = stripPanels != nil
        let firstJob = ChunkJob { ts in
            for t in ts {
                let units = cuts.pointer[t]..<cuts.pointer[t + 1]
                if epilogue { firstLayerWithEpilogue(units, strip: strips.strip(t)) } else { firstLayer(units, strip: strips.strip(t)) }
            }
        }
        let downJob = ChunkJob { ts in for t in ts { downLayer(cuts.pointer[t]..<cuts.pointer[t + 1], strip: strips.strip(t)) } }
        /// With a placement: all phases of group gi, on its worker's thread, no barrier between.
        @Sendable func runGroup(_ gi: Int) {
            let lane = strips.claim()
            defer { strips.release(lane) }
            let strip = lane.flatMap(strips.strip)
            let m = groups.rows(gi)
            let rowPanels = PackedRows.panelCount(m: m)
            let unitBase = groups.rowPanelStart(gi)
            packX(unitBase..<unitBase + rowPanels)
            let fb = groups.unitStart(gi, panelsPerGroup: firstUnits)
            if epilogue {
                firstLayerWithEpilogue(fb..<fb + firstUnits, strip: strip)
            } else {
                firstLayer(fb..<fb + firstPanels, strip: strip)
                activate(unitBase..<unitBase + rowPanels)
            }
            let db = groups.unitStart(gi, panelsPerGroup: downPanels)
            downLayer(db..<db + downPanels, strip: strip)
        }
        let placementJob = placement?.job(groups, runGroup)
        let distributed =
            placement == nil || sharded != nil
            ? nil
            : s.executable.options.world.map {
                DistributedExperts($0, tokens: z.tokens, slots: z.slots, hidden: h, times: s.executable.distributedTimes)
            }
        let distributedJob = distributed?.job(groups, runGroup)
        let combineMine = distributed.map { d in
            let first = d.myTokens.lowerBound
            return ChunkJob { ts in combine((ts.lowerBound + first)..<(ts.upperBound + first)) }
        }

        // Sharded: this rank's permutation and groups in the arena's scratch, the held groups in
        // `ShardedExperts`'s (`groups`, `perm`, … above).
        let localInput = UnsafePointer(s.floats(experts.input))
        let localPerm = s.scratch(i, 1).assumingMemoryBound(to: Int32.self)
        let localWeight = s.scratch(i, 2).assumingMemoryBound(to: Float.self)
        let owned = GroupTable(s.scratch(i, 4), capacity: maxGroups(experts: z.experts))
        let heldJob = ChunkJob { gs in for g in gs { runGroup(g) } }

        return {
            if let sharded, let placement {
                _ = MoEExpertsKernel.permute(
                    routing, sizes: z, active: active, counts: counts, starts: starts, perm: localPerm, permWeight: localWeight,
                    rowOf: rowOf.pointer, loads: loads)
                sharded.exchange(
                    x: localInput, perm: localPerm, weights: localWeight, starts: starts, rowOf: rowOf.pointer, pairs: z.pairs,
                    placement: placement, owned: owned, held: groups
                ) { Parallel.forEachChunk(count: groups.count, threads: threads, job: heldJob) }
                var clock = DispatchTime.now().uptimeNanoseconds
                Parallel.forEachChunk(count: z.tokens, threads: threads, job: combineJob)
                sharded.times?.combine += DistributedTimes.lap(&clock)
                return
            }
            _ = MoEExpertsKernel.permute(
                routing, sizes: z, active: active, counts: counts, starts: starts,
                perm: perm.pointer, permWeight: permWeight.pointer, rowOf: rowOf.pointer,
                loads: loads)
            if let placement {
                placement.makeGroups(groups, starts: starts, experts: z.experts)
                groups.layOut(hidden: h, ffn: f)
                if let distributed {
                    // This rank's groups; their rows to the ranks combining their tokens (packedX,
                    // read only by the groups, is free again as the staging buffer); this
                    // rank's tokens combined; the output gathered on every rank.
                    var clock = DispatchTime.now().uptimeNanoseconds
                    Parallel.forEachChunk(count: distributed.groupCount(groups), threads: threads, job: distributedJob!)
                    let expertSeconds = DistributedTimes.lap(&clock)
                    distributed.sendRows(ys.pointer, perm: perm.pointer, groups: groups, staging: packedX.pointer)
                    let dispatchSeconds = DistributedTimes.lap(&clock)
                    Parallel.forEachChunk(count: distributed.myTokens.count, threads: threads, job: combineMine!)
                    distributed.gatherOutput(y.pointer)
                    if let times = distributed.times {
                        times.experts += expertSeconds
                        times.dispatch += dispatchSeconds
                        times.combine += DistributedTimes.lap(&clock)
                    }
                    return
                }
                Parallel.forEachChunk(count: placement.workers, threads: placement.workers, job: placementJob!)
                Parallel.forEachChunk(count: z.tokens, threads: threads, job: combineJob)
                return
            }
            groups.oneGroupPerExpert(starts: starts, experts: z.experts)
            groups.layOut(hidden: h, ffn: f)
            // Small layers are not worth waking a second thread (nor measuring the machine for).
            let small = threads == 1 || groups.totalCost(model: .nominal, panels: firstUnits, k: h * unitPanels) < 20e-6
            let useThreads = small ? 1 : min(threads, 64)
            let model = small ? MachineModel.nominal : MachineModel.current
            let rowPanels = groups.totalRowPanels
            Parallel.forEachChunk(count: rowPanels, threads: useThreads, job: packXJob)
            groups.balanceCuts(model: model, panels: firstUnits, k: h * unitPanels, threads: useThreads)
            Parallel.forEachChunk(count: useThreads, threads: useThreads, job: firstJob)
            if !epilogue { Parallel.forEachChunk(count: rowPanels, threads: useThreads, job: activateJob) }
            groups.balanceCuts(model: model, panels: downPanels, k: f, threads: useThreads)
            Parallel.forEachChunk(count: useThreads, threads: useThreads, job: downJob)
            Parallel.forEachChunk(count: z.tokens, threads: useThreads, job: combineJob)
        }
    }
}

/// The extras of an expert written as an expression that runs on the packed kernel (or the
/// unfused path): biases of its projections and its epilogue program (`ExpertsNode.epilogue`).
/// Without biases and epilogue, `program` is nil and the kernels run plain SwiGLU or the
/// activation.
struct ExpertExtras: @unchecked Sendable {
    /// The program between the projections, when the block has an epilogue or first-layer biases.
    let program: ExpertEpilogue?
    /// `[E, F]` biases of the first input (gate, or the MLP's projection) and of up.
    let firstBias: UnsafePointer<Float>?
    let secondBias: UnsafePointer<Float>?
    /// `[E, H]` bias of the down projection.
    let downBias: UnsafePointer<Float>?
    /// Floats from one expert's first-layer bias to the next's.
    let biasStride: Int

    init(_ s: Schedule, _ experts: ExpertsNode, ffn: Int, hidden: Int) {
        func bias(_ role: String) -> UnsafePointer<Float>? { experts.bias(role).map { UnsafePointer(s.floats($0)) } }
        let gated = experts.kind != .mlp
        if experts.kind == .swiglu_fused {
            // One [E, 2F] bias: gate's F values, then up's, per expert.
            let gateUp = bias("gate_up")
            firstBias = gateUp
            secondBias = gateUp.map { $0 + ffn }
            biasStride = 2 * ffn
        } else {
            firstBias = bias(gated ? "gate" : "up")
            secondBias = gated ? bias("up") : nil
            biasStride = ffn
        }
        downBias = bias("down")
        if let e = experts.epilogue {
            program = ExpertEpilogue(e)
        } else if firstBias != nil || secondBias != nil {
            program = gated ? .swiglu : ExpertEpilogue(inputs: 1, instructions: [.unary(ExpertEpilogue.Unary(rawValue: experts.activation.rawValue)!, .register(0))])
        } else {
            program = nil
        }
    }

    /// The program on `rows` rows (`ld` apart) of the features `features` of expert `e`: the
    /// first input at `first` (overwritten with the result), the second at `second`.
    @inline(__always)
    func run(
        _ p: ExpertEpilogue, expert e: Int, rows: Int, features: Range<Int>, _ first: UnsafeMutablePointer<Float>, ld: Int,
        second: UnsafeMutablePointer<Float>
    ) {
        Kernels.expertEpilogue(
            p, rows: rows, count: features.count, UnsafePointer(first), lda: ld, biasA: firstBias.map { $0 + e * biasStride + features.lowerBound },
            p.inputs == 2 ? UnsafePointer(second) : nil, ldb: ld, biasB: secondBias.map { $0 + e * biasStride + features.lowerBound },
            first, ldo: ld)
    }
}

extension ExpertEpilogue {
    /// The kernel form of an IR epilogue (`ExpertProgram` without `linear`; the verifier checked it).
    init(_ p: ExpertProgram) {
        func operand(_ o: ExpertProgram.Operand) -> Operand {
            switch o {
            case .register(let r): return .register(r)
            case .constant(let c): return .constant(Float(c))
            }
        }
        let instructions = p.instructions.map { ins -> Instruction in
            switch ins {
            case .unary(let op, let a): return .unary(Unary(rawValue: op)!, operand(a))
            case .binary(let op, let a, let b): return .binary(Binary(rawValue: op)!, operand(a), operand(b))
            case .linear: preconditionFailure("an epilogue has no linear")
            }
        }
        self.init(inputs: p.inputs, instructions: instructions)!
    }
}

/// The groups of one run (a run of consecutive permuted rows that one GEMM handles, all routed to
/// one expert), kept in scratch memory so that planning a run allocates nothing.
///
/// Per group, 8 Ints: expert, first row, rows, float offset of its packed x, of its packed
/// hidden, first row-panel unit, worker, and a cost slot; then per-thread cut points.
struct GroupTable: @unchecked Sendable {
    let base: UnsafeMutablePointer<Int>
    let capacity: Int
    let cutsBase: UnsafeMutablePointer<Int>
    private let countPointer: UnsafeMutablePointer<Int>

    static let fields = 8
    static func bytes(groups: Int) throws(ByteCount.Overflow) -> Int {
        try ByteCount.product(try ByteCount.sum(try ByteCount.product(groups, fields), 1 + 2 * 65), 8)
    }

    init(_ raw: UnsafeMutableRawPointer, capacity: Int) {
        let p = raw.assumingMemoryBound(to: Int.self)
        countPointer = p
        base = p + 1
        self.capacity = capacity
        cutsBase = base + capacity * Self.fields
    }

    var count: Int { countPointer.pointee }
    func expert(_ g: Int) -> Int { base[g * Self.fields] }
    func rowBegin(_ g: Int) -> Int { base[g * Self.fields + 1] }
    func rows(_ g: Int) -> Int { base[g * Self.fields + 2] }
    func offsetX(_ g: Int) -> Int { base[g * Self.fields + 3] }
    func offsetH(_ g: Int) -> Int { base[g * Self.fields + 4] }
    func rowPanelStart(_ g: Int) -> Int { base[g * Self.fields + 5] }
    func worker(_ g: Int) -> Int { base[g * Self.fields + 6] }

    func removeAll() { countPointer.pointee = 0 }

    func append(expert: Int, rowBegin: Int, rows: Int, worker: Int) {
        let g = count
        precondition(g < capacity, "more expert groups than the schedule has room for")
        let p = base + g * Self.fields
        p[0] = expert; p[1] = rowBegin; p[2] = rows; p[3] = 0; p[4] = 0; p[5] = 0; p[6] = worker; p[7] = 0
        countPointer.pointee = g + 1
    }

    func oneGroupPerExpert(starts: UnsafePointer<Int32>, experts: Int) {
        removeAll()
        for e in 0..<experts where starts[e + 1] > starts[e] {
            append(expert: e, rowBegin: Int(starts[e]), rows: Int(starts[e + 1] - starts[e]), worker: 0)
        }
    }

    /// Assigns each group its packed-operand offsets and first row-panel unit.
    func layOut(hidden h: Int, ffn f: Int) {
        var ox = 0, oh = 0, units = 0
        for g in 0..<count {
            let p = base + g * Self.fields
            p[3] = ox; p[4] = oh; p[5] = units
            ox += PackedRows.floatCount(m: p[2], k: h)
            oh += PackedRows.floatCount(m: p[2], k: f)
            units += PackedRows.panelCount(m: p[2])
        }
    }

    var totalRowPanels: Int { count == 0 ? 0 : rowPanelStart(count - 1) + PackedRows.panelCount(m: rows(count - 1)) }

    func unitStart(_ g: Int, panelsPerGroup: Int) -> Int { g * panelsPerGroup }

    func totalCost(model: MachineModel, panels: Int, k: Int) -> Double {
        var c = 0.0
        for g in 0..<count { c += Double(panels) * model.gemmSeconds(rows: rows(g), weightFloats: 16 * k) }
        return c
    }

    /// Cuts the flattened (group, panel) units into `threads` ranges of near-equal cost: writes
    /// threads+1 unit indices to `cutsBase` (0 first, all units last).
    func balanceCuts(model: MachineModel, panels: Int, k: Int, threads: Int) {
        let cuts = cutsBase
        cuts[0] = 0
        cuts[threads] = count * panels
        guard threads > 1 else { return }
        let total = totalCost(model: model, panels: panels, k: k)
        var g = 0, before = 0.0
        for t in 1..<threads {
            let target = total * Double(t) / Double(threads)
            var unit = count * panels
            while g < count {
                let c = model.gemmSeconds(rows: rows(g), weightFloats: 16 * k)
                let groupCost = c * Double(panels)
                if before + groupCost >= target {
                    let local = min(panels, max(0, Int(((target - before) / c).rounded())))
                    unit = g * panels + local
                    break
                }
                before += groupCost
                g += 1
            }
            cuts[t] = max(cuts[t - 1], unit)
        }
    }

    /// Calls `body(group, local panel range)` for each group overlapping the flattened units.
    @inline(__always)
    func forEachPiece(of units: Range<Int>, panelsPerGroup p: Int, _ body: (Int, Range<Int>) -> Void) {
        guard !units.isEmpty, p > 0 else { return }
        var g = units.lowerBound / p
        while g < count && g * p < units.upperBound {
            let lo = max(units.lowerBound - g * p, 0), hi = min(units.upperBound - g * p, p)
            if lo < hi { body(g, lo..<hi) }
            g += 1
        }
    }

    /// Calls `body(group, row panels of the group)` for each group overlapping the flattened
    /// row-panel units.
    @inline(__always)
    func forEachRowPanel(of units: Range<Int>, _ body: (Int, Range<Int>) -> Void) {
        guard !units.isEmpty else { return }
        // Groups are few (≤ experts + replicas): a linear scan is cheaper than a search.
        for g in 0..<count {
            let start = rowPanelStart(g), n = PackedRows.panelCount(m: rows(g))
            if start + n <= units.lowerBound { continue }
            if start >= units.upperBound { break }
            body(g, max(units.lowerBound - start, 0)..<min(units.upperBound - start, n))
        }
    }
}
