import Testing

@testable import MoEKernels

// Weights kept as bfloat16 in the packed panels (`PackedWeight(…, format: .bf16)`): packing
// rounds to nearest even, the GEMMs widen in registers and accumulate in fp32.

/// bfloat16 rounding written independently of the kernels: of the two bf16 values around `f`
/// (truncated, and one unit up), the nearer in Double arithmetic; on a tie the one with an even
/// last bit. (Finite inputs only.)
private func roundedToBF16(_ f: Float) -> Float {
    let down = Float(bitPattern: f.bitPattern & 0xFFFF_0000)
    if down == f { return f }
    let up = Float(bitPattern: (f.bitPattern & 0xFFFF_0000) &+ 0x1_0000)
    let dDown = abs(Double(f) - Double(down)), dUp = abs(Double(up) - Double(f))
    if dDown != dUp { return dDown < dUp ? down : up }
    return (down.bitPattern >> 16) & 1 == 0 ? down : up
}

/// Largest |got − expected| over the largest |expected|.
private func relativeToMax(_ got: [Float], _ expected: [Double]) -> Double {
    let scale = expected.map { abs($0) }.max() ?? 0
    let err = zip(got, expected).map { abs(Double($0) - $1) }.max() ?? 0
    return scale == 0 ? err : err / scale
}

@Test func bf16PackingRoundsToNearestEven() {
    var rng = TestRandom(seed: 41)
    for (n, k) in [(1, 1), (17, 5), (33, 64), (20, 129)] {
        let w = rng.array(n * k, scale: 3)
        let p = PackedWeight(weight: w, n: n, k: k, threads: 2, format: .bf16)
        #expect(p.format == .bf16)
        #expect(p.panels == (n + 15) / 16)
        #expect(p.byteCount == p.panels * 16 * k * 2)
        #expect(p.byteCount == PackedWeight.bytes(n: n, k: k, format: .bf16))
        #expect(p.unpacked() == w.map(roundedToBF16))
    }
    // Ties go to even, carries reach the next binade and infinity, specials stay special.
    let one: Float = 1, ulp = Float.ulpOfOne * 65_536 // bf16's spacing at 1: 2⁻⁷
    let cases: [(Float, Float)] = [
        (one + ulp / 2, one), // tie, even below
        (one + 3 * ulp / 2, one + 2 * ulp), // tie, even above
        (one + ulp / 2 + Float.ulpOfOne, one + ulp), // just past the tie
        (Float(bitPattern: 0x3FFF_FFFF), 2), // carry into the exponent
        (-(one + ulp / 2), -one),
        (Float.greatestFiniteMagnitude, .infinity),
        (.infinity, .infinity), (-.infinity, -.infinity), (0, 0),
        (Float.leastNonzeroMagnitude, 0), (Float(bitPattern: 0x0001_8000), Float(bitPattern: 0x0002_0000))
    ]
    let p = PackedWeight(weight: cases.map(\.0), n: cases.count, k: 1, format: .bf16)
    #expect(p.unpacked() == cases.map(\.1))
    let nan = PackedWeight(weight: [.nan, -.nan, Float(bitPattern: 0x7F80_0001)], n: 3, k: 1, format: .bf16).unpacked()
    #expect(nan.allSatisfy { $0.isNaN })
}

@Test func bf16WeightFromBF16BitsIsCopiedAsIs() {
    var rng = TestRandom(seed: 43)
    let n = 37, k = 19
    let bits: [UInt16] = (0..<(n * k)).map { _ in UInt16(truncatingIfNeeded: rng.state >> 20) &+ UInt16(rng.next() * 1000 + 1000) }
    let finite = bits.map { Float(bitPattern: UInt32($0) << 16).isNaN ? UInt16(0x3F80) : $0 }
    let p = finite.withUnsafeBufferPointer { PackedWeight(bf16Weight: $0.baseAddress!, n: n, k: k, threads: 2) }
    #expect(p.format == .bf16 && p.byteCount == 3 * 16 * k * 2)
    #expect(p.unpacked().map { $0.bitPattern } == finite.map { UInt32($0) << 16 })
}

