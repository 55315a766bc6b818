import Foundation
import MoEIR
import Testing

@testable import MoEBackend

/// `rope` and `attention` on tiny graphs: the executor against the reference interpreter (every
/// backend, 1 and 2 threads, 1 to 300 tokens), and properties that hold whatever either computes:
/// a rotation keeps lengths and depends only on the distance between two positions; a row sees
/// only the rows before it (within the window); each query head reads its group's key and value
/// head. The whole layers against transformers are in ParityTests (Tests/Fixtures/decoder).
@Suite(.serialized) struct AttentionOpTests {
    /// YaRN (gpt-oss): frequencies blended along the ramp, cos and sin scaled; with and without
    /// the ramp's bounds rounded out.
    @Test(arguments: [false, true])
    func yarnRopeMatchesReference(truncate: Bool) throws {
        var t = TinyGraph(seed: 54)
        let x = t.input("x", [.tokens, .fixed(32)])
        let attrs: Attributes = [
            "head_dim": .int(16), "theta": .float(1000), "factor": .float(4), "beta_fast": .float(32), "beta_slow": .float(1),
            "original_max": .int(16), "truncate": .bool(truncate)
        ]
        t.output("y", try t.op(.rope, [x], attrs))
        try expectMatchesReference(t)
    }

    /// YaRN with a factor of 1 interpolates nothing and scales nothing: the plain rope.
    @Test func yarnOfFactorOneIsThePlainRope() throws {
        var rng = SeededRandom(seed: 55)
        let x = rng.normals(20 * 16, scale: 1)
        let plain = try rotate(x, tokens: 20, width: 16, headDim: 8, theta: 500)
        var t = TinyGraph(seed: 56)
        let xi = t.input("x", [.tokens, .fixed(16)])
        let attrs: Attributes = [
            "head_dim": .int(8), "theta": .float(500), "factor": .float(1), "beta_fast": .float(32), "beta_slow": .float(1),
            "original_max": .int(8), "truncate": .bool(true)
        ]
        t.output("y", try t.op(.rope, [xi], attrs))
        let yarn = try runEverywhere(t, ["x": HostTensor(shape: [20, 16], floats: x)])
        for (a, b) in zip(yarn, plain) { #expect(abs(a - b) <= 1e-6 * max(1, abs(b))) }
    }

    @Test(arguments: [10000.0, 1e6])
    func ropeMatchesReference(theta: Double) throws {
        var t = TinyGraph(seed: 41)
        let x = t.input("x", [.tokens, .fixed(32)])
        t.output("y", try t.op(.rope, [x], ["head_dim": .int(8), "theta": .float(theta)]))
        try expectMatchesReference(t)
    }

    @Test(arguments: [(4, 2, 8, 0), (4, 4, 6, 0), (6, 2, 4, 5), (3, 1, 8, 1)] as [(Int, Int, Int, Int)])
    func attentionMatchesReference(heads: Int, kvHeads: Int, headDim: Int, window: Int) throws {
        var t = TinyGraph(seed: 42)
        let q = t.input("q", [.tokens, .fixed(heads * headDim)])
        let k = t.input("k", [.tokens, .fixed(kvHeads * headDim)])
        let v = t.input("v", [.tokens, .fixed(kvHeads * (headDim + 2))])
        var attrs: Attributes = ["heads": .int(heads), "kv_heads": .int(kvHeads)]
        if window > 0 { attrs["window"] = .int(window) }
        t.output("y", try t.op(.attention, [q, k, v], attrs))
        try expectMatchesReference(t, tokens: [1, 7, 64, 300])
    }

    /// gpt-oss's sinks: one more logit per head in every row's softmax.
    @Test(arguments: [(4, 2, 0), (6, 3, 5)] as [(Int, Int, Int)])
    func attentionWithSinksMatchesReference(heads: Int, kvHeads: Int, window: Int) throws {
        var t = TinyGraph(seed: 51)
        let q = t.input("q", [.tokens, .fixed(heads * 8)]), k = t.input("k", [.tokens, .fixed(kvHeads * 8)])
        let v = t.input("v", [.tokens, .fixed(kvHeads * 8)])
        let sinks = t.randomWeight("sinks", [heads], scale: 2)
        var attrs: Attributes = ["heads": .int(heads), "kv_heads": .int(kvHeads)]
        if window > 0 { attrs["window"] = .int(window) }
        t.output("y", try t.op(.attention, [q, k, v, sinks], attrs))
        try expectMatchesReference(t, tokens: [1, 7, 64, 300])
    }

    /// A sink of −∞ takes no weight (the same output as no sink); a sink far above every score
    /// takes nearly all of it (an output near 0).
    @Test func sinksTakeTheirShareOfTheWeight() throws {
        var rng = SeededRandom(seed: 52)
        let tokens = 9, heads = 2, d = 4
        let inputs = [
            "q": HostTensor(shape: [tokens, heads * d], floats: rng.normals(tokens * heads * d, scale: 1)),
            "k": HostTensor(shape: [tokens, heads * d], floats: rng.normals(tokens * heads * d, scale: 1)),
            "v": HostTensor(shape: [tokens, heads * d], floats: rng.normals(tokens * heads * d, scale: 1))
        ]
        func run(sinks: [Float]?) throws -> [Float] {
            var t = TinyGraph(seed: 53)
            let q = t.input("q", [.tokens, .fixed(heads * d)]), k = t.input("k", [.tokens, .fixed(heads * d)])
            let v = t.input("v", [.tokens, .fixed(heads * d)])
            var operands = [q, k, v]
            if let sinks { operands.append(t.weight("sinks", [heads], sinks)) }
            t.output("y", try t.op(.attention, operands, ["heads": .int(heads), "kv_heads": .int(heads)]))
            return try runEverywhere(t, inputs)
        }
        let plain = try run(sinks: nil)
        #expect(try run(sinks: [-.infinity, -.infinity]) == plain)
        let swamped = try run(sinks: [60, 60])
        #expect(swamped.allSatisfy { abs($0) < 1e-12 }, "\(swamped.prefix(8))")
        #expect(plain.contains { abs($0) > 0.1 })
    }

    @Test func attentionScaleIsApplied() throws {
        var t = TinyGraph(seed: 43)
        let q = t.input("q", [.tokens, .fixed(16)]), k = t.input("k", [.tokens, .fixed(16)]), v = t.input("v", [.tokens, .fixed(16)])
        t.output("y", try t.op(.attention, [q, k, v], ["heads": .int(2), "kv_heads": .int(2), "scale": .float(2.5)]))
        try expectMatchesReference(t, tokens: [1, 9, 70])
    }

    /// Runs a `q, k, v → y` attention graph with explicit inputs through every configuration.
    private func attend(
        heads: Int, kvHeads: Int, d: Int, window: Int = 0, q: [Float], k: [Float], v: [Float], tokens: Int
    ) throws -> [Float] {
        var t = TinyGraph(seed: 44)
        let qi = t.input("q", [.tokens, .fixed(heads * d)])
        let ki = t.input("k", [.tokens, .fixed(kvHeads * d)])
        let vi = t.input("v", [.tokens, .fixed(kvHeads * d)])
        var attrs: Attributes = ["heads": .int(heads), "kv_heads": .int(kvHeads)]
        if window > 0 { attrs["window"] = .int(window) }
        t.output("y", try t.op(.attention, [qi, ki, vi], attrs))
        let inputs = [
            "q": HostTensor(shape: [tokens, heads * d], floats: q), "k": HostTensor(shape: [tokens, kvHeads * d], floats: k),
            "v": HostTensor(shape: [tokens, kvHeads * d], floats: v)
        ]
        return try runEverywhere(t, inputs)
    }

    /// One token sees only itself, so each query head returns its group's value head: heads
    /// 0–2 read kv head 0, heads 3–5 kv head 1 (transformers' `repeat_kv` order).
    @Test func oneTokenReturnsItsGroupsValueHead() throws {
        var rng = SeededRandom(seed: 45)
        let d = 4
        let v = rng.normals(2 * d, scale: 1)
        let y = try attend(heads: 6, kvHeads: 2, d: d, q: rng.normals(6 * d, scale: 1), k: rng.normals(2 * d, scale: 1), v: v, tokens: 1)
        for h in 0..<6 {
            let g = h / 3
            #expect(Array(y[h * d..<(h + 1) * d]) == Array(v[g * d..<(g + 1) * d]), "head \(h)")
        }
    }

    /// Changing the last row's queries, keys and values changes no earlier row's output; with a
    /// window of 1 every row returns its own values.
    @Test func rowsSeeOnlyEarlierRowsWithinTheWindow() throws {
        var rng = SeededRandom(seed: 46)
        let tokens = 9, d = 4, w = 2 * d
        var q = rng.normals(tokens * w, scale: 1), k = rng.normals(tokens * w, scale: 1), v = rng.normals(tokens * w, scale: 1)
        let before = try attend(heads: 2, kvHeads: 2, d: d, q: q, k: k, v: v, tokens: tokens)
        for j in (tokens - 1) * w..<tokens * w {
            q[j] += 3
            k[j] -= 2
            v[j] *= -4
        }
        let after = try attend(heads: 2, kvHeads: 2, d: d, q: q, k: k, v: v, tokens: tokens)
        #expect(Array(before[0..<(tokens - 1) * w]) == Array(after[0..<(tokens - 1) * w]))
        #expect(Array(before[(tokens - 1) * w..<tokens * w]) != Array(after[(tokens - 1) * w..<tokens * w]))
        let own = try attend(heads: 2, kvHeads: 2, d: d, window: 1, q: q, k: k, v: v, tokens: tokens)
        for (a, b) in zip(own, v) { #expect(abs(a - b) <= 1e-6 * max(1, abs(b))) }
    }

    /// Runs `rope` on explicit rows.
    private func rotate(_ x: [Float], tokens: Int, width: Int, headDim: Int, theta: Double) throws -> [Float] {
        var t = TinyGraph(seed: 47)
        let xi = t.input("x", [.tokens, .fixed(width)])
        t.output("y", try t.op(.rope, [xi], ["head_dim": .int(headDim), "theta": .float(theta)]))
        return try runEverywhere(t, ["x": HostTensor(shape: [tokens, width], floats: x)])
    }

    /// Position 0 is not rotated; every pair (j, j + D/2) keeps its length; and the dot product of
    /// a rotated query at position t with a rotated key at position s depends on t − s only (the
    /// same vectors at every position, compared 3 apart at 2 places).
    @Test func ropeIsARotationByTheRelativePosition() throws {
        var rng = SeededRandom(seed: 48)
        let d = 8, half = d / 2, tokens = 12
        let qv = rng.normals(d, scale: 1), kv = rng.normals(d, scale: 1)
        let rq = try rotate(Array((0..<tokens).map { _ in qv }.joined()), tokens: tokens, width: d, headDim: d, theta: 100)
        let rk = try rotate(Array((0..<tokens).map { _ in kv }.joined()), tokens: tokens, width: d, headDim: d, theta: 100)
        #expect(Array(rq[0..<d]) == qv)
        for t in 0..<tokens {
            for j in 0..<half {
                let before = qv[j] * qv[j] + qv[j + half] * qv[j + half]
                let after = rq[t * d + j] * rq[t * d + j] + rq[t * d + j + half] * rq[t * d + j + half]
                #expect(abs(before - after) <= 1e-5 * max(1, before), "t \(t) pair \(j)")
            }
        }
        func dot(_ t: Int, _ s: Int) -> Double { (0..<d).reduce(0) { $0 + Double(rq[t * d + $1]) * Double(rk[s * d + $1]) } }
        #expect(abs(dot(5, 2) - dot(10, 7)) <= 1e-4, "\(dot(5, 2)) vs \(dot(10, 7))")
        #expect(abs(dot(5, 2) - dot(2, 5)) > 1e-3, "a rotation that ignored the direction of the distance")
    }

    /// A graph with attention cannot be split by tokens over MPI ranks.
    @Test func attentionGraphsAreNotShardedByTokens() throws {
        var t = TinyGraph(seed: 49)
        let x = t.input("x", [.tokens, .fixed(8)])
        let q = try t.op(.rope, [x], ["head_dim": .int(4), "theta": .float(10000)])
        t.output("y", try t.op(.attention, [q, x, x], ["heads": .int(2), "kv_heads": .int(2)]))
        let reason = TokenSharding.obstacle(t.graph)
        #expect(reason?.contains("depends on the other tokens") == true, "\(reason ?? "nil")")
    }
}

/// The FLOPs `moec bench` reports for attention: per query head, 2·(D + Dv) for every pair of a
/// row and a row it sees, counted here by enumerating the pairs.
@Test(arguments: [0, 3, 50])
func attentionWorkCountsTheSeenPairs(window: Int) throws {
    var t = TinyGraph(seed: 50)
    let q = t.input("q", [.tokens, .fixed(4 * 8)]), k = t.input("k", [.tokens, .fixed(2 * 8)]), v = t.input("v", [.tokens, .fixed(2 * 6)])
    var attrs: Attributes = ["heads": .int(4), "kv_heads": .int(2)]
    if window > 0 { attrs["window"] = .int(window) }
    t.output("y", try t.op(.attention, [q, k, v], attrs))
    for tokens in [1, 7, 20] {
        for context in [0, 2, 60] { // the rows at positions context ..< context + tokens of a sequence
            let pairs = (context..<(context + tokens)).map { row in (0...row).filter { window == 0 || row - $0 < window }.count }.reduce(0, +)
            let work = WorkEstimate(graph: t.graph, tokens: tokens, expertLoads: [], context: context)
            #expect(work.flops == Double(2 * pairs * 4 * (8 + 6)), "tokens \(tokens) after \(context)")
            #expect(work.weightBytes == 0)
        }
    }
}
