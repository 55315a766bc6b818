// The packed GEMM's micro-kernels for weights stored as 8-, 4-, 5- or 6-bit integers in groups
// along k (AVX2 + FMA), the layout `PackedWeight` gives its `.int8`, `.int4`, `.int5` and `.int6`
// formats (int5/int6: int4's octs, with planes of the values' high bits; QuantizedPanels.swift):
//
// A panel (16 output columns) is k/G groups of G steps of k. Each group is its 16 scales S (fp32,
// 64 bytes), then 16 offsets M (fp32, 64 bytes) when the format has them, then the values,
// unsigned (int8 keeps q + 128), 64 bytes at a time: an int8 quad of 4 steps is 16 32-bit words,
// word j = column j's 4 steps (byte i = step i); an int4 oct of 8 steps is 16 words, byte i of
// word j = column j's step i (low nibble) and step i + 4 (high nibble). Step i of 8 columns is
// then a shift and a mask of 8 lanes. A weight is `fma(u, S, M)`, one rounding of the exact u·S + M; without stored
// offsets M = -128·S (int8) or -8·S (int4, as llama.cpp's Q4_0). That is the value
// `PackedWeight.unpacked()` gives, so each tile here computes exactly what the fp32 tile computes
// on the dequantized weight: the same FMA chain over k on the same numbers, bit for bit.
//
// Where a K-block serves one register tile (few rows: bandwidth-bound), the values are widened
// in registers (a quarter or an eighth of fp32's bytes streamed); where it serves several, the
// block is dequantized once into the fp32 strip and the fp32 tiles run on it, as for bf16.

import _Builtin_intrinsics.intel

private let mr = 6
private let nr = 16

@inline(__always)
private func load32Bytes(_ p: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(p.assumingMemoryBound(to: __m256i.self))
}

/// How one load of 64 bytes (a quad of 4 int8 steps or an oct of 8 int4 steps, 16 columns) is
/// stored and widened.
protocol QuantizedSteps {
    /// What one load holds in registers.
    associatedtype Load
    /// Bytes of one load (64; 96 for int6), and the steps it holds.
    static var quadBytes: Int { get }
    static var stepsPerLoad: Int { get }
    /// Whether each group stores offsets after its scales.
    static var storedOffsets: Bool { get }
    /// The stored value meaning 0 without offsets (M = -centre·S).
    static var centre: Float { get }
    /// The load's words (columns 0..<8, 8..<16; and int6's high plane).
    static func load(_ p: UnsafeRawPointer) -> Load
    /// Columns 0..<8 and 8..<16 of step `i` (0 ..< stepsPerLoad) of a load, as exact floats.
    static func step(_ q: Load, _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>)
}

enum Int8Steps: QuantizedSteps {
    static var quadBytes: Int { 64 }
    static var stepsPerLoad: Int { 4 }
    static var storedOffsets: Bool { false }
    static var centre: Float { 128 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i) { (load32Bytes(p), load32Bytes(p + 32)) }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) {
        let mask = _mm256_set1_epi32(0xFF)
        return (
            _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q.0, 8 * i), mask)),
            _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q.1, 8 * i), mask))
        )
    }
}

enum Int8OffsetSteps: QuantizedSteps {
    static var quadBytes: Int { 64 }
    static var stepsPerLoad: Int { 4 }
    static var storedOffsets: Bool { true }
    static var centre: Float { 0 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i) { Int8Steps.load(p) }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) { Int8Steps.step(q, i) }
}

enum Int4Steps: QuantizedSteps {
    static var quadBytes: Int { 64 }
    static var stepsPerLoad: Int { 8 }
    static var storedOffsets: Bool { false }
    static var centre: Float { 8 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i) { (load32Bytes(p), load32Bytes(p + 32)) }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) {
        let mask = _mm256_set1_epi32(0xF), shift = 8 * (i % 4) + 4 * (i / 4)
        return (
            _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q.0, shift), mask)),
            _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q.1, shift), mask))
        )
    }
}

