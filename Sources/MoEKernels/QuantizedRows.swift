import Foundation
import MoEKernelsAVX512

/// Rows of activations quantized to int8 for the integer products on quantized weights
/// (`avx512QuantizedRows`): per row and group of `group` values, the int8 values, their scale
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

    /// Quantizes the m rows of an operand packed by `PackedRows.pack` (k-blocked panels of
    /// `GemmBlocking.mr` rows), group by group as llama.cpp's Q8_0 does for activations:
    /// d = max|x| / 127, q = round(x / d); a group holding a NaN or an infinity gets d = NaN.
    func quantize(packed a: UnsafePointer<Float>) {
        let mr = GemmBlocking.mr, kc = GemmBlocking.kc
        let mPanels = (m + mr - 1) / mr
        let groups = k / group
        withUnsafeTemporaryAllocation(of: Float.self, capacity: group) { buffer in
            let x = buffer.baseAddress!
            for r in 0..<m {
                let (panel, lane) = (r / mr, r % mr)
                for gi in 0..<groups {
                    for i in 0..<group {
                        let kk = gi * group + i
                        let k0 = kk / kc * kc, width = min(kc, k - k0)
                        x[i] = a[k0 * mPanels * mr + panel * width * mr + (kk - k0) * mr + lane]
                    }
                    let q = values + r * k + gi * group
                    let d = Q8Activations.quantizeBlockOf(x, count: group, into: q)
                    var sum = 0
                    for i in 0..<group { sum += Int(q[i]) }
                    scales[r * groups + gi] = d
                    sums[r * groups + gi] = Float(sum)
                }
            }
        }
    }
}

extension Q8Activations {
    /// `quantizeBlock` for any count of values (all of them quantized; none padded).
    static func quantizeBlockOf(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<Int8>) -> Float {
        var amax: Float = 0
        var finite = true
        for i in 0..<count {
            finite = finite && x[i].isFinite
            amax = max(amax, abs(x[i]))
        }
        guard finite else {
            q.initialize(repeating: 0, count: count)
            return .nan
        }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        for i in 0..<count { q[i] = Int8((x[i] * id).rounded()) }
        return d
    }
}

extension Kernels {
    /// Rows at most this many take the integer products on a quantized weight (when the CPU has
    /// VNNI); more rows widen the weight to fp32 (`MOEC_INT8_ROWS` overrides, 0 turns it off).
    static let integerRowLimit: Int = {
        if let s = ProcessInfo.processInfo.environment["MOEC_INT8_ROWS"], let v = Int(s), v >= 0 { return v }
        return 16
    }()

    /// Whether `gemmPacked` on `m` rows of a `format` weight takes the integer products.
    static func usesIntegerRows(m: Int, format: PackedWeight.Format, isa: ISA) -> Bool {
        format.isQuantized && m <= integerRowLimit && isa.runsAVX2 && ISA.int8UsesAVX512
    }

    /// Floats of scratch `gemmPacked` needs on a `format` weight of `k` inputs (its `bf16Strip`):
    /// the widening strip, or the integer path's quantized rows, whichever is larger.
    public static func quantizedScratchFloats(k: Int, format: PackedWeight.Format) -> Int {
        guard let g = format.group else { return PackedRows.bf16StripFloats(k: k) }
        return max(PackedRows.bf16StripFloats(k: k), (QuantizedRows.bytes(m: integerRowLimit, k: k, group: g) + 3) / 4)
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