@Test func bf16RepackIntoCallerStorage() {
    var rng = TestRandom(seed: 47)
    let n = 21, k = 30
    let bytes = PackedWeight.bytes(n: n, k: k, format: .bf16)
    #expect(bytes == 2 * 16 * k * 2)
    let storage = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    defer { storage.deallocate() }
    let p = PackedWeight(n: n, k: k, storage: storage, format: .bf16)
    for _ in 0..<2 {
        let w = rng.array(n * k)
        w.withUnsafeBufferPointer { p.repack(from: $0.baseAddress!) }
        #expect(p.unpacked() == w.map(roundedToBF16))
    }
}

/// `Kernels.gemm` on a bf16 weight, every kernel set, against the Double reference on the
/// bf16-rounded weight (within 1e-5 of max |y|), and bit for bit against the fp32 kernels on
/// that weight widened (the same FMA chains).
@Test(arguments: ISA.available)
func bf16GemmMatchesReference(isa: ISA) {
    var rng = TestRandom(seed: 53)
    for (n, k) in [(1, 1), (17, 17), (40, 129), (100, 600), (33, 1030)] {
        let w = rng.array(n * k)
        let packed = PackedWeight(weight: w, n: n, k: k, format: .bf16)
        let rounded = packed.unpacked()
        let widened = PackedWeight(weight: rounded, n: n, k: k)
        for m in [1, 3, 7, 64] {
            let x = rng.array(m * k), y0 = rng.array(m * n)
            for accumulate in [false, true] {
                for threads in [1, 2] {
                    var y = accumulate ? y0 : [Float](repeating: .nan, count: m * n)
                    var yf = y
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer {
                            Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, accumulate: accumulate, threads: threads, isa: isa)
                        }
                        yf.withUnsafeMutableBufferPointer {
                            Kernels.gemm(xp.baseAddress!, widened, $0.baseAddress!, m: m, accumulate: accumulate, threads: threads, isa: isa)
                        }
                    }
                    let ref = referenceLinear(x: x, w: rounded, y0: accumulate ? y0 : nil, m: m, n: n, k: k).value
                    let where_ = "\(isa) M=\(m) N=\(n) K=\(k) accumulate=\(accumulate) threads=\(threads)"
                    let err = relativeToMax(y, ref)
                    #expect(err <= 1e-5, "\(where_): error \(err) of max |y|")
                    #expect(y == yf, "\(where_): differs from the fp32 kernel on the widened weight")
                }
            }
        }
    }
}

/// The gathering GEMM and the allocation-free job path on a bf16 weight give the plain GEMM's bits.
@Test(arguments: ISA.available)
func bf16GemmGatheringAndJobPaths(isa: ISA) {
    var rng = TestRandom(seed: 59)
    let m = 13, n = 50, k = 700, rows: [Int32] = [4, 0, 9, 9, 2, 12, 1, 3, 5, 6, 7, 8, 11]
    let x = rng.array(m * k), w = rng.array(n * k)
    let packed = PackedWeight(weight: w, n: n, k: k, format: .bf16)
    let gathered = rows.flatMap { x[Int($0) * k..<(Int($0) + 1) * k] }
    var plain = [Float](repeating: 0, count: m * n), viaRows = plain, viaJob = plain
    gathered.withUnsafeBufferPointer { xp in
        plain.withUnsafeMutableBufferPointer { Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, isa: isa) }
    }
    x.withUnsafeBufferPointer { xp in
        rows.withUnsafeBufferPointer { rp in
            viaRows.withUnsafeMutableBufferPointer {
                Kernels.gemm(gathering: xp.baseAddress!, rows: rp.baseAddress!, packed, $0.baseAddress!, m: m, threads: 2, isa: isa)
            }
        }
    }
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: Kernels.packedOperandBytes(m: m, k: k) / 4)
    defer { buffer.deallocate() }
    let job = GemmJob()
    gathered.withUnsafeBufferPointer { xp in
        viaJob.withUnsafeMutableBufferPointer {
            Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, threads: 2, isa: isa, packBuffer: buffer, job: job)
        }
    }
    let ref = referenceLinear(x: gathered, w: packed.unpacked(), y0: nil, m: m, n: n, k: k).value
    #expect(relativeToMax(plain, ref) <= 1e-5)
    #expect(viaRows == plain)
    #expect(viaJob == plain)
}