enum Int6Steps: QuantizedSteps {
    static var quadBytes: Int { 96 }
    static var stepsPerLoad: Int { 8 }
    static var storedOffsets: Bool { false }
    static var centre: Float { 32 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i, __m256i) { (load32Bytes(p), load32Bytes(p + 32), load32Bytes(p + 64)) }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) {
        // The nibble as int4's; the top two bits at bits 2f of byte i % 4 of the high plane's
        // lane, f = 2·half + i / 4 (see QuantizedPanels.swift).
        let nibble = _mm256_set1_epi32(0xF), two = _mm256_set1_epi32(3), shift = 8 * (i % 4) + 4 * (i / 4)
        let high0 = 8 * (i % 4) + 2 * (i / 4), high1 = high0 + 4
        @inline(__always)
        func value(_ v: __m256i, _ highShift: Int32) -> SIMD8<Float> {
            let low = _mm256_and_si256(_mm256_srli_epi32(v, shift), nibble)
            let top = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(q.2, highShift), two), 4)
            return _mm256_cvtepi32_ps(_mm256_or_si256(low, top))
        }
        return (value(q.0, high0), value(q.1, high1))
    }
}

/// int5: a pair of octs (their nibbles as int4's) and the plane of fifth bits, 16 steps a load.
enum Int5Steps: QuantizedSteps {
    static var quadBytes: Int { 160 }
    static var stepsPerLoad: Int { 16 }
    static var storedOffsets: Bool { false }
    static var centre: Float { 16 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i, __m256i, __m256i, __m256i) {
        (load32Bytes(p), load32Bytes(p + 32), load32Bytes(p + 64), load32Bytes(p + 96), load32Bytes(p + 128))
    }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i, __m256i, __m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) {
        // Step i' = i % 8 of oct o = i / 8: its nibble as int4's; its fifth bit is bit 4o + f of
        // byte i' % 4 of the plane's lane, f = 2·half + i' / 4 (see QuantizedPanels.swift).
        let o = i / 8, s = i % 8
        let nibble = _mm256_set1_epi32(0xF), one = _mm256_set1_epi32(1), shift = 8 * (s % 4) + 4 * (s / 4)
        let bit0 = 8 * (s % 4) + 4 * o + s / 4, bit1 = bit0 + 2
        @inline(__always)
        func value(_ v: __m256i, _ bit: Int32) -> SIMD8<Float> {
            let low = _mm256_and_si256(_mm256_srli_epi32(v, shift), nibble)
            let top = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(q.4, bit), one), 4)
            return _mm256_cvtepi32_ps(_mm256_or_si256(low, top))
        }
        return o == 0 ? (value(q.0, bit0), value(q.1, bit1)) : (value(q.2, bit0), value(q.3, bit1))
    }
}

enum Int5OffsetSteps: QuantizedSteps {
    static var quadBytes: Int { 160 }
    static var stepsPerLoad: Int { 16 }
    static var storedOffsets: Bool { true }
    static var centre: Float { 0 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i, __m256i, __m256i, __m256i) { Int5Steps.load(p) }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i, __m256i, __m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) { Int5Steps.step(q, i) }
}

enum Int4OffsetSteps: QuantizedSteps {
    static var quadBytes: Int { 64 }
    static var stepsPerLoad: Int { 8 }
    static var storedOffsets: Bool { true }
    static var centre: Float { 0 }
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> (__m256i, __m256i) { Int4Steps.load(p) }
    @inline(__always)
    static func step(_ q: (__m256i, __m256i), _ i: Int32) -> (SIMD8<Float>, SIMD8<Float>) { Int4Steps.step(q, i) }
}

/// A group's scales and offsets (columns 0..<8 and 8..<16), and the bytes of its header.
@inline(__always)
private func groupConstants<Q: QuantizedSteps>(_: Q.Type, _ p: UnsafeRawPointer) -> (
    s0: SIMD8<Float>, s1: SIMD8<Float>, m0: SIMD8<Float>, m1: SIMD8<Float>, header: Int
) {
    let s0 = p.loadUnaligned(as: SIMD8<Float>.self), s1 = p.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
    if Q.storedOffsets {
        return (s0, s1, p.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self), p.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self), 128)
    }
    return (s0, s1, s0 * -Q.centre, s1 * -Q.centre, 64)
}

/// Bytes of one group of `group` steps.
@inline(__always)
private func groupBytes<Q: QuantizedSteps>(_: Q.Type, group: Int) -> Int { (Q.storedOffsets ? 128 : 64) + group / Q.stepsPerLoad * Q.quadBytes }

