import Testing

@testable import MoEKernels

private let sizes = [1, 2, 3, 5, 7, 16, 17, 31, 64, 100, 129]

/// Runs the packed GEMM on every kernel set, with and without accumulate, against the Double
/// reference. Returns the first mismatch, or nil.
private func checkGemm(m: Int, n: Int, k: Int, threads: Int = 1, seed: UInt64) -> String? {
    var rng = TestRandom(seed: seed)
    let x = rng.array(m * k), w = rng.array(n * k), y0 = rng.array(m * n)
    let packed = PackedWeight(weight: w, n: n, k: k)
    let refSet = referenceLinear(x: x, w: w, y0: nil, m: m, n: n, k: k)
    let refAcc = referenceLinear(x: x, w: w, y0: y0, m: m, n: n, k: k)
    for isa in ISA.available {
        for accumulate in [false, true] {
            var y = accumulate ? y0 : [Float](repeating: .nan, count: m * n)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    Kernels.gemm(
                        xp.baseAddress!, packed, yp.baseAddress!, m: m, accumulate: accumulate,
                        threads: threads, isa: isa)
                }
            }
            if let bad = firstGemmMismatch(y, accumulate ? refAcc : refSet, k: k) {
                return "\(isa) M=\(m) N=\(n) K=\(k) accumulate=\(accumulate) threads=\(threads): \(bad)"
            }
        }
    }
    return nil
}

@Test func packedGemmMatchesReferenceOverMAndN() {
    for k in [1, 17, 129] {
        for m in sizes {
            for n in sizes {
                let bad = checkGemm(m: m, n: n, k: k, seed: UInt64(m * 10_000 + n * 100 + k))
                #expect(bad == nil, "\(bad ?? "")")
            }
        }
    }
}

@Test func packedGemmMatchesReferenceOverK() {
    for (m, n) in [(7, 31), (17, 17), (1, 129)] {
        for k in sizes + [255, 256, 257, 300, 511, 512, 513, 1030] {
            let bad = checkGemm(m: m, n: n, k: k, seed: UInt64(k))
            #expect(bad == nil, "\(bad ?? "")")
        }
    }
}

@Test func packedGemmCrossesRowChunksAndThreads() {
    // More rows than one L2 chunk (24 panels × 6 rows), K across two blocks (kc = 512), several threads.
    for (m, n, k, t) in [(150, 40, 600, 1), (150, 40, 600, 2), (64, 200, 600, 3), (300, 17, 31, 2)] {
        let bad = checkGemm(m: m, n: n, k: k, threads: t, seed: 7)
        #expect(bad == nil, "\(bad ?? "")")
    }
}

@Test(arguments: ISA.available)
func packedGemmIsIndependentOfThreadsAndBatch(isa: ISA) {
    let m = 64, n = 200, k = 600
    var rng = TestRandom(seed: 11)
    let x = rng.array(m * k), w = rng.array(n * k)
    let packed = PackedWeight(weight: w, n: n, k: k)
    func run(rows: Int, threads: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * n)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                Kernels.gemm(xp.baseAddress!, packed, yp.baseAddress!, m: rows, threads: threads, isa: isa)
            }
        }
        return y
    }
    func firstDifference(_ a: [Float], _ b: ArraySlice<Float>) -> String? {
        zip(a.indices, zip(a, b)).first { $0.1.0 != $0.1.1 }.map { "index \($0.0): \($0.1.0) vs \($0.1.1)" }
    }
    let one = run(rows: m, threads: 1)
    #expect(firstDifference(run(rows: m, threads: 2), one[...]) == nil)
    #expect(firstDifference(run(rows: m, threads: 3), one[...]) == nil)
    // A row's result does not depend on how many rows share the call.
    for rows in [1, 5, 13] {
        #expect(firstDifference(run(rows: rows, threads: 2), one[0..<(rows * n)]) == nil, "rows \(rows)")
    }
}

@Test func packedWeightRoundTrips() {
    var rng = TestRandom(seed: 3)
    for (n, k) in [(1, 1), (17, 5), (33, 64)] {
        let w = rng.array(n * k)
        let p = PackedWeight(weight: w, n: n, k: k, threads: 2)
        #expect(p.unpacked() == w)
        #expect(p.panels == (n + 15) / 16)
        #expect(p.byteCount == p.panels * 16 * k * 4)
    }
}

