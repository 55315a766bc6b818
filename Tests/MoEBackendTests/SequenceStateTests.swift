import Foundation
import MoEIR
import MoETestSupport
import Testing

@testable import MoEBackend

/// Runs that continue a sequence (`SequenceState`: a KV cache, the rotary tables of every
/// position). The property that defines them: a sequence run in pieces — a token at a time, or
/// chunks of any size — gives the rows one run of the whole sequence gives, which the reference
/// interpreter computes independently. Also: rewinding takes tokens back, and misuse (a full
/// sequence, another plan's, a bad capacity) is an error that leaves the sequence as it was.
@Suite(.serialized) struct SequenceStateTests {
    /// A small attention layer: q, k, v projections of x, q and k rotated, attention, an output
    /// projection. `window`, `sinks` and `yarn` as gpt-oss's layers use them.
    static func layer(heads: Int = 4, kvHeads: Int = 2, d: Int = 8, window: Int = 0, sinks: Bool = false, yarn: Bool = false) throws
        -> TinyGraph
    {
        var t = TinyGraph(seed: 61)
        let hidden = 24
        let x = t.input("x", [.tokens, .fixed(hidden)])
        let q = try t.op(.linear, [x, t.randomWeight("wq", [heads * d, hidden])])
        let k = try t.op(.linear, [x, t.randomWeight("wk", [kvHeads * d, hidden])])
        let v = try t.op(.linear, [x, t.randomWeight("wv", [kvHeads * d, hidden])])
        var rope: Attributes = ["head_dim": .int(d), "theta": .float(100)]
        if yarn {
            rope["factor"] = .float(4)
            rope["beta_fast"] = .float(32)
            rope["beta_slow"] = .float(1)
            rope["original_max"] = .int(16)
        }
        var attrs: Attributes = ["heads": .int(heads), "kv_heads": .int(kvHeads)]
        if window > 0 { attrs["window"] = .int(window) }
        var operands = [try t.op(.rope, [q], rope), try t.op(.rope, [k], rope), v]
        if sinks { operands.append(t.randomWeight("sinks", [heads], scale: 1)) }
        let a = try t.op(.attention, operands, attrs)
        t.output("y", try t.op(.linear, [a, t.randomWeight("wo", [hidden, heads * d])]))
        return t
    }

    /// Rows `rows` of a [tokens, width] tensor.
    static func rows(_ x: HostTensor, _ rows: Range<Int>) -> HostTensor {
        let w = x.shape[1]
        return HostTensor(shape: [rows.count, w], floats: Array(x.floats[rows.lowerBound * w..<rows.upperBound * w]))
    }

    /// Runs `x` through `sequence` in pieces of `chunks` tokens and returns the rows, joined.
    static func runInChunks(_ exe: Executable, _ sequence: SequenceState, _ x: HostTensor, _ chunks: [Int]) throws -> [Float] {
        var out: [Float] = []
        var at = 0
        for c in chunks {
            out += try exe.run(["x": rows(x, at..<(at + c))], sequence: sequence)["y"]!.floats
            at += c
        }
        return out
    }

    @Test(
        arguments: [
            (0, false, false), (5, false, false), (0, true, false), (3, true, true), (0, false, true)
        ] as [(Int, Bool, Bool)])
    func runInPiecesMatchesOneRun(window: Int, sinks: Bool, yarn: Bool) throws {
        let t = try Self.layer(window: window, sinks: sinks, yarn: yarn)
        let tokens = 41
        let x = randomInputs(t.graph, tokens: tokens, seed: 7)["x"]!
        let expected = try ReferenceInterpreter(graph: t.graph, weights: t.weights).run(["x": x])["y"]!.floats
        let pieces: [[Int]] = [Array(repeating: 1, count: tokens), [16, 1, 1, 7, 1, 15], [5, 36], [tokens]]
        for (label, options) in Backends.configurations {
            let exe = Executable(graph: t.graph, weights: t.buffers(), options: options)
            for chunks in pieces {
                let sequence = try exe.makeSequence(capacity: 64)
                let got = try Self.runInChunks(exe, sequence, x, chunks)
                #expect(relativeError(got, expected) <= 1e-5, "\(label) pieces \(chunks): \(relativeError(got, expected))")
                #expect(sequence.count == tokens)
            }
        }
    }

