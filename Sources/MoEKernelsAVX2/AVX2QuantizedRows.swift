// Integer dot products on `PackedWeight`'s int8, int4, int5 and int6 panels for CPUs with AVX2
// but no AVX-512 VNNI (Zen 3, Haswell to Alder Lake): the AVX2 twin of `avx512QuantizedRows`, for
// rows of activations quantized to int8 by `avx2QuantizeRows` (below, which both kernels share).
//
// The panel layout is the one in AVX2GEMM+Quantized.swift: per group of G steps, 16 fp32 scales
// S, 16 offsets M when stored, then quads, 64 bytes each; a quad's 32-bit word j holds 4
// consecutive steps of column j as unsigned bytes (int8: u = q + 128; int4 in octs of 8 steps,
// the second quad in the high nibbles). A 256-bit half of a quad is 8 columns × 4 steps, and the
// 4 activation bytes of those steps, broadcast to every word, are the other operand of
// `vpmaddubsw` (unsigned × signed bytes, adjacent products summed into saturating 16-bit lanes)
// and then `vpmaddwd` by ones (16-bit pairs into 32-bit lanes): each 32-bit lane gets the exact
// integer sum of its 4 products, as `vpdpbusd` gives, in three instructions instead of one.
//
// Saturation decides the operands. Activations are |xq| ≤ 127. An int4 value is u ≤ 15, so a
// 16-bit lane holds at most 2·15·127 = 3810 and 8 of them still fit: the two nibble quads of an
// oct are added in 16 bits, and one `vpmaddwd` per 4 octs is enough. int5 (u ≤ 31, 7874 a lane)
// and int6 (u ≤ 63, 16002) are int4's nibbles with their high bits or'ed in from the plane after
// the octs (QuantizedPanels.swift): one `vpmaddwd` per pair of octs (int5) or per oct (int6).
// An int8 value u ≤ 255 could
// saturate a 16-bit lane (2·255·127), so the kernel takes the signed q = u − 128 (one `vpxor`),
// its magnitude as the unsigned operand and the activation with q's sign as the signed one
// (`vpabsb`, `vpsignb`: llama.cpp's AVX2 trick for Q8_0), ≤ 2·127·127 = 32258 a lane, and adds
// 128·Σxq back: Σu·xq = Σq·xq + 128·Σxq, all exact integers below 2^24, so the float the group
// ends with is the same number `vpdpbusd` gives.
//
// Per group and row the float steps are the AVX-512 kernel's and the scalar twin's
// (`Kernels.quantizedRowsReference`): t = fma(S, dot, M·sx), acc = fma(dx, t, acc), acc starting
// at 0; so the three give the same bits.
//
// This module is compiled for AVX2 + FMA; callers check the CPU first.

import MoEPrefetch
import _Builtin_intrinsics.intel

/// How far ahead of the tiles' loads the weight panels are prefetched (as in the AVX-512 kernel:
/// a thread's panel ranges are short streams the hardware prefetcher is slow to pick up). 2 KiB:
/// on the AVX2-only EPYC, int4 at 1 row from DRAM was 3-6 % faster than with 1 KiB (512 bytes
/// slower, 4 KiB no better); products from cache and on more rows did not change.
private let prefetchBytes = 2048

@inline(__always)
private func load32(_ p: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(p.assumingMemoryBound(to: __m256i.self))
}

/// The 4 activation bytes at `x` in every 32-bit word.
@inline(__always)
private func word(_ x: UnsafePointer<Int8>) -> __m256i {
    _mm256_set1_epi32(Int32(bitPattern: UnsafeRawPointer(x).loadUnaligned(as: UInt32.self)))
}

/// 16-bit sums of an int8 half-quad (`magnitude` = |q|, `signs` = q) against one row's 4 bytes.
@inline(__always)
private func int8Pairs(_ magnitude: __m256i, _ signs: __m256i, _ x: __m256i) -> __m256i {
    _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(x, signs))
}

