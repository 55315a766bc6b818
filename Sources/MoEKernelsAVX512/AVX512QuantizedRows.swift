// Integer dot products (`vpdpbusd`) on `PackedWeight`'s int8 and int4 panels, for a few rows of
// activations quantized to int8: the bandwidth-bound shapes (decode, small expert groups), where
// widening every weight to fp32 costs more instructions than streaming it.
//
// The panel layout (see AVX2GEMM+Quantized.swift): per group of G steps, 16 fp32 scales S, 16
// offsets M when stored, then G/4 quads; a quad's 32-bit word j holds 4 consecutive steps of
// column j as unsigned bytes (int8: u = q + 128; int4 comes in octs of 8 steps, the second quad
// in the high nibbles: one mask, or a shift and a mask, gives a quad). That is `vpdpbusd`'s
// operand shape: unsigned weight bytes by signed activation bytes, 4 products summed into each
// 32-bit lane exactly.
//
// Activations: per row and group, int8 values xq with scale dx (dx = max|x| / 127, as llama.cpp's
// Q8_0) and their sum sx. For column j and one group, Σ_k w·x ≈ dx · Σ (u·S + M)·xq =
// dx · (S · Σ u·xq + M · sx), so each group costs one integer dot per quad and two FMAs per row at
// its end: t = fma(S, dot, M·sx), acc = fma(dx, t, acc), acc starting at 0. The portable twin
// (`Kernels.quantizedRowsReference`) does the same operations in the same order, so the bits are
// the same.
//
// This module is compiled for AVX-512 F/BW/VL/VNNI; callers check the CPU first.

import MoEPrefetch
import _Builtin_intrinsics.intel

/// How far ahead of the tiles' loads the weight panels are prefetched. A thread's panel ranges
/// are short streams (an expert's slice, then another expert's), too short for the hardware
/// prefetcher to ramp up at a few rows per expert: 1 KiB ahead made the int4 layers at 16 tokens
/// 6–12 % faster (OLMoE, about 2 rows per expert; Mixtral, about 4), in alternating A/B runs, and
/// changed nothing beyond the noise at 1, 128 and 512 tokens.
private let prefetchBytes = 1024

/// One quad of weights `w` (16 columns × 4 steps) against the 4 activation bytes at `x` of each of
/// `rows` rows (`k` apart), into their integer sums. (A free function over `inout` sums, so
/// nothing is captured and boxed.)
@inline(__always)
private func dots(
    rows: Int, _ d0: inout __m512i, _ d1: inout __m512i, _ d2: inout __m512i, _ d3: inout __m512i, _ w: __m512i, x: UnsafePointer<Int8>,
    k: Int
) {
    @inline(__always)
    func word(_ r: Int) -> __m512i { _mm512_set1_epi32(Int32(bitPattern: UnsafeRawPointer(x + r * k).loadUnaligned(as: UInt32.self))) }
    d0 = _mm512_dpbusd_epi32(d0, w, word(0))
    if rows > 1 { d1 = _mm512_dpbusd_epi32(d1, w, word(1)) }
    if rows > 2 { d2 = _mm512_dpbusd_epi32(d2, w, word(2)) }
    if rows > 3 { d3 = _mm512_dpbusd_epi32(d3, w, word(3)) }
}