/// `tile` on a quantized panel: `c[r, 0..<16] (+)= Σ_k a[k*6 + r] * w(k, 0..<16)`, `kc` a
/// multiple of `group`, `b` at the start of a group.
@inline(__always)
private func tileQ<Q: QuantizedSteps>(
    _: Q.Type, group: Int, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafeRawPointer,
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
    var left = kc
    while left > 0 {
        let g = groupConstants(Q.self, pb)
        pb += g.header
        for _ in 0..<(group / Q.stepsPerLoad) {
            let quad = Q.load(pb)
            @inline(__always)
            func step(_ i: Int32) {
                let (q0, q1) = Q.step(quad, i)
                let b0 = g.m0.addingProduct(q0, g.s0), b1 = g.m1.addingProduct(q1, g.s1)
                var s = SIMD8<Float>(repeating: pa[0])
                c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
                if rows > 1 { s = SIMD8(repeating: pa[1]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1) }
                if rows > 2 { s = SIMD8(repeating: pa[2]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1) }
                if rows > 3 { s = SIMD8(repeating: pa[3]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1) }
                if rows > 4 { s = SIMD8(repeating: pa[4]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1) }
                if rows > 5 { s = SIMD8(repeating: pa[5]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1) }
                pa += mr
            }
            step(0); step(1); step(2); step(3)
            if Q.stepsPerLoad >= 8 { step(4); step(5); step(6); step(7) }
            if Q.stepsPerLoad == 16 { step(8); step(9); step(10); step(11); step(12); step(13); step(14); step(15) }
            pb += Q.quadBytes
        }
        left -= group
    }
    store8(c00, c); store8(c01, c + 8)
    if rows > 1 { store8(c10, c + ldc); store8(c11, c + ldc + 8) }
    if rows > 2 { store8(c20, c + 2 * ldc); store8(c21, c + 2 * ldc + 8) }
    if rows > 3 { store8(c30, c + 3 * ldc); store8(c31, c + 3 * ldc + 8) }
    if rows > 4 { store8(c40, c + 4 * ldc); store8(c41, c + 4 * ldc + 8) }
    if rows > 5 { store8(c50, c + 5 * ldc); store8(c51, c + 5 * ldc + 8) }
}

/// `wideTile` on two quantized panels `b0`, `b1` (each at the start of a group): `rows` (≤ 3) × 32.
@inline(__always)
private func wideTileQ<Q: QuantizedSteps>(
    _: Q.Type, group: Int, rows: Int, kc: Int, a: UnsafePointer<Float>, b0: UnsafeRawPointer, b1: UnsafeRawPointer,
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
    var left = kc
    while left > 0 {
        let g = groupConstants(Q.self, p0), h = groupConstants(Q.self, p1)
        p0 += g.header
        p1 += h.header
        for _ in 0..<(group / Q.stepsPerLoad) {
            let quad0 = Q.load(p0), quad1 = Q.load(p1)
            @inline(__always)
            func step(_ i: Int32) {
                let (q0, q1) = Q.step(quad0, i), (q2, q3) = Q.step(quad1, i)
                let w0 = g.m0.addingProduct(q0, g.s0), w1 = g.m1.addingProduct(q1, g.s1)
                let w2 = h.m0.addingProduct(q2, h.s0), w3 = h.m1.addingProduct(q3, h.s1)
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
                pa += mr
            }
            step(0); step(1); step(2); step(3)
            if Q.stepsPerLoad >= 8 { step(4); step(5); step(6); step(7) }
            if Q.stepsPerLoad == 16 { step(8); step(9); step(10); step(11); step(12); step(13); step(14); step(15) }
            p0 += Q.quadBytes; p1 += Q.quadBytes
        }
        left -= group
    }
    store8(c00, c); store8(c01, c + 8); store8(c02, c + 16); store8(c03, c + 24)
    if rows > 1 { let r = c + ldc; store8(c10, r); store8(c11, r + 8); store8(c12, r + 16); store8(c13, r + 24) }
    if rows > 2 { let r = c + 2 * ldc; store8(c20, r); store8(c21, r + 8); store8(c22, r + 16); store8(c23, r + 24) }
}

/// Dequantizes `steps` steps (whole groups, from the start of one) of a panel into fp32 at `out`.
@inline(__always)
private func widenQ<Q: QuantizedSteps>(_: Q.Type, group: Int, _ b: UnsafeRawPointer, steps: Int, _ out: UnsafeMutablePointer<Float>) {
    var pb = b, po = out, left = steps
    while left > 0 {
        let g = groupConstants(Q.self, pb)
        pb += g.header
        for _ in 0..<(group / Q.stepsPerLoad) {
            let quad = Q.load(pb)
            for i in Int32(0)..<Int32(Q.stepsPerLoad) {
                let (q0, q1) = Q.step(quad, i)
                store8(g.m0.addingProduct(q0, g.s0), po)
                store8(g.m1.addingProduct(q1, g.s1), po + 8)
                po += nr
            }
            pb += Q.quadBytes
        }
        left -= group
    }
}