/// A tile's row count and weight format as types, so that each tile is its own specialized
/// function with constants where the loops test them (literal arguments of one inlined function
/// were merged back into run-time tests by the optimizer).
protocol TileShape {
    static var rows: Int { get }
    /// Bits of a stored value: 8, 4, 5 or 6.
    static var bits: Int { get }
}
enum Int8Rows1: TileShape { static var rows: Int { 1 }; static var bits: Int { 8 } }
enum Int8Rows2: TileShape { static var rows: Int { 2 }; static var bits: Int { 8 } }
enum Int8Rows3: TileShape { static var rows: Int { 3 }; static var bits: Int { 8 } }
enum Int8Rows4: TileShape { static var rows: Int { 4 }; static var bits: Int { 8 } }
enum Int4Rows1: TileShape { static var rows: Int { 1 }; static var bits: Int { 4 } }
enum Int4Rows2: TileShape { static var rows: Int { 2 }; static var bits: Int { 4 } }
enum Int4Rows3: TileShape { static var rows: Int { 3 }; static var bits: Int { 4 } }
enum Int4Rows4: TileShape { static var rows: Int { 4 }; static var bits: Int { 4 } }
enum Int6Rows1: TileShape { static var rows: Int { 1 }; static var bits: Int { 6 } }
enum Int6Rows2: TileShape { static var rows: Int { 2 }; static var bits: Int { 6 } }
enum Int6Rows3: TileShape { static var rows: Int { 3 }; static var bits: Int { 6 } }
enum Int6Rows4: TileShape { static var rows: Int { 4 }; static var bits: Int { 6 } }
enum Int5Rows1: TileShape { static var rows: Int { 1 }; static var bits: Int { 5 } }
enum Int5Rows2: TileShape { static var rows: Int { 2 }; static var bits: Int { 5 } }
enum Int5Rows3: TileShape { static var rows: Int { 3 }; static var bits: Int { 5 } }
enum Int5Rows4: TileShape { static var rows: Int { 4 }; static var bits: Int { 5 } }

