import MoEKernelsAVX2
import MoEKernelsAVX512

/// The GEMM's left operand (rows of activations) packed into storage the caller owns, and the
/// GEMM on one range of weight panels run on the calling thread.
///
/// `Kernels.gemm` packs x into a fresh buffer and splits the weight panels over threads on every
/// call. An executor that schedules many small GEMMs itself (the experts of an MoE layer: one
/// packed operand per expert, panel ranges handed to threads by a cost model, no barrier between
/// experts) packs once into its own arena and calls `gemmPacked` per (operand, panel range), so
/// the run loop allocates nothing and threads are not woken per GEMM.
public enum PackedRows {
    /// Floats of storage that m rows of length k take when packed (rows rounded up to the tile).
    public static func floatCount(m: Int, k: Int) -> Int {
        let mr = GemmBlocking.mr
        return (m + mr - 1) / mr * mr * k
    }

    /// Packs an m×k operand into `dst` (`floatCount(m:k:)` floats). Row i is read from
    /// `src + r(i)*ld` with r(i) = `rows[i]` when given (a gather) or i, and multiplied by
    /// `scale[i]` when given (e.g. a routing weight folded into the operand).
    /// `panels` restricts the work to those row panels (`rowsPerPanel` rows each), so threads can
    /// pack disjoint parts of one operand.
    public static func pack(
        _ src: UnsafePointer<Float>, ld: Int, rows: UnsafePointer<Int32>? = nil,
        scale: UnsafePointer<Float>? = nil, m: Int, k: Int, into dst: UnsafeMutablePointer<Float>,
        panels: Range<Int>? = nil
    ) {
        guard m > 0 else { return }
        let all = 0..<panelCount(m: m)
        packRowPanels(
            src, strideM: ld, strideK: 1, alpha: 1, rows: rows, rowScale: scale, m: m, k: k,
            panels: panels?.clamped(to: all) ?? all, into: dst)
    }

    /// Writes columns `kBegin ..< kBegin + count` of an m×k operand into its packed layout (the
    /// layout `pack` writes for the same m and k): element (i, kBegin + c) is `src[i*ld + c]`,
    /// times `scale[i]` when given; rows past m in the last panel are zero. Filling a packed
    /// operand strip by strip, this way, lets a GEMM's epilogue write the next GEMM's operand
    /// while the strip is still in cache. Same values as `pack`.
    /// `rows` (default all m) limits the work to those rows' panels; it starts on a panel.
    public static func packColumns(
        _ src: UnsafePointer<Float>, ld: Int, scale: UnsafePointer<Float>? = nil,
        m: Int, k: Int, columns kBegin: Int, count: Int, rows: Range<Int>? = nil,
        into dst: UnsafeMutablePointer<Float>
    ) {
        let mr = GemmBlocking.mr, kcBlock = GemmBlocking.kc
        let mPanels = (m + mr - 1) / mr
        let rows = rows ?? 0..<m
        precondition(
            rows.lowerBound % mr == 0 && rows.lowerBound >= 0 && rows.upperBound <= m,
            "packColumns: rows must start on a panel and lie in 0..<m")
        precondition(kBegin >= 0 && count >= 0 && kBegin + count <= k, "packColumns: columns out of range")
        let panelRange = rows.lowerBound / mr..<(rows.upperBound + mr - 1) / mr
        var c = 0
        while c < count {
            // The columns of this strip inside one K-block.
            let kk = kBegin + c, k0 = kk / kcBlock * kcBlock
            let kc = min(kcBlock, k - k0)
            let run = min(count - c, k0 + kc - kk)
            let block = dst + k0 * mPanels * mr + (kk - k0) * mr
            for p in panelRange {
                let out = block + p * kc * mr
                for r in 0..<mr {
                    let i = p * mr + r
                    if i < m {
                        let row = src + i * ld + c
                        if let scale {
                            let w = scale[i]
                            for j in 0..<run { out[j * mr + r] = w * row[j] }
                        } else {
                            for j in 0..<run { out[j * mr + r] = row[j] }
                        }
                    } else {
                        for j in 0..<run { out[j * mr + r] = 0 }
                    }
                }
            }
            c += run
        }
    }

    /// Floats of the scratch strip `Kernels.gemmPacked` widens a bf16 weight's K-block into, for
    /// a weight of `k` inputs.
    public static func bf16StripFloats(k: Int) -> Int { PackedWeight.panelWidth * min(k, GemmBlocking.kc) }

    /// Rows per packed panel (the GEMM's register tile height).
    public static var rowsPerPanel: Int { GemmBlocking.mr }

    /// Row panels of an m-row operand.
    public static func panelCount(m: Int) -> Int { (m + GemmBlocking.mr - 1) / GemmBlocking.mr }
}

