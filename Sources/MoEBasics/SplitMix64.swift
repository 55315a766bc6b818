/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
/// moec's one seeded random stream. Benchmarks' random inputs, synthetic load matrices, profile
/// inputs and `random_fixed` routing all draw from it, so the same seed gives the same numbers on
/// every platform (no system random source is touched).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The golden-ratio increment added to the state before each output.
    public static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    public private(set) var state: UInt64

    /// A stream whose first output is `mix(state)`.
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        let out = Self.mix(state)
        state &+= Self.gamma
        return out
    }

    /// The output for state `x`: the first value of a stream started at `x` (a stateless hash of
    /// `x`, as `random_fixed` routing uses it).
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ gamma
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