/// One panel (16 columns, as two halves of 8) for `Shape.rows` rows (1 to 4).
@inline(never)
private func rowsTile<Shape: TileShape>(
    _: Shape.Type, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>,
    k: Int, b: UnsafeRawPointer, n: Int, panel p: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    let rows = Shape.rows, bits = Shape.bits, six = bits == 6, five = bits == 5
    let groups = k / group
    let header = offsets ? 128 : 64
    let groupBytes = header + group * 2 * bits
    let centre = Float(1 << (bits - 1))
    let octBytes = six ? 96 : 64
    var pw = b + p * groups * groupBytes
    // Float accumulators: row r's halves are a[2r], a[2r + 1].
    var a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps()
    var a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(), a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps()
    let nibbles = _mm256_set1_epi8(0x0F), flip = _mm256_set1_epi8(-128), ones = _mm256_set1_epi16(1)
    let highBits = _mm256_set1_epi8(0x30), fifthBit = _mm256_set1_epi8(0x10)
    for gi in 0..<groups {
        var d0 = _mm256_setzero_si256(), d1 = _mm256_setzero_si256(), d2 = _mm256_setzero_si256(), d3 = _mm256_setzero_si256()
        var d4 = _mm256_setzero_si256(), d5 = _mm256_setzero_si256(), d6 = _mm256_setzero_si256(), d7 = _mm256_setzero_si256()
        let x = xq + gi * group
        var q = pw + header
        if bits < 8 {
            // int4: chunks of 4 octs (32 steps; the whole group when it has 8 or 16): a 16-bit lane
            // sums 8 products of at most 3810, at most 30480, so one `vpmaddwd` per chunk widens
            // them. The chunk's length is a constant where it can be, so its octs are unrolled,
            // and a group of 32 (the common one) has its own copy that keeps no running 32-bit
            // sums across chunks: fewer live registers, fewer spills (1 row 11 %, 2-16 rows 5 %
            // faster on the EPYC than a loop over chunks of up to 4 octs).
            var t = 0
            @inline(__always)
            func chunk(octs: Int, first: Bool) {
                var e0 = _mm256_setzero_si256(), e1 = _mm256_setzero_si256(), e2 = _mm256_setzero_si256(), e3 = _mm256_setzero_si256()
                var e4 = _mm256_setzero_si256(), e5 = _mm256_setzero_si256(), e6 = _mm256_setzero_si256(), e7 = _mm256_setzero_si256()
                for o in 0..<octs {
                    // int5's octs come in pairs before their plane: q stays at the pair's start.
                    let at = five ? q + 64 * o : q
                    // Every line the loads to come span: int6's 96-byte octs and int5's 160-byte
                    // pairs are not whole lines (one prefetch per oct left a third of the lines
                    // to the hardware: int6 at 1 row from DRAM 13.6 GB/s against int8's 20.6).
                    if six {
                        moec_prefetch(q + prefetchBytes)
                        moec_prefetch(q + prefetchBytes + 95)
                    } else if five {
                        moec_prefetch(q + prefetchBytes + 80 * o)
                        moec_prefetch(q + prefetchBytes + 80 * o + 79)
                    } else {
                        moec_prefetch(q + prefetchBytes)
                    }
                    let v0 = load32(at), v1 = load32(at + 32)
                    // An oct: steps 4t..<4t+4 in the low nibbles, the next four in the high ones.
                    var l0 = _mm256_and_si256(v0, nibbles), h0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), nibbles)
                    var l1 = _mm256_and_si256(v1, nibbles), h1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), nibbles)
                    if six {
                        // Bits 2f, 2f + 1 of each high-plane byte to bits 4-5 of vector f's byte.
                        let hb = load32(q + 64)
                        l0 = _mm256_or_si256(l0, _mm256_and_si256(_mm256_slli_epi16(hb, 4), highBits))
                        h0 = _mm256_or_si256(h0, _mm256_and_si256(_mm256_slli_epi16(hb, 2), highBits))
                        l1 = _mm256_or_si256(l1, _mm256_and_si256(hb, highBits))
                        h1 = _mm256_or_si256(h1, _mm256_and_si256(_mm256_srli_epi16(hb, 2), highBits))
                    }
                    if five {
                        // Bit 4o + f of each plane byte to bit 4 of oct o's vector f's byte.
                        let hb = load32(q + 128)
                        if o == 0 {
                            l0 = _mm256_or_si256(l0, _mm256_and_si256(_mm256_slli_epi16(hb, 4), fifthBit))
                            h0 = _mm256_or_si256(h0, _mm256_and_si256(_mm256_slli_epi16(hb, 3), fifthBit))
                            l1 = _mm256_or_si256(l1, _mm256_and_si256(_mm256_slli_epi16(hb, 2), fifthBit))
                            h1 = _mm256_or_si256(h1, _mm256_and_si256(_mm256_slli_epi16(hb, 1), fifthBit))
                        } else {
                            l0 = _mm256_or_si256(l0, _mm256_and_si256(hb, fifthBit))
                            h0 = _mm256_or_si256(h0, _mm256_and_si256(_mm256_srli_epi16(hb, 1), fifthBit))
                            l1 = _mm256_or_si256(l1, _mm256_and_si256(_mm256_srli_epi16(hb, 2), fifthBit))
                            h1 = _mm256_or_si256(h1, _mm256_and_si256(_mm256_srli_epi16(hb, 3), fifthBit))
                        }
                    }
                    @inline(__always)
                    func dot(_ lo: inout __m256i, _ hi: inout __m256i, _ r: Int) {
                        let xl = word(x + r * k + 4 * t), xh = word(x + r * k + 4 * t + 4)
                        lo = _mm256_add_epi16(lo, _mm256_add_epi16(_mm256_maddubs_epi16(l0, xl), _mm256_maddubs_epi16(h0, xh)))
                        hi = _mm256_add_epi16(hi, _mm256_add_epi16(_mm256_maddubs_epi16(l1, xl), _mm256_maddubs_epi16(h1, xh)))
                    }
                    dot(&e0, &e1, 0)
                    if rows > 1 { dot(&e2, &e3, 1) }
                    if rows > 2 { dot(&e4, &e5, 2) }
                    if rows > 3 { dot(&e6, &e7, 3) }
                    t += 2
                    if !five { q += octBytes }
                }
                if five { q += 160 }
                @inline(__always)
                func widen(_ d: inout __m256i, _ e: __m256i) {
                    d = first ? _mm256_madd_epi16(e, ones) : _mm256_add_epi32(d, _mm256_madd_epi16(e, ones))
                }
                widen(&d0, e0)
                widen(&d1, e1)
                if rows > 1 {
                    widen(&d2, e2)
                    widen(&d3, e3)
                }
                if rows > 2 {
                    widen(&d4, e4)
                    widen(&d5, e5)
                }
                if rows > 3 {
                    widen(&d6, e6)
                    widen(&d7, e7)
                }
            }
            if five {
                // int5: a pair of octs and its plane at a time; a 16-bit lane sums 8 products of
                // at most 31·127, at most 31496, so each pair is widened.
                chunk(octs: 2, first: true)
                for _ in 1..<(group / 16) { chunk(octs: 2, first: false) }
            } else if six {
                // int6: a 16-bit lane of one oct sums 4 products of at most 63·127, at most
                // 32004, so each oct is widened.
                chunk(octs: 1, first: true)
                for _ in 1..<(group / 8) { chunk(octs: 1, first: false) }
            } else if group == 32 {
                chunk(octs: 4, first: true)
            } else if group > 32 {
                chunk(octs: 4, first: true)
                for _ in 1..<(group / 32) { chunk(octs: 4, first: false) }
            } else {
                chunk(octs: group / 8, first: true)
            }
        } else {
            for t in 0..<(group / 4) {
                moec_prefetch(q + prefetchBytes)
                let v0 = load32(q), v1 = load32(q + 32)
                let q0 = _mm256_xor_si256(v0, flip), q1 = _mm256_xor_si256(v1, flip)
                let m0 = _mm256_abs_epi8(q0), m1 = _mm256_abs_epi8(q1)
                @inline(__always)
                func dot(_ lo: inout __m256i, _ hi: inout __m256i, _ r: Int) {
                    let xw = word(x + r * k + 4 * t)
                    lo = _mm256_add_epi32(lo, _mm256_madd_epi16(int8Pairs(m0, q0, xw), ones))
                    hi = _mm256_add_epi32(hi, _mm256_madd_epi16(int8Pairs(m1, q1, xw), ones))
                }
                dot(&d0, &d1, 0)
                if rows > 1 { dot(&d2, &d3, 1) }
                if rows > 2 { dot(&d4, &d5, 2) }
                if rows > 3 { dot(&d6, &d7, 3) }
                q += 64
            }
        }
        let constants = pw.assumingMemoryBound(to: Float.self) // S, then M when stored
        let s0 = _mm256_loadu_ps(constants), s1 = _mm256_loadu_ps(constants + 8)
        let m0 = offsets ? _mm256_loadu_ps(constants + 16) : _mm256_mul_ps(s0, _mm256_set1_ps(-centre))
        let m1 = offsets ? _mm256_loadu_ps(constants + 24) : _mm256_mul_ps(s1, _mm256_set1_ps(-centre))
        @inline(__always)
        func finish(_ lo: inout __m256, _ hi: inout __m256, _ dlo: __m256i, _ dhi: __m256i, _ r: Int) {
            let i = r * groups + gi
            let sx = _mm256_set1_ps(xsum[i]), dx = _mm256_set1_ps(xs[i])
            // int8: the dots are Σq·xq; Σu·xq = that + 128·Σxq, exactly.
            var flo = _mm256_cvtepi32_ps(dlo), fhi = _mm256_cvtepi32_ps(dhi)
            if bits == 8 {
                let shift = _mm256_mul_ps(sx, _mm256_set1_ps(128))
                flo = _mm256_add_ps(flo, shift)
                fhi = _mm256_add_ps(fhi, shift)
            }
            lo = _mm256_fmadd_ps(dx, _mm256_fmadd_ps(s0, flo, _mm256_mul_ps(m0, sx)), lo)
            hi = _mm256_fmadd_ps(dx, _mm256_fmadd_ps(s1, fhi, _mm256_mul_ps(m1, sx)), hi)
        }
        finish(&a0, &a1, d0, d1, 0)
        if rows > 1 { finish(&a2, &a3, d2, d3, 1) }
        if rows > 2 { finish(&a4, &a5, d4, d5, 2) }
        if rows > 3 { finish(&a6, &a7, d6, d7, 3) }
        pw += groupBytes
    }
    let cols = min(16, n - p * 16)
    @inline(__always)
    func store(_ lo: __m256, _ hi: __m256, _ r: Int) {
        let out = c + r * ldc + p * 16
        if cols == 16 {
            _mm256_storeu_ps(out, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), lo) : lo)
            _mm256_storeu_ps(out + 8, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out + 8), hi) : hi)
        } else {
            let v: SIMD16<Float> = SIMD16(lowHalf: lo, highHalf: hi)
            for j in 0..<cols { out[j] = accumulate ? out[j] + v[j] : v[j] }
        }
    }
    store(a0, a1, 0)
    if rows > 1 { store(a2, a3, 1) }
    if rows > 2 { store(a4, a5, 2) }
    if rows > 3 { store(a6, a7, 3) }
}

