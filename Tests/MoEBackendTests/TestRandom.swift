import Foundation
import MoEBackend
import MoEBasics
import MoETestSupport

/// A small seeded generator (SplitMix64), so every test input and weight is reproducible.
struct SeededRandom: RandomNumberGenerator {
    private var stream: SplitMix64

    init(seed: UInt64) { stream = SplitMix64(state: seed ^ 0x5DEE_CE66_D1CE_4E5B) }

    mutating func next() -> UInt64 { stream.next() }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { stream.unit() }

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

/// Bitwise equality of two tensors (NaN payloads included).
func bitwiseEqual(_ a: HostTensor, _ b: HostTensor) -> Bool {
    a.shape == b.shape && a.floats.map(\.bitPattern) == b.floats.map(\.bitPattern)
}
