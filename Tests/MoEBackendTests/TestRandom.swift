import Foundation
import MoEBackend

/// A small seeded generator (SplitMix64), so every test input and weight is reproducible.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed ^ 0x5DEE_CE66_D1CE_4E5B }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Approximately standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u1 = max(unit(), 1e-300), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    mutating func normals(_ count: Int, scale: Double = 1) -> [Float] {
        (0..<count).map { _ in Float(normal() * scale) }
    }

    mutating func uniforms(_ count: Int, in range: ClosedRange<Double>) -> [Float] {
        (0..<count).map { _ in Float(range.lowerBound + unit() * (range.upperBound - range.lowerBound)) }
    }
}

/// How far `actual` is from `reference`: max |Δ| / max |ref| (the acceptance metric).
/// NaN anywhere counts as an infinite error; shapes must match.
func relativeError(_ actual: HostTensor, _ reference: HostTensor) -> Double {
    guard actual.shape == reference.shape else { return .infinity }
    return relativeError(actual.floats, reference.floats)
}

func relativeError(_ actual: [Float], _ reference: [Float]) -> Double {
    guard actual.count == reference.count else { return .infinity }
    var maxDiff = 0.0, maxRef = 0.0
    for (a, r) in zip(actual, reference) {
        if a.isNaN != r.isNaN { return .infinity }
        if a.isNaN { continue }
        if a.isInfinite || r.isInfinite {
            if a != r { return .infinity }
            continue
        }
        maxDiff = max(maxDiff, abs(Double(a) - Double(r)))
        maxRef = max(maxRef, abs(Double(r)))
    }
    if maxDiff == 0 { return 0 }
    return maxDiff / max(maxRef, 1e-30)
}

/// Bitwise equality of two tensors (NaN payloads included).
func bitwiseEqual(_ a: HostTensor, _ b: HostTensor) -> Bool {
    a.shape == b.shape && a.floats.map(\.bitPattern) == b.floats.map(\.bitPattern)
}
