import MoEKernelsAVX2
import Testing

@testable import MoEKernels

// Weights kept as 8-, 4- or 6-bit integers in groups (`PackedWeight(…, format: .int8(group:))`,
// `.int4`, `.int6`): packing rounds as llama.cpp's Q8_0 / Q4_0 / Q4_1 do (int6 as Q4_0 with 64
// levels; checked here against those
// formulas written out independently), and every kernel computes exactly what the fp32 kernel
// computes on the dequantized weight.

private let formats: [PackedWeight.Format] = [
    .int8(group: 32), .int8(group: 16), .int8(group: 128, offsets: true), .int4(group: 32), .int4(group: 64), .int4(group: 128),
    .int4(group: 32, offsets: true), .int6(group: 16), .int6(group: 32), .int6(group: 128), .int5(group: 16), .int5(group: 32, offsets: true),
    .int5(group: 128)
]

/// One group of values dequantized as llama.cpp's reference code would: Q8_0 (d = amax/127,
/// q = round(x/d), x' = q·d), Q4_0 (d = max/-8, q = min(15, trunc(x/d + 8.5)), x' = (q-8)·d),
/// Q4_1 (d = (max-min)/15, q = min(15, trunc((x-min)/d + 0.5)), x' = q·d + min); 5 and 6 bits
/// as those with 32 and 64 levels (d = max/-32, q = min(63, trunc(x/d + 32.5)), x' = (q-32)·d).
private func ggmlRoundTrip(_ x: [Float], bits: Int, offsets: Bool) -> [Float] {
    if bits == 8 {
        let amax = x.map(abs).max()!
        let d = amax / 127, id: Float = d == 0 ? 0 : 1 / d
        return x.map { Float(($0 * id).rounded()) * d }
    }
    let levels = 1 << bits, half = Float(levels / 2)
    if offsets {
        let lo = x.min()!, hi = x.max()!
        let d = (hi - lo) / Float(levels - 1), id: Float = d == 0 ? 0 : 1 / d
        return x.map { (Float(min(levels - 1, Int(($0 - lo) * id + 0.5))) * d) + lo }
    }
    var extreme: Float = 0
    for v in x where abs(v) > abs(extreme) { extreme = v }
    let d = extreme / -half, id: Float = d == 0 ? 0 : 1 / d
    return x.map { Float(min(levels - 1, Int($0 * id + half + 0.5)) - levels / 2) * d }
}

@Test(arguments: formats)
func quantizedPackingRoundsLikeGGML(format: PackedWeight.Format) {
    var rng = TestRandom(seed: 71)
    let g = format.group!
    for (n, k) in [(1, g), (17, 2 * g), (40, 256)] where k % g == 0 {
        let w = rng.array(n * k, scale: 3)
        let p = PackedWeight(weight: w, n: n, k: k, threads: 2, format: format)
        #expect(p.byteCount == (n + 15) / 16 * (k / g) * ((format.offsets ? 128 : 64) + 2 * format.bits * g))
        let got = p.unpacked()
        var expected: [Float] = []
        for r in 0..<n {
            for b in 0..<(k / g) {
                let x = Array(w[(r * k + b * g)..<(r * k + b * g + g)])
                // Offsets for int8 are only read (GGUF), never chosen: packing stores M = 0.
                expected += ggmlRoundTrip(x, bits: format.bits, offsets: format.offsets && format.bits < 8)
            }
        }
        // fma(q, S, M) against q·S + M rounded twice: equal, or for offsets within the rounding
        // of q·S (values up to 3: an ulp of 4 is 4.8e-7).
        for i in 0..<(n * k) {
            let close = got[i] == expected[i] || (format.offsets && abs(got[i] - expected[i]) <= 1e-6)
            #expect(close, "\(format) [\(n), \(k)] element \(i): \(got[i]) vs \(expected[i])")
        }
        var rounded = w
        rounded.withUnsafeMutableBufferPointer { Kernels.roundTo(format, $0.baseAddress!, rows: n, k: k) }
        #expect(rounded == got, "\(format): roundTo differs from packing")
    }
}