extension Kernels {
    /// `y[m, cols of panels] (+)= a · Wᵀ` for the weight panels `panels` only (16 output columns
    /// each; the last panel may be partial), on the calling thread. `a` was packed by
    /// `PackedRows.pack` with the same m and k = `w.k`. Same arithmetic as `gemm`: each output is one
    /// FMA chain over k in increasing order, so splitting the panels differently never changes a bit.
    ///
    /// With `epilogueEvery` > 0 (the panel range then holds whole groups of that many panels), the
    /// GEMM calls `epilogue(rowBegin, rowEnd, panelBegin, panelEnd)` as soon as those rows of a
    /// group of panels are final, while they are still in cache: a GEMM epilogue (e.g. an
    /// activation, and packing the result as the next GEMM's operand). Every row of every group
    /// is handed over exactly once.
    ///
    /// Quantized weights: on CPUs with AVX2 (`Kernels.usesIntegerRows`) the rows are quantized to
    /// int8 here and the products are integers (`avx512QuantizedRows` with VNNI, else
    /// `avx2QuantizedRows`: the activations rounded to about 1/254 of each group's largest
    /// value); otherwise, or with `MOEC_INT8_ROWS=0`, the weight is widened to fp32 exactly and
    /// the result is what the fp32 kernel computes on the dequantized weight.
    ///
    /// `bf16Strip`: for a `.bf16` or quantized weight, `Kernels.quantizedScratchFloats(k: w.k,
    /// format: w.format)` floats (for bf16: `bf16StripFloats(k: w.k)`) that this call alone
    /// uses while it runs (where a K-block of the weight is widened for several register tiles);
    /// nil takes a temporary buffer per call, which at this size is a heap allocation. Unused
    /// for `.f32`.
    public static func gemmPacked(
        _ a: UnsafePointer<Float>, m: Int, _ w: PackedWeight, panels: Range<Int>,
        _ y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false,
        isa: ISA = .best, bf16Strip: UnsafeMutablePointer<Float>? = nil, epilogueEvery: Int = 0,
        epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
    ) {
        guard m > 0, !panels.isEmpty else { return }
        precondition(panels.lowerBound >= 0 && panels.upperBound <= w.panels, "gemmPacked: panels out of range")
        precondition(ldy >= w.n, "gemmPacked: ldy too small")
        precondition(epilogueEvery == 0 || panels.count % epilogueEvery == 0, "gemmPacked: panels are not whole epilogue groups")
        let k = w.k
        let mPanels = (m + GemmBlocking.mr - 1) / GemmBlocking.mr
        let panelMajor = mPanels * GemmBlocking.mr * k * 4 <= GemmBlocking.panelMajorMaxBytes
        switch (w.format, isa.runsAVX2) {
        case (.f32, true) where isa.runsAVX512:
            avx512GemmPacked(
                a: a, m: m, k: k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels,
                b: w.data, n: w.n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: y, ldc: ldy, accumulate: accumulate, panelMajor: panelMajor,
                epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.bf16, true) where isa.runsAVX512, (.f16, true) where isa.runsAVX512:
            avx512GemmPackedHalf(
                f16: w.format == .f16, a: a, m: m, k: k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels,
                b: w.bf16Data, n: w.n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: y, ldc: ldy, accumulate: accumulate, panelMajor: panelMajor,
                epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.f32, true):
            avx2GemmPacked(
                a: a, m: m, k: k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels,
                b: w.data, n: w.n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: y, ldc: ldy, accumulate: accumulate, panelMajor: panelMajor,
                epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.bf16, true):
            avx2GemmPackedBF16(
                a: a, m: m, k: k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels,
                b: w.bf16Data, n: w.n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: y, ldc: ldy, accumulate: accumulate, panelMajor: panelMajor, strip: bf16Strip,
                epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.int8, true) where usesIntegerRows(m: m, format: w.format, isa: isa),
            (.int4, true) where usesIntegerRows(m: m, format: w.format, isa: isa),
            (.int6, true) where usesIntegerRows(m: m, format: w.format, isa: isa),
            (.int5, true) where usesIntegerRows(m: m, format: w.format, isa: isa):
            func run(_ scratch: UnsafeMutableRawPointer) {
                integerProducts(
                    a, m: m, PanelStorage(w), n: w.n, k: k, panels: panels, y, ldy: ldy, accumulate: accumulate, scratch: scratch, isa: isa,
                    epilogueEvery: epilogueEvery,
                    epilogue: epilogue)
            }
            if let bf16Strip {
                run(UnsafeMutableRawPointer(bf16Strip))
            } else {
                withUnsafeTemporaryAllocation(byteCount: quantizedScratchFloats(k: k, format: w.format) * 4, alignment: 64) { run($0.baseAddress!) }
            }
        case (.int8, true), (.int4, true), (.int6, true), (.int5, true):
            avx2GemmPackedQuantized(
                bits: w.format.bits, group: w.format.group!, offsets: w.format.offsets,
                a: a, m: m, k: k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels,
                b: w.quantizedData, n: w.n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: y, ldc: ldy, accumulate: accumulate, panelMajor: panelMajor, strip: bf16Strip,
                epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.f32, false):
            portableGemmPacked(
                a: a, m: m, k: k, b: w.data, n: w.n, panels: panels, c: y, ldc: ldy,
                accumulate: accumulate, epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.int8, false), (.int4, false), (.int6, false), (.int5, false):
            portableGemmPacked(
                a: a, m: m, k: k, quantized: w.quantizedData, format: w.format, n: w.n, panels: panels, c: y, ldc: ldy,
                accumulate: accumulate, strip: bf16Strip, epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.f16, true):
            avx2GemmPackedF16(
                a: a, m: m, k: k, kcBlock: GemmBlocking.kc, mcPanels: GemmBlocking.mcPanels,
                b: w.bf16Data, n: w.n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound,
                c: y, ldc: ldy, accumulate: accumulate, panelMajor: panelMajor, strip: bf16Strip,
                epilogueEvery: epilogueEvery, epilogue: epilogue)
        case (.bf16, false), (.f16, false):
            portableGemmPacked(
                a: a, m: m, k: k, half: w.bf16Data, f16: w.format == .f16, n: w.n, panels: panels, c: y, ldc: ldy,
                accumulate: accumulate, strip: bf16Strip, epilogueEvery: epilogueEvery, epilogue: epilogue)
        }
    }
}
