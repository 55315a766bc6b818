// SGEMM micro-kernels for AVX2 + FMA.
//
// This module is compiled with `-march=haswell`. It must only be entered after the caller has
// checked at run time that the CPU has AVX2 and FMA (MoEKernels does that). Every public entry
// point is `@inline(never)`, non-generic and takes raw pointers and Ints, so no code from here can
// be inlined or specialised into a module compiled for the baseline CPU.

/// Register block: MR rows of x by NR columns of Wᵀ (two `SIMD8<Float>`): 12 accumulators,
/// 2 loads of the packed weight and 6 broadcasts of x per step of k.
private let mr = 6
private let nr = 16

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// One `rows`×16 tile: `c[r, 0..<16] (+)= Σ_k a[k*6 + r] * b[k*16 + 0..<16]`.
/// `rows` is a literal at every call site, so the unused accumulators fold away.
/// Each output is one FMA chain over k in order, starting from the old C when `load`.
@inline(__always)
private func tile(
    rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
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
        let b0 = load8(pb), b1 = load8(pb + 8)
        var s = SIMD8<Float>(repeating: pa[0])
        c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
        if rows > 1 { s = SIMD8(repeating: pa[1]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1) }
        if rows > 2 { s = SIMD8(repeating: pa[2]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1) }
        if rows > 3 { s = SIMD8(repeating: pa[3]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1) }
        if rows > 4 { s = SIMD8(repeating: pa[4]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1) }
        if rows > 5 { s = SIMD8(repeating: pa[5]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1) }
        pa += mr; pb += nr
    }
    store8(c00, c); store8(c01, c + 8)
    if rows > 1 { store8(c10, c + ldc); store8(c11, c + ldc + 8) }
    if rows > 2 { store8(c20, c + 2 * ldc); store8(c21, c + 2 * ldc + 8) }
    if rows > 3 { store8(c30, c + 3 * ldc); store8(c31, c + 3 * ldc + 8) }
    if rows > 4 { store8(c40, c + 4 * ldc); store8(c41, c + 4 * ldc + 8) }
    if rows > 5 { store8(c50, c + 5 * ldc); store8(c51, c + 5 * ldc + 8) }
}

/// `rows` (≤ 3) × 32 tile over two weight panels at once (`b0`, `b1`, writing C columns 0..<32),
/// so that one or two rows still have ≥ 4 independent FMA chains per step. Same arithmetic per
/// output as `tile`.
@inline(__always)
private func wideTile(
    rows: Int, kc: Int, a: UnsafePointer<Float>, b0: UnsafePointer<Float>, b1: UnsafePointer<Float>,
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
        let w0 = load8(p0), w1 = load8(p0 + 8), w2 = load8(p1), w3 = load8(p1 + 8)
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
        pa += mr; p0 += nr; p1 += nr
    }
    store8(c00, c); store8(c01, c + 8); store8(c02, c + 16); store8(c03, c + 24)
    if rows > 1 { let r = c + ldc; store8(c10, r); store8(c11, r + 8); store8(c12, r + 16); store8(c13, r + 24) }
    if rows > 2 { let r = c + 2 * ldc; store8(c20, r); store8(c21, r + 8); store8(c22, r + 16); store8(c23, r + 24) }
}