    /// A decode step (one row) runs the query heads that share a key/value head together: every
    /// grouping — one head per group, groups of 3, of 5, of 8 (two blocks of 4) — with and without
    /// sinks and a window gives one run's rows.
    @Test(arguments: [(8, 1), (3, 3), (6, 2), (5, 1), (9, 3)] as [(Int, Int)])
    func decodeStepsOfEveryGroupingMatchOneRun(heads: Int, kvHeads: Int) throws {
        for (window, sinks) in [(0, false), (0, true), (4, true)] {
            let t = try Self.layer(heads: heads, kvHeads: kvHeads, window: window, sinks: sinks)
            let tokens = 23
            let x = randomInputs(t.graph, tokens: tokens, seed: 14)["x"]!
            let expected = try ReferenceInterpreter(graph: t.graph, weights: t.weights).run(["x": x])["y"]!.floats
            for (label, options) in Backends.configurations {
                let exe = Executable(graph: t.graph, weights: t.buffers(), options: options)
                let got = try Self.runInChunks(exe, try exe.makeSequence(capacity: tokens), x, [2] + Array(repeating: 1, count: tokens - 2))
                #expect(relativeError(got, expected) <= 1e-5, "\(label) window \(window) sinks \(sinks): \(relativeError(got, expected))")
            }
        }
    }

