import Foundation
import Testing

@testable import MoEKernels

/// Inputs for the unary functions: a dense grid, values near every branch point of the
/// implementations, the over/underflow edges, and special values.
private let unaryInputs: [Float] = {
    var v: [Float] = []
    var x: Float = -120
    while x <= 120 { v.append(x); x += 0.0137 }
    for c: Float in [0, 1, 3, 15, 14.9, 87.3, 88.7, 88.72, 88.8, 89, 103.9, 104, 104.5, 1e-30, 1e-7, 0.5, 0.999, 1.001, 2.999, 3.001] {
        v += [c, -c, c.nextUp, c.nextDown, -c.nextUp, -c.nextDown]
    }
    v += [
        .infinity, -.infinity, .nan, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
        .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude
    ]
    var rng = TestRandom(seed: 1)
    v += rng.array(3001, scale: 20)
    return v
}()

private struct UnaryCase: CustomStringConvertible, Sendable {
    let name: String
    let kernel: @Sendable (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, ISA) -> Void
    let reference: @Sendable (Double) -> Double
    /// Allowed relative error at x (before the subnormal absolute floor).
    let tolerance: @Sendable (Double) -> Double
    /// Absolute error allowed for tiny results: Float's subnormal range by default.
    var absFloor = 2e-38
    var description: String { name }
}

private func sigmoidRef(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
private func geluTanhU2(_ x: Double) -> Double { 2 * 0.797_884_560_802_865_4 * (x + 0.044_715 * x * x * x) }

private let unaryCases: [UnaryCase] = [
    UnaryCase(name: "exp", kernel: { Kernels.exp($0, $1, count: $2, isa: $3) }, reference: { exp($0) }, tolerance: { _ in 1e-6 }),
    UnaryCase(name: "sigmoid", kernel: { Kernels.sigmoid($0, $1, count: $2, isa: $3) }, reference: sigmoidRef, tolerance: { _ in 1e-6 }),
    // sigmoid is 1/(1 + e⁻ˣ) as in PyTorch, so e⁻ˣ overflows below x ≈ −88.7 and sigmoid is 0
    // there; x·sigmoid(x) loses results below ~1e-36 (PyTorch's Float silu does the same).
    UnaryCase(
        name: "silu", kernel: { Kernels.silu($0, $1, count: $2, isa: $3) }, reference: { $0 * sigmoidRef($0) },
        tolerance: { _ in 1e-6 }, absFloor: 1e-36),
    UnaryCase(
        name: "gelu", kernel: { Kernels.gelu($0, $1, count: $2, isa: $3) },
        reference: { 0.5 * $0 * erfc(-$0 / 2.0.squareRoot()) }, tolerance: { _ in 1e-6 }),
    // u = √(2/π)(x + 0.044715x³) is rounded in Float; in the negative tail the result's relative
    // sensitivity to u is |2u|, so the bound grows with it (PyTorch's Float formula has the same).
    UnaryCase(
        name: "geluTanh", kernel: { Kernels.geluTanh($0, $1, count: $2, isa: $3) },
        reference: { $0 / (1 + exp(-geluTanhU2($0))) },
        tolerance: { x in 1e-6 + (x < 0 ? 2.5e-7 * abs(geluTanhU2(x)) : 0) }, absFloor: 1e-36),
    UnaryCase(name: "erf", kernel: { Kernels.erf($0, $1, count: $2, isa: $3) }, reference: { erf($0) }, tolerance: { _ in 1e-6 }),
    UnaryCase(
        name: "relu", kernel: { Kernels.relu($0, $1, count: $2, isa: $3) },
        reference: { $0.isNaN ? .nan : max($0, 0) }, tolerance: { _ in 0 })
]

@Test(arguments: unaryCases, ISA.available)
private func unaryKernelMatchesDoubleReference(_ c: UnaryCase, isa: ISA) {
    let x = unaryInputs
    var y = [Float](repeating: 0, count: x.count)
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in c.kernel(xp.baseAddress!, yp.baseAddress!, x.count, isa) }
    }
    var failures: [String] = []
    var worst = 0.0
    for i in x.indices {
        let expected = c.reference(Double(x[i]))
        let tol = c.tolerance(Double(x[i]))
        if !close(y[i], expected, rel: tol, abs: c.absFloor) {
            failures.append("x=\(x[i]): got \(y[i]), expected \(expected)")
        } else if expected.isFinite && abs(expected) > 1e-37 {
            worst = max(worst, abs(Double(y[i]) - expected) / abs(expected))
        }
    }
    #expect(failures.isEmpty, "\(c.name) [\(isa)]: \(failures.count) failures, first: \(failures.prefix(5))")
    // Odd lengths exercise the vector tails; in-place gives the same result.
    for n in [1, 7, 8, 9, 15, 17] {
        var z = Array(x[100..<(100 + n)])
        z.withUnsafeMutableBufferPointer { zp in c.kernel(UnsafePointer(zp.baseAddress!), zp.baseAddress!, n, isa) }
        #expect(z.map(\.bitPattern) == y[100..<(100 + n)].map(\.bitPattern), "\(c.name) [\(isa)] n=\(n) in place")
    }
}

