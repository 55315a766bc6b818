import Foundation
import MoEKernelsAVX2
import MoEKernelsAVX512

/// Rows of activations quantized to int8 for the integer products on quantized weights
/// (`avx512QuantizedRows`, `avx2QuantizedRows`): per row and group of `group` values, the int8 values, their scale
/// and their sum, in storage the caller provides (`bytes(m:k:group:)`).
struct QuantizedRows {
    let m: Int, k: Int, group: Int
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Float>

    static func bytes(m: Int, k: Int, group: Int) -> Int { (m * k + 63) / 64 * 64 + 2 * m * (k / group) * 4 }

    init(m: Int, k: Int, group: Int, storage: UnsafeMutableRawPointer) {
        self.m = m
        self.k = k
        self.group = group
        values = storage.bindMemory(to: Int8.self, capacity: m * k)
        let floats = (storage + (m * k + 63) / 64 * 64).bindMemory(to: Float.self, capacity: 2 * m * (k / group))
        scales = floats
        sums = floats + m * (k / group)
    }

    /// Quantizes rows `first ..< first + m` of an operand of `total` rows packed by
    /// `PackedRows.pack` (see `avx2QuantizeRows`: per row and group, d = max|x| / 127 and q = x / d
    /// to nearest, ties to even). `first` starts a row panel. With AVX-512, whole panels take
    /// `avx512QuantizeRows` (the same bytes; groups of 8n steps), the last partial one the AVX2
    /// code.
    func quantize(packed a: UnsafePointer<Float>, total: Int, from first: Int = 0, isa: ISA = .best) {
        let mr = GemmBlocking.mr, kc = GemmBlocking.kc
        let panels = first / mr..<(first + m + mr - 1) / mr
        var rest = panels
        if isa.runsAVX512 && group % 8 == 0 {
            let whole = panels.lowerBound..<max(panels.lowerBound, min(panels.upperBound, total / mr))
            if !whole.isEmpty {
                avx512QuantizeRows(
                    packed: a, m: total, k: k, group: group, kc: kc, panels: whole, values: values, scales: scales, sums: sums)
            }
            rest = whole.upperBound..<panels.upperBound
        }
        guard !rest.isEmpty else { return }
        let skipped = (rest.lowerBound - panels.lowerBound) * mr, groups = k / group
        avx2QuantizeRows(
            packed: a, m: total, k: k, group: group, kc: kc, panels: rest, values: values + skipped * k,
            scales: scales + skipped * groups, sums: sums + skipped * groups)
    }
}

extension Kernels {
    /// Whether quantized weights take the integer products (`MOEC_INT8_ROWS=0` turns them off:
    /// every product then widens the weights to fp32).
    static let integerProductsAllowed: Bool = ProcessInfo.processInfo.environment["MOEC_INT8_ROWS"] != "0"

    /// Whether quantized weights take the integer products with the default kernels (`ISA.best`)
    /// in this process, for some row counts: the CPU has AVX2 and `MOEC_INT8_ROWS` is not 0.
    public static var integerProductsByDefault: Bool { integerProductsAllowed && ISA.best.runsAVX2 }

    /// Rows quantized at a time for the integer products (a multiple of the packed panels' 6
    /// rows and of the kernel's 4-row tiles): the scratch holds this many. The kernel streams
    /// every weight panel once per chunk, so the chunk is large enough that many rows share a
    /// panel while it is in L1, and its rows (96 × k bytes) stay in L2: 96 rows measured 8–15 %
    /// faster than 24 at 128 and 512 tokens on the Mixtral shape, and the same as 192.
    static let integerRowChunk = 96

    /// Rows up to which int8 weights take the integer products on AVX2 CPUs without VNNI (int4
    /// to int6 always do; with VNNI every row count does). Without `vpdpbusd` an int8 product costs two
    /// multiplies (`vpmaddubsw`, `vpmaddwd`) per 32 products and row, about what the fp32 FMAs on
    /// widened weights cost, so once the rows make the product compute-bound the widened path is
    /// as fast and then faster: on the 2-core EPYC here (AVX2 only), [7168 × 1024] int8, 2
    /// threads, integer / widened: 0.42 / 0.92 ms at 1 row, 1.10 / 1.67 at 4, 2.19 / 2.60 at
    /// 8, 3.3 / 3.4 at 12, 4.28 / 4.28 at 16, 8.6 / 7.8 at 32 and 34.6 / 28.6 at 128. int4
    /// values add two nibble quads in 16 bits before one `vpmaddwd`, and stay ahead (26.3 / 28.6
    /// ms at 128 rows).
    static let int8RowsWithoutVNNI = 16

    /// How products on int8/int4 weights run with the default kernels, for reports (`moec bench`).
    public static var quantizedProductsDescription: String {
        guard integerProductsByDefault else {
            return ISA.best.runsAVX2 ? "widened to f32 (MOEC_INT8_ROWS=0)" : "widened to f32 (portable kernels)"
        }
        if ISA.best.runsAVX512 { return "integer products on int8 activations (AVX-512 VNNI)" }
        return "integer products on int8 activations (AVX2; int8 widened to f32 beyond \(int8RowsWithoutVNNI) rows per expert)"
    }

