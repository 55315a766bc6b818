// The packed GEMM's micro-kernels for weights stored as 16-bit floats, bfloat16 or IEEE
// binary16 (AVX2 + FMA + F16C).
//
// Same register blocks and FMA chains as `tile` / `wideTile` in AVX2GEMM.swift; only the weight
// load differs: 16 values (32 bytes, one step of k of a panel) are widened in registers to two
// `SIMD8<Float>` (bf16: zero-extend to 32 bits, shift left 16, bit-cast; f16: `vcvtph2ps` —
// both exact), so the weight bytes streamed from memory are halved and the arithmetic is
// unchanged.

import _Builtin_intrinsics.intel

/// A 16-bit float format: how 16 stored values widen to fp32.
protocol HalfFloat {
    static func widen16(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>)
}

enum BFloat16Values: HalfFloat {
    @inline(__always)
    static func widen16(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>) {
        let lo = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt16>.self)
        let hi = UnsafeRawPointer(p + 8).loadUnaligned(as: SIMD8<UInt16>.self)
        let l = SIMD8<UInt32>(truncatingIfNeeded: lo) &<< 16, h = SIMD8<UInt32>(truncatingIfNeeded: hi) &<< 16
        return (unsafeBitCast(l, to: SIMD8<Float>.self), unsafeBitCast(h, to: SIMD8<Float>.self))
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
        c00 = load8(c); c01 = load8(c + 8)
        if rows > 1 { c10 = load8(c + ldc); c11 = load8(c + ldc + 8) }
        if rows > 2 { c20 = load8(c + 2 * ldc); c21 = load8(c + 2 * ldc + 8) }
        if rows > 3 { c30 = load8(c + 3 * ldc); c31 = load8(c + 3 * ldc + 8) }
        if rows > 4 { c40 = load8(c + 4 * ldc); c41 = load8(c + 4 * ldc + 8) }
        if rows > 5 { c50 = load8(c + 5 * ldc); c51 = load8(c + 5 * ldc + 8) }
    }
    var pa = a, pb = b
    for _ in 0..<kc {
        let (b0, b1) = H.widen16(pb)
        var s = SIMD8<Float>(repeating: pa[0])
        c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
        if rows > 1 { s = SIMD8(repeating: pa[1]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1) }
        if rows > 2 { s = SIMD8(repeating: pa[2]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1) }
        if rows > 3 { s = SIMD8(repeating: pa[3]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1) }
        if rows > 4 { s = SIMD8(repeating: pa[4]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1) }
        if rows > 5 { s = SIMD8(repeating: pa[5]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1) }
        pa += 6; pb += 16
    }
    store8(c00, c); store8(c01, c + 8)
    if rows > 1 { store8(c10, c + ldc); store8(c11, c + ldc + 8) }
    if rows > 2 { store8(c20, c + 2 * ldc); store8(c21, c + 2 * ldc + 8) }
    if rows > 3 { store8(c30, c + 3 * ldc); store8(c31, c + 3 * ldc + 8) }
    if rows > 4 { store8(c40, c + 4 * ldc); store8(c41, c + 4 * ldc + 8) }
    if rows > 5 { store8(c50, c + 5 * ldc); store8(c51, c + 5 * ldc + 8) }
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
        c00 = load8(c); c01 = load8(c + 8); c02 = load8(c + 16); c03 = load8(c + 24)
        if rows > 1 { let r = c + ldc; c10 = load8(r); c11 = load8(r + 8); c12 = load8(r + 16); c13 = load8(r + 24) }
        if rows > 2 { let r = c + 2 * ldc; c20 = load8(r); c21 = load8(r + 8); c22 = load8(r + 16); c23 = load8(r + 24) }
    }
    var pa = a, p0 = b0, p1 = b1
    for _ in 0..<kc {
        let (w0, w1) = H.widen16(p0), (w2, w3) = H.widen16(p1)
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
    store8(c00, c); store8(c01, c + 8); store8(c02, c + 16); store8(c03, c + 24)
    if rows > 1 { let r = c + ldc; store8(c10, r); store8(c11, r + 8); store8(c12, r + 16); store8(c13, r + 24) }
    if rows > 2 { let r = c + 2 * ldc; store8(c20, r); store8(c21, r + 8); store8(c22, r + 16); store8(c23, r + 24) }
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
        c0 = load8(c); c1 = load8(c + 8); c2 = load8(c + 16); c3 = load8(c + 24)
        c4 = load8(c + 32); c5 = load8(c + 40); c6 = load8(c + 48); c7 = load8(c + 56)
    }
    var pa = a, p0 = b
    for _ in 0..<kc {
        let s = SIMD8<Float>(repeating: pa[0])
        let (w0, w1) = H.widen16(p0), (w2, w3) = H.widen16(p0 + panelStride)
        let (w4, w5) = H.widen16(p0 + 2 * panelStride), (w6, w7) = H.widen16(p0 + 3 * panelStride)
        c0 = c0.addingProduct(s, w0); c1 = c1.addingProduct(s, w1)
        c2 = c2.addingProduct(s, w2); c3 = c3.addingProduct(s, w3)
        c4 = c4.addingProduct(s, w4); c5 = c5.addingProduct(s, w5)
        c6 = c6.addingProduct(s, w6); c7 = c7.addingProduct(s, w7)
        pa += 6; p0 += 16
    }
    store8(c0, c); store8(c1, c + 8); store8(c2, c + 16); store8(c3, c + 24)
    store8(c4, c + 32); store8(c5, c + 40); store8(c6, c + 48); store8(c7, c + 56)
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
