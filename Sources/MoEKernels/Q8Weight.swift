import Foundation
import MoEKernelsAVX2
import MoEKernelsAVX512

/// A weight matrix W `[N, K]` stored as 8-bit integers in blocks of 32 along K, one Float scale
/// per block (llama.cpp's Q8_0 scheme, scales kept in fp32): `W[n, k] ≈ q[n, k] · d[n, k / 32]`.
/// A quarter of fp32's bytes (plus 1/8 for the scales): the format for the bandwidth-bound
/// decode shapes.
///
/// Layout: panels of 4 rows; for each block of 32 along K, the 4 rows' 32 int8 values (128
/// bytes) then their 4 scales (16 bytes), so one panel is one contiguous stream. K is padded with
/// zeros to a multiple of 32, N to a multiple of 4 (zero rows, scale 0). 64-byte aligned; not
/// changed after `init`, so threads may share it.
public final class Q8Weight: @unchecked Sendable {
    /// Output features (rows of W) and input features (columns).
    public let n: Int
    public let k: Int
    /// K rounded up to a multiple of 32.
    public let kp: Int
    /// ⌈N / 4⌉ panels.
    public let panels: Int
    let storage: UnsafeMutableRawPointer
    /// Bytes of the panels (what a product streams).
    public var byteCount: Int { panels * (kp / 32) * 144 }

    private init(n: Int, k: Int) {
        precondition(n > 0 && k > 0, "Q8Weight: empty matrix [\(n), \(k)]")
        self.n = n
        self.k = k
        kp = (k + 31) / 32 * 32
        panels = (n + 3) / 4
        storage = .allocate(byteCount: max(panels * (kp / 32) * 144, 64), alignment: 64)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: max(panels * (kp / 32) * 144, 64))
    }

    deinit { storage.deallocate() }

    /// Quantizes W `[n, k]` (row-major, row stride `ldw`) to nearest, block by block as ggml's
    /// `quantize_row_q8_0_ref` does: d = max |w| / 127, q = round(w / d) (halves away from zero).
    /// A block holding a NaN or an infinity gets scale NaN (its products are NaN).
    public convenience init(quantizing w: UnsafePointer<Float>, n: Int, k: Int, ldw: Int? = nil) {
        self.init(n: n, k: k)
        let stride = ldw ?? k
        var block = [Int8](repeating: 0, count: 32)
        for row in 0..<n {
            for b in 0..<(kp / 32) {
                let begin = 32 * b, end = min(k, begin + 32)
                let d = block.withUnsafeMutableBufferPointer {
                    Q8Activations.quantizeBlock(w + row * stride + begin, count: end - begin, into: $0.baseAddress!)
                }
                place(row: row, block: b, values: block, scale: d)
            }
        }
    }

    /// Repacks rows of GGUF Q8_0 blocks (34 bytes per 32 values: an fp16 scale, then 32 int8),
    /// `n` rows of `k` values (a multiple of 32), row after row: the same bits, the scales
    /// widened to fp32 exactly.
    public convenience init(q8_0Blocks source: UnsafeRawPointer, n: Int, k: Int) {
        precondition(k % 32 == 0, "Q8Weight: Q8_0 rows of \(k) values are not whole blocks")
        self.init(n: n, k: k)
        var block = [Int8](repeating: 0, count: 32)
        for row in 0..<n {
            for b in 0..<(k / 32) {
                let p = source + (row * (k / 32) + b) * 34
                let bits = UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))
                for i in 0..<32 { block[i] = p.load(fromByteOffset: 2 + i, as: Int8.self) }
                place(row: row, block: b, values: block, scale: Q8Activations.halfToFloat(bits))
            }
        }
    }

    private func place(row: Int, block b: Int, values: [Int8], scale: Float) {
        let panel = storage + (row / 4) * (kp / 32) * 144 + b * 144
        let q = (panel + 32 * (row % 4)).assumingMemoryBound(to: Int8.self)
        for i in 0..<32 { q[i] = values[i] }
        (panel + 128).assumingMemoryBound(to: Float.self)[row % 4] = scale
    }

    /// W[row, k] as stored: q · d (for tests and the reference).
    public func dequantized(row: Int, column: Int) -> Float {
        let panel = storage + (row / 4) * (kp / 32) * 144 + (column / 32) * 144
        let q = (panel + 32 * (row % 4)).assumingMemoryBound(to: Int8.self)[column % 32]
        return Float(q) * (panel + 128).assumingMemoryBound(to: Float.self)[row % 4]
    }
}

/// Activation rows quantized for `Kernels.q8Gemm`: `m` rows of `kp` int8 values and `kp / 32`
/// Float scales each, in caller-owned (or this object's) memory.
public final class Q8Activations: @unchecked Sendable {
    public let capacityRows: Int
    public let kp: Int
    let q: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    /// Rows currently held (set by `quantize`).
    public private(set) var m = 0

    /// Room for `rows` rows of `k` values (padded to a multiple of 32).
    public init(rows: Int, k: Int) {
        capacityRows = max(rows, 1)
        kp = (k + 31) / 32 * 32
        q = .allocate(capacity: capacityRows * kp)
        q.initialize(repeating: 0, count: capacityRows * kp)
        scales = .allocate(capacity: capacityRows * kp / 32)
        scales.initialize(repeating: 0, count: capacityRows * kp / 32)
    }

    deinit {
        q.deallocate()
        scales.deallocate()
    }