@inline(never)
private func wideTileDispatch(
    rows: Int, kc: Int, a: UnsafePointer<Float>, b0: UnsafePointer<Float>, b1: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 3: wideTile(rows: 3, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    case 2: wideTile(rows: 2, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    default: wideTile(rows: 1, kc: kc, a: a, b0: b0, b1: b1, c: c, ldc: ldc, load: load)
    }
}

@inline(never)
private func tileDispatch(
    rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tile(rows: 6, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 5: tile(rows: 5, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 4: tile(rows: 4, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 3: tile(rows: 3, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 2: tile(rows: 2, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    default: tile(rows: 1, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    }
}

/// Computes `c[M, N] (+)= A · B` for the weight panels `panelBegin..<panelEnd` (16 columns each).
///
/// - `a`: x packed in K-blocks of `kcBlock`; inside block `pb` (of length `kc`), m-panel `ip`
///   starts at `pb*kcBlock*mPanels*6 + ip*kc*6` and holds `kc` steps of 6 floats (rows past M
///   are zero).
/// - `b`: the packed weight: panel `jp` starts at `jp*K*16` and holds K steps of 16 floats
///   (columns past N are zero).
/// - Loop order pb → ic (chunks of `mcPanels` m-panels) → jp → ip: a 16×kc weight slice stays in
///   L1 while all m-panels of the chunk pass over it; the x chunk stays in L2.
/// - `panelMajor` (for few rows, when all of packed x fits in L2): jp → pb → ip instead, so each
///   weight panel is read once, front to back.
/// - `epilogueEvery` > 0: after the last K-block, each time a group of `epilogueEvery` panels
///   (counted from `panelBegin`) is final for a range of rows, `epilogue(rowBegin, rowEnd,
///   panelBegin, panelEnd)` is called with those C entries still in L1/L2, so a caller can turn
///   them into the next GEMM's operand without another pass (the rows are whole m-panels of a
///   chunk, or all m rows). The panel range must be whole groups.
@inline(never)
public func avx2GemmPacked(
    a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<Float>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    gemmPackedLoops(
        a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n,
        panelBegin: panelBegin, panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate,
        panelMajor: panelMajor, epilogueEvery: epilogueEvery, epilogue: epilogue,
        tile: tileDispatch, wideTile: wideTileDispatch, strip: nil, widen: { _, _, _ in },
        panelStride: k * nr, stepOffset: { $0 * nr })
}

/// `avx2GemmPacked` on a weight packed as bfloat16 (`b`: the same panel layout with 16-bit
/// elements). Widening is exact (zero-extend, shift left 16) and the FMA chains are the fp32
/// kernel's, so the result equals the fp32 kernel on the widened weight bit for bit.
///
/// Where a K-block of a weight panel serves one register tile (one to six rows), each step of k
/// loads 16 bf16 values (32 bytes) and widens them in registers to two `SIMD8<Float>`: the
/// memory-bound case, which streams half the bytes (one row takes four panels at a time, so that
/// eight FMA chains keep up with the halved bytes per step). Where it serves several tiles (more rows:
/// compute-bound, and the widening would take issue slots from the FMAs in every tile), the block
/// is widened once into an fp32 strip (16 × kc floats, L1-resident) that the fp32 tiles then read.
/// `strip` (16 × min(k, kcBlock) floats, this call's alone) is that buffer; nil takes a
/// temporary one per call (a heap allocation at this size).
@inline(never)
public func avx2GemmPackedBF16(
    a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<UInt16>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    strip: UnsafeMutablePointer<Float>? = nil,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    halfLoops(
        BFloat16Values.self, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin, panelEnd: panelEnd,
        c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery, epilogue: epilogue)
}

/// `avx2GemmPackedBF16` on a weight packed as IEEE binary16 (widened by `vcvtph2ps`, exact).
@inline(never)
public func avx2GemmPackedF16(
    a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<UInt16>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    strip: UnsafeMutablePointer<Float>? = nil,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    halfLoops(
        Float16Values.self, a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n, panelBegin: panelBegin, panelEnd: panelEnd,
        c: c, ldc: ldc, accumulate: accumulate, panelMajor: panelMajor, strip: strip, epilogueEvery: epilogueEvery, epilogue: epilogue)
}

@inline(__always)
private func halfLoops<H: HalfFloat>(
    _: H.Type, a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<UInt16>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    strip: UnsafeMutablePointer<Float>?, epilogueEvery: Int, epilogue: (Int, Int, Int, Int) -> Void
) {
    func loops(_ strip: UnsafeMutablePointer<Float>) {
        gemmPackedLoops(
            a: a, m: m, k: k, kcBlock: kcBlock, mcPanels: mcPanels, b: b, n: n,
            panelBegin: panelBegin, panelEnd: panelEnd, c: c, ldc: ldc, accumulate: accumulate,
            panelMajor: panelMajor, epilogueEvery: epilogueEvery, epilogue: epilogue,
            tile: { tileDispatchBF16(H.self, rows: $0, kc: $1, a: $2, b: $3, c: $4, ldc: $5, load: $6) },
            wideTile: { wideTileDispatchBF16(H.self, rows: $0, kc: $1, a: $2, b0: $3, b1: $4, c: $5, ldc: $6, load: $7) },
            strip: strip, widen: { widenBlockBF16(H.self, $0, steps: $1, $2) }, panelStride: k * nr, stepOffset: { $0 * nr },
            oneRow: { oneRowBF16(H.self, kc: $0, a: $1, b: $2, panelStride: $3, c: $4, load: $5) })
    }
    if let strip {
        loops(strip)
    } else {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: nr * min(k, kcBlock)) { loops($0.baseAddress!) }
    }
}

/// The blocked loops of `avx2GemmPacked` around a weight element type `B` (`Float` or bfloat16
/// bits) and its tile kernels: `tile(rows, kc, a, b, c, ldc, load)` and
/// `wideTile(rows, kc, a, b0, b1, c, ldc, load)`. With a `strip` (16 × min(k, kcBlock) floats),
/// a K-block that several register tiles use is first widened there by `widen(block, kc, strip)`
/// and run with the fp32 tiles. With `oneRow(kc, a, b, panelStride, c, load)`, a single row
/// takes four full panels at a time.
///
/// Addressing: weight panel `jp` starts `panelStride` elements of `B` after panel 0, and its
/// step `s` (a K-block or piece start: a multiple of `widenSteps`, of `kcBlock`, or 0) lies
/// `stepOffset(s)` elements after the panel's start. For f32 and bf16 that is `k·16` and `s·16`;
/// quantized panels (groups of steps with their scales in front) have other strides.
@inline(__always)
func gemmPackedLoops<B>(
    a: UnsafePointer<Float>, m: Int, k: Int, kcBlock: Int, mcPanels: Int,
    b: UnsafePointer<B>, n: Int, panelBegin: Int, panelEnd: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, panelMajor: Bool,
    epilogueEvery: Int, epilogue: (Int, Int, Int, Int) -> Void,
    tile tileB: (Int, Int, UnsafePointer<Float>, UnsafePointer<B>, UnsafeMutablePointer<Float>, Int, Bool) -> Void,
    wideTile wideTileB: (
        Int, Int, UnsafePointer<Float>, UnsafePointer<B>, UnsafePointer<B>, UnsafeMutablePointer<Float>, Int, Bool
    ) -> Void,
    strip: UnsafeMutablePointer<Float>?, widen: (UnsafePointer<B>, Int, UnsafeMutablePointer<Float>) -> Void,
    widenSteps: Int = 128, panelStride: Int, stepOffset: (Int) -> Int,
    oneRow: ((Int, UnsafePointer<Float>, UnsafePointer<B>, Int, UnsafeMutablePointer<Float>, Bool) -> Void)? = nil
) {
    let mPanels = (m + mr - 1) / mr
    /// Calls the epilogue for every group of panels finished below `done`, from `next` on.
    @inline(__always)
    func finished(_ done: Int, _ next: inout Int, rows: Range<Int>) {
        guard epilogueEvery > 0 else { return }
        while next <= done {
            epilogue(rows.lowerBound, rows.upperBound, next - epilogueEvery, next)
            next += epilogueEvery
        }
    }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { edgeBuf in
        let t = edgeBuf.baseAddress!
        /// One tile; full 16-column tiles go straight to C, the last partial panel through `t`.
        @inline(__always)
        func run(
            rows: Int, kc: Int, ap: UnsafePointer<Float>, bp: UnsafePointer<B>, fp: UnsafePointer<Float>?,
            cp: UnsafeMutablePointer<Float>, cols: Int, load: Bool
        ) {
            /// The tile on the widened strip `fp` when there is one, else on the weight as stored.
            @inline(__always)
            func one(_ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
                if let fp {
                    tileDispatch(rows: rows, kc: kc, a: ap, b: fp, c: c, ldc: ldc, load: load)
                } else {
                    tileB(rows, kc, ap, bp, c, ldc, load)
                }
            }
            if cols == nr {
                one(cp, ldc)
            } else {
                if load {
                    for r in 0..<rows { for j in 0..<cols { t[r * nr + j] = cp[r * ldc + j] } }
                }
                one(t, nr)
                for r in 0..<rows { for j in 0..<cols { cp[r * ldc + j] = t[r * nr + j] } }
            }
        }
        /// Runs `body(fp, s0, sc)` over the K-block `bp` (length `kc`): with a strip and
        /// `tiles` > 1, once per piece of `widenSteps` steps (s0 ..< s0+sc), widened into the
        /// strip (`fp`); else once over the whole block with no strip. Pieces keep the strip
        /// (8 KiB) in L1 next to the x panels the tiles read with it, where one widened K-block
        /// (32 KiB) would fill L1 and be written back to L2. Each output still takes its FMAs
        /// in increasing k (its tile reloads C between pieces), so the bits do not change.
        @inline(__always)
        func widenedPieces(_ bp: UnsafePointer<B>, kc: Int, tiles: Int, _ body: (UnsafePointer<Float>?, Int, Int) -> Void) {
            guard let strip, tiles > 1 else {
                body(nil, 0, kc)
                return
            }
            var s0 = 0
            while s0 < kc {
                let sc = min(widenSteps, kc - s0)
                widen(bp + stepOffset(s0), sc, strip)
                body(UnsafePointer(strip), s0, sc)
                s0 += sc
            }
        }
        if panelMajor {
            // Few rows: each weight panel is streamed once from start to end (all K-blocks in
            // turn), which suits the hardware prefetcher; x stays in L2, the C tiles in L1.
            var jp = panelBegin
            var next = panelBegin + epilogueEvery
            if m == 1, let oneRow {
                // One row: four full panels at a time (eight independent FMA chains).
                while jp + 3 < panelEnd && (jp + 4) * nr <= n {
                    var k0 = 0
                    while k0 < k {
                        let kc = min(kcBlock, k - k0)
                        oneRow(kc, a + k0 * mr, b + jp * panelStride + stepOffset(k0), panelStride, c + jp * nr, accumulate || k0 > 0)
                        k0 += kc
                    }
                    jp += 4
                    finished(jp, &next, rows: 0..<m)
                }
            }
            if m <= 3 {
                // One to three rows: two full panels at a time.
                while jp + 1 < panelEnd && (jp + 2) * nr <= n {
                    var k0 = 0
                    while k0 < k {
                        let kc = min(kcBlock, k - k0)
                        let bp = b + jp * panelStride + stepOffset(k0)
                        wideTileB(m, kc, a + k0 * mr, bp, bp + panelStride, c + jp * nr, ldc, accumulate || k0 > 0)
                        k0 += kc
                    }
                    jp += 2
                    finished(jp, &next, rows: 0..<m)
                }
            }
            for jp in jp..<panelEnd {
                let cols = min(nr, n - jp * nr)
                var k0 = 0
                while k0 < k {
                    let kc = min(kcBlock, k - k0)
                    let bp = b + jp * panelStride + stepOffset(k0)
                    let aBlock = a + k0 * mPanels * mr
                    widenedPieces(bp, kc: kc, tiles: mPanels) { fp, s0, sc in
                        for ip in 0..<mPanels {
                            run(
                                rows: min(mr, m - ip * mr), kc: sc, ap: aBlock + ip * kc * mr + s0 * mr, bp: bp + stepOffset(s0), fp: fp,
                                cp: c + ip * mr * ldc + jp * nr, cols: cols, load: accumulate || k0 > 0 || s0 > 0)
                        }
                    }
                    k0 += kc
                }
                finished(jp + 1, &next, rows: 0..<m)
            }
            return
        }
        var k0 = 0
        while k0 < k {
            let kc = min(kcBlock, k - k0)
            let load = accumulate || k0 > 0
            let aBlock = a + k0 * mPanels * mr
            var ic = 0
            let last = k0 + kc >= k
            while ic < mPanels {
                let icEnd = min(mPanels, ic + mcPanels)
                var next = panelBegin + epilogueEvery
                for jp in panelBegin..<panelEnd {
                    let bp = b + jp * panelStride + stepOffset(k0)
                    let cols = min(nr, n - jp * nr)
                    widenedPieces(bp, kc: kc, tiles: icEnd - ic) { fp, s0, sc in
                        for ip in ic..<icEnd {
                            run(
                                rows: min(mr, m - ip * mr), kc: sc, ap: aBlock + ip * kc * mr + s0 * mr, bp: bp + stepOffset(s0), fp: fp,
                                cp: c + ip * mr * ldc + jp * nr, cols: cols, load: load || s0 > 0)
                        }
                    }
                    if last { finished(jp + 1, &next, rows: ic * mr..<min(m, icEnd * mr)) }
                }
                ic = icEnd
            }
            k0 += kc
        }
    }
}

/// GEMV on the unpacked weight: `y[j] (+)= Σ_k w[j*ldw + k] · x[k]` for j in `rowBegin..<rowEnd`.
/// Four rows of W at a time, 16 columns per step (8 accumulators), then a horizontal sum in a
/// fixed order; the tail of k is done in scalar FMAs. Used when a weight is not packed.
@inline(never)
public func avx2GemvRows(
    w: UnsafePointer<Float>, ldw: Int, k: Int, x: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>, rowBegin: Int, rowEnd: Int, accumulate: Bool
) {
    @inline(__always) func hsum(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> Float {
        let v = a + b
        let h = v.lowHalf + v.highHalf
        return (h[0] + h[2]) + (h[1] + h[3])
    }
    let k16 = k & ~15
    var j = rowBegin
    while j + 4 <= rowEnd {
        let r0 = w + j * ldw, r1 = r0 + ldw, r2 = r1 + ldw, r3 = r2 + ldw
        var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
        var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
        var kk = 0
        while kk < k16 {
            let x0 = load8(x + kk), x1 = load8(x + kk + 8)
            a0 = a0.addingProduct(load8(r0 + kk), x0); b0 = b0.addingProduct(load8(r0 + kk + 8), x1)
            a1 = a1.addingProduct(load8(r1 + kk), x0); b1 = b1.addingProduct(load8(r1 + kk + 8), x1)
            a2 = a2.addingProduct(load8(r2 + kk), x0); b2 = b2.addingProduct(load8(r2 + kk + 8), x1)
            a3 = a3.addingProduct(load8(r3 + kk), x0); b3 = b3.addingProduct(load8(r3 + kk + 8), x1)
            kk += 16
        }
        var s0 = hsum(a0, b0), s1 = hsum(a1, b1), s2 = hsum(a2, b2), s3 = hsum(a3, b3)
        while kk < k {
            let xv = x[kk]
            s0 = s0.addingProduct(r0[kk], xv); s1 = s1.addingProduct(r1[kk], xv)
            s2 = s2.addingProduct(r2[kk], xv); s3 = s3.addingProduct(r3[kk], xv)
            kk += 1
        }
        if accumulate { s0 += y[j]; s1 += y[j + 1]; s2 += y[j + 2]; s3 += y[j + 3] }
        y[j] = s0; y[j + 1] = s1; y[j + 2] = s2; y[j + 3] = s3
        j += 4
    }
    while j < rowEnd {
        let r0 = w + j * ldw
        var a0 = SIMD8<Float>(), b0 = SIMD8<Float>()
        var kk = 0
        while kk < k16 {
            a0 = a0.addingProduct(load8(r0 + kk), load8(x + kk))
            b0 = b0.addingProduct(load8(r0 + kk + 8), load8(x + kk + 8))
            kk += 16
        }
        var s0 = hsum(a0, b0)
        while kk < k { s0 = s0.addingProduct(r0[kk], x[kk]); kk += 1 }
        if accumulate { s0 += y[j] }
        y[j] = s0
        j += 1
    }
}