@Test func quantizedPackingOfSpecialValues() {
    // A group with a NaN or an infinity is all NaN; an all-zero group is zeros.
    var w = [Float](repeating: 0, count: 3 * 32)
    w[5] = .nan
    w[32 + 7] = .infinity
    for format in [PackedWeight.Format.int8(group: 32), .int4(group: 32), .int6(group: 32), .int5(group: 32)] {
        let got = PackedWeight(weight: w, n: 3, k: 32, format: format).unpacked()
        let nans = got[0..<64].allSatisfy(\.isNaN), zeros = got[64..<96].allSatisfy { $0 == 0 }
        #expect(nans && zeros)
    }
    #expect(!PackedWeight.Format.int4(group: 32).fits(k: 48))
    #expect(!PackedWeight.Format.int4(group: 48).fits(k: 96))
    #expect(!PackedWeight.Format.int6(group: 4).fits(k: 96))
    #expect(!PackedWeight.Format.int5(group: 8).fits(k: 96))
    #expect(PackedWeight.Format.int5(group: 16).fits(k: 96))
    #expect(PackedWeight.Format.int8(group: 32).fits(k: 96))
}

/// What `gemmPacked` computes on m rows of x and a quantized weight: the integer products'
/// scalar twin on x quantized to int8 when the kernel takes that path, else the fp32 kernel on
/// the dequantized weight. `useIntegers` says which.
private func expectedProducts(
    x: [Float], m: Int, packed: PackedWeight, widened: PackedWeight, panels: Range<Int>, y0: [Float]?, isa: ISA
) -> (y: [Float], useIntegers: Bool) {
    let k = packed.k, n = packed.n
    var y = y0 ?? [Float](repeating: .nan, count: m * n)
    let packedX = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
    defer { packedX.deallocate() }
    x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: packedX) }
    let integers = Kernels.usesIntegerRows(m: m, format: packed.format, isa: isa)
    y.withUnsafeMutableBufferPointer { yp in
        if integers {
            let g = packed.format.group!
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: QuantizedRows.bytes(m: m, k: k, group: g), alignment: 64)
            defer { scratch.deallocate() }
            let rows = QuantizedRows(m: m, k: k, group: g, storage: scratch)
            rows.quantize(packed: packedX, total: m)
            Kernels.quantizedRowsReference(rows, packed, panels: panels, yp.baseAddress!, ldy: n, accumulate: y0 != nil)
        } else {
            Kernels.gemmPacked(packedX, m: m, widened, panels: panels, yp.baseAddress!, ldy: n, accumulate: y0 != nil, isa: isa)
        }
    }
    return (y, integers)
}