/// Up to 4 rows (a literal at each call) against weight panels `panelBegin..<panelEnd`.
@inline(__always)
private func rowsTile(
    rows: Int, int4: Bool, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * (int4 ? 8 : 16)
    let centre: Float = int4 ? 8 : 128
    var pw = b + p * groups * groupBytes
    var a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps()
    let nibbles = _mm512_set1_epi8(0x0F)
    for gi in 0..<groups {
        let s = _mm512_loadu_ps(pw)
        let m = offsets ? _mm512_loadu_ps(pw + 64) : _mm512_mul_ps(s, _mm512_set1_ps(-centre))
        var q = pw + header
        var d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512(), d2 = _mm512_setzero_si512(), d3 = _mm512_setzero_si512()
        let x = xq + gi * group
        var t = 0
        while t < group / 4 {
            moec_prefetch(q + prefetchBytes)
            let v = _mm512_loadu_si512(q)
            if int4 {
                // An oct: steps 4t..<4t+4 in the low nibbles, the next four in the high ones.
                dots(rows: rows, &d0, &d1, &d2, &d3, _mm512_and_si512(v, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d0, &d1, &d2, &d3, _mm512_and_si512(_mm512_srli_epi16(v, 4), nibbles), x: x + 4 * (t + 1), k: k)
                t += 2
            } else {
                dots(rows: rows, &d0, &d1, &d2, &d3, v, x: x + 4 * t, k: k)
                t += 1
            }
            q += 64
        }
        @inline(__always)
        func finish(_ acc: inout __m512, _ dot: __m512i, _ r: Int) {
            let i = r * groups + gi
            let t = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(dot), _mm512_mul_ps(m, _mm512_set1_ps(xsum[i])))
            acc = _mm512_fmadd_ps(_mm512_set1_ps(xs[i]), t, acc)
        }
        finish(&a0, d0, 0)
        if rows > 1 { finish(&a1, d1, 1) }
        if rows > 2 { finish(&a2, d2, 2) }
        if rows > 3 { finish(&a3, d3, 3) }
        pw += groupBytes
    }
    let cols = min(16, n - p * 16)
    let mask: __mmask16 = cols == 16 ? 0xFFFF : __mmask16((1 << cols) - 1)
    @inline(__always)
    func store(_ acc: __m512, _ r: Int) {
        let out = c + r * ldc + p * 16
        let v = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), acc) : acc
        _mm512_mask_storeu_ps(out, mask, v)
    }
    store(a0, 0)
    if rows > 1 { store(a1, 1) }
    if rows > 2 { store(a2, 2) }
    if rows > 3 { store(a3, 3) }
}

/// `rowsTile` on two adjacent panels at once (`p`, `p + 1`): each activation word broadcast
/// serves both, halving the broadcasts per `vpdpbusd`.
@inline(__always)
private func rowsTilePair(
    rows: Int, int4: Bool, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * (int4 ? 8 : 16)
    let centre: Float = int4 ? 8 : 128
    var pw0 = b + p * groups * groupBytes
    var pw1 = pw0 + groups * groupBytes
    var a00 = _mm512_setzero_ps(), a01 = _mm512_setzero_ps(), a02 = _mm512_setzero_ps(), a03 = _mm512_setzero_ps()
    var a10 = _mm512_setzero_ps(), a11 = _mm512_setzero_ps(), a12 = _mm512_setzero_ps(), a13 = _mm512_setzero_ps()
    let nibbles = _mm512_set1_epi8(0x0F)
    for gi in 0..<groups {
        let s0 = _mm512_loadu_ps(pw0), s1 = _mm512_loadu_ps(pw1)
        let m0 = offsets ? _mm512_loadu_ps(pw0 + 64) : _mm512_mul_ps(s0, _mm512_set1_ps(-centre))
        let m1 = offsets ? _mm512_loadu_ps(pw1 + 64) : _mm512_mul_ps(s1, _mm512_set1_ps(-centre))
        var q0 = pw0 + header, q1 = pw1 + header
        var d00 = _mm512_setzero_si512(), d01 = _mm512_setzero_si512(), d02 = _mm512_setzero_si512(), d03 = _mm512_setzero_si512()
        var d10 = _mm512_setzero_si512(), d11 = _mm512_setzero_si512(), d12 = _mm512_setzero_si512(), d13 = _mm512_setzero_si512()
        let x = xq + gi * group
        var t = 0
        while t < group / 4 {
            moec_prefetch(q0 + prefetchBytes)
            moec_prefetch(q1 + prefetchBytes)
            let v0 = _mm512_loadu_si512(q0), v1 = _mm512_loadu_si512(q1)
            if int4 {
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_and_si512(v0, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_and_si512(v1, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_and_si512(_mm512_srli_epi16(v0, 4), nibbles), x: x + 4 * (t + 1), k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_and_si512(_mm512_srli_epi16(v1, 4), nibbles), x: x + 4 * (t + 1), k: k)
                t += 2
            } else {
                dots(rows: rows, &d00, &d01, &d02, &d03, v0, x: x + 4 * t, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, v1, x: x + 4 * t, k: k)
                t += 1
            }
            q0 += 64
            q1 += 64
        }
        @inline(__always)
        func finish(_ acc: inout __m512, _ dot: __m512i, _ s: __m512, _ m: __m512, _ r: Int) {
            let i = r * groups + gi
            let t = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(dot), _mm512_mul_ps(m, _mm512_set1_ps(xsum[i])))
            acc = _mm512_fmadd_ps(_mm512_set1_ps(xs[i]), t, acc)
        }
        finish(&a00, d00, s0, m0, 0); finish(&a10, d10, s1, m1, 0)
        if rows > 1 { finish(&a01, d01, s0, m0, 1); finish(&a11, d11, s1, m1, 1) }
        if rows > 2 { finish(&a02, d02, s0, m0, 2); finish(&a12, d12, s1, m1, 2) }
        if rows > 3 { finish(&a03, d03, s0, m0, 3); finish(&a13, d13, s1, m1, 3) }
        pw0 += groupBytes
        pw1 += groupBytes
    }
    let cols = min(16, n - (p + 1) * 16)
    let mask: __mmask16 = cols == 16 ? 0xFFFF : __mmask16((1 << cols) - 1)
    @inline(__always)
    func store(_ acc: __m512, _ r: Int, _ panel: Int, _ mask: __mmask16) {
        let out = c + r * ldc + panel * 16
        let v = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), acc) : acc
        _mm512_mask_storeu_ps(out, mask, v)
    }
    store(a00, 0, p, 0xFFFF); store(a10, 0, p + 1, mask)
    if rows > 1 { store(a01, 1, p, 0xFFFF); store(a11, 1, p + 1, mask) }
    if rows > 2 { store(a02, 2, p, 0xFFFF); store(a12, 2, p + 1, mask) }
    if rows > 3 { store(a03, 3, p, 0xFFFF); store(a13, 3, p + 1, mask) }
}