@Test(arguments: ISA.available)
func binaryKernelsAreExact(isa: ISA) {
    var rng = TestRandom(seed: 2)
    for n in [0, 1, 7, 8, 9, 31, 100] {
        let a = rng.array(n, scale: 10), b = rng.array(n, scale: 10)
        var add = [Float](repeating: 0, count: n), mul = add, scaled = add, axpy = b
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                let (pa, pb) = (ap.baseAddress ?? UnsafePointer(bitPattern: 16)!, bp.baseAddress ?? UnsafePointer(bitPattern: 16)!)
                add.withUnsafeMutableBufferPointer { Kernels.add(pa, pb, $0.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!, count: n, isa: isa) }
                mul.withUnsafeMutableBufferPointer { Kernels.mul(pa, pb, $0.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!, count: n, isa: isa) }
                scaled.withUnsafeMutableBufferPointer { Kernels.scale(alpha: 0.3, pa, $0.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!, count: n, isa: isa) }
                axpy.withUnsafeMutableBufferPointer { Kernels.axpy(alpha: 0.3, pa, $0.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!, count: n, isa: isa) }
            }
        }
        for i in 0..<n {
            #expect(add[i] == a[i] + b[i])
            #expect(mul[i] == a[i] * b[i])
            #expect(scaled[i] == 0.3 * a[i])
            let exact = 0.3 * Double(a[i]) + Double(b[i])
            #expect(abs(Double(axpy[i]) - exact) <= 1.2e-7 * (abs(0.3 * Double(a[i])) + abs(Double(b[i]))) * 2)
        }
    }
}

@Test(arguments: ISA.available)
func swigluMatchesReference(isa: ISA) {
    var rng = TestRandom(seed: 4)
    for (rows, f) in [(1, 1), (3, 7), (2, 8), (5, 17), (4, 100)] {
        let gu = rng.array(rows * 2 * f, scale: 8)
        var out = [Float](repeating: .nan, count: rows * f)
        gu.withUnsafeBufferPointer { g in
            out.withUnsafeMutableBufferPointer { Kernels.swiglu(g.baseAddress!, $0.baseAddress!, rows: rows, f: f, isa: isa) }
        }
        var inPlace = gu // output written over the gate half, row stride 2f
        inPlace.withUnsafeMutableBufferPointer {
            Kernels.swiglu(UnsafePointer($0.baseAddress!), $0.baseAddress!, rows: rows, f: f, ldOut: 2 * f, isa: isa)
        }
        for r in 0..<rows {
            for i in 0..<f {
                let g = Double(gu[r * 2 * f + i]), u = Double(gu[r * 2 * f + f + i])
                let expected = g * sigmoidRef(g) * u
                #expect(close(out[r * f + i], expected, rel: 1e-6, abs: 1e-37), "rows \(rows) f \(f) (\(r), \(i))")
                #expect(inPlace[r * 2 * f + i] == out[r * f + i])
            }
        }
    }
}

@Test(arguments: ISA.available)
func softmaxRowsMatchesReference(isa: ISA) {
    var rng = TestRandom(seed: 6)
    for (rows, cols) in [(1, 1), (3, 5), (7, 8), (2, 17), (5, 64), (3, 129)] {
        var x = rng.array(rows * cols, scale: 12)
        if rows > 1 { for i in 0..<cols { x[cols + i] += 1000 } } // a row with a large offset
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { Kernels.softmaxRows(xp.baseAddress!, $0.baseAddress!, rows: rows, cols: cols, isa: isa) }
        }
        var inPlace = x
        inPlace.withUnsafeMutableBufferPointer { Kernels.softmaxRows(UnsafePointer($0.baseAddress!), $0.baseAddress!, rows: rows, cols: cols, isa: isa) }
        #expect(inPlace == y)
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let m = row.max()!
            let sum = row.reduce(0) { $0 + exp($1 - m) }
            for i in 0..<cols {
                let expected = exp(row[i] - m) / sum
                // x − max is rounded in Float: the exponent's absolute error is ≤ ulp(|x − max|)/2.
                let tol = 1e-6 + 1.2e-7 * abs(row[i] - m)
                #expect(close(y[r * cols + i], expected, rel: tol, abs: 1e-40), "\(rows)x\(cols) (\(r), \(i))")
            }
        }
    }
}

/// A row that is entirely −∞ (masked out) gives zeros; a NaN still gives NaN.
@Test(arguments: ISA.available)
func softmaxOfAMaskedRowIsZero(isa: ISA) {
    for cols in [1, 3, 8, 13] {
        let x = [Float](repeating: -.infinity, count: cols) + [Float](repeating: -.infinity, count: cols - 1) + [.nan]
        var y = [Float](repeating: 7, count: x.count)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { Kernels.softmaxRows(xp.baseAddress!, $0.baseAddress!, rows: 2, cols: cols, isa: isa) }
        }
        #expect(y[..<cols].allSatisfy { $0 == 0 }, "[\(isa)] \(cols) cols: \(y[..<cols])")
        #expect(y[cols...].contains { $0.isNaN }, "[\(isa)] \(cols) cols with a NaN: \(y[cols...])")
    }
}