/// `Kernels.gemm` and `gemmPacked` on a quantized weight, every kernel set, for row counts that
/// take each path (integer products on few rows where the CPU has VNNI; one row, two-panel
/// tiles and widened strips otherwise): bit for bit against the fp32 kernels on the dequantized
/// weight, or against the integer products' scalar twin; and the integer products within 2e-2
/// (relative L2) of the exact products on the dequantized weight.
@Test(arguments: ISA.available, formats)
func quantizedGemmMatchesItsReference(isa: ISA, format: PackedWeight.Format) {
    var rng = TestRandom(seed: 73)
    for (n, k) in [(17, 128), (40, 640), (70, 256)] where format.fits(k: k) {
        let w = rng.array(n * k)
        let packed = PackedWeight(weight: w, n: n, k: k, format: format)
        let widened = PackedWeight(weight: packed.unpacked(), n: n, k: k)
        #expect(packed.byteCount * 2 < widened.byteCount)
        for m in [1, 2, 3, 5, 7, 17, 64] {
            let x = rng.array(m * k), y0 = rng.array(m * n)
            for accumulate in [false, true] {
                let (expected, integers) = expectedProducts(x: x, m: m, packed: packed, widened: widened, panels: 0..<packed.panels, y0: accumulate ? y0 : nil, isa: isa)
                for threads in [1, 2] {
                    var y = accumulate ? y0 : [Float](repeating: .nan, count: m * n)
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer {
                            Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, accumulate: accumulate, threads: threads, isa: isa)
                        }
                    }
                    #expect(y == expected, "\(isa) \(format) M=\(m) N=\(n) K=\(k) accumulate=\(accumulate) threads=\(threads) integers=\(integers)")
                }
                if integers && !accumulate {
                    let exact = referenceLinear(x: x, w: packed.unpacked(), y0: nil, m: m, n: n, k: k).value
                    var num = 0.0, den = 0.0
                    for i in 0..<(m * n) {
                        num += (Double(expected[i]) - exact[i]) * (Double(expected[i]) - exact[i])
                        den += exact[i] * exact[i]
                    }
                    #expect((num / den).squareRoot() < 2e-2, "\(format) M=\(m): int8 activations' error \((num / den).squareRoot())")
                }
            }
            // Panel sub-ranges through `gemmPacked` with an epilogue and the executor's scratch.
            let packedX = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
            defer { packedX.deallocate() }
            x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: packedX) }
            let strip = UnsafeMutablePointer<Float>.allocate(capacity: Kernels.quantizedScratchFloats(k: k, format: format))
            defer { strip.deallocate() }
            var y = [Float](repeating: .nan, count: m * n)
            var handed = 0
            y.withUnsafeMutableBufferPointer {
                Kernels.gemmPacked(packedX, m: m, packed, panels: 1..<packed.panels, $0.baseAddress!, ldy: n, isa: isa, bf16Strip: strip, epilogueEvery: 1) {
                    r0, r1, _, _ in handed += r1 - r0
                }
            }
            let expected = expectedProducts(x: x, m: m, packed: packed, widened: widened, panels: 1..<packed.panels, y0: nil, isa: isa).y
            #expect(y.map(\.bitPattern) == expected.map(\.bitPattern), "\(isa) \(format) gemmPacked M=\(m) N=\(n) K=\(k)")
            #expect(handed == m * (packed.panels - 1))
        }
    }
}

/// The activation rows the integer products take: per row and group, d = max|x| / 127 and
/// q = x / d to nearest (ties to even), their sum; a group with a NaN or an infinity gets
/// d = NaN, q = 0; an all-zero group d = 0. Checked against those formulas on the unpacked rows.
/// Every kernel set that quantizes (AVX2; AVX-512 on whole panels, AVX2 on the last partial one).
@Test(arguments: ISA.available.filter { $0 != .portable })
func activationRowsAreQuantizedPerGroup(isa: ISA) {
    var rng = TestRandom(seed: 79)
    for (m, k, g) in [(1, 64, 32), (7, 1024, 32), (13, 640, 128), (30, 96, 16), (8, 24, 4), (12, 1536, 64), (6, 32, 8)] {
        var x = rng.array(m * k, scale: 4)
        x[5] = .nan
        if m > 1 { x[k + 40] = -.infinity }
        for i in 0..<g { x[(m - 1) * k + i] = 0 }
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
        defer { packed.deallocate() }
        x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: packed) }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: QuantizedRows.bytes(m: m, k: k, group: g), alignment: 64)
        defer { storage.deallocate() }
        let rows = QuantizedRows(m: m, k: k, group: g, storage: storage)
        rows.quantize(packed: packed, total: m, isa: isa)
        for r in 0..<m {
            for b in 0..<(k / g) {
                let values = Array(x[(r * k + b * g)..<(r * k + b * g + g)])
                let scale = rows.scales[r * (k / g) + b], sum = rows.sums[r * (k / g) + b]
                let q = (0..<g).map { Int(rows.values[r * k + b * g + $0]) }
                if values.contains(where: { !$0.isFinite }) {
                    #expect(scale.isNaN && q.allSatisfy { $0 == 0 } && sum == 0, "\(isa) m \(m) row \(r) group \(b)")
                    continue
                }
                let d = values.map(abs).max()! / 127
                #expect(scale == d, "\(isa) m \(m) row \(r) group \(b)")
                let expected = values.map { d == 0 ? 0 : Int(($0 * (1 / d)).rounded(.toNearestOrEven)) }
                #expect(q == expected, "\(isa) m \(m) row \(r) group \(b)")
                #expect(sum == Float(expected.reduce(0, +)))
            }
        }
    }
}