/// `rowsTile` on four adjacent panels at once (`p` ..< `p + 4`): four weight streams in flight
/// per thread instead of two, and each activation word broadcast serves four `vpdpbusd`. At a few
/// rows per expert the integer products wait on memory, and more streams keep more of it in
/// flight. The float accumulators live in `acc` (16 × 16 floats, L1), so that the 16 integer
/// sums keep the registers: the same operations in the same order as the other tiles.
@inline(__always)
private func rowsTileQuad(
    rows: Int, int4: Bool, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    acc: UnsafeMutablePointer<Float>
) {
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * (int4 ? 8 : 16)
    let panelBytes = groups * groupBytes
    let centre: Float = int4 ? 8 : 128
    var pw = b + p * panelBytes
    for j in 0..<(4 * rows) { _mm512_storeu_ps(acc + 16 * j, _mm512_setzero_ps()) }
    let nibbles = _mm512_set1_epi8(0x0F)
    for gi in 0..<groups {
        var d00 = _mm512_setzero_si512(), d01 = _mm512_setzero_si512(), d02 = _mm512_setzero_si512(), d03 = _mm512_setzero_si512()
        var d10 = _mm512_setzero_si512(), d11 = _mm512_setzero_si512(), d12 = _mm512_setzero_si512(), d13 = _mm512_setzero_si512()
        var d20 = _mm512_setzero_si512(), d21 = _mm512_setzero_si512(), d22 = _mm512_setzero_si512(), d23 = _mm512_setzero_si512()
        var d30 = _mm512_setzero_si512(), d31 = _mm512_setzero_si512(), d32 = _mm512_setzero_si512(), d33 = _mm512_setzero_si512()
        let x = xq + gi * group
        var q = pw + header
        var t = 0
        while t < group / 4 {
            moec_prefetch(q + 0 * panelBytes + prefetchBytes)
            moec_prefetch(q + 1 * panelBytes + prefetchBytes)
            moec_prefetch(q + 2 * panelBytes + prefetchBytes)
            moec_prefetch(q + 3 * panelBytes + prefetchBytes)
            let v0 = _mm512_loadu_si512(q + 0 * panelBytes), v1 = _mm512_loadu_si512(q + 1 * panelBytes), v2 = _mm512_loadu_si512(q + 2 * panelBytes),
                v3 = _mm512_loadu_si512(q + 3 * panelBytes)
            if int4 {
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_and_si512(v0, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_and_si512(v1, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, _mm512_and_si512(v2, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, _mm512_and_si512(v3, nibbles), x: x + 4 * t, k: k)
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_and_si512(_mm512_srli_epi16(v0, 4), nibbles), x: x + 4 * (t + 1), k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_and_si512(_mm512_srli_epi16(v1, 4), nibbles), x: x + 4 * (t + 1), k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, _mm512_and_si512(_mm512_srli_epi16(v2, 4), nibbles), x: x + 4 * (t + 1), k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, _mm512_and_si512(_mm512_srli_epi16(v3, 4), nibbles), x: x + 4 * (t + 1), k: k)
                t += 2
            } else {
                dots(rows: rows, &d00, &d01, &d02, &d03, v0, x: x + 4 * t, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, v1, x: x + 4 * t, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, v2, x: x + 4 * t, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, v3, x: x + 4 * t, k: k)
                t += 1
            }
            q += 64
        }
        @inline(__always)
        func finish(_ dot: __m512i, _ panel: Int, _ r: Int) {
            let s = _mm512_loadu_ps(pw + panel * panelBytes)
            let m = offsets ? _mm512_loadu_ps(pw + panel * panelBytes + 64) : _mm512_mul_ps(s, _mm512_set1_ps(-centre))
            let i = r * groups + gi
            let t = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(dot), _mm512_mul_ps(m, _mm512_set1_ps(xsum[i])))
            let a = acc + 16 * (4 * r + panel)
            _mm512_storeu_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(xs[i]), t, _mm512_loadu_ps(a)))
        }
        finish(d00, 0, 0); finish(d10, 1, 0); finish(d20, 2, 0); finish(d30, 3, 0)
        if rows > 1 { finish(d01, 0, 1); finish(d11, 1, 1); finish(d21, 2, 1); finish(d31, 3, 1) }
        if rows > 2 { finish(d02, 0, 2); finish(d12, 1, 2); finish(d22, 2, 2); finish(d32, 3, 2) }
        if rows > 3 { finish(d03, 0, 3); finish(d13, 1, 3); finish(d23, 2, 3); finish(d33, 3, 3) }
        pw += groupBytes
    }
    for r in 0..<rows {
        for panel in 0..<4 {
            let cols = min(16, n - (p + panel) * 16)
            let mask: __mmask16 = cols == 16 ? 0xFFFF : __mmask16((1 << cols) - 1)
            let out = c + r * ldc + (p + panel) * 16
            let a = _mm512_loadu_ps(acc + 16 * (4 * r + panel))
            _mm512_mask_storeu_ps(out, mask, accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), a) : a)
        }
    }
}

