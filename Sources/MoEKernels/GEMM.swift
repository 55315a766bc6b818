import Foundation
import MoEKernelsAVX2
import MoEKernelsAVX512

/// Blocking of the packed GEMM (shared by the AVX2 and portable kernels).
///
/// `MOEC_GEMM_KC` / `MOEC_GEMM_MC_PANELS` override `kc` and `mcPanels` (for tuning on other CPUs;
/// results stay correct for any positive values).
enum GemmBlocking {
    /// Rows of x per register tile (x is packed in panels of this many rows).
    static let mr = 6
    /// Steps of k per block: a 16×kc weight slice (32 KiB) is reused from L1/L2 by every row
    /// panel of a chunk. 512 measured 5–15 % faster than 256 for M = 128–512 on Zen 3.
    /// A multiple of 128, so that K-blocks never split a quantized weight's group.
    static let kc = tuning("MOEC_GEMM_KC").map { max(128, $0 / 128 * 128) } ?? 512
    /// Row panels per L2 chunk: 24 × 6 rows × kc floats = 288 KiB of packed x.
    static let mcPanels = tuning("MOEC_GEMM_MC_PANELS") ?? 24
    /// Packed x up to this size is kept whole in L2 and each weight panel streamed once.
    static let panelMajorMaxBytes = 320 * 1024
}

private func tuning(_ name: String) -> Int? {
    ProcessInfo.processInfo.environment[name].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
}

extension Kernels {
    /// `y[M, N] (+)= x[M, K] · Wᵀ` with W pre-packed (`PackedWeight`, W stored `[N, K]`).
    ///
    /// - x: row `i` starts at `x + i*ldx` (default `ldx = K`); y: row `i` at `y + i*ldy`
    ///   (default `ldy = N`). `accumulate` adds to y instead of overwriting it.
    /// - `threads` > 1 splits the 16-column weight panels into contiguous ranges, one per thread.
    ///   Every output element is one chain of fused multiply-adds over k in increasing order, so
    ///   results do not depend on `threads`, nor on M (a row's result is the same in any batch).
    public static func gemm(
        _ x: UnsafePointer<Float>, _ w: PackedWeight, _ y: UnsafeMutablePointer<Float>,
        m: Int, ldx: Int? = nil, ldy: Int? = nil, accumulate: Bool = false,
        threads: Int = 1, isa: ISA = .best, packBuffer: UnsafeMutablePointer<Float>? = nil,
        job: GemmJob? = nil
    ) {
        let k = w.k, n = w.n
        let ldx = ldx ?? k, ldy = ldy ?? n
        precondition(ldx >= k && ldy >= n, "gemm: leading dimensions too small")
        guard m > 0 else { return }
        if let job, let packBuffer {
            job.run(x, ldx: ldx, w, y, m: m, ldy: ldy, accumulate: accumulate, threads: threads, isa: isa, packBuffer: packBuffer)
            return
        }
        let packedA = PackedA(m: m, k: k, buffer: packBuffer)
        defer { if packBuffer == nil { packedA.data.deallocate() } }
        packedA.fill(from: x, strideM: ldx, strideK: 1, alpha: 1, threads: threads)
        runPacked(packedA, w, y, ldy: ldy, accumulate: accumulate, threads: threads, isa: isa)
    }

    /// Bytes of the buffer `gemm(…, packBuffer:)` packs an m×k operand into.
    public static func packedOperandBytes(m: Int, k: Int) -> Int {
        (m + GemmBlocking.mr - 1) / GemmBlocking.mr * GemmBlocking.mr * k * 4
    }

    /// `y[i, :] (+)= x[rows[i], :] · Wᵀ` for i < m: the MoE expert GEMM on the tokens routed to
    /// one expert, gathering the rows while packing (no separate gather copy). `rows` holds m
    /// row indices into x (any order, repeats allowed); y is dense `[m, N]` (row stride `ldy`).
    /// Same arithmetic as `gemm`, so the result equals gathering first and calling `gemm`.
    public static func gemm(
        gathering x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, _ w: PackedWeight,
        _ y: UnsafeMutablePointer<Float>, m: Int, ldx: Int? = nil, ldy: Int? = nil,
        accumulate: Bool = false, threads: Int = 1, isa: ISA = .best
    ) {
        let k = w.k, n = w.n
        let ldx = ldx ?? k, ldy = ldy ?? n
        precondition(ldx >= k && ldy >= n, "gemm: leading dimensions too small")
        guard m > 0 else { return }
        let packedA = PackedA(m: m, k: k)
        defer { packedA.data.deallocate() }
        packedA.fill(from: x, strideM: ldx, strideK: 1, alpha: 1, rows: rows, threads: threads)
        runPacked(packedA, w, y, ldy: ldy, accumulate: accumulate, threads: threads, isa: isa)
    }

