// Integer dot products (`vpdpbusd`) on `PackedWeight`'s int8, int6, int5 and int4 panels, for rows of
// activations quantized to int8: the bandwidth-bound shapes (decode, small expert groups), where
// widening every weight to fp32 costs more instructions than streaming it.
//
// The panel layout (see AVX2GEMM+Quantized.swift): per group of G steps, 16 fp32 scales S, 16
// offsets M when stored, then G/4 quads; a quad's 32-bit word j holds 4 consecutive steps of
// column j as unsigned bytes (int8: u = q + 128; int4 comes in octs of 8 steps, the second quad
// in the high nibbles: one mask, or a shift and a mask, gives a quad). That is `vpdpbusd`'s
// operand shape: unsigned weight bytes by signed activation bytes, 4 products summed into each
// 32-bit lane exactly. int6 and int5 (GGUF's Q6_K and Q5_K, see QuantizedPanels.swift) are
// int4's octs with their high bits in a plane of 32 bytes after each oct (int6) or pair of octs
// (int5): each plane byte holds the high bits of one byte of each of the oct's four 256-bit
// halves, moved to bits 4-5 (or 4) by one per-half variable shift (`vpsllvw`/`vpsrlvw`) and
// or'ed in, so they too go to `vpdpbusd` as unsigned bytes (u ≤ 63: no saturation to avoid,
// unlike AVX2's `vpmaddubsw`).
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

/// A 16-bit count per lane: `a` in the first 256-bit half, `b` in the second.
@inline(__always)
private func halves(_ a: Int16, _ b: Int16) -> __m512i { _mm512_mask_blend_epi16(0xFFFF_0000, _mm512_set1_epi16(a), _mm512_set1_epi16(b)) }

/// Where oct `o` of a group of int4, int5 or int6 values starting at `q` begins: octs of 64
/// bytes (int4), 96 (int6: its plane follows it), or pairs of 64 + 64 + a 32-byte plane (int5).
@inline(__always)
private func octAddress(bits: Int, _ q: UnsafeRawPointer, _ o: Int) -> UnsafeRawPointer {
    bits == 6 ? q + 96 * o : bits == 5 ? q + 160 * (o >> 1) + 64 * (o & 1) : q + 64 * o
}

/// Prefetches, `prefetchBytes` ahead, every line oct `o` spans (int6's 96-byte octs and int5's
/// 160-byte pairs are not whole lines).
@inline(__always)
private func prefetchOct(bits: Int, _ q: UnsafeRawPointer, _ o: Int) {
    if bits == 6 {
        moec_prefetch(q + 96 * o + prefetchBytes)
        moec_prefetch(q + 96 * o + prefetchBytes + 95)
    } else if bits == 5 {
        moec_prefetch(q + 160 * (o >> 1) + 80 * (o & 1) + prefetchBytes)
        moec_prefetch(q + 160 * (o >> 1) + 80 * (o & 1) + prefetchBytes + 79)
    } else {
        moec_prefetch(q + 64 * o + prefetchBytes)
    }
}

/// The two quads of oct `o` (steps 8o ..< 8o+4 and 8o+4 ..< 8o+8 of 16 columns) of a group of
/// int4, int5 or int6 values starting at `q`, as unsigned bytes. The high bits: plane byte i
/// serves byte i of each 256-bit half; int6 keeps bits 0-1 for the low quad's first half, 2-3
/// for the high quad's, 4-5 and 6-7 for the second halves; int5 bit 4o' + f (o' the oct within
/// its pair; f = 0, 1, 2, 3 for those four halves).
@inline(__always)
private func oct(bits: Int, _ q: UnsafeRawPointer, _ o: Int) -> (lo: __m512i, hi: __m512i) {
    let nibbles = _mm512_set1_epi8(0x0F)
    let at = octAddress(bits: bits, q, o)
    let v = _mm512_loadu_si512(at)
    var lo = _mm512_and_si512(v, nibbles), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibbles)
    if bits == 6 {
        let plane = _mm512_broadcast_i64x4(UnsafeRawPointer(at + 64).loadUnaligned(as: __m256i.self))
        // Shifted by 4 (first half) and 0, the low quad's bits are at 4-5 and the high quad's
        // at 6-7 of each byte.
        let top = _mm512_set1_epi8(0x30), shifted = _mm512_sllv_epi16(plane, halves(4, 0))
        lo = _mm512_or_si512(lo, _mm512_and_si512(shifted, top))
        hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_srli_epi16(shifted, 2), top))
    } else if bits == 5 {
        let plane = _mm512_broadcast_i64x4(UnsafeRawPointer(q + 160 * (o >> 1) + 128).loadUnaligned(as: __m256i.self))
        let fifth = _mm512_set1_epi8(0x10)
        if o & 1 == 0 {
            lo = _mm512_or_si512(lo, _mm512_and_si512(_mm512_sllv_epi16(plane, halves(4, 2)), fifth))
            hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_sllv_epi16(plane, halves(3, 1)), fifth))
        } else {
            lo = _mm512_or_si512(lo, _mm512_and_si512(_mm512_srlv_epi16(plane, halves(0, 2)), fifth))
            hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_srlv_epi16(plane, halves(1, 3)), fifth))
        }
    }
    return (lo, hi)
}

