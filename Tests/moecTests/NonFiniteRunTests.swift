import Foundation
import MoEIO
import MoETestSupport
import Testing

/// `moec run` on input with non-finite tokens: it warns with their count, their output rows are
/// NaN, the other rows are what they are without them, and `--stats` counts them.
@Suite struct NonFiniteRunTests {
    @Test func runWarnsAndStatsCount() throws {
        let dir = TemporaryDirectory()
        let x = try NpyArray(path: Files.example + "/x.npy")
        var v = x.floats()
        let d = x.shape[1]
        v[2 * d + 5] = .nan
        v[7 * d] = .infinity
        try NpyArray(shape: x.shape, storage: .float32(v)).write(to: dir.file("bad.npy"))
        let r = try Moec.run(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=bad.npy", "--output", "y=y.npy",
                "--stats", "stats.json"
            ], in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("warning: 2 of 16 tokens had non-finite input; their output rows are NaN"), "\(r)")
        let clean = try Moec.run(
            ["run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=clean.npy"], in: dir.path)
        expectSuccess(clean)
        #expect(!clean.stderr.contains("warning"), "\(clean)")
        let y = try NpyArray(path: dir.file("y.npy")).floats(), y0 = try NpyArray(path: dir.file("clean.npy")).floats()
        for t in 0..<16 {
            let row = Array(y[(t * d)..<((t + 1) * d)]), row0 = Array(y0[(t * d)..<((t + 1) * d)])
            if t == 2 || t == 7 {
                #expect(row.allSatisfy { $0.isNaN }, "token \(t)")
            } else {
                #expect(relativeError(row, row0) <= 1e-6, "token \(t) changed")
            }
        }
        let json = try #require(try JSONSerialization.jsonObject(with: Files.read(dir.file("stats.json"))) as? [String: Any])
        let layer = try #require((json["layers"] as? [[String: Any]])?.first)
        #expect(layer["non_finite_tokens"] as? Int == 2 && layer["tokens_without_expert"] as? Int == 0, "\(layer)")
    }

    /// A NaN in one expert's weights: the tokens routed to that expert get non-finite rows, and
    /// the warning does not blame their input.
    @Test func nonFiniteWeightIsNotBlamedOnTheInput() throws {
        let tensors = try Files.exampleTensors().map { t in
            var t = t
            if t.name == Tensor.expert(3, "w1") { t.values[0] = .nan }
            return t
        }
        let dir = try BrokenWeightsTests.setUp(weights: try SafetensorsWriter.encode(tensors: tensors))
        let r = try Moec.run(["run", "g.moe", "--model", "model", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path)
        expectSuccess(r)
        let y = try NpyArray(path: dir.file("y.npy"))
        let d = y.shape[1]
        let bad = (0..<y.shape[0]).filter { t in y.floats()[(t * d)..<((t + 1) * d)].contains { !$0.isFinite } }.count
        #expect(bad > 0 && bad < y.shape[0], "\(bad) tokens met expert 3")
        #expect(
            r.stderr.contains("warning: \(bad) of 16 tokens have non-finite output rows: met non-finite router scores or weights"), "\(r)")
        #expect(!r.stderr.contains("non-finite input"), "\(r)")
    }
}
