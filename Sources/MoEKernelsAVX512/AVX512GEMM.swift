// The packed GEMM for AVX-512 (F/BW/VL, 32 vector registers of 16 floats): fp32, bfloat16 and
// IEEE half weights.
//
// The operands are those of the AVX2 kernel (AVX2GEMM.swift): x packed in row panels of 6 rows
// (`a[k*6 + r]` within a K-block), the weight in panels of 16 columns (`b[k*16 + j]`, fp32 or
// 16-bit). One 512-bit register holds a whole step of a panel, so a register tile is up to 6 rows
// × 4 panels (24 accumulators, 4 weight registers and a broadcast: 29 of 32 registers) — four
// times the columns of the AVX2 tile, which keeps more FMA chains in flight for the few rows of
// an expert at decode and halves the instructions per weight byte. One row takes 8 panels at a
// time (8 chains). 16-bit weights are widened in registers (bf16: zero-extend and shift; f16:
// `vcvtph2ps`), both exact.
//
// Every output is still one FMA chain over k in increasing order starting from 0 or the old C,
// so the result equals the AVX2 and portable kernels bit for bit, for any split of the panels.
//
// This module is compiled for AVX-512; callers check the CPU first.

import _Builtin_intrinsics.intel

/// Rows of x per packed panel, and columns per weight panel (as in the AVX2 kernel).
private let mr = 6
private let nr = 16

/// How 16 stored weight values (one step of one panel) become 16 floats.
protocol PanelStep {
    associatedtype Element
    static func load(_ p: UnsafePointer<Element>) -> SIMD16<Float>
}

enum Float32Step: PanelStep {
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }
}

enum BFloat16Step: PanelStep {
    @inline(__always)
    static func load(_ p: UnsafePointer<UInt16>) -> SIMD16<Float> {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(UnsafeRawPointer(p).loadUnaligned(as: __m256i.self)), 16))
    }
}

enum Float16Step: PanelStep {
    @inline(__always)
    static func load(_ p: UnsafePointer<UInt16>) -> SIMD16<Float> {
        _mm512_cvtph_ps(UnsafeRawPointer(p).loadUnaligned(as: __m256i.self))
    }
}

@inline(__always)
private func load16(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
private func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }

/// One register tile: `c[r, 16p ..< 16p+16] (+)= Σ_k a[k*6 + r] · b_p[k*16 ..< k*16+16]` for
/// r < `rows` (≤ 6) and p < `panels` (1, 2 or 4; 8 with one row), panel p at `b + p*panelStride`.
/// `rows` and `panels` are literals at every call, so unused accumulators fold away.
@inline(__always)
private func tile<S: PanelStep>(
    _: S.Type, rows: Int, panels: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
    var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
    var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
    var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
    var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>(), c43 = SIMD16<Float>()
    var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>(), c53 = SIMD16<Float>()
    if load {
        c00 = load16(c + 0 * ldc + 0)
        if panels > 1 { c01 = load16(c + 0 * ldc + 16) }
        if panels > 2 { c02 = load16(c + 0 * ldc + 32) }
        if panels > 3 { c03 = load16(c + 0 * ldc + 48) }
        if rows > 1 { c10 = load16(c + 1 * ldc + 0) }
        if rows > 1 && panels > 1 { c11 = load16(c + 1 * ldc + 16) }
        if rows > 1 && panels > 2 { c12 = load16(c + 1 * ldc + 32) }
        if rows > 1 && panels > 3 { c13 = load16(c + 1 * ldc + 48) }
        if rows > 2 { c20 = load16(c + 2 * ldc + 0) }
        if rows > 2 && panels > 1 { c21 = load16(c + 2 * ldc + 16) }
        if rows > 2 && panels > 2 { c22 = load16(c + 2 * ldc + 32) }
        if rows > 2 && panels > 3 { c23 = load16(c + 2 * ldc + 48) }
        if rows > 3 { c30 = load16(c + 3 * ldc + 0) }
        if rows > 3 && panels > 1 { c31 = load16(c + 3 * ldc + 16) }
        if rows > 3 && panels > 2 { c32 = load16(c + 3 * ldc + 32) }
        if rows > 3 && panels > 3 { c33 = load16(c + 3 * ldc + 48) }
        if rows > 4 { c40 = load16(c + 4 * ldc + 0) }
        if rows > 4 && panels > 1 { c41 = load16(c + 4 * ldc + 16) }
        if rows > 4 && panels > 2 { c42 = load16(c + 4 * ldc + 32) }
        if rows > 4 && panels > 3 { c43 = load16(c + 4 * ldc + 48) }
        if rows > 5 { c50 = load16(c + 5 * ldc + 0) }
        if rows > 5 && panels > 1 { c51 = load16(c + 5 * ldc + 16) }
        if rows > 5 && panels > 2 { c52 = load16(c + 5 * ldc + 32) }
        if rows > 5 && panels > 3 { c53 = load16(c + 5 * ldc + 48) }
    }
    var pa = a, pb = b
    for _ in 0..<kc {
        let w0 = S.load(pb)
        let w1 = panels > 1 ? S.load(pb + 1 * panelStride) : SIMD16<Float>()
        let w2 = panels > 2 ? S.load(pb + 2 * panelStride) : SIMD16<Float>()
        let w3 = panels > 3 ? S.load(pb + 3 * panelStride) : SIMD16<Float>()
        var s = SIMD16<Float>(repeating: pa[0]); c00 = c00.addingProduct(s, w0); if panels > 1 { c01 = c01.addingProduct(s, w1) }; if panels > 2 { c02 = c02.addingProduct(s, w2) };
        if panels > 3 { c03 = c03.addingProduct(s, w3) }
        if rows > 1 {
            s = SIMD16<Float>(repeating: pa[1]); c10 = c10.addingProduct(s, w0); if panels > 1 { c11 = c11.addingProduct(s, w1) }; if panels > 2 { c12 = c12.addingProduct(s, w2) };
            if panels > 3 { c13 = c13.addingProduct(s, w3) }
        }
        if rows > 2 {
            s = SIMD16<Float>(repeating: pa[2]); c20 = c20.addingProduct(s, w0); if panels > 1 { c21 = c21.addingProduct(s, w1) }; if panels > 2 { c22 = c22.addingProduct(s, w2) };
            if panels > 3 { c23 = c23.addingProduct(s, w3) }
        }
        if rows > 3 {
            s = SIMD16<Float>(repeating: pa[3]); c30 = c30.addingProduct(s, w0); if panels > 1 { c31 = c31.addingProduct(s, w1) }; if panels > 2 { c32 = c32.addingProduct(s, w2) };
            if panels > 3 { c33 = c33.addingProduct(s, w3) }
        }
        if rows > 4 {
            s = SIMD16<Float>(repeating: pa[4]); c40 = c40.addingProduct(s, w0); if panels > 1 { c41 = c41.addingProduct(s, w1) }; if panels > 2 { c42 = c42.addingProduct(s, w2) };
            if panels > 3 { c43 = c43.addingProduct(s, w3) }
        }
        if rows > 5 {
            s = SIMD16<Float>(repeating: pa[5]); c50 = c50.addingProduct(s, w0); if panels > 1 { c51 = c51.addingProduct(s, w1) }; if panels > 2 { c52 = c52.addingProduct(s, w2) };
            if panels > 3 { c53 = c53.addingProduct(s, w3) }
        }
        pa += mr; pb += nr
    }
    store16(c00, c + 0 * ldc + 0)
    if panels > 1 { store16(c01, c + 0 * ldc + 16) }
    if panels > 2 { store16(c02, c + 0 * ldc + 32) }
    if panels > 3 { store16(c03, c + 0 * ldc + 48) }
    if rows > 1 { store16(c10, c + 1 * ldc + 0) }
    if rows > 1 && panels > 1 { store16(c11, c + 1 * ldc + 16) }
    if rows > 1 && panels > 2 { store16(c12, c + 1 * ldc + 32) }
    if rows > 1 && panels > 3 { store16(c13, c + 1 * ldc + 48) }
    if rows > 2 { store16(c20, c + 2 * ldc + 0) }
    if rows > 2 && panels > 1 { store16(c21, c + 2 * ldc + 16) }
    if rows > 2 && panels > 2 { store16(c22, c + 2 * ldc + 32) }
    if rows > 2 && panels > 3 { store16(c23, c + 2 * ldc + 48) }
    if rows > 3 { store16(c30, c + 3 * ldc + 0) }
    if rows > 3 && panels > 1 { store16(c31, c + 3 * ldc + 16) }
    if rows > 3 && panels > 2 { store16(c32, c + 3 * ldc + 32) }
    if rows > 3 && panels > 3 { store16(c33, c + 3 * ldc + 48) }
    if rows > 4 { store16(c40, c + 4 * ldc + 0) }
    if rows > 4 && panels > 1 { store16(c41, c + 4 * ldc + 16) }
    if rows > 4 && panels > 2 { store16(c42, c + 4 * ldc + 32) }
    if rows > 4 && panels > 3 { store16(c43, c + 4 * ldc + 48) }
    if rows > 5 { store16(c50, c + 5 * ldc + 0) }
    if rows > 5 && panels > 1 { store16(c51, c + 5 * ldc + 16) }
    if rows > 5 && panels > 2 { store16(c52, c + 5 * ldc + 32) }
    if rows > 5 && panels > 3 { store16(c53, c + 5 * ldc + 48) }
}