    /// Whether `gemmPacked` on a `format` weight takes the integer products.
    static func usesIntegerRows(m: Int, format: PackedWeight.Format, isa: ISA) -> Bool {
        guard format.isQuantized && integerProductsAllowed && isa.runsAVX2 else { return false }
        return isa.runsAVX512 || format.bits < 8 || m <= int8RowsWithoutVNNI
    }

    /// Floats of scratch `gemmPacked` needs on a `format` weight of `k` inputs (its `bf16Strip`):
    /// the widening strip, or the integer path's quantized rows, whichever is larger.
    public static func quantizedScratchFloats(k: Int, format: PackedWeight.Format) -> Int {
        guard let g = format.group else { return PackedRows.bf16StripFloats(k: k) }
        let expanded = avx512ExpandedPanelBytes(bits: format.bits, offsets: format.offsets, group: g, k: k)
        return max(PackedRows.bf16StripFloats(k: k), (expandedPanelsOffset(k: k, group: g) + expanded + 3) / 4)
    }

    /// Where in the integer products' scratch the AVX-512 kernel's expanded int5/int6 panels go:
    /// after the quantized rows, on a cache line.
    static func expandedPanelsOffset(k: Int, group: Int) -> Int {
        (QuantizedRows.bytes(m: integerRowChunk, k: k, group: group) + 63) / 64 * 64
    }

    /// The integer products on `m` rows of a packed operand `a`, `integerRowChunk` rows at a time
    /// quantized into `scratch` (`QuantizedRows.bytes(m: integerRowChunk, …)` bytes).
    static func integerProducts(
        _ a: UnsafePointer<Float>, m: Int, _ w: PanelStorage, n: Int, k: Int, panels: Range<Int>, _ y: UnsafeMutablePointer<Float>, ldy: Int,
        accumulate: Bool, scratch: UnsafeMutableRawPointer, isa: ISA, epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
    ) {
        let g = w.format.group!
        var r0 = 0
        while r0 < m {
            let rows = min(integerRowChunk, m - r0)
            let x = QuantizedRows(m: rows, k: k, group: g, storage: scratch)
            x.quantize(packed: a, total: m, from: r0, isa: isa)
            if isa.runsAVX512 {
                avx512QuantizedRows(
                    bits: w.format.bits, offsets: w.format.offsets, group: g, xq: x.values, xs: x.scales, xsum: x.sums, m: rows, k: k,
                    b: w.pointer, n: n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound, c: y + r0 * ldy, ldc: ldy,
                    accumulate: accumulate, expanded: scratch + expandedPanelsOffset(k: k, group: g), epilogueEvery: epilogueEvery
                ) { e0, e1, p0, p1 in epilogue(r0 + e0, r0 + e1, p0, p1) }
            } else {
                avx2QuantizedRows(
                    bits: w.format.bits, offsets: w.format.offsets, group: g, xq: x.values, xs: x.scales, xsum: x.sums, m: rows, k: k,
                    b: w.pointer, n: n, panelBegin: panels.lowerBound, panelEnd: panels.upperBound, c: y + r0 * ldy, ldc: ldy,
                    accumulate: accumulate, epilogueEvery: epilogueEvery
                ) { e0, e1, p0, p1 in epilogue(r0 + e0, r0 + e1, p0, p1) }
            }
            r0 += rows
        }
    }

    /// The integer products of `avx512QuantizedRows`, scalar, in the same order (tests compare
    /// the two bit for bit): for each column, per group t = fma(S, dot, M·sx), acc = fma(dx, t, acc).
    static func quantizedRowsReference(
        _ x: QuantizedRows, _ w: PackedWeight, panels: Range<Int>, _ y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
    ) {
        let format = w.format, g = format.group!, groups = w.k / g, bytes = format.groupBytes
        for p in panels {
            for j in 0..<min(16, w.n - p * 16) {
                for r in 0..<x.m {
                    var acc: Float = 0
                    for gi in 0..<groups {
                        let group = UnsafeRawPointer(w.quantizedData) + (p * groups + gi) * bytes
                        let s = group.load(fromByteOffset: 4 * j, as: Float.self)
                        let m = format.offsets ? group.load(fromByteOffset: 64 + 4 * j, as: Float.self) : s * -Float(format.centre)
                        let quads = group + (format.offsets ? 128 : 64)
                        var dot: Int32 = 0
                        for i in 0..<g { dot += Int32(quantizedValue(quads, format: format, step: i, column: j)) * Int32(x.values[r * w.k + gi * g + i]) }
                        let t = (m * x.sums[r * groups + gi]).addingProduct(s, Float(dot))
                        acc = acc.addingProduct(x.scales[r * groups + gi], t)
                    }
                    let out = y + r * ldy + p * 16 + j
                    out.pointee = accumulate ? out.pointee + acc : acc
                }
            }
        }
    }
}