@inline(never)
private func tileDispatchQ<Q: QuantizedSteps>(
    _: Q.Type, group: Int, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafeRawPointer,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tileQ(Q.self, group: group, rows: 6, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 5: tileQ(Q.self, group: group, rows: 5, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 4: tileQ(Q.self, group: group, rows: 4, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 3: tileQ(Q.self, group: group, rows: 3, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 2: tileQ(Q.self, group: group, rows: 2, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    default: tileQ(Q.self, group: group, rows: 1, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    }
}

@inline(never)
private func wideTileDispatchQ<Q: QuantizedSteps>(
    _: Q.Type, group: Int, rows: Int, kc: Int, a: UnsafePointer<Float>, b0: UnsafeRawPointer, b1: UnsafeRawPointer,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 3: wideTileQ(Q.self, group: group, rows: 3, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    case 2: wideTileQ(Q.self, group: group, rows: 2, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    default: wideTileQ(Q.self, group: group, rows: 1, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    }
}

@inline(never)
private func widenDispatchQ<Q: QuantizedSteps>(_: Q.Type, group: Int, _ b: UnsafeRawPointer, steps: Int, _ out: UnsafeMutablePointer<Float>) {
    widenQ(Q.self, group: group, b, steps: steps, out)
}

@inline(__always)
private func quantizedLoops<Q: QuantizedSteps>(
    _: Q.Type, group: Int, a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    strip: UnsafeMutablePointer<Float>, epilogueEvery: Int, epilogue: (Int, Int, Int, Int) -> Void
) {
    let bytes = groupBytes(Q.self, group: group)
    gemmPackedLoops(
        a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b.assumingMemoryBound(to: UInt8.self), n: n,
        panelBegin: panelBegin, panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate,
        panelMajor: panelMajor, epilogueEvery: epilogueEvery, epilogue: epilogue,
        tile: { rows, kc, a, b, c, ldc, load in tileDispatchQ(Q.self, group: group, rows: rows, kc: kc, a: a, b: UnsafeRawPointer(b), c: c, ldc: ldc, load: load) },
        wideTile: { rows, kc, a, b0, b1, c, ldc, load in
            wideTileDispatchQ(Q.self, group: group, rows: rows, kc: kc, a: a, b0: UnsafeRawPointer(b0), b1: UnsafeRawPointer(b1), c: c, ldc: ldc, load: load)
        },
        strip: strip, widen: { b, steps, out in widenDispatchQ(Q.self, group: group, UnsafeRawPointer(b), steps: steps, out) },
        panelStride: k / group * bytes, stepOffset: { $0 / group * bytes })
}

/// `avx2GemmPacked` on a quantized weight (`bits` 8, 4, 5 or 6, `group` steps of k per scale, with or
/// without stored `offsets`; see the top of this file for the layout). `k` and `kcBlock` must be
/// multiples of `group`, and `group` a multiple of 4 (8 for int4 and int6, 16 for int5) dividing 128 (the strip's piece). `strip`: 16 ×
/// min(k, kcBlock) floats of this call's own, or nil for a temporary one.
@inline(never)
public func avx2GemmPackedQuantized(
    bits: Int, group: Int, offsets: Bool,
    a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    strip: UnsafeMutablePointer<Float>? = nil,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    precondition(
        k % group == 0 && kcBlock % group == 0 && 128 % group == 0 && group % (bits == 8 ? 4 : bits == 5 ? 16 : 8) == 0,
        "quantized GEMM: k \(k), kc \(kcBlock) and group \(group) do not fit")
    func loops(_ strip: UnsafeMutablePointer<Float>) {
        switch (bits, offsets) {
        case (8, false):
            quantizedLoops(
                Int8Steps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        case (8, true):
            quantizedLoops(
                Int8OffsetSteps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        case (4, false):
            quantizedLoops(
                Int4Steps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        case (4, true):
            quantizedLoops(
                Int4OffsetSteps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        case (6, false):
            quantizedLoops(
                Int6Steps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        case (5, false):
            quantizedLoops(
                Int5Steps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        case (5, true):
            quantizedLoops(
                Int5OffsetSteps.self, group: group, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin,
                panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery,
                epilogue: epilogue)
        default: preconditionFailure("quantized GEMM: \(bits)-bit weights\(offsets ? " with offsets" : "")")
        }
    }
    if let strip {
        loops(strip)
    } else {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: nr * min(k, kcBlock)) { loops($0.baseAddress!) }
    }
}