    /// Rewinding forgets the tokens after the count: runs after it give what a sequence that never
    /// had those tokens gives. A sequence rewound to 0 starts afresh.
    @Test func rewindTakesTokensBack() throws {
        let t = try Self.layer(sinks: true)
        let exe = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 2))
        let x = randomInputs(t.graph, tokens: 12, seed: 8)["x"]!, draft = randomInputs(t.graph, tokens: 4, seed: 9)["x"]!
        let straight = try exe.makeSequence(capacity: 12)
        let expected = try Self.runInChunks(exe, straight, x, [8, 1, 3])

        let rewound = try exe.makeSequence(capacity: 12)
        _ = try Self.runInChunks(exe, rewound, x, [8])
        _ = try exe.run(["x": draft], sequence: rewound) // a draft of 4 tokens, rejected
        #expect(rewound.count == 12)
        try rewound.rewind(to: 8)
        #expect(rewound.count == 8)
        let rest = try Self.runInChunks(exe, rewound, Self.rows(x, 8..<12), [1, 3])
        #expect(rest == Array(expected[8 * 24..<12 * 24]))

        try rewound.rewind(to: 0)
        #expect(try Self.runInChunks(exe, rewound, x, [12]) == (try Self.runInChunks(exe, try exe.makeSequence(capacity: 12), x, [12])))
        #expect(throws: InputError.self) { try rewound.rewind(to: 13) }
        #expect(throws: InputError.self) { try rewound.rewind(to: -1) }
    }

    /// A run that does not fit is refused before it runs, and the sequence keeps what it held;
    /// a sequence is for its own executable only; a capacity must be at least 1 and addressable.
    @Test func misuseIsAnErrorThatChangesNothing() throws {
        let t = try Self.layer()
        let exe = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 1))
        let other = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 1))
        let x = randomInputs(t.graph, tokens: 6, seed: 10)["x"]!
        let sequence = try exe.makeSequence(capacity: 8)
        _ = try exe.run(["x": Self.rows(x, 0..<5)], sequence: sequence)
        do {
            _ = try exe.run(["x": x], sequence: sequence)
            Issue.record("6 more tokens fitted into a sequence holding 5 of 8")
        } catch let e as InputError {
            #expect(e.message.contains("holds 5 of its 8 tokens"), "\(e.message)")
        }
        #expect(sequence.count == 5)
        _ = try exe.run(["x": Self.rows(x, 0..<3)], sequence: sequence)
        #expect(sequence.count == 8)
        #expect(throws: InputError.self) { try other.run(["x": Self.rows(x, 0..<1)], sequence: sequence) }
        #expect(throws: InputError.self) { try exe.makeSequence(capacity: 0) }
        #expect(throws: InputError.self) { try exe.makeSequence(capacity: Int.max / 2) }
    }

    /// `reserve` makes room for more tokens and keeps those held: a sequence grown twice while it
    /// decodes gives one run's rows; a smaller capacity changes nothing; an impossible one is an
    /// error that changes nothing.
    @Test func reserveKeepsTheTokensHeld() throws {
        let t = try Self.layer(window: 6, sinks: true, yarn: true)
        let tokens = 30
        let x = randomInputs(t.graph, tokens: tokens, seed: 15)["x"]!
        let expected = try ReferenceInterpreter(graph: t.graph, weights: t.weights).run(["x": x])["y"]!.floats
        for (label, options) in Backends.configurations {
            let exe = Executable(graph: t.graph, weights: t.buffers(), options: options)
            let sequence = try exe.makeSequence(capacity: 5)
            var got = try Self.runInChunks(exe, sequence, x, [4, 1])
            try sequence.reserve(capacity: 12)
            #expect(sequence.capacity == 12 && sequence.count == 5)
            got += try Self.runInChunks(exe, sequence, Self.rows(x, 5..<12), Array(repeating: 1, count: 7))
            try sequence.reserve(capacity: 3)
            #expect(sequence.capacity == 12)
            #expect(throws: InputError.self) { try sequence.reserve(capacity: Int.max / 2) }
            #expect(sequence.capacity == 12 && sequence.count == 12)
            try sequence.reserve(capacity: tokens)
            got += try Self.runInChunks(exe, sequence, Self.rows(x, 12..<tokens), [9] + Array(repeating: 1, count: tokens - 21))
            #expect(relativeError(got, expected) <= 1e-5, "\(label): \(relativeError(got, expected))")
        }
    }

    /// A context of random keys and values (for `moec bench --context`): the sequence holds the
    /// tokens, and a run after them sees them (its rows differ from a run from position 0).
    @Test func fillRandomlyMakesAContext() throws {
        let t = try Self.layer()
        let exe = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 2))
        let x = randomInputs(t.graph, tokens: 2, seed: 16)
        let sequence = try exe.makeSequence(capacity: 50)
        try sequence.fillRandomly(count: 48, seed: 1)
        #expect(sequence.count == 48)
        let after = try exe.run(x, sequence: sequence)["y"]!.floats
        #expect(after != (try exe.run(x)["y"]!.floats))
        #expect(sequence.count == 50)
        #expect(throws: InputError.self) { try sequence.fillRandomly(count: 51, seed: 1) }
        #expect(sequence.count == 50)
    }

    /// One sequence's runs do not disturb another's: two sequences of one executable, run
    /// interleaved, each give what it gives alone.
    @Test func sequencesAreIndependent() throws {
        let t = try Self.layer(window: 4)
        let exe = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 2))
        let a = randomInputs(t.graph, tokens: 9, seed: 11)["x"]!, b = randomInputs(t.graph, tokens: 9, seed: 12)["x"]!
        let alone = try Self.runInChunks(exe, try exe.makeSequence(capacity: 9), a, Array(repeating: 1, count: 9))
        let sa = try exe.makeSequence(capacity: 9), sb = try exe.makeSequence(capacity: 9)
        var interleaved: [Float] = []
        for i in 0..<9 {
            interleaved += try exe.run(["x": Self.rows(a, i..<(i + 1))], sequence: sa)["y"]!.floats
            _ = try exe.run(["x": Self.rows(b, i..<(i + 1))], sequence: sb)
        }
        #expect(interleaved == alone)
    }

    /// A graph without sequence ops gives each token's result whatever the sequence holds.
    @Test func graphsWithoutSequenceOpsIgnoreThePosition() throws {
        var t = TinyGraph(seed: 62)
        let x = t.input("x", [.tokens, .fixed(8)])
        t.output("y", try t.op(.linear, [x, t.randomWeight("w", [8, 8])]))
        let exe = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 1))
        let input = randomInputs(t.graph, tokens: 3, seed: 13)
        let sequence = try exe.makeSequence(capacity: 10)
        _ = try exe.run(input, sequence: sequence)
        #expect(try exe.run(input, sequence: sequence)["y"]!.floats == (try exe.run(input)["y"]!.floats))
        #expect(sequence.count == 6)
    }
}
