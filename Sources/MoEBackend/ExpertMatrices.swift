import MoEIO
import MoEIR
import MoEKernels

/// The weights of one MoE block's experts, packed once at load time for the native kernel.
///
/// Per expert: the first layer as one or two packed matrices writing side by side into a
/// `[rows, firstWidth]` buffer, and the down projection.
///
/// - SwiGLU with `fuse_gate_up` (the `ExpertGateUpFusion` pass), or stored fused (`gate_up`):
///   one matrix whose 16-column panels alternate gate and up (panel 2j: gate features
///   16j..<16j+16, panel 2j+1: the same up features; F rounded up to 16 with zero rows). A
///   *strip* of two panels gives whole SwiGLU outputs, so the activation runs in the GEMM's
///   epilogue, strip by strip (`stripPanels` = 2, `firstWidth` = 2·⌈F/16⌉·16).
/// - MLP: one `[F, H]` matrix; a strip is one panel (`stripPanels` = 1).
/// - SwiGLU without the pass: gate and up as two matrices (gate columns, then up columns), and
///   the activation after the whole first layer (`stripPanels` nil, `firstWidth` = 2F).
///
/// Each matrix is packed in its weight's format (`WeightInfo.format`): bf16 panels hold half the
/// bytes, and the kernels widen them to f32 in registers. When gate and up are interleaved into
/// one matrix, it is bf16 if both are (a mix is packed as f32, with the bf16 one's values
/// rounded first, so the numbers are the same either way).
///
/// An MPI rank packs only the experts it holds (`held`); the others have no matrices (an empty
/// `first[e]`, a nil `down[e]`), and their pages are given back like those of packed experts.
struct ExpertMatrices: @unchecked Sendable {
    /// Per expert: (matrix, first output column) pairs of the first layer.
    let first: [[(matrix: PackedWeight, column: Int)]]
    /// Per expert: the down projection `[H, F]`.
    let down: [PackedWeight?]
    /// Panels of every expert's first layer, and of its down projection.
    let firstPanels: Int
    let downPanels: Int
    /// Output columns of the first layer.
    let firstWidth: Int
    /// Panels of the first layer's matrix that make 16 features of its activation, when the
    /// activation can run in the GEMM's epilogue.
    let stripPanels: Int?
    /// Floats of the scratch a bf16 or quantized GEMM on these matrices needs
    /// (`Kernels.quantizedScratchFloats`: its widening strip, or its int8 activation rows); 0 when
    /// every matrix is f32.
    let bf16StripFloats: Int

    /// `firstWidth` for a block, before packing (for scratch sizes).
    static func firstWidth(kind: ExpertKind, ffn f: Int, fuseGateUp: Bool) -> Int {
        switch kind {
        case .mlp: return f
        case .swiglu where !fuseGateUp: return 2 * f
        default: return 2 * Self.paddedFeatures(f)
        }
    }

    static func paddedFeatures(_ f: Int) -> Int { (f + PackedWeight.panelWidth - 1) / PackedWeight.panelWidth * PackedWeight.panelWidth }

    /// Whether the node's expert matrices are all weights (computed ones run through `MatMulBackend.linear`).
    static func expertsAreWeights(_ n: Node, _ g: Graph) -> Bool {
        n.expertsView?.matrices.allSatisfy { g[$0].op == .weight } ?? false
    }