/// `gemmPacked` on panel sub-ranges of a bf16 weight, with and without accumulate and with the
/// epilogue: each (row, panel group) is handed over once, with final values, and panels outside
/// the range are not written.
@Test(arguments: ISA.available)
func bf16GemmPackedPanelRangesAndEpilogue(isa: ISA) {
    var rng = TestRandom(seed: 61)
    // (m, n, k, panels per group, first panel, end panel)
    for (m, n, k, every, first, end) in [
        (1, 100, 129, 2, 2, 6), (3, 70, 600, 1, 1, 5), (7, 36, 33, 1, 0, 3), (64, 96, 600, 2, 2, 6),
        (150, 64, 300, 2, 0, 4), (1, 129, 17, 0, 3, 9), (64, 129, 17, 0, 0, 9),
        // Packed x past the L2 budget: K-blocks outside, chunks of row panels (the second partial).
        (150, 64, 600, 2, 2, 4), (301, 32, 1100, 1, 0, 2)
    ] {
        let x = rng.array(m * k), w = rng.array(n * k), y0 = rng.array(m * n)
        let packed = PackedWeight(weight: w, n: n, k: k, format: .bf16)
        let packedX = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
        defer { packedX.deallocate() }
        x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: packedX) }
        for accumulate in [false, true] {
            let ref = referenceLinear(x: x, w: packed.unpacked(), y0: accumulate ? y0 : nil, m: m, n: n, k: k).value
            let start = accumulate ? y0 : [Float](repeating: .nan, count: m * n)
            var y = start
            var seen = [Int](repeating: 0, count: m * packed.panels)
            var early = 0
            y.withUnsafeMutableBufferPointer { yp in
                let yb = yp.baseAddress!
                Kernels.gemmPacked(
                    packedX, m: m, packed, panels: first..<end, yb, ldy: n, accumulate: accumulate, isa: isa,
                    epilogueEvery: every
                ) { r0, r1, p0, p1 in
                    for r in r0..<r1 {
                        for p in p0..<p1 {
                            seen[r * packed.panels + p] += 1
                            for c in p * 16..<min(n, p * 16 + 16) where !(abs(Double(yb[r * n + c]) - ref[r * n + c]) <= 1e-4) {
                                early += 1
                            }
                        }
                    }
                }
            }
            let where_ = "\(isa) M=\(m) N=\(n) K=\(k) panels \(first)..<\(end) accumulate=\(accumulate)"
            let c0 = first * 16, c1 = min(n, end * 16)
            var inside: [Float] = [], insideRef: [Double] = [], outsideChanged = 0
            for r in 0..<m {
                for c in 0..<n {
                    if c >= c0 && c < c1 {
                        inside.append(y[r * n + c])
                        insideRef.append(ref[r * n + c])
                    } else if y[r * n + c].bitPattern != start[r * n + c].bitPattern {
                        outsideChanged += 1
                    }
                }
            }
            let err = relativeToMax(inside, insideRef)
            #expect(err <= 1e-5, "\(where_): error \(err) of max |y|")
            #expect(outsideChanged == 0, "\(where_): \(outsideChanged) values outside the panel range written")
            if every > 0 {
                #expect(early == 0, "\(where_): \(early) values handed over before they were final")
                for r in 0..<m {
                    for p in 0..<packed.panels {
                        let expected = p >= first && p < end ? 1 : 0
                        #expect(seen[r * packed.panels + p] == expected, "\(where_): row \(r) panel \(p) handed over \(seen[r * packed.panels + p]) times")
                    }
                }
            } else {
                #expect(seen.allSatisfy { $0 == 0 })
            }
        }
    }
}