@Test func stridedSgemmMatchesReference() {
    var rng = TestRandom(seed: 5)
    for isa in ISA.available {
        for (m, n, k) in [(1, 1, 1), (5, 17, 31), (17, 3, 129), (31, 100, 7), (129, 16, 300)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (-2, 0.25)] {
                        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2
                        let a = rng.array((transA ? k : m) * lda), b = rng.array((transB ? n : k) * ldb)
                        var c = rng.array(m * ldc)
                        if beta == 0 { for i in c.indices { c[i] = .nan } } // must not be read
                        let c0 = c
                        a.withUnsafeBufferPointer { ap in
                            b.withUnsafeBufferPointer { bp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    Kernels.sgemm(
                                        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                        a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                        beta: beta, c: cp.baseAddress!, ldc: ldc, threads: 2, isa: isa)
                                }
                            }
                        }
                        var worst: String? = nil
                        for i in 0..<m {
                            for j in 0..<n {
                                var s = beta == 0 ? 0 : Double(beta) * Double(c0[i * ldc + j]), mag = Swift.abs(s)
                                for kk in 0..<k {
                                    let av = Double(transA ? a[kk * lda + i] : a[i * lda + kk])
                                    let bv = Double(transB ? b[j * ldb + kk] : b[kk * ldb + j])
                                    s += Double(alpha) * av * bv
                                    mag += Swift.abs(Double(alpha) * av * bv)
                                }
                                let tol = 1.2e-7 * Double(k + 3) * mag + 1e-30
                                if worst == nil && !(Swift.abs(Double(c[i * ldc + j]) - s) <= tol) {
                                    worst = "(\(i), \(j)): got \(c[i * ldc + j]), expected \(s)"
                                }
                            }
                        }
                        #expect(worst == nil, "\(isa) \(m)x\(n)x\(k) tA=\(transA) tB=\(transB) α=\(alpha) β=\(beta): \(worst ?? "")")
                    }
                }
            }
        }
    }
}

@Test func unpackedGemvMatchesReference() {
    for isa in ISA.available {
        for (n, k) in [(1, 1), (3, 17), (5, 31), (7, 100), (129, 64), (1000, 1030)] {
            var rng = TestRandom(seed: UInt64(n * 7 + k))
            let ldw = k + 3
            let w = rng.array(n * ldw), x = rng.array(k), y0 = rng.array(n)
            var dense = [Float](repeating: 0, count: n * k)
            for j in 0..<n { for kk in 0..<k { dense[j * k + kk] = w[j * ldw + kk] } }
            for accumulate in [false, true] {
                let ref = referenceLinear(x: x, w: dense, y0: accumulate ? y0 : nil, m: 1, n: n, k: k)
                for threads in [1, 2] {
                    var y = accumulate ? y0 : [Float](repeating: .nan, count: n)
                    w.withUnsafeBufferPointer { wp in
                        x.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer {
                                Kernels.gemv(
                                    wp.baseAddress!, xp.baseAddress!, $0.baseAddress!, n: n, k: k, ldw: ldw,
                                    accumulate: accumulate, threads: threads, isa: isa)
                            }
                        }
                    }
                    let bad = firstGemmMismatch(y, ref, k: k)
                    #expect(bad == nil, "\(isa) N=\(n) K=\(k) accumulate=\(accumulate) threads=\(threads): \(bad ?? "")")
                }
            }
        }
    }
}

@Test(arguments: ISA.available)
func gatheredGemmEqualsGatherThenGemm(isa: ISA) {
    let tokens = 40, k = 70, n = 33
    var rng = TestRandom(seed: 13)
    let x = rng.array(tokens * k), w = rng.array(n * k)
    let packed = PackedWeight(weight: w, n: n, k: k)
    let rows: [Int32] = [39, 0, 5, 5, 17, 2, 38, 11, 20]
    let gathered = rows.flatMap { x[(Int($0) * k)..<(Int($0) * k + k)] }
    var expected = [Float](repeating: 0, count: rows.count * n), got = expected
    gathered.withUnsafeBufferPointer { g in
        expected.withUnsafeMutableBufferPointer { Kernels.gemm(g.baseAddress!, packed, $0.baseAddress!, m: rows.count, isa: isa) }
    }
    x.withUnsafeBufferPointer { xp in
        rows.withUnsafeBufferPointer { rp in
            got.withUnsafeMutableBufferPointer {
                Kernels.gemm(
                    gathering: xp.baseAddress!, rows: rp.baseAddress!, packed, $0.baseAddress!, m: rows.count,
                    threads: 2, isa: isa)
            }
        }
    }
    #expect(got == expected)
}