/// A chunk of rows starting inside the operand (as `integerProducts` quantizes 96 rows at a
/// time), with k in several blocks of `GemmBlocking.kc`: every kernel set writes the same bytes,
/// scales and sums as the AVX2 code.
@Test(.enabled(if: ISA.available.contains(.avx512), "needs AVX-512"))
func activationChunksQuantizeAlikeOnEveryKernel() {
    var rng = TestRandom(seed: 89)
    for (total, first, m, k, g) in [(200, 96, 96, 1536, 32), (103, 96, 7, 3584, 16), (40, 0, 40, 1024, 128), (18, 6, 12, 512, 64)] {
        var x = rng.array(total * k, scale: 3)
        x[(first + 2) * k + 100] = .infinity
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: total, k: k))
        defer { packed.deallocate() }
        x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: total, k: k, into: packed) }
        func quantized(_ isa: ISA) -> (values: [Int8], scales: [UInt32], sums: [Float]) {
            let storage = UnsafeMutableRawPointer.allocate(byteCount: QuantizedRows.bytes(m: m, k: k, group: g), alignment: 64)
            defer { storage.deallocate() }
            let rows = QuantizedRows(m: m, k: k, group: g, storage: storage)
            rows.quantize(packed: packed, total: total, from: first, isa: isa)
            let groups = m * (k / g)
            return (
                Array(UnsafeBufferPointer(start: rows.values, count: m * k)),
                Array(UnsafeBufferPointer(start: rows.scales, count: groups)).map(\.bitPattern),
                Array(UnsafeBufferPointer(start: rows.sums, count: groups))
            )
        }
        let reference = quantized(.avx2), got = quantized(.avx512)
        #expect(got.values == reference.values, "values, \(total) rows from \(first), k \(k), group \(g)")
        #expect(got.scales == reference.scales, "scales, \(total) rows from \(first), k \(k), group \(g)")
        #expect(got.sums == reference.sums, "sums, \(total) rows from \(first), k \(k), group \(g)")
        #expect(reference.scales.contains { Float(bitPattern: $0).isNaN }, "the infinity's group is marked")
    }
}