    /// Quantizes `m` rows of x (`k` values each, row stride `ldx`) block by block, as ggml's
    /// `quantize_row_q8_0` does for activations (scale in fp32).
    public func quantize(_ x: UnsafePointer<Float>, m: Int, k: Int, ldx: Int) {
        precondition(m <= capacityRows && (k + 31) / 32 * 32 == kp, "Q8Activations: \(m) rows of \(k) into \(capacityRows) of \(kp)")
        self.m = m
        for r in 0..<m {
            for b in 0..<(kp / 32) {
                let begin = 32 * b, end = min(k, begin + 32)
                scales[r * (kp / 32) + b] = Self.quantizeBlock(x + r * ldx + begin, count: end - begin, into: q + r * kp + begin)
            }
        }
    }

    /// Up to 32 values into 32 int8 (zeros past `count`); returns the scale.
    @inline(__always)
    static func quantizeBlock(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<Int8>) -> Float {
        var amax: Float = 0
        var finite = true
        for i in 0..<count {
            let v = x[i]
            finite = finite && v.isFinite
            amax = max(amax, abs(v))
        }
        guard finite else {
            q.initialize(repeating: 0, count: 32)
            return .nan
        }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        for i in 0..<count { q[i] = Int8((x[i] * id).rounded()) }
        for i in count..<32 { q[i] = 0 }
        return d
    }

    /// binary16 bits → Float (exact).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        var mantissa = UInt32(h & 0x03FF)
        switch exponent {
        case 0:
            if mantissa == 0 { return Float(bitPattern: sign) }
            var e: UInt32 = 113
            while mantissa & 0x0400 == 0 {
                mantissa <<= 1
                e -= 1
            }
            return Float(bitPattern: sign | (e << 23) | ((mantissa & 0x03FF) << 13))
        case 0x1F: return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default: return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
    }
}

extension Kernels {
    /// `y[m, n] (+)= x[m, k] · Wᵀ` with W int8 in blocks (`Q8Weight`) and x quantized the same
    /// way (`Q8Activations`): integer dot products per block of 32, scaled and accumulated in
    /// fp32. Deterministic: the same bits for any thread count, and the portable and AVX2
    /// kernels give the same bits (each output one chain over k in block order); the AVX-512 VNNI
    /// kernel (`avx512`, default `ISA.int8UsesAVX512`; only with `isa` AVX2 on a CPU that has it)
    /// sums even and odd blocks in separate lanes, a different rounding order. Panels of 4 output
    /// columns are split over `threads`.
    public static func q8Gemm(
        _ x: Q8Activations, _ w: Q8Weight, y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false,
        threads: Int = 1, isa: ISA = .best, avx512: Bool = ISA.int8UsesAVX512
    ) {
        precondition(x.kp == w.kp, "q8Gemm: activations of \(x.kp) columns, weight of \(w.kp)")
        guard x.m > 0 else { return }
        let avx2 = isa.runsAVX2
        let vnni = avx2 && avx512 && ISA.cpuHasAVX512VNNI
        let xq = SendablePointer(x.q), xs = SendablePointer(x.scales), yp = SendablePointer(y)
        let wp = SendablePointer(w.storage.assumingMemoryBound(to: UInt8.self))
        let m = x.m, kp = x.kp, n = w.n
        let useThreads = 2 * m * n * kp < 2_000_000 ? 1 : threads
        Parallel.forEachChunk(count: w.panels, threads: useThreads) { panels in
            if vnni {
                avx512Q8Gemm(
                    xq: xq.pointer, xs: xs.pointer, m: m, kp: kp, w: UnsafeRawPointer(wp.pointer), n: n, panelBegin: panels.lowerBound,
                    panelEnd: panels.upperBound, y: yp.pointer, ldy: ldy, accumulate: accumulate)
            } else if avx2 {
                avx2Q8Gemm(
                    xq: xq.pointer, xs: xs.pointer, m: m, kp: kp, w: UnsafeRawPointer(wp.pointer), n: n, panelBegin: panels.lowerBound,
                    panelEnd: panels.upperBound, y: yp.pointer, ldy: ldy, accumulate: accumulate)
            } else {
                portableQ8Gemm(
                    xq: xq.pointer, xs: xs.pointer, m: m, kp: kp, w: UnsafeRawPointer(wp.pointer), n: n, panels: panels, y: yp.pointer, ldy: ldy,
                    accumulate: accumulate)
            }
        }
    }

    /// The portable kernel: the AVX2 kernel's arithmetic lane by lane (8 lanes of 4 products,
    /// one FMA per lane and block, the same final sum), so the bits are the same.
    static func portableQ8Gemm(
        xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, m: Int, kp: Int, w: UnsafeRawPointer, n: Int, panels: Range<Int>,
        y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
    ) {
        let blocks = kp / 32
        for p in panels {
            let panel = w + p * blocks * 144
            for j in 0..<min(4, n - 4 * p) {
                for r in 0..<m {
                    var acc = [Float](repeating: 0, count: 8)
                    for b in 0..<blocks {
                        let block = panel + b * 144
                        let wq = (block + 32 * j).assumingMemoryBound(to: Int8.self)
                        let scale = (block + 128).assumingMemoryBound(to: Float.self)[j] * xs[r * blocks + b]
                        let x = xq + r * kp + 32 * b
                        for lane in 0..<8 {
                            var sum: Int32 = 0
                            for i in (4 * lane)..<(4 * lane + 4) { sum += Int32(wq[i]) * Int32(x[i]) }
                            acc[lane] = acc[lane].addingProduct(Float(sum), scale)
                        }
                    }
                    let s4 = (0..<4).map { acc[$0] + acc[$0 + 4] }
                    let total = (s4[0] + s4[2]) + (s4[1] + s4[3])
                    let out = y + r * ldy + 4 * p + j
                    out.pointee = accumulate ? out.pointee + total : total
                }
            }
        }
    }
}