/// A reused `GemmJob` (the schedule's allocation-free path) computes exactly what a plain call
/// does, for successive calls of different shapes through the same job, on one and more threads,
/// with a row stride in x and y, and accumulating.
@Test(arguments: ISA.available)
func gemmThroughAReusedJobEqualsThePlainCall(isa: ISA) {
    let job = GemmJob()
    var rng = TestRandom(seed: 23)
    for (m, n, k, threads, accumulate) in [(37, 200, 300, 2, false), (150, 40, 600, 2, true), (5, 33, 70, 1, false), (64, 200, 600, 3, false)] {
        let ldx = k + 3, ldy = n + 5
        let x = rng.array(m * ldx), w = rng.array(n * k), y0 = rng.array(m * ldy)
        let packed = PackedWeight(weight: w, n: n, k: k)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: Kernels.packedOperandBytes(m: m, k: k) / 4)
        defer { buffer.deallocate() }
        var plain = y0, reused = y0
        x.withUnsafeBufferPointer { xp in
            plain.withUnsafeMutableBufferPointer { yp in
                Kernels.gemm(
                    xp.baseAddress!, packed, yp.baseAddress!, m: m, ldx: ldx, ldy: ldy, accumulate: accumulate,
                    threads: threads, isa: isa)
            }
            reused.withUnsafeMutableBufferPointer { yp in
                Kernels.gemm(
                    xp.baseAddress!, packed, yp.baseAddress!, m: m, ldx: ldx, ldy: ldy, accumulate: accumulate,
                    threads: threads, isa: isa, packBuffer: buffer, job: job)
            }
        }
        #expect(plain == reused, "m \(m) n \(n) k \(k) threads \(threads)")
        #expect(plain != y0)
    }
}

/// A `ChunkJob` sees the chunks `forEachChunk` hands a closure, whatever the thread count.
@Test func chunkJobRunsEveryChunkOnce() {
    for (count, threads) in [(0, 2), (1, 4), (7, 2), (100, 3), (5, 8)] {
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
        hits.initialize(repeating: 0, count: max(count, 1))
        defer { hits.deallocate() }
        let p = SendablePointer(hits)
        let job = ChunkJob { range in for i in range { p.pointer[i] += 1 } }
        for _ in 0..<3 { Parallel.forEachChunk(count: count, threads: threads, job: job) }
        #expect((0..<count).allSatisfy { hits[$0] == 3 }, "count \(count) threads \(threads)")
    }
}