    /// `releasable`: weight indices no one else reads, whose unpacked pages are given back as soon
    /// as each expert is packed (so peak memory stays near one copy of the weights). `held`: the
    /// experts to pack (nil: all).
    init(
        node n: Node, graph g: Graph, weights: [AlignedBuffer], threads: Int, releasable: Set<Int> = [], held: Set<Int>? = nil,
        stored: Set<Int> = [], fill: ((Int, Range<Int>) -> Void)? = nil
    ) {
        let view = n.expertsView!
        let kind = view.kind
        let operandWeights = view.matrices.map { o -> Operand in
            let w = g[o]
            let index = w.attributes.int("index")!
            let format = g.weights[index].format
            // A GGUF type loaded as floats holds the file's values: packed as f32.
            let storedType = stored.contains(index) ? StoredRows(format) : nil
            return Operand(
                index: index, buffer: weights[index], shape: g.weights[index].shape, release: releasable.contains(index),
                format: format.isGGUFType && storedType == nil ? .f32 : Self.packedFormat(format), stored: storedType)
        }
        /// Reads expert e of the operands `load(deferred:)` left unread (`fill`), before packing it.
        func read(_ operands: [Operand], expert e: Int) {
            for w in operands { fill?(w.index, e..<(e + 1)) }
        }
        func matrix(_ w: Operand, expert e: Int) -> PackedWeight {
            let rows = w.shape[1], k = w.shape[2]
            read([w], expert: e)
            if let type = w.stored {
                let rowBytes = w.rowBytes, base = UnsafeRawPointer(w.buffer.floats) + e * rows * rowBytes
                let packed = PackedWeight(n: rows, k: k, format: w.format) { r, set in type.forEachGroup(row: base + r * rowBytes, k: k, set) }
                if w.release { w.buffer.releasePages(floats: e * rows * rowBytes / 4..<(e + 1) * rows * rowBytes / 4) }
                return packed
            }
            let packed = PackedWeight(weight: UnsafePointer(w.buffer.floats + e * rows * k), n: rows, k: k, threads: threads, format: w.format)
            if w.release { w.buffer.releasePages(floats: e * rows * k..<(e + 1) * rows * k) }
            return packed
        }
        /// Gate and up rows as stored (each `[f, h]`: a GGUF file's blocks, or int4 rows)
        /// interleaved by panel as `interleaved` does, repacked row by row (padded features stay zero).
        func interleavedStored(_ type: StoredRows, _ gate: UnsafeRawPointer, _ up: UnsafeRawPointer, f: Int, h: Int, rowBytes: Int, format: PackedWeight.Format) -> PackedWeight {
            let p = PackedWeight.panelWidth, f16 = Self.paddedFeatures(f)
            return PackedWeight(n: 2 * f16, k: h, format: format) { r, set in
                let panel = r / p, feature = (panel / 2) * p + r % p
                guard feature < f else { return }
                type.forEachGroup(row: (panel % 2 == 0 ? gate : up) + feature * rowBytes, k: h, set)
            }
        }
        let experts = operandWeights[0].shape[0]
        var first: [[(PackedWeight, Int)]] = []
        var down: [PackedWeight?] = []
        /// Expert e, when this process does not hold it: no matrices, and its pages given back.
        func skipped(_ e: Int) -> Bool {
            guard let held, !held.contains(e) else { return false }
            for w in operandWeights where w.release {
                // (A buffer of stored blocks holds rowBytes per row, not 4 bytes per value.)
                let bytes = w.shape[1] * w.rowBytes
                w.buffer.releasePages(floats: e * bytes / 4..<(e + 1) * bytes / 4)
            }
            first.append([])
            down.append(nil)
            return true
        }
        /// Gate rows `gate(e)` and up rows `up(e)` (each `[f, h]` row-major) interleaved by
        /// panel into one packed `[2·f16, h]` matrix (see the type's comment), in `formats`'
        /// common format (f32 for a mix, the bf16 half's values rounded). `copied` runs once
        /// they are in `joined`, before packing: the sources' pages can go back then.
        func interleaved(
            _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, f: Int, h: Int, formats: [PackedWeight.Format],
            into joined: AlignedBuffer, copied: () -> Void
        ) -> PackedWeight {
            let p = PackedWeight.panelWidth, f16 = Self.paddedFeatures(f)
            let format: PackedWeight.Format = formats.allSatisfy { $0 == formats[0] } ? formats[0] : .f32
            for j in 0..<(f16 / p) {
                for (half, source) in [gate, up].enumerated() {
                    let dst = joined.floats + (2 * j + half) * p * h
                    let rows = max(0, min(p, f - j * p))
                    dst.update(from: source + j * p * h, count: rows * h)
                    (dst + rows * h).initialize(repeating: 0, count: (p - rows) * h)
                    if format == .f32 && formats[half] != .f32 { Kernels.roundTo(formats[half], dst, rows: rows, k: h) }
                }
            }
            copied()
            return PackedWeight(weight: UnsafePointer(joined.floats), n: 2 * f16, k: h, threads: threads, format: format)
        }
        switch kind {
        case .swiglu:
            let gate = operandWeights[0], up = operandWeights[1]
            let f = gate.shape[1], h = gate.shape[2]
            let fuse = view.has(.fuseGateUp)
            let joined = fuse ? AlignedBuffer(floats: 2 * Self.paddedFeatures(f) * h, zeroed: false) : nil
            for e in 0..<experts where !skipped(e) {
                if fuse, let type = gate.stored, up.stored == type {
                    read([gate, up], expert: e)
                    let rb = gate.rowBytes
                    first.append([
                        (
                            interleavedStored(
                                type, UnsafeRawPointer(gate.buffer.floats) + e * f * rb, UnsafeRawPointer(up.buffer.floats) + e * f * rb, f: f, h: h, rowBytes: rb,
                                format: gate.format), 0
                        )
                    ])
                    if gate.release { gate.buffer.releasePages(floats: e * f * rb / 4..<(e + 1) * f * rb / 4) }
                    if up.release { up.buffer.releasePages(floats: e * f * rb / 4..<(e + 1) * f * rb / 4) }
                } else if let joined {
                    read([gate, up], expert: e)
                    let packed = interleaved(
                        gate.buffer.floats + e * f * h, up.buffer.floats + e * f * h, f: f, h: h, formats: [gate.format, up.format], into: joined
                    ) {
                        if gate.release { gate.buffer.releasePages(floats: e * f * h..<(e + 1) * f * h) }
                        if up.release { up.buffer.releasePages(floats: e * f * h..<(e + 1) * f * h) }
                    }
                    first.append([(packed, 0)])
                } else {
                    first.append([(matrix(gate, expert: e), 0), (matrix(up, expert: e), f)])
                }
                down.append(matrix(operandWeights[2], expert: e))
            }
            firstWidth = Self.firstWidth(kind: kind, ffn: f, fuseGateUp: fuse)
            stripPanels = fuse ? 2 : nil
        case .swiglu_fused:
            let gateUp = operandWeights[0]
            let f = gateUp.shape[1] / 2, h = gateUp.shape[2]
            let joined = AlignedBuffer(floats: 2 * Self.paddedFeatures(f) * h, zeroed: false)
            for e in 0..<experts where !skipped(e) {
                read([gateUp], expert: e)
                let base = gateUp.buffer.floats + e * 2 * f * h
                let packed = interleaved(base, base + f * h, f: f, h: h, formats: [gateUp.format, gateUp.format], into: joined) {
                    if gateUp.release { gateUp.buffer.releasePages(floats: e * 2 * f * h..<(e + 1) * 2 * f * h) }
                }
                first.append([(packed, 0)])
                down.append(matrix(operandWeights[1], expert: e))
            }
            firstWidth = Self.firstWidth(kind: kind, ffn: f, fuseGateUp: true)
            stripPanels = 2
        case .mlp:
            for e in 0..<experts where !skipped(e) {
                first.append([(matrix(operandWeights[0], expert: e), 0)])
                down.append(matrix(operandWeights[1], expert: e))
            }
            firstWidth = operandWeights[0].shape[1]
            stripPanels = 1
        case .program: preconditionFailure("program experts are not packed")
        }
        self.first = first.map { $0.map { (matrix: $0.0, column: $0.1) } }
        self.down = down
        // Every expert has the same shapes: one packed expert's panels are all of theirs.
        let panelWidth = PackedWeight.panelWidth
        let firstRows = operandWeights.dropLast().reduce(0) { $0 + $1.shape[1] }
        firstPanels =
            stripPanels == 2
            ? 2 * Self.paddedFeatures(firstRows / 2) / panelWidth
            : operandWeights.dropLast().reduce(0) { $0 + ($1.shape[1] + panelWidth - 1) / panelWidth }
        downPanels = (operandWeights.last!.shape[1] + panelWidth - 1) / panelWidth
        let held = self.first.joined().map(\.matrix) + down.compactMap { $0 }
        bf16StripFloats = held.filter { $0.format != .f32 }.map { Kernels.quantizedScratchFloats(k: $0.k, format: $0.format) }.max() ?? 0
        if let e = down.firstIndex(where: { $0 != nil }) {
            assert(self.first[e].reduce(0) { $0 + $1.matrix.panels } == firstPanels && down[e]!.panels == downPanels)
        }
    }