/// The int8 layouts GGUF K-quants are repacked into (`PackedWeight(n:k:format:rows:)`): Q5_K's
/// groups of 32 with any offset (u in 0…31, S = d·sc, M = -dmin·m) and Q6_K's groups of 16
/// without (u = q + 96 in 32…159, M = -128·S, S of either sign), and the int6 panels Q6_K goes
/// into on CPUs without AVX-512 (given as int8's u = q + 96, stored as q), and Q5_K's int5
/// panels (u in 0…31 with offsets). The weight holds
/// exactly fma(u, S, M); every kernel set computes on it what the fp32 kernel computes on those
/// values (or the integer products' scalar twin), and the integer products stay within 2e-2.
@Test(
    arguments: ISA.available,
    [(PackedWeight.Format.int8(group: 32, offsets: true), 0..<32), (.int8(group: 16), 32..<160), (.int6(group: 16), 96..<160), (.int5(group: 32, offsets: true), 0..<32)]
)
func repackedGroupsRunOnEveryKernel(isa: ISA, case: (format: PackedWeight.Format, values: Range<Int>)) {
    var rng = TestRandom(seed: 83)
    let format = `case`.format, g = format.group!, span = `case`.values
    for (n, k) in [(17, 256), (40, 512)] {
        // Per row and group: S (a half-like scale times a small integer), M, and the values.
        let groups = k / g
        var scales = [Float](), offsets = [Float](), values = [UInt8]()
        for _ in 0..<(n * groups) {
            let s = Float(Int(rng.next() * 60)) * 0x1p-12
            scales.append(s)
            offsets.append(format.offsets ? -Float(Int(abs(rng.next()) * 60)) * 0x1p-13 : -128 * s)
            for _ in 0..<g { values.append(UInt8(span.lowerBound + Int(abs(rng.next()) * Float(span.count - 1)))) }
        }
        let packed = PackedWeight(n: n, k: k, format: format) { r, set in
            values.withUnsafeBufferPointer { u in
                for gi in 0..<groups { set(gi, scales[r * groups + gi], offsets[r * groups + gi], u.baseAddress! + (r * groups + gi) * g) }
            }
        }
        var w = [Float](repeating: 0, count: n * k)
        for r in 0..<n {
            for i in 0..<k {
                let gi = r * groups + i / g
                w[r * k + i] = offsets[gi].addingProduct(Float(values[gi * g + i % g]), scales[gi])
            }
        }
        #expect(packed.unpacked() == w, "\(format) [\(n), \(k)]")
        let widened = PackedWeight(weight: w, n: n, k: k)
        for m in [1, 3, 7, 30] {
            let x = rng.array(m * k)
            let (expected, integers) = expectedProducts(x: x, m: m, packed: packed, widened: widened, panels: 0..<packed.panels, y0: nil, isa: isa)
            for threads in [1, 2] {
                var y = [Float](repeating: .nan, count: m * n)
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { Kernels.gemm(xp.baseAddress!, packed, $0.baseAddress!, m: m, accumulate: false, threads: threads, isa: isa) }
                }
                #expect(y == expected, "\(isa) \(format) M=\(m) N=\(n) K=\(k) threads=\(threads) integers=\(integers)")
            }
            let exact = referenceLinear(x: x, w: w, y0: nil, m: m, n: n, k: k).value
            var num = 0.0, den = 0.0
            for i in 0..<(m * n) {
                num += (Double(expected[i]) - exact[i]) * (Double(expected[i]) - exact[i])
                den += exact[i] * exact[i]
            }
            #expect((num / den).squareRoot() < (integers ? 2e-2 : 1e-5), "\(isa) \(format) M=\(m): error \((num / den).squareRoot())")
        }
    }
}

/// The AVX2 path that widens quantized panels to fp32 (what `MOEC_INT8_ROWS=0` runs, and int8
/// beyond 16 rows), called directly for every format and row counts that take each of its
/// tiles (one row, two-panel tiles, widened strips): bit for bit the fp32 AVX2 kernel on the
/// dequantized weight.
@Test(.enabled(if: ISA.available.contains(.avx2), "needs AVX2"), arguments: formats)
func avx2WidenedPathMatchesTheF32Kernel(format: PackedWeight.Format) {
    var rng = TestRandom(seed: 89)
    for (n, k) in [(17, 128), (40, 640)] where format.fits(k: k) {
        let packed = PackedWeight(weight: rng.array(n * k), n: n, k: k, format: format)
        let widened = PackedWeight(weight: packed.unpacked(), n: n, k: k)
        for m in [1, 2, 3, 7, 13, 40] {
            let x = rng.array(m * k)
            let packedX = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
            defer { packedX.deallocate() }
            x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: packedX) }
            var expected = [Float](repeating: .nan, count: m * n), y = expected
            expected.withUnsafeMutableBufferPointer {
                Kernels.gemmPacked(packedX, m: m, widened, panels: 0..<widened.panels, $0.baseAddress!, ldy: n, isa: .avx2)
            }
            let mPanels = (m + GemmBlocking.mr - 1) / GemmBlocking.mr
            y.withUnsafeMutableBufferPointer {
                avx2GemmPackedQuantized(
                    bits: format.bits, group: format.group!, offsets: format.offsets, a: packedX, m: m, k: k, kcBlock: GemmBlocking.kc,
                    mcPanels: GemmBlocking.mcPanels, b: packed.quantizedData, n: n, panelBegin: 0, panelEnd: packed.panels, c: $0.baseAddress!,
                    ldc: n, accumulate: false, panelMajor: mPanels * GemmBlocking.mr * k * 4 <= GemmBlocking.panelMajorMaxBytes)
            }
            #expect(y.map(\.bitPattern) == expected.map(\.bitPattern), "\(format) M=\(m) N=\(n) K=\(k)")
        }
    }
}
