import Testing

@testable import MoEKernels

// Int8 weights in blocks of 32 with an fp32 scale (`Q8Weight`, llama.cpp's Q8_0 scheme) against
// int8 activations quantized the same way (`Q8Activations`), multiplied by `Kernels.q8Gemm`.

/// ggml's `quantize_row_q8_0_ref` for one block, written out independently: d = max|x| / 127,
/// q = roundf(x / d) (the reference multiplies by 1/d, as ggml does).
private func referenceBlock(_ x: ArraySlice<Float>) -> (q: [Int8], d: Float) {
    let amax = x.map { abs($0) }.max() ?? 0
    let d = amax / 127
    let id: Float = d == 0 ? 0 : 1 / d
    return (x.map { Int8(($0 * id).rounded(.toNearestOrAwayFromZero)) } + Array(repeating: 0, count: 32 - x.count), d)
}

/// y[m, n] = Σ_blocks d_x · d_w · Σ q_x q_w, in Double: what the kernel computes up to fp32
/// rounding of the scaled partial sums.
private func referenceProduct(_ x: [Float], m: Int, _ w: [Float], n: Int, k: Int) -> [Double] {
    var y = [Double](repeating: 0, count: m * n)
    for r in 0..<m {
        for c in 0..<n {
            var s = 0.0
            for b in stride(from: 0, to: k, by: 32) {
                let end = min(k, b + 32)
                let (qx, dx) = referenceBlock(x[(r * k + b)..<(r * k + end)])
                let (qw, dw) = referenceBlock(w[(c * k + b)..<(c * k + end)])
                var dot = 0
                for i in 0..<32 { dot += Int(qx[i]) * Int(qw[i]) }
                s += Double(dot) * Double(dx * dw)
            }
            y[r * n + c] = s
        }
    }
    return y
}