/// `c[r, columns of panels] (+)= Σ_k x[r, k] · W[col, k]` for `m` rows quantized to int8 (`xq`:
/// m rows of k values; `xs`, `xsum`: m rows of k/group scales and sums), on weight panels
/// `panelBegin..<panelEnd` of a quantized `PackedWeight` (`bits` 8, 4, 5 or 6, `offsets`, `group`).
/// `epilogue(rowBegin, rowEnd, panelBegin, panelEnd)` is called for each finished group of
/// `epilogueEvery` panels (all m rows), as the fp32 kernels do.
@inline(never)
public func avx2QuantizedRows(
    bits: Int, offsets: Bool, group: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, xsum: UnsafePointer<Float>, m: Int, k: Int,
    b: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    precondition([8, 4, 5, 6].contains(bits), "avx2QuantizedRows: \(bits)-bit weights")
    var next = panelBegin + epilogueEvery
    let groups = k / group
    for p in panelBegin..<panelEnd {
        var r0 = 0
        while r0 < m {
            let rows = min(4, m - r0)
            let x = xq + r0 * k, s = xs + r0 * groups, sum = xsum + r0 * groups, out = c + r0 * ldc
            @inline(__always)
            func tile<Shape: TileShape>(_ shape: Shape.Type) {
                rowsTile(
                    shape, offsets: offsets, group: group, xq: x, xs: s, xsum: sum, k: k, b: b, n: n, panel: p, c: out, ldc: ldc,
                    accumulate: accumulate)
            }
            switch (rows, bits) {
            case (4, 4): tile(Int4Rows4.self)
            case (3, 4): tile(Int4Rows3.self)
            case (2, 4): tile(Int4Rows2.self)
            case (_, 4): tile(Int4Rows1.self)
            case (4, 6): tile(Int6Rows4.self)
            case (3, 6): tile(Int6Rows3.self)
            case (2, 6): tile(Int6Rows2.self)
            case (_, 6): tile(Int6Rows1.self)
            case (4, 5): tile(Int5Rows4.self)
            case (3, 5): tile(Int5Rows3.self)
            case (2, 5): tile(Int5Rows2.self)
            case (_, 5): tile(Int5Rows1.self)
            case (4, _): tile(Int8Rows4.self)
            case (3, _): tile(Int8Rows3.self)
            case (2, _): tile(Int8Rows2.self)
            default: tile(Int8Rows1.self)
            }
            r0 += rows
        }
        while epilogueEvery > 0 && next <= p + 1 {
            epilogue(0, m, next - epilogueEvery, next)
            next += epilogueEvery
        }
    }
}