    /// Runs the blocked loops on already-packed operands, splitting the weight panels over threads.
    static func runPacked(
        _ a: PackedA, _ w: PackedWeight, _ y: UnsafeMutablePointer<Float>, ldy: Int,
        accumulate: Bool, threads: Int, isa: ISA
    ) {
        let b = PanelStorage(w), cp = SendablePointer(y)
        let n = w.n
        Parallel.forEachChunk(count: w.panels, threads: multiplyThreads(m: a.m, n: n, k: w.k, threads: threads)) { panels in
            multiplyPanels(a, b: b, n: n, panels: panels, c: cp.pointer, ldc: ldy, accumulate: accumulate, isa: isa)
        }
    }

    /// Threads for a packed multiply: too little work per thread costs more in wake-ups than it gains.
    static func multiplyThreads(m: Int, n: Int, k: Int, threads: Int) -> Int {
        2 * m * n * k < 2_000_000 ? 1 : threads
    }

    /// Weight panels `panels` of `c (+)= a · bᵀ` on packed operands. `scratch`: for a bf16,
    /// f16 or quantized weight, `quantizedScratchFloats(k:format:)` floats this call alone uses
    /// (its widening strip or its int8 activation rows); nil takes a temporary buffer per call,
    /// which at that size is a heap allocation.
    @inline(__always)
    static func multiplyPanels(
        _ a: PackedA, b: PanelStorage, n: Int, panels: Range<Int>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, isa: ISA, scratch: UnsafeMutablePointer<Float>? = nil
    ) {
        switch (b.format, isa.runsAVX2) {
        case (.f32, true) where isa.runsAVX512:
            avx512GemmPacked(
                a: a.data, m: a.m, k: a.k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels, b: b.f32, n: n,
                panelBegin: panels.lowerBound, panelEnd: panels.upperBound, c: c, ldc: ldc, accumulate: accumulate, panelMajor: a.panelMajor)
        case (.bf16, true) where isa.runsAVX512, (.f16, true) where isa.runsAVX512:
            avx512GemmPackedHalf(
                f16: b.format == .f16, a: a.data, m: a.m, k: a.k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels, b: b.bf16,
                n: n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound, c: c, ldc: ldc, accumulate: accumulate,
                panelMajor: a.panelMajor)
        case (.f32, true):
            avx2GemmPacked(
                a: a.data, m: a.m, k: a.k, kcBlock: GemmBlocking.kc,
                mcPanels: GemmBlocking.mcPanels, b: b.f32, n: n,
                panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: c, ldc: ldc, accumulate: accumulate, panelMajor: a.panelMajor)
        case (.bf16, true):
            avx2GemmPackedBF16(
                a: a.data, m: a.m, k: a.k, kcBlock: GemmBlocking.kc,
                mcPanels: GemmBlocking.mcPanels, b: b.bf16, n: n,
                panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: c, ldc: ldc, accumulate: accumulate, panelMajor: a.panelMajor, strip: scratch)
        case (.int8, true) where usesIntegerRows(m: a.m, format: b.format, isa: isa),
            (.int4, true) where usesIntegerRows(m: a.m, format: b.format, isa: isa),
            (.int6, true) where usesIntegerRows(m: a.m, format: b.format, isa: isa),
            (.int5, true) where usesIntegerRows(m: a.m, format: b.format, isa: isa):
            if let scratch {
                integerProducts(
                    a.data, m: a.m, b, n: n, k: a.k, panels: panels, c, ldy: ldc, accumulate: accumulate, scratch: UnsafeMutableRawPointer(scratch), isa: isa)
            } else {
                withUnsafeTemporaryAllocation(byteCount: quantizedScratchFloats(k: a.k, format: b.format) * 4, alignment: 64) { scratch in
                    integerProducts(
                        a.data, m: a.m, b, n: n, k: a.k, panels: panels, c, ldy: ldc, accumulate: accumulate,
                        scratch: scratch.baseAddress!, isa: isa)
                }
            }
        case (.int8, true), (.int4, true), (.int6, true), (.int5, true):
            avx2GemmPackedQuantized(
                bits: b.format.bits, group: b.format.group!, offsets: b.format.offsets,
                a: a.data, m: a.m, k: a.k, kcBlock: GemmBlocking.kc,
                mcPanels: GemmBlocking.mcPanels, b: b.pointer, n: n,
                panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: c, ldc: ldc, accumulate: accumulate, panelMajor: a.panelMajor, strip: scratch)
        case (.f32, false):
            portableGemmPacked(a: a.data, m: a.m, k: a.k, b: b.f32, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate)
        case (.f16, true):
            avx2GemmPackedF16(
                a: a.data, m: a.m, k: a.k, kcBlock: GemmBlocking.kc,
                mcPanels: GemmBlocking.mcPanels, b: b.bf16, n: n,
                panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: c, ldc: ldc, accumulate: accumulate, panelMajor: a.panelMajor, strip: scratch)
        case (.bf16, false), (.f16, false):
            portableGemmPacked(
                a: a.data, m: a.m, k: a.k, half: b.bf16, f16: b.format == .f16, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate)
        case (.int8, false), (.int4, false), (.int6, false), (.int5, false):
            portableGemmPacked(a: a.data, m: a.m, k: a.k, quantized: b.pointer, format: b.format, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate)
        }
    }
}

