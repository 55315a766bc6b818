import Foundation

@testable import MoEKernels

/// Deterministic pseudo-random floats in [-scale, scale).
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }
    mutating func array(_ count: Int, scale: Float = 1) -> [Float] { (0..<count).map { _ in next() * scale } }
}

/// Double-precision `y = y0 + x · Wᵀ` reference and the absolute-value sum used for tolerances.
func referenceLinear(x: [Float], w: [Float], y0: [Float]?, m: Int, n: Int, k: Int) -> (value: [Double], magnitude: [Double]) {
    var value = [Double](repeating: 0, count: m * n), magnitude = value
    for i in 0..<m {
        for j in 0..<n {
            var s = Double(y0?[i * n + j] ?? 0), a = abs(s)
            for kk in 0..<k {
                let p = Double(x[i * k + kk]) * Double(w[j * k + kk])
                s += p
                a += abs(p)
            }
            value[i * n + j] = s
            magnitude[i * n + j] = a
        }
    }
    return (value, magnitude)
}

/// The first index where `got` is further from `ref` than a Float sum of `k` terms can be, or nil.
func firstGemmMismatch(_ got: [Float], _ ref: (value: [Double], magnitude: [Double]), k: Int) -> String? {
    for i in got.indices {
        let tol = 1.2e-7 * Double(k + 2) * ref.magnitude[i] + 1e-30
        if !(abs(Double(got[i]) - ref.value[i]) <= tol) {
            return "index \(i): got \(got[i]), expected \(ref.value[i]) (tolerance \(tol))"
        }
    }
    return nil
}

/// True when `got` matches the Double `expected` within `rel` relative error, or within `abs`
/// absolute error (for results in the subnormal range); NaN matches NaN, infinities must match.
func close(_ got: Float, _ expected: Double, rel: Double, abs absTol: Double = 2e-38) -> Bool {
    if expected.isNaN { return got.isNaN }
    if expected.isInfinite || Double(got).isInfinite {
        // Overflow near the top of Float's range is allowed to go to infinity and back.
        if expected.isInfinite && Double(got).isInfinite { return (expected > 0) == (got > 0) }
        let big = Double(Float.greatestFiniteMagnitude)
        return Swift.abs(expected) > big * (1 - rel) && Swift.abs(Double(got)) > big * (1 - rel) || false
    }
    let e = Swift.abs(Double(got) - expected)
    return e <= rel * Swift.abs(expected) || e <= absTol
}
