import Foundation
import MoEBasics

/// Seeded generators for load matrices, used by the acceptance sweep, the simulator and tests.
/// Same seed, same numbers, on every platform (no system random source is touched).
public struct SeededRandom: Sendable {
    private var stream: SplitMix64
    public init(seed: UInt64) { stream = SplitMix64(state: seed &+ SplitMix64.gamma) }

    public mutating func next() -> UInt64 { stream.next() }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { stream.unit() }

    /// Uniform in `0..<n`.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// A uniformly random permutation of `0..<n` (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, below(i + 1)) } }
        return p
    }
}

public enum SyntheticLoads {
    /// Zipf-skewed expert loads: the expert of popularity rank `k` (1-based; ranks are a seeded
    /// random permutation of the experts) gets a share proportional to `k^-exponent`, times a
    /// ±`jitter` uniform factor, scaled to about `tokens` in total and rounded to whole tokens.
    /// `exponent = 0` is uniform routing (plus jitter); 1.5 is heavily skewed.
    public static func zipf(
        experts: Int, exponent: Double, tokens: Double, jitter: Double = 0.1,
        random: inout SeededRandom
    ) -> [Double] {
        let rank = random.permutation(experts)
        var share = (0..<experts).map { e in Double.pow(Double(rank[e] + 1), -exponent) * (1 + jitter * (2 * random.unit() - 1)) }
        let sum = share.reduce(0, +)
        for e in 0..<experts { share[e] = (tokens * share[e] / sum).rounded() }
        return share
    }
}

extension Double {
    static func pow(_ x: Double, _ y: Double) -> Double { Foundation.pow(x, y) }
}