/// One row against 8 panels (8 independent FMA chains): the bandwidth-bound GEMV of decode.
@inline(__always)
private func oneRow8<S: PanelStep>(
    _: S.Type, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, load: Bool
) {
    var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>(), c3 = SIMD16<Float>(), c4 = SIMD16<Float>(), c5 = SIMD16<Float>(), c6 = SIMD16<Float>(),
        c7 = SIMD16<Float>()
    if load {
        c0 = load16(c + 0)
        c1 = load16(c + 16)
        c2 = load16(c + 32)
        c3 = load16(c + 48)
        c4 = load16(c + 64)
        c5 = load16(c + 80)
        c6 = load16(c + 96)
        c7 = load16(c + 112)
    }
    var pa = a, pb = b
    for _ in 0..<kc {
        let s = SIMD16<Float>(repeating: pa[0])
        c0 = c0.addingProduct(s, S.load(pb + 0 * panelStride))
        c1 = c1.addingProduct(s, S.load(pb + 1 * panelStride))
        c2 = c2.addingProduct(s, S.load(pb + 2 * panelStride))
        c3 = c3.addingProduct(s, S.load(pb + 3 * panelStride))
        c4 = c4.addingProduct(s, S.load(pb + 4 * panelStride))
        c5 = c5.addingProduct(s, S.load(pb + 5 * panelStride))
        c6 = c6.addingProduct(s, S.load(pb + 6 * panelStride))
        c7 = c7.addingProduct(s, S.load(pb + 7 * panelStride))
        pa += mr; pb += nr
    }
    store16(c0, c + 0)
    store16(c1, c + 16)
    store16(c2, c + 32)
    store16(c3, c + 48)
    store16(c4, c + 64)
    store16(c5, c + 80)
    store16(c6, c + 96)
    store16(c7, c + 112)
}