@Test func roundToBfloat16MatchesPacking() {
    var rng = TestRandom(seed: 43)
    var w = rng.array(1000, scale: 5)
    w += [1 + Float.ulpOfOne * 32_768, 1 + 3 * Float.ulpOfOne * 32_768, -0.0, 0]
    var rounded = w
    rounded.withUnsafeMutableBufferPointer { Kernels.roundToBfloat16($0.baseAddress!, count: $0.count) }
    #expect(rounded == w.map(roundedToBF16))
    // Ties to even: 1 + 2⁻⁸ → 1, 1 + 3·2⁻⁸ → 1 + 2⁻⁶.
    #expect(rounded[1000] == 1 && rounded[1001] == 1 + Float.ulpOfOne * 131_072)
}

/// A caller's widening strip (`bf16Strip`, as the experts kernel passes one per thread) gives
/// the same bits as the per-call temporary one and as the fp32 kernel on the widened weight, on
/// both ISAs, for row counts that widen in pieces, in the panel-major loop (7, 40 rows) and the
/// row-chunked one (150 rows: packed x past `panelMajorMaxBytes`).
@Test func bf16GemmWithACallersStripIsTheSame() {
    var rng = TestRandom(seed: 44)
    let n = 40, k = 700
    let p = PackedWeight(weight: rng.array(n * k, scale: 1), n: n, k: k, format: .bf16)
    let widened = PackedWeight(weight: p.unpacked(), n: n, k: k)
    for m in [1, 7, 40, 150] {
        let x = rng.array(m * k, scale: 1)
        let a = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
        defer { a.deallocate() }
        PackedRows.pack(x, ld: k, m: m, k: k, into: a)
        let strip = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.bf16StripFloats(k: k))
        defer { strip.deallocate() }
        for isa in ISA.available {
            var plain = [Float](repeating: 0, count: m * n), given = plain, f32 = plain
            plain.withUnsafeMutableBufferPointer { Kernels.gemmPacked(a, m: m, p, panels: 0..<p.panels, $0.baseAddress!, ldy: n, isa: isa) }
            given.withUnsafeMutableBufferPointer {
                Kernels.gemmPacked(a, m: m, p, panels: 0..<p.panels, $0.baseAddress!, ldy: n, isa: isa, bf16Strip: strip)
            }
            f32.withUnsafeMutableBufferPointer { Kernels.gemmPacked(a, m: m, widened, panels: 0..<p.panels, $0.baseAddress!, ldy: n, isa: isa) }
            #expect(plain == given, "m \(m), \(isa)")
            #expect(given == f32, "m \(m), \(isa): differs from the fp32 kernel on the widened weight")
        }
    }
}

/// IEEE binary16 panels (`.f16`): packing rounds as Swift's `Float16` does (nearest even), and
/// every kernel set computes exactly what the f32 kernels compute on the widened weight.
@Test(arguments: ISA.available)
func f16GemmEqualsFloatKernelOnWidenedWeight(isa: ISA) {
    var rng = TestRandom(seed: 83)
    for (n, k) in [(1, 1), (17, 17), (40, 129), (33, 1030)] {
        let w = rng.array(n * k, scale: 3)
        let packed = PackedWeight(weight: w, n: n, k: k, format: .f16)
        #expect(packed.byteCount == PackedWeight.bytes(n: n, k: k, format: .bf16))
        let rounded = packed.unpacked()
        #expect(rounded == w.map { Float(Float16($0)) }, "[\(n), \(k)]: packing differs from Float16 rounding")
        var again = w
        again.withUnsafeMutableBufferPointer { Kernels.roundTo(.f16, $0.baseAddress!, rows: n, k: k) }
        #expect(again == rounded)
        let widened = PackedWeight(weight: rounded, n: n, k: k)
        for m in [1, 3, 7, 64] {
            let x = rng.array(m * k), y0 = rng.array(m * n)
            for accumulate in [false, true] {
                var y = accumulate ? y0 : [Float](repeating: .nan, count: m * n)
                var yf = y
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, accumulate: accumulate, threads: 2, isa: isa) }
                    yf.withUnsafeMutableBufferPointer { Kernels.gemm(xp.baseAddress!, widened, $0.baseAddress!, m: m, accumulate: accumulate, threads: 2, isa: isa) }
                }
                #expect(y == yf, "\(isa) M=\(m) N=\(n) K=\(k) accumulate=\(accumulate)")
            }
        }
    }
}
