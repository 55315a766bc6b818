// Int8 dot-product GEMM for AVX-512 with VNNI (`vpdpbusd`): the `Q8Weight` panels of
// MoEKernels (blocks of 32 int8 along k, 4 rows per panel: 4 × 32 bytes, then 4 Float scales)
// against activations quantized the same way.
//
// This module is compiled for AVX-512 F/BW/VL/VNNI. It must only be entered after the caller has
// checked at run time that the CPU has them (MoEKernels does). Entry points are `@inline(never)`
// and take raw pointers and Ints, so nothing from here is inlined into baseline code.
//
// Two blocks of k at a time fill a 64-byte vector. `vpdpbusd` multiplies unsigned by signed
// bytes, so the weight's sign moves onto the activation (|w| by `vpabsb`; x negated under the
// mask of negative weights, `vpsubb` masked), and each 32-bit lane gets the exact integer sum
// of 4 products. Lanes 0–7 hold the even block, 8–15 the odd one; each half is converted to Float
// and accumulated with one FMA by the product of its block's weight and activation scales. The
// sum over lanes is a fixed tree, so results do not depend on threads; they differ from the AVX2
// and portable kernels' only in rounding order (the tests hold them to 1e-6 of each other).

import _Builtin_intrinsics.intel

private let panelBlockBytes = 144

@inline(__always)
private func load32(_ p: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(p.assumingMemoryBound(to: __m256i.self))
}

/// Blocks b and b + 1 of one weight row (32 bytes each, 144 bytes apart) as one vector.
@inline(__always)
private func pair(_ p: UnsafeRawPointer) -> __m512i {
    __m512i(lowHalf: load32(p), highHalf: load32(p + panelBlockBytes))
}

/// 16 lanes: 8 of `a`, then 8 of `b`.
@inline(__always)
private func halves(_ a: Float, _ b: Float) -> __m512 {
    __m512(lowHalf: SIMD8(repeating: a), highHalf: SIMD8(repeating: b))
}

/// The sum of a vector's 16 lanes, in a fixed order.
@inline(__always)
private func reduce(_ v: __m512) -> Float {
    let s: SIMD16<Float> = v
    let s8 = s.lowHalf + s.highHalf
    let s4 = s8.lowHalf + s8.highHalf
    let s2 = s4.lowHalf + s4.highHalf
    return s2[0] + s2[1]
}