/// A packed weight's panels as the kernels take them: the storage pointer and its element
/// format, without the owning object (so parallel regions capture no reference).
/// `@unchecked Sendable`: the panels are only read while a product runs.
struct PanelStorage: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    let format: PackedWeight.Format

    init(_ w: PackedWeight) {
        pointer = UnsafeRawPointer(w.storage)
        format = w.format
    }

    /// An empty placeholder (for a job not yet run).
    init() {
        pointer = UnsafeRawPointer(bitPattern: 64)!
        format = .f32
    }

    var f32: UnsafePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
    var bf16: UnsafePointer<UInt16> { pointer.assumingMemoryBound(to: UInt16.self) }
}

/// One GEMM call site's parallel regions, made once (per schedule step) so that a threaded
/// `Kernels.gemm(…, packBuffer:, job:)` allocates nothing: the call stores its operands here and
/// runs the packing and the multiply as `ChunkJob`s, with the same chunks and arithmetic as
/// without a job. Not for two calls at once.
public final class GemmJob: @unchecked Sendable {
    private var src: UnsafePointer<Float>?
    private var ldx = 0
    private var a = PackedA(m: 0, k: 0, buffer: UnsafeMutablePointer<Float>(bitPattern: 64)!)
    private var b = PanelStorage()
    private var c: UnsafeMutablePointer<Float>?
    private var n = 0, ldy = 0
    private var accumulate = false, isa = ISA.portable
    private var pack: ChunkJob!
    private var multiply: ChunkJob!
    /// Per part of the multiply region, `scratchFloats` floats (64-byte aligned) for a bf16, f16
    /// or quantized weight's widening strip or int8 activation rows; nil when 0.
    private let scratch: UnsafeMutablePointer<Float>?
    private let scratchStride: Int, scratchParts: Int
    private var parts = 1, panelCount = 0

    /// `scratchFloats`: the most `Kernels.quantizedScratchFloats(k:format:)` of the narrow
    /// weights this job multiplies by (0 when all are f32), for up to `threads` parts, so that
    /// their products allocate nothing either.
    public init(scratchFloats: Int = 0, threads: Int = 1) {
        scratchStride = (scratchFloats + 15) / 16 * 16
        scratchParts = max(threads, 1)
        scratch =
            scratchFloats > 0
            ? UnsafeMutableRawPointer.allocate(byteCount: scratchStride * scratchParts * 4, alignment: 64).bindMemory(
                to: Float.self, capacity: scratchStride * scratchParts) : nil
        pack = ChunkJob { [unowned self] panels in
            self.a.fill(from: self.src!, strideM: self.ldx, strideK: 1, alpha: 1, rows: nil, panels: panels)
        }
        multiply = ChunkJob { [unowned self] panels in
            Kernels.multiplyPanels(
                self.a, b: self.b, n: self.n, panels: panels, c: self.c!, ldc: self.ldy,
                accumulate: self.accumulate, isa: self.isa, scratch: self.scratch(for: panels))
        }
    }

    deinit { scratch?.deallocate() }

    /// The scratch of the part of the multiply region that runs `panels` (the parts are
    /// `Parallel.chunk`s, told apart by where they start); nil without scratch, or for more
    /// parts than it was made for.
    private func scratch(for panels: Range<Int>) -> UnsafeMutablePointer<Float>? {
        guard let scratch, parts <= scratchParts else { return nil }
        for p in 0..<parts where Parallel.chunk(p, of: parts, count: panelCount).lowerBound == panels.lowerBound {
            return scratch + p * scratchStride
        }
        return nil
    }

    func run(
        _ x: UnsafePointer<Float>, ldx: Int, _ w: PackedWeight, _ y: UnsafeMutablePointer<Float>, m: Int, ldy: Int,
        accumulate: Bool, threads: Int, isa: ISA, packBuffer: UnsafeMutablePointer<Float>
    ) {
        src = x
        self.ldx = ldx
        a = PackedA(m: m, k: w.k, buffer: packBuffer)
        b = PanelStorage(w)
        c = y
        n = w.n
        self.ldy = ldy
        self.accumulate = accumulate
        self.isa = isa
        Parallel.forEachChunk(count: a.mPanels, threads: a.fillThreads(threads), job: pack)
        let multiplyThreads = Kernels.multiplyThreads(m: m, n: w.n, k: w.k, threads: threads)
        parts = max(1, min(multiplyThreads, w.panels))
        panelCount = w.panels
        Parallel.forEachChunk(count: w.panels, threads: multiplyThreads, job: multiply)
    }
}