@Test(arguments: ISA.available)
func normRowsMatchReference(isa: ISA) {
    var rng = TestRandom(seed: 8)
    for (rows, cols) in [(1, 1), (3, 5), (2, 8), (4, 17), (3, 64), (2, 129), (1, 1024)] {
        let x = rng.array(rows * cols, scale: 3).map { $0 + 0.5 }
        let w = rng.array(cols), b = rng.array(cols)
        let eps: Float = 1e-5
        var rms = [Float](repeating: 0, count: x.count), ln = rms, lnNoBias = rms
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                b.withUnsafeBufferPointer { bp in
                    rms.withUnsafeMutableBufferPointer {
                        Kernels.rmsNormRows(xp.baseAddress!, weight: wp.baseAddress!, $0.baseAddress!, rows: rows, cols: cols, eps: eps, isa: isa)
                    }
                    ln.withUnsafeMutableBufferPointer {
                        Kernels.layerNormRows(
                            xp.baseAddress!, weight: wp.baseAddress!, bias: bp.baseAddress!, $0.baseAddress!,
                            rows: rows, cols: cols, eps: eps, isa: isa)
                    }
                    lnNoBias.withUnsafeMutableBufferPointer {
                        Kernels.layerNormRows(
                            xp.baseAddress!, weight: wp.baseAddress!, bias: nil, $0.baseAddress!,
                            rows: rows, cols: cols, eps: eps, isa: isa)
                    }
                }
            }
        }
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let ms = row.reduce(0) { $0 + $1 * $1 } / Double(cols)
            let mean = row.reduce(0, +) / Double(cols)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(cols)
            for i in 0..<cols {
                let rmsRef = row[i] / (ms + Double(eps)).squareRoot() * Double(w[i])
                #expect(close(rms[r * cols + i], rmsRef, rel: 3e-6, abs: 1e-30), "rms \(rows)x\(cols) (\(r), \(i))")
                let norm = (row[i] - mean) / (variance + Double(eps)).squareRoot()
                // Near the mean, x − mean cancels: bound the error by the row's scale.
                let scale = abs(Double(w[i])) * (1 + abs(mean) / (variance + Double(eps)).squareRoot())
                let lnRef = norm * Double(w[i])
                #expect(abs(Double(lnNoBias[r * cols + i]) - lnRef) <= 3e-6 * (abs(lnRef) + scale), "ln \(rows)x\(cols) (\(r), \(i))")
                #expect(abs(Double(ln[r * cols + i]) - (lnRef + Double(b[i]))) <= 3e-6 * (abs(lnRef) + scale + abs(Double(b[i]))))
            }
        }
    }
}

@Test(arguments: ISA.available)
func emptyInputsAreNoOps(isa: ISA) {
    var y: [Float] = [42]
    let x: [Float] = [1]
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in
            Kernels.silu(xp.baseAddress!, yp.baseAddress!, count: 0, isa: isa)
            Kernels.softmaxRows(xp.baseAddress!, yp.baseAddress!, rows: 0, cols: 1, isa: isa)
            Kernels.rmsNormRows(xp.baseAddress!, weight: xp.baseAddress!, yp.baseAddress!, rows: 1, cols: 0, eps: 1e-5, isa: isa)
        }
    }
    #expect(y == [42])
}

@Test(arguments: ISA.available)
func scatterAddRowsMatchesReference(isa: ISA) {
    var rng = TestRandom(seed: 12)
    for (tokens, m, n) in [(3, 4, 1), (5, 9, 17), (64, 128, 100), (16, 40, 1030)] {
        let v = rng.array(m * n), weights = rng.array(m)
        let rows = (0..<m).map { Int32(($0 * 7 + 3) % tokens) }
        let y0 = rng.array(tokens * n)
        var expected = y0.map(Double.init)
        for i in 0..<m { for j in 0..<n { expected[Int(rows[i]) * n + j] += Double(weights[i]) * Double(v[i * n + j]) } }
        var results: [[Float]] = []
        for threads in [1, 2] {
            var y = y0
            v.withUnsafeBufferPointer { vp in
                weights.withUnsafeBufferPointer { wp in
                    rows.withUnsafeBufferPointer { rp in
                        y.withUnsafeMutableBufferPointer {
                            Kernels.scatterAddRows(
                                vp.baseAddress!, weights: wp.baseAddress!, rows: rp.baseAddress!, into: $0.baseAddress!,
                                m: m, n: n, threads: threads, isa: isa)
                        }
                    }
                }
            }
            results.append(y)
            let bad = y.indices.first { abs(Double(y[$0]) - expected[$0]) > 1e-5 * (1 + abs(expected[$0])) }
            #expect(bad == nil, "tokens \(tokens) m \(m) n \(n) threads \(threads)")
        }
        #expect(results[0] == results[1])
    }
}