/// `rows` (1 to 4, a literal at each call) activation rows against one 4-row weight panel.
@inline(__always)
private func panelQ8(
    rows: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, kp: Int, panel: UnsafeRawPointer,
    y: UnsafeMutablePointer<Float>, ldy: Int, columns: Int, accumulate: Bool
) {
    let blocks = kp / 32
    let zero = _mm512_setzero_si512()
    var acc = (
        _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
        _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
        _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
        _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()
    )
    var b = 0
    while b < blocks {
        let two = b + 1 < blocks
        let block = panel + b * panelBlockBytes
        // The 4 weight rows of blocks b, b + 1 (an odd last block pairs with zeros, scale 0).
        @inline(__always)
        func weights(_ p: UnsafeRawPointer) -> __m512i { two ? pair(p) : __m512i(lowHalf: load32(p), highHalf: .zero) }
        let w0h = weights(block), w1h = weights(block + 32), w2h = weights(block + 64), w3h = weights(block + 96)
        let a0 = _mm512_abs_epi8(w0h), a1 = _mm512_abs_epi8(w1h), a2 = _mm512_abs_epi8(w2h), a3 = _mm512_abs_epi8(w3h)
        let n0 = _mm512_movepi8_mask(w0h), n1 = _mm512_movepi8_mask(w1h), n2 = _mm512_movepi8_mask(w2h), n3 = _mm512_movepi8_mask(w3h)
        let s = (block + 128).assumingMemoryBound(to: Float.self)
        let t = (block + panelBlockBytes + 128).assumingMemoryBound(to: Float.self)
        let sw0 = halves(s[0], two ? t[0] : 0), sw1 = halves(s[1], two ? t[1] : 0)
        let sw2 = halves(s[2], two ? t[2] : 0), sw3 = halves(s[3], two ? t[3] : 0)
        @inline(__always)
        func row(_ r: Int, _ c0: inout __m512, _ c1: inout __m512, _ c2: inout __m512, _ c3: inout __m512) {
            let xp = UnsafeRawPointer(xq + r * kp + 32 * b)
            let x = two ? _mm512_loadu_si512(xp) : __m512i(lowHalf: load32(xp), highHalf: .zero)
            let xd = halves(xs[r * blocks + b], two ? xs[r * blocks + b + 1] : 0)
            @inline(__always)
            func lanes(_ a: __m512i, _ negative: __mmask64) -> __m512 {
                _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, a, _mm512_mask_sub_epi8(x, negative, zero, x)))
            }
            c0 = _mm512_fmadd_ps(_mm512_mul_ps(lanes(a0, n0), sw0), xd, c0)
            c1 = _mm512_fmadd_ps(_mm512_mul_ps(lanes(a1, n1), sw1), xd, c1)
            c2 = _mm512_fmadd_ps(_mm512_mul_ps(lanes(a2, n2), sw2), xd, c2)
            c3 = _mm512_fmadd_ps(_mm512_mul_ps(lanes(a3, n3), sw3), xd, c3)
        }
        row(0, &acc.0, &acc.1, &acc.2, &acc.3)
        if rows > 1 { row(1, &acc.4, &acc.5, &acc.6, &acc.7) }
        if rows > 2 { row(2, &acc.8, &acc.9, &acc.10, &acc.11) }
        if rows > 3 { row(3, &acc.12, &acc.13, &acc.14, &acc.15) }
        b += 2
    }
    @inline(__always)
    func put(_ r: Int, _ j: Int, _ v: __m512) {
        guard j < columns else { return }
        let out = y + r * ldy + j
        out.pointee = accumulate ? out.pointee + reduce(v) : reduce(v)
    }
    put(0, 0, acc.0)
    put(0, 1, acc.1)
    put(0, 2, acc.2)
    put(0, 3, acc.3)
    if rows > 1 {
        put(1, 0, acc.4)
        put(1, 1, acc.5)
        put(1, 2, acc.6)
        put(1, 3, acc.7)
    }
    if rows > 2 {
        put(2, 0, acc.8)
        put(2, 1, acc.9)
        put(2, 2, acc.10)
        put(2, 3, acc.11)
    }
    if rows > 3 {
        put(3, 0, acc.12)
        put(3, 1, acc.13)
        put(3, 2, acc.14)
        put(3, 3, acc.15)
    }
}

/// `y[m, n] (+)= Σ_k x[m, k] · w[n, k]` for the panels `panelBegin..<panelEnd`, as `avx2Q8Gemm`.
@inline(never)
public func avx512Q8Gemm(
    xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, m: Int, kp: Int,
    w: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int,
    y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
) {
    let blocks = kp / 32
    let panelBytes = blocks * panelBlockBytes
    for p in panelBegin..<panelEnd {
        let panel = w + p * panelBytes
        let columns = min(4, n - 4 * p)
        var r = 0
        while r + 4 <= m {
            panelQ8(
                rows: 4, xq: xq + r * kp, xs: xs + r * blocks, kp: kp, panel: panel, y: y + r * ldy + 4 * p, ldy: ldy,
                columns: columns, accumulate: accumulate)
            r += 4
        }
        switch m - r {
        case 3:
            panelQ8(
                rows: 3, xq: xq + r * kp, xs: xs + r * blocks, kp: kp, panel: panel, y: y + r * ldy + 4 * p, ldy: ldy,
                columns: columns, accumulate: accumulate)
        case 2:
            panelQ8(
                rows: 2, xq: xq + r * kp, xs: xs + r * blocks, kp: kp, panel: panel, y: y + r * ldy + 4 * p, ldy: ldy,
                columns: columns, accumulate: accumulate)
        case 1:
            panelQ8(
                rows: 1, xq: xq + r * kp, xs: xs + r * blocks, kp: kp, panel: panel, y: y + r * ldy + 4 * p, ldy: ldy,
                columns: columns, accumulate: accumulate)
        default: break
        }
    }
}