/// Up to 4 rows (a literal at each call) against the weight panel at `b` (its first group; `p`
/// places the output), `bits` its layout and `centre` the value meaning 0. `@_transparent`
/// like the other tiles: only inlined do their literal rows and bits fold the dead branches
/// away, and `@inline(__always)` did not inline them into the per-format functions (int8 at
/// 128 rows was then 15-20 % slower).
@_transparent
private func rowsTile(
    rows: Int, bits: Int, centre: Float, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * 2 * bits
    var pw = b
    var a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps()
    for gi in 0..<groups {
        let s = _mm512_loadu_ps(pw)
        let m = offsets ? _mm512_loadu_ps(pw + 64) : _mm512_mul_ps(s, _mm512_set1_ps(-centre))
        let q = pw + header
        var d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512(), d2 = _mm512_setzero_si512(), d3 = _mm512_setzero_si512()
        let x = xq + gi * group
        if bits < 8 {
            for o in 0..<(group / 8) {
                prefetchOct(bits: bits, q, o)
                let w = oct(bits: bits, q, o)
                dots(rows: rows, &d0, &d1, &d2, &d3, w.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d0, &d1, &d2, &d3, w.hi, x: x + 8 * o + 4, k: k)
            }
        } else {
            for t in 0..<(group / 4) {
                moec_prefetch(q + 64 * t + prefetchBytes)
                dots(rows: rows, &d0, &d1, &d2, &d3, _mm512_loadu_si512(q + 64 * t), x: x + 4 * t, k: k)
            }
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
@_transparent
private func rowsTilePair(
    rows: Int, bits: Int, centre: Float, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * 2 * bits
    var pw0 = b
    var pw1 = pw0 + groups * groupBytes
    var a00 = _mm512_setzero_ps(), a01 = _mm512_setzero_ps(), a02 = _mm512_setzero_ps(), a03 = _mm512_setzero_ps()
    var a10 = _mm512_setzero_ps(), a11 = _mm512_setzero_ps(), a12 = _mm512_setzero_ps(), a13 = _mm512_setzero_ps()
    for gi in 0..<groups {
        let s0 = _mm512_loadu_ps(pw0), s1 = _mm512_loadu_ps(pw1)
        let m0 = offsets ? _mm512_loadu_ps(pw0 + 64) : _mm512_mul_ps(s0, _mm512_set1_ps(-centre))
        let m1 = offsets ? _mm512_loadu_ps(pw1 + 64) : _mm512_mul_ps(s1, _mm512_set1_ps(-centre))
        let q0 = pw0 + header, q1 = pw1 + header
        var d00 = _mm512_setzero_si512(), d01 = _mm512_setzero_si512(), d02 = _mm512_setzero_si512(), d03 = _mm512_setzero_si512()
        var d10 = _mm512_setzero_si512(), d11 = _mm512_setzero_si512(), d12 = _mm512_setzero_si512(), d13 = _mm512_setzero_si512()
        let x = xq + gi * group
        if bits < 8 {
            for o in 0..<(group / 8) {
                prefetchOct(bits: bits, q0, o)
                prefetchOct(bits: bits, q1, o)
                let w0 = oct(bits: bits, q0, o), w1 = oct(bits: bits, q1, o)
                dots(rows: rows, &d00, &d01, &d02, &d03, w0.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, w1.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d00, &d01, &d02, &d03, w0.hi, x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, w1.hi, x: x + 8 * o + 4, k: k)
            }
        } else {
            for t in 0..<(group / 4) {
                moec_prefetch(q0 + 64 * t + prefetchBytes)
                moec_prefetch(q1 + 64 * t + prefetchBytes)
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_loadu_si512(q0 + 64 * t), x: x + 4 * t, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_loadu_si512(q1 + 64 * t), x: x + 4 * t, k: k)
            }
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
@_transparent
private func rowsTileQuad(
    rows: Int, bits: Int, centre: Float, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    acc: UnsafeMutablePointer<Float>
) {
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * 2 * bits
    let panelBytes = groups * groupBytes
    var pw = b
    for j in 0..<(4 * rows) { _mm512_storeu_ps(acc + 16 * j, _mm512_setzero_ps()) }
    for gi in 0..<groups {
        var d00 = _mm512_setzero_si512(), d01 = _mm512_setzero_si512(), d02 = _mm512_setzero_si512(), d03 = _mm512_setzero_si512()
        var d10 = _mm512_setzero_si512(), d11 = _mm512_setzero_si512(), d12 = _mm512_setzero_si512(), d13 = _mm512_setzero_si512()
        var d20 = _mm512_setzero_si512(), d21 = _mm512_setzero_si512(), d22 = _mm512_setzero_si512(), d23 = _mm512_setzero_si512()
        var d30 = _mm512_setzero_si512(), d31 = _mm512_setzero_si512(), d32 = _mm512_setzero_si512(), d33 = _mm512_setzero_si512()
        let x = xq + gi * group
        let q = pw + header
        if bits == 4 {
            // The octs' high nibbles are taken after the low ones' products: 4 unpacked vectors
            // live at a time beside the 16 sums, not 8.
            let nibbles = _mm512_set1_epi8(0x0F)
            for o in 0..<(group / 8) {
                let at = q + 64 * o
                for panel in 0..<4 { moec_prefetch(at + panel * panelBytes + prefetchBytes) }
                let v0 = _mm512_loadu_si512(at + 0 * panelBytes), v1 = _mm512_loadu_si512(at + 1 * panelBytes)
                let v2 = _mm512_loadu_si512(at + 2 * panelBytes), v3 = _mm512_loadu_si512(at + 3 * panelBytes)
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_and_si512(v0, nibbles), x: x + 8 * o, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_and_si512(v1, nibbles), x: x + 8 * o, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, _mm512_and_si512(v2, nibbles), x: x + 8 * o, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, _mm512_and_si512(v3, nibbles), x: x + 8 * o, k: k)
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_and_si512(_mm512_srli_epi16(v0, 4), nibbles), x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_and_si512(_mm512_srli_epi16(v1, 4), nibbles), x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, _mm512_and_si512(_mm512_srli_epi16(v2, 4), nibbles), x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, _mm512_and_si512(_mm512_srli_epi16(v3, 4), nibbles), x: x + 8 * o + 4, k: k)
            }
        } else if bits < 8 {
            for o in 0..<(group / 8) {
                for panel in 0..<4 { prefetchOct(bits: bits, q + panel * panelBytes, o) }
                let w0 = oct(bits: bits, q + 0 * panelBytes, o), w1 = oct(bits: bits, q + 1 * panelBytes, o)
                let w2 = oct(bits: bits, q + 2 * panelBytes, o), w3 = oct(bits: bits, q + 3 * panelBytes, o)
                dots(rows: rows, &d00, &d01, &d02, &d03, w0.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, w1.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, w2.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, w3.lo, x: x + 8 * o, k: k)
                dots(rows: rows, &d00, &d01, &d02, &d03, w0.hi, x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, w1.hi, x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, w2.hi, x: x + 8 * o + 4, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, w3.hi, x: x + 8 * o + 4, k: k)
            }
        } else {
            for t in 0..<(group / 4) {
                let at = q + 64 * t
                for panel in 0..<4 { moec_prefetch(at + panel * panelBytes + prefetchBytes) }
                dots(rows: rows, &d00, &d01, &d02, &d03, _mm512_loadu_si512(at + 0 * panelBytes), x: x + 4 * t, k: k)
                dots(rows: rows, &d10, &d11, &d12, &d13, _mm512_loadu_si512(at + 1 * panelBytes), x: x + 4 * t, k: k)
                dots(rows: rows, &d20, &d21, &d22, &d23, _mm512_loadu_si512(at + 2 * panelBytes), x: x + 4 * t, k: k)
                dots(rows: rows, &d30, &d31, &d32, &d33, _mm512_loadu_si512(at + 3 * panelBytes), x: x + 4 * t, k: k)
            }
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

/// Expands `count` consecutive int5 or int6 panels (`groups` groups each) at `source` into int8
/// panels at `target`: the same scales and offsets, and each value as a byte u (not re-centred),
/// so the int8 tiles run on them with the int5/int6 centre. Unpacking the high bits costs about
/// as much as the products of 4 rows, so with many rows it is done once per panel and chunk of
/// rows instead of once per 4-row tile (at 128 and 512 tokens the direct tiles were 1.4–1.8×
/// slower than int8 panels).
@inline(never)
private func expandPanels(
    bits: Int, offsets: Bool, group: Int, groups: Int, source: UnsafeRawPointer, count: Int, target: UnsafeMutableRawPointer
) {
    let header = offsets ? 128 : 64
    let from = header + group * 2 * bits, to = header + group * 16
    for gi in 0..<(groups * count) {
        let src = source + gi * from, dst = target + gi * to
        _mm512_storeu_si512(dst, _mm512_loadu_si512(src))
        if offsets { _mm512_storeu_si512(dst + 64, _mm512_loadu_si512(src + 64)) }
        for o in 0..<(group / 8) {
            let w = oct(bits: bits, src + header, o)
            _mm512_storeu_si512(dst + header + 128 * o, w.lo)
            _mm512_storeu_si512(dst + header + 128 * o + 64, w.hi)
        }
    }
}

/// Bytes `avx512QuantizedRows` needs at `expanded` for panels of `bits` (int5 and int6 only):
/// two panels of k values as int8.
public func avx512ExpandedPanelBytes(bits: Int, offsets: Bool, group: Int, k: Int) -> Int {
    bits == 5 || bits == 6 ? 2 * (k / group) * ((offsets ? 128 : 64) + 16 * group) : 0
}

/// `c[r, columns of panels] (+)= Σ_k x[r, k] · W[col, k]` for `m` rows quantized to int8 (`xq`:
/// m rows of k values; `xs`, `xsum`: m rows of k/group scales and sums), on weight panels
/// `panelBegin..<panelEnd` of a quantized `PackedWeight` (`bits` 8, 6, 5 or 4, `offsets`, `group`).
/// `epilogue(rowBegin, rowEnd, panelBegin, panelEnd)` is called for each finished group of
/// `epilogueEvery` panels (all m rows), as the fp32 kernels do. `expanded`
/// (`avx512ExpandedPanelBytes`, or nil) takes int5/int6 panels as int8 when more than 4 rows
/// share them.
public func avx512QuantizedRows(
    bits: Int, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>, m: Int, k: Int,
    b: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    expanded: UnsafeMutableRawPointer? = nil, epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    let expand = m > 4 ? expanded : nil
    let layout = (bits == 5 || bits == 6) && expand != nil ? 8 : bits
    let operands = TileOperands(
        offsets: offsets, group: group, xq: xq, xs: xs, xsum: xsum, m: m, k: k, b: b, n: n, c: c, ldc: ldc, accumulate: accumulate, expanded: expand)
    // One specialization per (bits, layout): each holds its 12 tiles (3 widths × 4 row counts)
    // with both as constants. (All 48 in one function made the optimizer stop inlining the
    // tiles: int8 and int4 then ran about 2× slower at one row.)
    // The quad tiles' float sums (16 × 16), in L1.
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { sums in
        let acc = sums.baseAddress!
        switch (bits, layout) {
        case (8, _): quantizedRows(Int8Panels.self, operands, acc, panelBegin, panelEnd, epilogueEvery, epilogue)
        case (4, _): quantizedRows(Int4Panels.self, operands, acc, panelBegin, panelEnd, epilogueEvery, epilogue)
        case (6, 6): quantizedRows(Int6Panels.self, operands, acc, panelBegin, panelEnd, epilogueEvery, epilogue)
        case (5, 5): quantizedRows(Int5Panels.self, operands, acc, panelBegin, panelEnd, epilogueEvery, epilogue)
        case (6, _): quantizedRows(Int6PanelsExpanded.self, operands, acc, panelBegin, panelEnd, epilogueEvery, epilogue)
        default: quantizedRows(Int5PanelsExpanded.self, operands, acc, panelBegin, panelEnd, epilogueEvery, epilogue)
        }
    }
}

/// The arguments of `avx512QuantizedRows` that every tile takes.
private struct TileOperands {
    let offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>, m: Int, k: Int
    let b: UnsafeRawPointer, n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, expanded: UnsafeMutableRawPointer?
}

/// The bits of a weight's panels, and the layout its tiles run on (8: int5/int6 panels
/// expanded to int8 first).
private protocol PanelBits {
    static var bits: Int { get }
    static var layout: Int { get }
}
private enum Int8Panels: PanelBits {
    static var bits: Int { 8 }
    static var layout: Int { 8 }
}
private enum Int4Panels: PanelBits {
    static var bits: Int { 4 }
    static var layout: Int { 4 }
}
private enum Int6Panels: PanelBits {
    static var bits: Int { 6 }
    static var layout: Int { 6 }
}
private enum Int5Panels: PanelBits {
    static var bits: Int { 5 }
    static var layout: Int { 5 }
}
private enum Int6PanelsExpanded: PanelBits {
    static var bits: Int { 6 }
    static var layout: Int { 8 }
}
private enum Int5PanelsExpanded: PanelBits {
    static var bits: Int { 5 }
    static var layout: Int { 8 }
}

/// The panel and row loops of `avx512QuantizedRows` for weights of `P.bits` run as panels of
/// `P.layout`: `layout` 8 with `bits` 5 or 6 expands each panel tile into `o.expanded` first.
@inline(never)
private func quantizedRows<P: PanelBits>(
    _: P.Type, _ o: TileOperands, _ acc: UnsafeMutablePointer<Float>, _ panelBegin: Int, _ panelEnd: Int, _ epilogueEvery: Int,
    _ epilogue: (Int, Int, Int, Int) -> Void
) {
    let bits = P.bits, layout = P.layout
    let m = o.m, k = o.k, group = o.group, offsets = o.offsets, accumulate = o.accumulate, n = o.n, ldc = o.ldc
    var next = panelBegin + epilogueEvery
    let groups = k / group
    let panelBytes = groups * ((offsets ? 128 : 64) + group * 2 * bits)
    let centre = Float(1 << (bits - 1))
    var p = panelBegin
    while p < panelEnd {
        // Four panels at a time for one tile of rows while four remain, else two while two
        // remain (the first panels of a group are always whole).
        let quad = p + 3 < panelEnd && m <= 4
        let pair = !quad && p + 1 < panelEnd && (layout < 8 || m > 1)
        let count = quad ? 4 : pair ? 2 : 1
        var weights = o.b + p * panelBytes
        if layout != bits {
            expandPanels(bits: bits, offsets: offsets, group: group, groups: groups, source: weights, count: count, target: o.expanded!)
            weights = UnsafeRawPointer(o.expanded!)
        }
        let panel = p, w = weights // (constants for the tiles below to capture: a captured var would be boxed)
        var r0 = 0
        while r0 < m {
            let rows = min(4, m - r0)
            let x = o.xq + r0 * k, s = o.xs + r0 * groups, sum = o.xsum + r0 * groups, out = o.c + r0 * ldc
            @inline(__always)
            func tile(_ rows: Int) {
                if quad {
                    rowsTileQuad(
                        rows: rows, bits: layout, centre: centre, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: w, n: n,
                        panel: panel, c: out, ldc: ldc, accumulate: accumulate, acc: acc)
                } else if pair {
                    rowsTilePair(
                        rows: rows, bits: layout, centre: centre, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: w, n: n,
                        panel: panel, c: out, ldc: ldc, accumulate: accumulate)
                } else {
                    rowsTile(
                        rows: rows, bits: layout, centre: centre, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: w, n: n,
                        panel: panel, c: out, ldc: ldc, accumulate: accumulate)
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
        p += count
        while epilogueEvery > 0 && next <= p {
            epilogue(0, m, next - epilogueEvery, next)
            next += epilogueEvery
        }
    }
}