@Test func q8QuantizesAsGGMLDoes() {
    var rng = TestRandom(seed: 7)
    for (n, k) in [(1, 32), (5, 64), (6, 40), (9, 100)] {
        let w = rng.array(n * k, scale: 2)
        let q = Q8Weight(quantizing: w, n: n, k: k)
        #expect(q.kp == (k + 31) / 32 * 32)
        #expect(q.panels == (n + 3) / 4)
        for r in 0..<n {
            for b in stride(from: 0, to: k, by: 32) {
                let (qs, d) = referenceBlock(w[(r * k + b)..<(r * k + min(k, b + 32))])
                for i in b..<min(k, b + 32) { #expect(q.dequantized(row: r, column: i) == Float(qs[i - b]) * d) }
            }
        }
    }
}

/// Every int8 kernel this CPU can run: portable, AVX2, AVX-512 VNNI.
let q8Paths: [(isa: ISA, avx512: Bool)] =
    ISA.available.map { ($0, false) } + (ISA.cpuHasAVX2FMA && ISA.cpuHasAVX512VNNI ? [(ISA.avx2, true)] : [])

@Test(arguments: q8Paths.indices)
func q8GemmMatchesTheIntegerReference(_ path: Int) {
    let (isa, avx512) = q8Paths[path]
    var rng = TestRandom(seed: 11)
    for (m, n, k) in [(1, 1, 32), (1, 4, 64), (2, 7, 96), (3, 9, 100), (5, 16, 256), (16, 33, 1024), (64, 12, 160)] {
        let x = rng.array(m * k, scale: 1.5), w = rng.array(n * k, scale: 0.2)
        let qw = Q8Weight(quantizing: w, n: n, k: k)
        let qx = Q8Activations(rows: m, k: k)
        qx.quantize(x, m: m, k: k, ldx: k)
        var y = [Float](repeating: .nan, count: m * n)
        y.withUnsafeMutableBufferPointer { Kernels.q8Gemm(qx, qw, y: $0.baseAddress!, ldy: n, threads: 2, isa: isa, avx512: avx512) }
        let reference = referenceProduct(x, m: m, w, n: n, k: k)
        let scale = reference.map { abs($0) }.max()!
        let err = zip(y, reference).map { abs(Double($0) - $1) }.max()!
        #expect(err <= 1e-6 * scale, "m \(m), n \(n), k \(k), \(isa)\(avx512 ? " avx512" : ""): \(err / scale)")
        // Against the fp32 product of the unquantized operands: within Q8's own error.
        var exact = [Double](repeating: 0, count: m * n)
        for r in 0..<m { for c in 0..<n { for i in 0..<k { exact[r * n + c] += Double(x[r * k + i]) * Double(w[c * k + i]) } } }
        let qErr = zip(y, exact).map { abs(Double($0) - $1) }.max()!
        #expect(qErr <= 0.02 * scale, "m \(m), n \(n), k \(k): quantization error \(qErr / scale)")
    }
}

@Test func q8GemmIsTheSameBitsOnEveryThreadCountAndPortableEqualsAVX2() {
    var rng = TestRandom(seed: 12)
    let (m, n, k) = (7, 37, 544)
    let x = rng.array(m * k, scale: 1), w = rng.array(n * k, scale: 0.1)
    let qw = Q8Weight(quantizing: w, n: n, k: k)
    let qx = Q8Activations(rows: m, k: k)
    qx.quantize(x, m: m, k: k, ldx: k)
    func run(_ isa: ISA, avx512: Bool, threads: Int) -> [UInt32] {
        var y = [Float](repeating: 1, count: m * n)
        y.withUnsafeMutableBufferPointer {
            Kernels.q8Gemm(qx, qw, y: $0.baseAddress!, ldy: n, accumulate: true, threads: threads, isa: isa, avx512: avx512)
        }
        return y.map(\.bitPattern)
    }
    let portable = run(.portable, avx512: false, threads: 1)
    for isa in ISA.available {
        for threads in [1, 2, 3] { #expect(run(isa, avx512: false, threads: threads) == portable, "\(isa), \(threads) threads") }
    }
    if ISA.cpuHasAVX512VNNI && ISA.cpuHasAVX2FMA {
        let vnni = run(.avx2, avx512: true, threads: 1)
        for threads in [2, 3] { #expect(run(.avx2, avx512: true, threads: threads) == vnni, "avx512, \(threads) threads") }
    }
}

@Test func q8FromGGUFBlocksKeepsTheBits() {
    // Two rows of two Q8_0 blocks: fp16 scale 0.5 (0x3800) and 0.25 (0x3400), values −128…127.
    var bytes: [UInt8] = []
    for (row, scale) in [(0, UInt16(0x3800)), (1, UInt16(0x3400))] {
        for b in 0..<2 {
            bytes += [UInt8(scale & 0xFF), UInt8(scale >> 8)]
            bytes += (0..<32).map { UInt8(bitPattern: Int8(truncatingIfNeeded: row * 64 + b * 32 + $0 - 128)) }
        }
    }
    let w = bytes.withUnsafeBytes { Q8Weight(q8_0Blocks: $0.baseAddress!, n: 2, k: 64) }
    for r in 0..<2 {
        for c in 0..<64 {
            let q = Float(Int8(truncatingIfNeeded: r * 64 + c - 128))
            #expect(w.dequantized(row: r, column: c) == q * (r == 0 ? 0.5 : 0.25))
        }
    }
}

@Test func q8NonFiniteActivationsGiveNaNNotATrap() {
    let k = 64
    var x = [Float](repeating: 0.5, count: 2 * k)
    x[3] = .nan
    x[k + 40] = .infinity
    let w = [Float](repeating: 0.25, count: 3 * k)
    let qx = Q8Activations(rows: 2, k: k)
    qx.quantize(x, m: 2, k: k, ldx: k)
    var y = [Float](repeating: 0, count: 6)
    y.withUnsafeMutableBufferPointer { Kernels.q8Gemm(qx, Q8Weight(quantizing: w, n: 3, k: k), y: $0.baseAddress!, ldy: 3) }
    #expect(y.allSatisfy { $0.isNaN })
}