    /// One expert matrix operand: its unpacked weights, shape `[E, rows, cols]`, whether its
    /// pages may be given back once packed, and the format to pack it in.
    struct Operand {
        /// Its index in the weight table.
        let index: Int
        let buffer: AlignedBuffer
        let shape: [Int]
        let release: Bool
        let format: PackedWeight.Format
        /// How `buffer` holds the rows, when it holds them as stored.
        let stored: StoredRows?
        /// Bytes of one stored row (`shape[2]` values).
        var rowBytes: Int { stored.map { $0.rowBytes(k: shape[2]) } ?? shape[2] * 4 }
    }

    /// The kernels' panel format for a weight's storage format (a GGUF type: the int format
    /// that holds its values exactly). Q5_K and Q6_K go into int5 and int6 panels.
    static func packedFormat(_ f: WeightFormat) -> PackedWeight.Format {
        switch f {
        case .f32: return .f32
        case .bf16: return .bf16
        case .f16: return .f16
        case .q6_k: return .int6(group: 16)
        case .q5_k: return .int5(group: 32, offsets: true)
        default: return f.bits == 8 ? .int8(group: f.group!, offsets: f.offsets) : .int4(group: f.group!, offsets: f.offsets)
        }
    }

    var byteCount: Int {
        first.reduce(0) { $0 + $1.reduce(0) { $0 + $1.matrix.byteCount } } + down.reduce(0) { $0 + ($1?.byteCount ?? 0) }
    }
}

