// The packed GEMM's micro-kernels for weights stored as 16-bit floats, bfloat16 or IEEE
// binary16 (AVX2 + FMA + F16C).
//
// Same register blocks and FMA chains as `tile` / `wideTile` in AVX2GEMM.swift; only the weight
// load differs: 16 values (32 bytes, one step of k of a panel) are widened in registers to two
// `SIMD8<Float>` (bf16: the even columns shifted left 16 and the odd ones masked, each a bf16
// value in the high half of a 32-bit lane; f16: `vcvtph2ps` — both exact), so the weight bytes
// streamed from memory are halved and each output's chain of FMAs is unchanged.
//
// The register tiles keep bf16's accumulators in that even/odd lane order (`HalfFloat.inLanes`)
// and put the columns back in order when they store: one `vpslld` and one `vpand` per 16 values
// instead of two zero-extensions and two shifts. On a CPU whose 256-bit shifts and shuffles
// share one pipe (the AVX2-only EPYC, Zen 1-like) that made one row twice as fast from cache
// (7.4–8.9 → 16–16.7 GB/s in a C model of `oneRowBF16`). The strips that several tiles read
// (`widenBlockBF16`) are in column order.

import _Builtin_intrinsics.intel

/// A 16-bit float format: how 16 stored values widen to fp32.
protocol HalfFloat {
    /// Columns 0..<8 and 8..<16.
    static func widen16(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>)
    /// The 16 columns in the format's register order (cheapest to widen into), which the tiles'
    /// accumulators keep; `inLanes` / `store(inLanes:)` convert 16 floats in column order.
    static func widen16InLanes(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>)
    static func inLanes(_ c: UnsafeMutablePointer<Float>) -> (SIMD8<Float>, SIMD8<Float>)
    static func store(inLanes v: (SIMD8<Float>, SIMD8<Float>), _ c: UnsafeMutablePointer<Float>)
}

extension HalfFloat {
    // Column order (f16).
    @inline(__always)
    static func widen16InLanes(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>) { widen16(p) }
    @inline(__always)
    static func inLanes(_ c: UnsafeMutablePointer<Float>) -> (SIMD8<Float>, SIMD8<Float>) { (load8(c), load8(c + 8)) }
    @inline(__always)
    static func store(inLanes v: (SIMD8<Float>, SIMD8<Float>), _ c: UnsafeMutablePointer<Float>) {
        store8(v.0, c)
        store8(v.1, c + 8)
    }
}

enum BFloat16Values: HalfFloat {
    @inline(__always)
    static func widen16(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>) {
        let lo = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt16>.self)
        let hi = UnsafeRawPointer(p + 8).loadUnaligned(as: SIMD8<UInt16>.self)
        let l = SIMD8<UInt32>(truncatingIfNeeded: lo) &<< 16, h = SIMD8<UInt32>(truncatingIfNeeded: hi) &<< 16
        return (unsafeBitCast(l, to: SIMD8<Float>.self), unsafeBitCast(h, to: SIMD8<Float>.self))
    }

    /// Even columns (0, 2, …, 14: the low halves of the 32-bit words, shifted up) and odd ones
    /// (the high halves, the low ones masked off).
    @inline(__always)
    static func widen16InLanes(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>) {
        let x = _mm256_loadu_si256(UnsafeRawPointer(p).assumingMemoryBound(to: __m256i.self))
        return (_mm256_castsi256_ps(_mm256_slli_epi32(x, 16)), _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32(-65536))))
    }

    /// c[0, 2, …, 14] and c[1, 3, …, 15] (once per tile and K-block: plain element shuffles).
    @inline(__always)
    static func inLanes(_ c: UnsafeMutablePointer<Float>) -> (SIMD8<Float>, SIMD8<Float>) {
        let x = load8(c), y = load8(c + 8)
        return (SIMD8(x[0], x[2], x[4], x[6], y[0], y[2], y[4], y[6]), SIMD8(x[1], x[3], x[5], x[7], y[1], y[3], y[5], y[7]))
    }

    @inline(__always)
    static func store(inLanes v: (SIMD8<Float>, SIMD8<Float>), _ c: UnsafeMutablePointer<Float>) {
        let (e, o) = v
        store8(SIMD8(e[0], o[0], e[1], o[1], e[2], o[2], e[3], o[3]), c)
        store8(SIMD8(e[4], o[4], e[5], o[5], e[6], o[6], e[7], o[7]), c + 8)
    }
}