/// `c[r, columns of panels] (+)= Σ_k x[r, k] · W[col, k]` for `m` rows quantized to int8 (`xq`:
/// m rows of k values; `xs`, `xsum`: m rows of k/group scales and sums), on weight panels
/// `panelBegin..<panelEnd` of a quantized `PackedWeight` (`int4` or int8, `offsets`, `group`).
/// `epilogue(rowBegin, rowEnd, panelBegin, panelEnd)` is called for each finished group of
/// `epilogueEvery` panels (all m rows), as the fp32 kernels do.
@inline(never)
public func avx512QuantizedRows(
    int4: Bool, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>, m: Int, k: Int,
    b: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { quadAccumulators in
        let acc = quadAccumulators.baseAddress!
        var next = panelBegin + epilogueEvery
        let groups = k / group
        var p = panelBegin
        while p < panelEnd {
            // Four panels at a time for one tile of rows while four remain, else two while two
            // remain (the first panels of a group are always whole).
            let quad = p + 3 < panelEnd && m <= 4
            let pair = !quad && p + 1 < panelEnd && (int4 || m > 1)
            let panel = p // (a constant for the tiles below to capture: a captured var would be boxed)
            var r0 = 0
            while r0 < m {
                let rows = min(4, m - r0)
                let x = xq + r0 * k, s = xs + r0 * groups, sum = xsum + r0 * groups, out = c + r0 * ldc
                @inline(__always)
                func tile(_ rows: Int) {
                    if quad {
                        rowsTileQuad(
                            rows: rows, int4: int4, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: b, n: n, panel: panel, c: out,
                            ldc: ldc, accumulate: accumulate, acc: acc)
                    } else if pair {
                        rowsTilePair(
                            rows: rows, int4: int4, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: b, n: n, panel: panel, c: out,
                            ldc: ldc, accumulate: accumulate)
                    } else {
                        rowsTile(
                            rows: rows, int4: int4, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: b, n: n, panel: panel, c: out,
                            ldc: ldc, accumulate: accumulate)
                    }
                }
                switch rows {
                case 4: tile(4)
                case 3: tile(3)
                case 2: tile(2)
                default: tile(1)
                }
                r0 += rows
            }
            p += quad ? 4 : pair ? 2 : 1
            while epilogueEvery > 0 && next <= p {
                epilogue(0, m, next - epilogueEvery, next)
                next += epilogueEvery
            }
        }
    }
}
