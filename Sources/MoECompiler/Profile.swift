import Foundation
import MoEBackend
import MoEBasics
import MoEIR

/// The batches `moec profile` runs: a real input cut into batches of `batchTokens` tokens, or
/// seeded random batches when there is no input.
///
/// - Input: every input that has the token dimension is cut along it (it must be the first
///   axis); inputs without it go unchanged into every batch. The last batch holds what is
///   left (it may be shorter). `limit` keeps only the first batches.
/// - Random: `count` batches of `batchTokens` tokens; floats are standard normal, integer
///   inputs (token ids) uniform in 0..<32000; batch `i` uses seed `seed + i`, so a profile is
///   reproducible. Random activations do not route like a real model's: use them to try the
///   pipeline, not to plan a placement.
public struct ProfileBatches: Sendable {
    enum Source: Sendable {
        case input([String: HostTensor], tokens: Int)
        case random(seed: UInt64)
    }

    let source: Source
    let graph: Graph
    public let batchTokens: Int
    public let count: Int

    /// Tokens over all batches.
    public var tokens: Int {
        switch source {
        case .input(_, let t): return min(t, count * batchTokens)
        case .random: return count * batchTokens
        }
    }

    public var isRandom: Bool { if case .random = source { return true }; return false }

    /// Batches that cut `inputs` (already checked against the graph: `graph.tokenCount(for:)`).
    public static func split(_ inputs: [String: HostTensor], graph: Graph, batchTokens: Int, limit: Int?) throws -> ProfileBatches {
        precondition(batchTokens >= 1)
        let tokens: Int
        do { tokens = try graph.tokenCount(for: inputs) } catch { throw DiagnosticError(.error(error.message)) }
        for (name, _, type) in graph.inputs where type.shape.dropFirst().contains(.tokens) {
            throw DiagnosticError(
                .error(
                    "input '\(name)': moec profile cuts inputs into batches along their first dimension, but '\(name)' has the token dimension elsewhere (\(OpSchema.format(type, tokens: graph.tokensName)))"
                ))
        }
        guard tokens > 0 else { throw DiagnosticError(.error("the input has no tokens to profile")) }
        let available = (tokens + batchTokens - 1) / batchTokens
        return ProfileBatches(
            source: .input(inputs, tokens: tokens), graph: graph, batchTokens: batchTokens,
            count: min(available, limit ?? available))
    }

    /// `count` seeded random batches of `batchTokens` tokens.
    public static func random(graph: Graph, batchTokens: Int, count: Int, seed: UInt64) -> ProfileBatches {
        ProfileBatches(source: .random(seed: seed), graph: graph, batchTokens: batchTokens, count: count)
    }

    /// How many batches the input holds in all (before `limit`); nil for random batches.
    public var available: Int? {
        if case .input(_, let t) = source { return (t + batchTokens - 1) / batchTokens }
        return nil
    }

    /// Tokens in batch `i`.
    public func tokens(inBatch i: Int) -> Int {
        switch source {
        case .input(_, let t): return min(batchTokens, t - i * batchTokens)
        case .random: return batchTokens
        }
    }

    /// The inputs of batch `i`.
    public func batch(_ i: Int) -> [String: HostTensor] {
        precondition(i >= 0 && i < count)
        let n = tokens(inBatch: i)
        var out: [String: HostTensor] = [:]
        switch source {
        case .input(let inputs, _):
            for (name, _, type) in graph.inputs {
                let t = inputs[name]!
                guard type.shape.first == .tokens else { out[name] = t; continue }
                let row = t.shape.dropFirst().reduce(1, *)
                let range = (i * batchTokens * row)..<((i * batchTokens + n) * row)
                let shape = [n] + t.shape.dropFirst()
                switch t.storage {
                case .f32(let f): out[name] = HostTensor(shape: shape, floats: Array(f[range]))
                case .i32(let v): out[name] = HostTensor(shape: shape, ints: Array(v[range]))
                }
            }
        case .random(let seed):
            var state = seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            func next() -> UInt64 {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return z ^ (z >> 31)
            }
            for (name, _, type) in graph.inputs {
                let shape = type.shape.map { $0.resolve(tokens: n) }
                let count = shape.reduce(1, *)
                if type.dtype == .i32 {
                    out[name] = HostTensor(shape: shape, ints: (0..<count).map { _ in Int32(truncatingIfNeeded: next() % 32000) })
                } else {
                    // Box–Muller: standard normal.
                    out[name] = HostTensor(
                        shape: shape,
                        floats: (0..<count).map { _ in
                            let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(next() >> 11) / Double(1 << 53)
                            return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
                        })
                }
            }
        }
        return out
    }
}

/// Runs every batch and sums the routing statistics: the work of `moec profile`.
public enum Profiler {
    /// `runner` must be loaded with `recordRouting: true`. `progress(done, total, tokensDone)`
    /// is called after each batch.
    public static func run(
        _ runner: ModelRunner, _ batches: ProfileBatches,
        progress: (Int, Int, Int) -> Void = { _, _, _ in }
    ) throws -> RoutingStatistics {
        var statistics = runner.emptyRoutingStatistics()
        var done = 0
        for i in 0..<batches.count {
            _ = try runner.run(batches.batch(i), recordingInto: &statistics)
            done += batches.tokens(inBatch: i)
            progress(i + 1, batches.count, done)
        }
        return statistics
    }
}