/// How the buffer of a weight read as stored (`WeightBinding.load(stored:)`) holds its rows: a
/// GGUF type's blocks, or a GPTQ/AWQ linear's `Int4Rows`; either way repacked group by group
/// with the same values.
enum StoredRows: Equatable {
    case gguf(GGMLType)
    case int4(group: Int)

    /// The rows a weight of format `f` is read as when read as stored: its GGUF type's blocks, or
    /// for an int4 format with offsets, int4 rows of its group (nil for other formats).
    init?(_ f: WeightFormat) {
        switch f {
        case .q8_0: self = .gguf(.q8_0)
        case .q4_0: self = .gguf(.q4_0)
        case .q4_k: self = .gguf(.q4_K)
        case .q5_k: self = .gguf(.q5_K)
        case .q6_k: self = .gguf(.q6_K)
        case .int4z, .int4zg64, .int4zg128: self = .int4(group: f.group!)
        default: return nil
        }
    }

    func rowBytes(k: Int) -> Int {
        switch self {
        case .gguf(let t): return k / t.blockSize * t.blockBytes
        case .int4(let g): return Int4Rows.rowBytes(k: k, group: g)
        }
    }

    /// `body(group, S, M, u)` for each group of the row at `row` (groups of 32, or of the int4
    /// rows' size: the panel format's group either way), each value exactly fma(u, S, M).
    func forEachGroup(row: UnsafeRawPointer, k: Int, _ body: (Int, Float, Float, UnsafePointer<UInt8>) -> Void) {
        switch self {
        case .gguf(let t): t.forEachGroup(row: row, k: k, body)
        case .int4(let g): Int4Rows.forEachGroup(row: row, k: k, group: g, body)
        }
    }
}

extension PackedWeight.Format {
    /// The panel format the packed experts kernel stores a weight of format `f` in.
    public init(_ f: WeightFormat) { self = ExpertMatrices.packedFormat(f) }
}