/// The tile for `rows` × 4 panels (a `switch` onto literal instances). One such function per
/// panel count: a single switch over all 18 shapes made the optimizer stop inlining the tile
/// (it then ran with `rows` and `panels` as variables, about 2× slower).
@inline(never)
private func tileDispatch4<S: PanelStep>(
    _: S.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tile(S.self, rows: 6, panels: 4, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 5: tile(S.self, rows: 5, panels: 4, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 4: tile(S.self, rows: 4, panels: 4, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 3: tile(S.self, rows: 3, panels: 4, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 2: tile(S.self, rows: 2, panels: 4, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    default: tile(S.self, rows: 1, panels: 4, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    }
}

/// The tile for `rows` × 2 panels (a `switch` onto literal instances).
@inline(never)
private func tileDispatch2<S: PanelStep>(
    _: S.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tile(S.self, rows: 6, panels: 2, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 5: tile(S.self, rows: 5, panels: 2, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 4: tile(S.self, rows: 4, panels: 2, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 3: tile(S.self, rows: 3, panels: 2, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 2: tile(S.self, rows: 2, panels: 2, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    default: tile(S.self, rows: 1, panels: 2, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    }
}

/// The tile for `rows` × 1 panel (a `switch` onto literal instances).
@inline(never)
private func tileDispatch1<S: PanelStep>(
    _: S.Type, rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tile(S.self, rows: 6, panels: 1, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 5: tile(S.self, rows: 5, panels: 1, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 4: tile(S.self, rows: 4, panels: 1, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 3: tile(S.self, rows: 3, panels: 1, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 2: tile(S.self, rows: 2, panels: 1, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    default: tile(S.self, rows: 1, panels: 1, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    }
}

/// The tile for `rows` × `panels` (1, 2 or 4).
@inline(__always)
private func tileDispatch<S: PanelStep>(
    _: S.Type, rows: Int, panels: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch panels {
    case 4: tileDispatch4(S.self, rows: rows, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    case 2: tileDispatch2(S.self, rows: rows, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    default: tileDispatch1(S.self, rows: rows, kc: kc, a: a, b: b, panelStride: panelStride, c: c, ldc: ldc, load: load)
    }
}

@inline(never)
private func oneRowDispatch<S: PanelStep>(
    _: S.Type, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<S.Element>, panelStride: Int, c: UnsafeMutablePointer<Float>, load: Bool
) {
    oneRow8(S.self, kc: kc, a: a, b: b, panelStride: panelStride, c: c, load: load)
}

/// The blocked loops of the AVX2 kernel (`gemmPackedLoops`: the panel-major order for few rows,
/// K-block / row-chunk / panel for many) over register tiles of up to 4 full panels; the last,
/// partial panel (n not a multiple of 16) goes through a 6 × 16 buffer. `epilogue` is called
/// for each group of `epilogueEvery` panels once its rows are final, as there.
@inline(__always)
private func loops<S: PanelStep>(
    _: S.Type, a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<S.Element>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    epilogueEvery: Int, epilogue: (Int, Int, Int, Int) -> Void
) {
    let mPanels = (m + mr - 1) / mr
    let panelStride = k * nr
    let fullEnd = min(panelEnd, n / nr)
    /// Calls the epilogue for every group of panels finished below `done`, from `next` on.
    @inline(__always)
    func finished(_ done: Int, _ next: inout Int, rows: Range<Int>) {
        guard epilogueEvery > 0 else { return }
        while next <= done {
            epilogue(rows.lowerBound, rows.upperBound, next - epilogueEvery, next)
            next += epilogueEvery
        }
    }
    /// Panels in the tile at `jp`: 4, 2 or 1 full panels, or the partial one alone.
    @inline(__always)
    func width(_ jp: Int) -> Int {
        let full = fullEnd - jp
        return full >= 4 ? 4 : full >= 2 ? 2 : 1
    }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { edge in
        let t = edge.baseAddress!
        @inline(__always)
        func run(rows: Int, panels: Int, jp: Int, kc: Int, ap: UnsafePointer<Float>, bp: UnsafePointer<S.Element>, cp: UnsafeMutablePointer<Float>, load: Bool) {
            if jp < fullEnd {
                tileDispatch(S.self, rows: rows, panels: panels, kc: kc, a: ap, b: bp, panelStride: panelStride, c: cp, ldc: ldc, load: load)
                return
            }
            let cols = n - jp * nr
            if load {
                for r in 0..<rows { for j in 0..<cols { t[r * nr + j] = cp[r * ldc + j] } }
            }
            tileDispatch(S.self, rows: rows, panels: 1, kc: kc, a: ap, b: bp, panelStride: panelStride, c: t, ldc: nr, load: load)
            for r in 0..<rows { for j in 0..<cols { cp[r * ldc + j] = t[r * nr + j] } }
        }
        if panelMajor {
            // Few rows: each weight panel is streamed once from start to end (all K-blocks in
            // turn); x stays in L2.
            var jp = panelBegin
            var next = panelBegin + epilogueEvery
            if m == 1 {
                while jp + 8 <= fullEnd {
                    var k0 = 0
                    while k0 < k {
                        let kc = min(kcBlock, k - k0)
                        oneRowDispatch(
                            S.self, kc: kc, a: a + k0 * mr, b: b + jp * panelStride + k0 * nr, panelStride: panelStride, c: c + jp * nr,
                            load: accumulate || k0 > 0)
                        k0 += kc
                    }
                    jp += 8
                    finished(jp, &next, rows: 0..<m)
                }
            }
            while jp < panelEnd {
                let p = width(jp)
                var k0 = 0
                while k0 < k {
                    let kc = min(kcBlock, k - k0)
                    let aBlock = a + k0 * mPanels * mr
                    for ip in 0..<mPanels {
                        run(
                            rows: min(mr, m - ip * mr), panels: p, jp: jp, kc: kc, ap: aBlock + ip * kc * mr, bp: b + jp * panelStride + k0 * nr,
                            cp: c + ip * mr * ldc + jp * nr, load: accumulate || k0 > 0)
                    }
                    k0 += kc
                }
                jp += p
                finished(jp, &next, rows: 0..<m)
            }
            return
        }
        var k0 = 0
        while k0 < k {
            let kc = min(kcBlock, k - k0)
            let load = accumulate || k0 > 0
            let aBlock = a + k0 * mPanels * mr
            let last = k0 + kc >= k
            var ic = 0
            while ic < mPanels {
                let icEnd = min(mPanels, ic + mcPanels)
                var next = panelBegin + epilogueEvery
                var jp = panelBegin
                while jp < panelEnd {
                    let p = width(jp)
                    for ip in ic..<icEnd {
                        run(
                            rows: min(mr, m - ip * mr), panels: p, jp: jp, kc: kc, ap: aBlock + ip * kc * mr, bp: b + jp * panelStride + k0 * nr,
                            cp: c + ip * mr * ldc + jp * nr, load: load)
                    }
                    jp += p
                    if last { finished(jp, &next, rows: ic * mr..<min(m, icEnd * mr)) }
                }
                ic = icEnd
            }
            k0 += kc
        }
    }
}

/// `c[m, panels] (+)= a · bᵀ` on the packed operands of `avx2GemmPacked` (same arguments and
/// the same bits), with 512-bit register tiles.
@inline(never)
public func avx512GemmPacked(
    a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<Float>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    loops(
        Float32Step.self, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin, panelEnd: panelEnd,
        c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, epilogueEvery: epilogueEvery, epilogue: epilogue)
}

/// `avx512GemmPacked` on a weight packed as 16-bit floats, bfloat16 or (`f16`) IEEE binary16,
/// widened in registers (exact): the fp32 kernel's result on the widened weight, bit for bit.
@inline(never)
public func avx512GemmPackedHalf(
    f16: Bool, a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<UInt16>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    if f16 {
        loops(
            Float16Step.self, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin, panelEnd: panelEnd,
            c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, epilogueEvery: epilogueEvery, epilogue: epilogue)
    } else {
        loops(
            BFloat16Step.self, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin, panelEnd: panelEnd,
            c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, epilogueEvery: epilogueEvery, epilogue: epilogue)
    }
}
