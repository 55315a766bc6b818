import Foundation
import MoEBasics
import MoEIR
import Testing

@testable import MoEBackend

/// `sparsemax` (Martins & Astudillo 2016): values worked out by hand from the paper's closed form
/// (sort z descending, k(z) = max{k : 1 + k·z₍ₖ₎ > Σ_{j≤k} z₍ⱼ₎}, τ = (Σ_{j≤k(z)} z₍ⱼ₎ − 1)/k(z),
/// p = max(z − τ, 0)), then the executor against the reference on random rows.
@Suite struct SparsemaxTests {
    /// Rows of 3 with their projection onto the simplex.
    static let cases: [(z: [Float], p: [Float])] = [
        ([1, 0.5, -1], [0.75, 0.25, 0]), // k = 2, τ = 0.25
        ([3, 0, 0], [1, 0, 0]), // one dominant logit: k = 1, τ = 2
        ([0, 0, 0], [1.0 / 3, 1.0 / 3, 1.0 / 3]), // ties: the uniform distribution
        ([0.0, 0.9, 0.6], [0, 0.65, 0.35]), // k = 2 with the support out of order: τ = 0.25
        ([0.2, 0.9, 0.3], [0.2 / 3, 2.3 / 3, 0.5 / 3]), // all three in the support: τ = 0.4 / 3
        ([2, -.infinity, 1.5], [0.75, 0, 0.25]), // a masked expert gets 0
        ([-.infinity, -.infinity, -.infinity], [0, 0, 0]), // all masked: zeros, as softmax
        ([10, 10.5, 9], [0.25, 0.75, 0]) // shift invariance: as [1, 1.5, 0]
    ]

    @Test(arguments: cases.indices)
    func closedForm(_ i: Int) throws {
        let (z, p) = Self.cases[i]
        var t = TinyGraph(seed: 3)
        let x = t.input("x", [.tokens, .fixed(3)])
        t.output("y", try t.op(.sparsemax, [x]))
        let y = try runEverywhere(t, ["x": HostTensor(shape: [1, 3], floats: z)])
        for j in 0..<3 { #expect(abs(y[j] - p[j]) <= 1e-6, "sparsemax(\(z)) = \(y), expected \(p)") }
    }

    /// Random rows of 8 and 37 logits at several scales: the executor matches the reference, and
    /// every row is a probability vector.
    @Test(arguments: [0.3, 2.0, 10.0])
    func randomRows(scale: Double) throws {
        var t = TinyGraph(seed: 5)
        let a = t.input("a", [.tokens, .fixed(8)])
        let b = t.input("b", [.tokens, .fixed(37)])
        t.output("ya", try t.op(.sparsemax, [a]))
        t.output("yb", try t.op(.sparsemax, [b]))
        try expectMatchesReference(
            t,
            inputs: { n in
                var rng = SeededRandom(seed: UInt64(n) + 11)
                return [
                    "a": HostTensor(shape: [n, 8], floats: rng.normals(n * 8, scale: scale)),
                    "b": HostTensor(shape: [n, 37], floats: rng.normals(n * 37, scale: scale))
                ]
            })
        let reference = ReferenceInterpreter(graph: t.graph, weights: t.weights)
        var rng = SeededRandom(seed: 77)
        let out = try reference.run([
            "a": HostTensor(shape: [5, 8], floats: rng.normals(40, scale: scale)),
            "b": HostTensor(shape: [5, 37], floats: rng.normals(185, scale: scale))
        ])
        for (name, width) in [("ya", 8), ("yb", 37)] {
            let y = try #require(out[name]).floats
            for r in 0..<5 {
                let row = y[(r * width)..<((r + 1) * width)]
                #expect(row.allSatisfy { $0 >= 0 })
                #expect(abs(row.reduce(0, +) - 1) <= 1e-5)
            }
        }
    }

    /// The IR knows the op's properties: non-negative (router statistics read its rows as
    /// probabilities up to a sum), and not absorbed by router fusion.
    @Test func properties() {
        #expect(Op.sparsemax.isNonNegative)
        #expect(Op.sparsemax.routerFusionPart == nil)
        #expect(Op(rawValue: "sparsemax") == .sparsemax)
    }
}