/// Quantizes `m` rows of `k` values packed as `PackedRows` lays them out (k-blocks of `kc` steps;
/// inside a block, panels of `mr` = 6 rows, each step one value per row) to int8, per row and
/// group of `group` values: d = max|x| / 127, q = x · (1/d) rounded to nearest, ties to even (as
/// llama.cpp's AVX `quantize_row_q8_0`), d = 0 giving q = 0. Writes `values` (m rows of k),
/// `scales` and `sums` (m rows of k/group: d and Σq). A group holding a NaN or an infinity gets
/// d = NaN, q = 0 and sum 0. Only the row panels `panels` are done; their first row is row 0 of
/// the output.
///
/// Row by row: a row's values in a panel are 6 floats apart, and 8 of them are gathered into
/// one vector, so a group costs the same whether its panel holds 1 row or 6, and its 8-byte
/// pieces are stored whole. (A vector per step holding the panel's 6 rows, as before, did 6
/// rows' work for the one row a decode step has, and stored byte by byte: on the AVX2-only EPYC
/// this took 12 % of an OLMoE-shaped int8 layer's time at one token.)
@inline(never)
public func avx2QuantizeRows(
    packed a: UnsafePointer<Float>, m: Int, k: Int, group: Int, kc: Int, panels: Range<Int>,
    values: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Float>
) {
    let mr = 6
    let mPanels = (m + mr - 1) / mr
    let groups = k / group
    let values = values - panels.lowerBound * mr * k, scales = scales - panels.lowerBound * mr * groups
    let sums = sums - panels.lowerBound * mr * groups
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF))
    // One group's values of one row, gathered 8 at a time (groups are at most 128 steps, and a
    // multiple of 8 but for int8's groups of 4: `PackedWeight.Format.fits`; the lanes past a
    // group of 4 hold zeros, which change neither its maximum nor its sum).
    let chunks = (group + 7) / 8
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: chunks) { buffer in
        let gathered = buffer.baseAddress!
        for panel in panels {
            let rows = min(mr, m - panel * mr)
            var k0 = 0
            while k0 < k {
                let width = min(kc, k - k0)
                let block = a + k0 * mPanels * mr + panel * width * mr
                for r in 0..<rows {
                    let row = panel * mr + r
                    var g0 = 0
                    while g0 < width {
                        let src = block + g0 * mr + r
                        let gi = (k0 + g0) / group
                        var amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps()
                        for j in 0..<chunks {
                            let p = src + j * 8 * mr
                            let v =
                                group - 8 * j >= 8
                                ? _mm256_setr_ps(p[0], p[mr], p[2 * mr], p[3 * mr], p[4 * mr], p[5 * mr], p[6 * mr], p[7 * mr])
                                : _mm256_setr_ps(p[0], p[mr], p[2 * mr], p[3 * mr], 0, 0, 0, 0)
                            gathered[j] = v
                            amax = _mm256_max_ps(amax, _mm256_and_ps(v, magnitude))
                            bad = _mm256_add_ps(bad, _mm256_sub_ps(v, v)) // NaN where any value is not finite
                        }
                        let lanes: SIMD8<Float> = amax, badLanes: SIMD8<Float> = bad
                        let out = values + row * k + k0 + g0
                        if badLanes.sum().isNaN {
                            scales[row * groups + gi] = .nan
                            sums[row * groups + gi] = 0
                            out.initialize(repeating: 0, count: group)
                            g0 += group
                            continue
                        }
                        // The same divisions, lane or scalar, round the same: d and 1/d as before.
                        let d = lanes.max() / 127
                        let id = _mm256_set1_ps(d == 0 ? 0 : 1 / d)
                        var total = _mm256_setzero_si256()
                        for j in 0..<chunks {
                            let q = _mm256_cvtps_epi32(_mm256_mul_ps(gathered[j], id))
                            total = _mm256_add_epi32(total, q)
                            // 8 int32 (|q| ≤ 127) to 8 bytes: pack to 16 and 8 bits per 128-bit
                            // half, then the two halves' 4 bytes side by side.
                            let words = _mm256_packs_epi32(q, q), bytes = _mm256_packs_epi16(words, words)
                            let pair = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4))
                            let eight = UInt64(bitPattern: _mm_cvtsi128_si64(_mm256_castsi256_si128(pair)))
                            if group - 8 * j >= 8 {
                                UnsafeMutableRawPointer(out + 8 * j).storeBytes(of: eight, as: UInt64.self)
                            } else {
                                UnsafeMutableRawPointer(out + 8 * j).storeBytes(of: UInt32(truncatingIfNeeded: eight), as: UInt32.self)
                            }
                        }
                        let sum: SIMD8<Int32> = unsafeBitCast(total, to: SIMD8<Int32>.self)
                        scales[row * groups + gi] = d
                        sums[row * groups + gi] = Float(sum.wrappedSum())
                        g0 += group
                    }
                }
                k0 += width
            }
        }
    }
}