/// x (or op(A)) copied into row panels of `GemmBlocking.mr` rows, K-blocked by `GemmBlocking.kc`:
/// block `b` (length kc) starts at `b*KC*mPanels*6`; inside it, panel `i` starts at `i*kc*6` and
/// holds kc steps of 6 floats (rows past M are zero). A view of memory it does not own: a caller's
/// buffer, or one allocated by `init(m:k:)` that the caller deallocates (a struct, so that packing
/// into a caller's buffer allocates nothing).
/// `@unchecked Sendable`: threads packing it write disjoint row panels; afterwards it is only read.
struct PackedA: @unchecked Sendable {
    let m: Int, k: Int, mPanels: Int
    let data: UnsafeMutablePointer<Float>

    /// Over `buffer` (at least `Kernels.packedOperandBytes(m:k:)`), or newly allocated when nil.
    init(m: Int, k: Int, buffer: UnsafeMutablePointer<Float>? = nil) {
        self.m = m
        self.k = k
        mPanels = (m + GemmBlocking.mr - 1) / GemmBlocking.mr
        let count = mPanels * GemmBlocking.mr * k
        data =
            buffer
            ?? UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
    }

    /// Element (i, k) of the source is `src[r(i)*strideM + k*strideK]`, multiplied by `alpha`,
    /// where r(i) = `rows[i]` when `rows` is given (a gather), else i.
    /// Large operands are packed by `threads` threads, each taking a range of row panels.
    func fill(
        from src: UnsafePointer<Float>, strideM: Int, strideK: Int, alpha: Float,
        rows: UnsafePointer<Int32>? = nil, threads: Int = 1
    ) {
        let s = SendablePointer(src), r = rows.map { SendablePointer($0) }
        Parallel.forEachChunk(count: mPanels, threads: fillThreads(threads)) { panels in
            self.fill(
                from: s.pointer, strideM: strideM, strideK: strideK, alpha: alpha,
                rows: r?.pointer, panels: panels)
        }
    }

    /// Threads for packing: only large operands are worth splitting.
    func fillThreads(_ threads: Int) -> Int { m * k >= 64 * 1024 ? threads : 1 }

    /// Whether the multiply walks A panel by panel (it fits the cache budget).
    var panelMajor: Bool { mPanels * GemmBlocking.mr * k * 4 <= GemmBlocking.panelMajorMaxBytes }

    func fill(
        from src: UnsafePointer<Float>, strideM: Int, strideK: Int, alpha: Float,
        rows: UnsafePointer<Int32>?, panels: Range<Int>
    ) {
        packRowPanels(
            src, strideM: strideM, strideK: strideK, alpha: alpha, rows: rows, rowScale: nil,
            m: m, k: k, panels: panels, into: data)
    }
}

/// Writes row panels `panels` of the packed-A layout (see `PackedA`) for an m×k operand whose element
/// (i, kk) is `alpha · rowScale[i] · src[r(i)*strideM + kk*strideK]`, r(i) = `rows[i]` or i.
func packRowPanels(
    _ src: UnsafePointer<Float>, strideM: Int, strideK: Int, alpha: Float,
    rows: UnsafePointer<Int32>?, rowScale: UnsafePointer<Float>?, m: Int, k: Int,
    panels: Range<Int>, into data: UnsafeMutablePointer<Float>
) {
    let mr = GemmBlocking.mr
    let mPanels = (m + mr - 1) / mr
    var k0 = 0
    while k0 < k {
        let kc = min(GemmBlocking.kc, k - k0)
        let block = data + k0 * mPanels * mr
        for p in panels {
            let out = block + p * kc * mr
            for r in 0..<mr {
                let i = p * mr + r
                if i < m {
                    let row = src + (rows.map { Int($0[i]) } ?? i) * strideM + k0 * strideK
                    let scale = alpha * (rowScale?[i] ?? 1)
                    if scale == 1 && strideK == 1 {
                        for kk in 0..<kc { out[kk * mr + r] = row[kk] }
                    } else if scale == 1 {
                        for kk in 0..<kc { out[kk * mr + r] = row[kk * strideK] }
                    } else {
                        for kk in 0..<kc { out[kk * mr + r] = scale * row[kk * strideK] }
                    }
                } else {
                    for kk in 0..<kc { out[kk * mr + r] = 0 }
                }
            }
        }
        k0 += kc
    }
}