enum Float16Values: HalfFloat {
    @inline(__always)
    static func widen16(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>) {
        let raw = UnsafeRawPointer(p)
        return (
            _mm256_cvtph_ps(_mm_loadu_si128(raw.assumingMemoryBound(to: __m128i.self))),
            _mm256_cvtph_ps(_mm_loadu_si128((raw + 16).assumingMemoryBound(to: __m128i.self)))
        )
    }
}

/// `tile` with a bf16 weight: `c[r, 0..<16] (+)= Σ_k a[k*6 + r] * widen(b[k*16 + 0..<16])`.
@inline(__always)
private func tileBF16<H: HalfFloat>(
    _: H.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<UInt16>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    var c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
    var c40 = SIMD8<Float>(), c41 = SIMD8<Float>()
    var c50 = SIMD8<Float>(), c51 = SIMD8<Float>()
    if load {
        (c00, c01) = H.inLanes(c)
        if rows > 1 { (c10, c11) = H.inLanes(c + ldc) }
        if rows > 2 { (c20, c21) = H.inLanes(c + 2 * ldc) }
        if rows > 3 { (c30, c31) = H.inLanes(c + 3 * ldc) }
        if rows > 4 { (c40, c41) = H.inLanes(c + 4 * ldc) }
        if rows > 5 { (c50, c51) = H.inLanes(c + 5 * ldc) }
    }
    var pa = a, pb = b
    for _ in 0..<kc {
        let (b0, b1) = H.widen16InLanes(pb)
        var s = SIMD8<Float>(repeating: pa[0])
        c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
        if rows > 1 { s = SIMD8(repeating: pa[1]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1) }
        if rows > 2 { s = SIMD8(repeating: pa[2]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1) }
        if rows > 3 { s = SIMD8(repeating: pa[3]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1) }
        if rows > 4 { s = SIMD8(repeating: pa[4]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1) }
        if rows > 5 { s = SIMD8(repeating: pa[5]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1) }
        pa += 6; pb += 16
    }
    H.store(inLanes: (c00, c01), c)
    if rows > 1 { H.store(inLanes: (c10, c11), c + ldc) }
    if rows > 2 { H.store(inLanes: (c20, c21), c + 2 * ldc) }
    if rows > 3 { H.store(inLanes: (c30, c31), c + 3 * ldc) }
    if rows > 4 { H.store(inLanes: (c40, c41), c + 4 * ldc) }
    if rows > 5 { H.store(inLanes: (c50, c51), c + 5 * ldc) }
}

/// `wideTile` with a bf16 weight: `rows` (≤ 3) × 32 over two panels `b0`, `b1`.
@inline(__always)
private func wideTileBF16<H: HalfFloat>(
    _: H.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b0: UnsafePointer<UInt16>, b1: UnsafePointer<UInt16>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c02 = SIMD8<Float>(), c03 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>(), c12 = SIMD8<Float>(), c13 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c22 = SIMD8<Float>(), c23 = SIMD8<Float>()
    if load {
        (c00, c01) = H.inLanes(c); (c02, c03) = H.inLanes(c + 16)
        if rows > 1 { let r = c + ldc; (c10, c11) = H.inLanes(r); (c12, c13) = H.inLanes(r + 16) }
        if rows > 2 { let r = c + 2 * ldc; (c20, c21) = H.inLanes(r); (c22, c23) = H.inLanes(r + 16) }
    }
    var pa = a, p0 = b0, p1 = b1
    for _ in 0..<kc {
        let (w0, w1) = H.widen16InLanes(p0), (w2, w3) = H.widen16InLanes(p1)
        var s = SIMD8<Float>(repeating: pa[0])
        c00 = c00.addingProduct(s, w0); c01 = c01.addingProduct(s, w1)
        c02 = c02.addingProduct(s, w2); c03 = c03.addingProduct(s, w3)
        if rows > 1 {
            s = SIMD8(repeating: pa[1])
            c10 = c10.addingProduct(s, w0); c11 = c11.addingProduct(s, w1)
            c12 = c12.addingProduct(s, w2); c13 = c13.addingProduct(s, w3)
        }
        if rows > 2 {
            s = SIMD8(repeating: pa[2])
            c20 = c20.addingProduct(s, w0); c21 = c21.addingProduct(s, w1)
            c22 = c22.addingProduct(s, w2); c23 = c23.addingProduct(s, w3)
        }
        pa += 6; p0 += 16; p1 += 16
    }
    H.store(inLanes: (c00, c01), c); H.store(inLanes: (c02, c03), c + 16)
    if rows > 1 { let r = c + ldc; H.store(inLanes: (c10, c11), r); H.store(inLanes: (c12, c13), r + 16) }
    if rows > 2 { let r = c + 2 * ldc; H.store(inLanes: (c20, c21), r); H.store(inLanes: (c22, c23), r + 16) }
}