/// The GEMM epilogue (`gemmPacked(…, epilogueEvery:)`): every row of every group of panels is
/// handed over exactly once, after its values are final (they equal the plain GEMM's), and the
/// strip packed there with `PackedRows.packColumns` equals packing the whole result at the end.
/// Row counts cover the few-row, panel-major and row-chunked (more than `mcPanels` panels) paths.
@Test(arguments: ISA.available)
func gemmEpilogueSeesEveryFinishedStripOnce(isa: ISA) {
    var rng = TestRandom(seed: 31)
    // (m, n, k, panels per group, first panel): ranges starting past 0 as a thread's share does,
    // and a partial last panel (n = 36) as an MLP's F may give.
    for (m, n, k, every, first) in [
        (1, 96, 70, 2, 0), (3, 64, 600, 1, 0), (40, 96, 600, 2, 0), (150, 64, 300, 2, 0),
        (301, 32, 1100, 2, 0), (2, 128, 70, 2, 2), (150, 128, 600, 2, 4), (7, 36, 70, 1, 1),
        (200, 36, 600, 1, 0)
    ] {
        let x = rng.array(m * k), w = rng.array(n * k), scale = rng.array(m)
        let packed = PackedWeight(weight: w, n: n, k: k)
        var expected = [Float](repeating: 0, count: m * n)
        x.withUnsafeBufferPointer { xp in
            expected.withUnsafeMutableBufferPointer { Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, isa: isa) }
        }
        let packedX = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
        let packedY = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: n))
        let wholeY = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: n))
        defer { packedX.deallocate(); packedY.deallocate(); wholeY.deallocate() }
        x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: packedX) }
        let panels = (n + 15) / 16
        var y = [Float](repeating: .nan, count: m * n)
        var seen = [Int](repeating: 0, count: m * panels)
        var early = 0
        scale.withUnsafeBufferPointer { sp in
            y.withUnsafeMutableBufferPointer { yp in
                let yb = yp.baseAddress!
                Kernels.gemmPacked(
                    packedX, m: m, packed, panels: first..<packed.panels, yb, ldy: n, isa: isa,
                    epilogueEvery: every
                ) { r0, r1, p0, p1 in
                    #expect(p1 - p0 == every && (p0 - first) % every == 0)
                    for r in r0..<r1 {
                        for p in p0..<p1 {
                            seen[r * panels + p] += 1
                            for c in p * 16..<min(n, p * 16 + 16) where yb[r * n + c] != expected[r * n + c] { early += 1 }
                        }
                    }
                    PackedRows.packColumns(
                        yb + p0 * 16, ld: n, scale: sp.baseAddress!, m: m, k: n, columns: p0 * 16,
                        count: min(n, p1 * 16) - p0 * 16, rows: r0..<r1, into: packedY)
                }
            }
        }
        for r in 0..<m {
            for p in 0..<panels {
                #expect(seen[r * panels + p] == (p >= first ? 1 : 0), "\(isa) M=\(m) row \(r) panel \(p): handed over \(seen[r * panels + p]) times")
            }
        }
        #expect(early == 0, "\(isa) M=\(m): \(early) values handed over before they were final")
        // The panels computed equal the plain GEMM's; the ones before `first` were not written.
        for r in 0..<m {
            #expect(Array(y[(r * n + first * 16)..<(r * n + n)]) == Array(expected[(r * n + first * 16)..<(r * n + n)]))
            #expect(y[(r * n)..<(r * n + first * 16)].allSatisfy { $0.isNaN })
        }
        // The strips packed in the epilogue equal packing the finished columns whole.
        y.withUnsafeBufferPointer { yp in
            scale.withUnsafeBufferPointer { PackedRows.pack(yp.baseAddress!, ld: n, scale: $0.baseAddress!, m: m, k: n, into: wholeY) }
        }
        let mr = PackedRows.rowsPerPanel, mPanels = (m + mr - 1) / mr, kc = GemmBlocking.kc
        var mismatches = 0
        for c in (first * 16)..<n {
            let k0 = c / kc * kc, width = min(kc, n - k0)
            for p in 0..<mPanels {
                for r in 0..<mr {
                    let at = k0 * mPanels * mr + p * width * mr + (c - k0) * mr + r
                    if packedY[at] != wholeY[at] { mismatches += 1 }
                }
            }
        }
        #expect(mismatches == 0, "\(isa) M=\(m): strip-packed operand differs from the whole-packed one in \(mismatches) places")
    }
}

/// The AVX-512 tiles (up to 6 rows × 4 panels, one row × 8 panels) take every output's FMAs in
/// the same order as the AVX2 tiles, so every weight format gives the same bits on both, for row
/// counts on either side of the tile and panel-major limits, partial last panels, several
/// K-blocks, panel ranges that start inside a 4-panel tile, and accumulate.
@Test(.enabled(if: ISA.available.contains(.avx512), "needs AVX-512"))
func avx512GemmEqualsAVX2BitForBit() {
    var rng = TestRandom(seed: 91)
    for (n, k) in [(24, 40), (130, 600), (16 * 11, 1100), (300, 64)] {
        let w = rng.array(n * k)
        for format in [PackedWeight.Format.f32, .bf16, .f16] {
            let packed = PackedWeight(weight: w, n: n, k: k, format: format)
            for m in [1, 2, 4, 6, 7, 12, 13, 40, 200] {
                let x = rng.array(m * k), y0 = rng.array(m * n)
                var a = [Float](repeating: 0, count: PackedRows.floatCount(m: m, k: k))
                x.withUnsafeBufferPointer { xp in a.withUnsafeMutableBufferPointer { PackedRows.pack(xp.baseAddress!, ld: k, m: m, k: k, into: $0.baseAddress!) } }
                for accumulate in [false, true] {
                    for (first, end) in [(0, packed.panels), (1, packed.panels), (3, min(packed.panels, 9))] where first < end {
                        let panels = first..<end
                        func run(_ isa: ISA) -> [Float] {
                            var y = y0
                            y.withUnsafeMutableBufferPointer {
                                Kernels.gemmPacked(a, m: m, packed, panels: panels, $0.baseAddress!, ldy: n, accumulate: accumulate, isa: isa)
                            }
                            return y
                        }
                        let wide = run(.avx512), narrow = run(.avx2)
                        let bad = zip(wide.indices, zip(wide, narrow)).first { $0.1.0.bitPattern != $0.1.1.bitPattern }
                        #expect(
                            bad == nil,
                            "\(format) M=\(m) N=\(n) K=\(k) panels \(panels) accumulate=\(accumulate): index \(bad?.0 ?? -1) \(bad?.1.0 ?? 0) vs \(bad?.1.1 ?? 0)")
                    }
                }
            }
        }
    }
}