/// One row × 64 columns: four adjacent bf16 panels (`b`, `b + panelStride`, …) into C columns
/// 0..<64, eight independent FMA chains per step (one row has little other parallelism to hide
/// the FMA latency behind). Same arithmetic per output as `tileBF16`.
@inline(never)
func oneRowBF16<H: HalfFloat>(
    _: H.Type, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<UInt16>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, load: Bool
) {
    var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>(), c3 = SIMD8<Float>()
    var c4 = SIMD8<Float>(), c5 = SIMD8<Float>(), c6 = SIMD8<Float>(), c7 = SIMD8<Float>()
    if load {
        (c0, c1) = H.inLanes(c); (c2, c3) = H.inLanes(c + 16)
        (c4, c5) = H.inLanes(c + 32); (c6, c7) = H.inLanes(c + 48)
    }
    var pa = a, p0 = b
    for _ in 0..<kc {
        let s = SIMD8<Float>(repeating: pa[0])
        let (w0, w1) = H.widen16InLanes(p0), (w2, w3) = H.widen16InLanes(p0 + panelStride)
        let (w4, w5) = H.widen16InLanes(p0 + 2 * panelStride), (w6, w7) = H.widen16InLanes(p0 + 3 * panelStride)
        c0 = c0.addingProduct(s, w0); c1 = c1.addingProduct(s, w1)
        c2 = c2.addingProduct(s, w2); c3 = c3.addingProduct(s, w3)
        c4 = c4.addingProduct(s, w4); c5 = c5.addingProduct(s, w5)
        c6 = c6.addingProduct(s, w6); c7 = c7.addingProduct(s, w7)
        pa += 6; p0 += 16
    }
    H.store(inLanes: (c0, c1), c); H.store(inLanes: (c2, c3), c + 16)
    H.store(inLanes: (c4, c5), c + 32); H.store(inLanes: (c6, c7), c + 48)
}

/// Widens `steps` steps of a bf16 panel (16 values each) into fp32 at `out`.
@inline(never)
func widenBlockBF16<H: HalfFloat>(_: H.Type, _ b: UnsafePointer<UInt16>, steps: Int, _ out: UnsafeMutablePointer<Float>) {
    var pb = b, po = out
    for _ in 0..<steps {
        let (lo, hi) = H.widen16(pb)
        store8(lo, po); store8(hi, po + 8)
        pb += 16; po += 16
    }
}

@inline(never)
func wideTileDispatchBF16<H: HalfFloat>(
    _: H.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b0: UnsafePointer<UInt16>, b1: UnsafePointer<UInt16>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 3: wideTileBF16(H.self, rows: 3, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    case 2: wideTileBF16(H.self, rows: 2, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    default: wideTileBF16(H.self, rows: 1, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    }
}

@inline(never)
func tileDispatchBF16<H: HalfFloat>(
    _: H.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<UInt16>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tileBF16(H.self, rows: 6, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 5: tileBF16(H.self, rows: 5, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 4: tileBF16(H.self, rows: 4, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 3: tileBF16(H.self, rows: 3, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 2: tileBF16(H.self, rows: 2, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    default: tileBF16(H.self, rows: 1, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    }
}
