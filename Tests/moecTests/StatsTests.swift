import Foundation
import MoEIO
import MoETestSupport
import Testing

/// The example checkpoint's routing worked out by hand (softmax of x · gateᵀ, top 2, ties to the
/// lower index), in Double, with no moec code: what `--stats` and `moec profile` must report.
enum ExampleRouting {
    struct Expected {
        var load = [Int](repeating: 0, count: 8)
        var entropy = 0.0
        var margin = 0.0
    }

    static func expected(rows: Range<Int>? = nil) throws -> Expected {
        let x = try NpyArray(path: Files.example + "/x.npy")
        let gate = try SafetensorsFile(path: Files.example + "/model.safetensors").floats(Tensor.gate)
        let (d, e) = (x.shape[1], 8)
        let xs = x.floats()
        var out = Expected()
        let rows = rows ?? 0..<x.shape[0]
        for t in rows {
            let logits = (0..<e).map { j in (0..<d).reduce(0.0) { $0 + Double(xs[t * d + $1]) * Double(gate[j * d + $1]) } }
            let z = logits.map { exp($0 - logits.max()!) }
            let p = z.map { $0 / z.reduce(0, +) }
            let order = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
            out.load[order[0]] += 1
            out.load[order[1]] += 1
            out.entropy -= p.reduce(0) { $0 + $1 * log($1) }
            out.margin += p[order[0]] - p[order[1]]
        }
        out.entropy /= Double(rows.count)
        out.margin /= Double(rows.count)
        return out
    }

    /// Reads a statistics file and checks it against `expected` (layer 0).
    static func check(_ path: String, against want: Expected, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let json = try #require(try JSONSerialization.jsonObject(with: Files.read(path)) as? [String: Any], sourceLocation: sourceLocation)
        let load = json["expert_load"] as? [[Int]]
        #expect(load == [want.load], "expert_load \(String(describing: load)) vs \(want.load)", sourceLocation: sourceLocation)
        let entropy = (json["entropy"] as? [Double])?.first ?? .nan
        let margin = (json["top1_top2_margin"] as? [Double])?.first ?? .nan
        #expect(abs(entropy - want.entropy) < 1e-5, "entropy \(entropy) vs \(want.entropy)", sourceLocation: sourceLocation)
        #expect(abs(margin - want.margin) < 1e-5, "margin \(margin) vs \(want.margin)", sourceLocation: sourceLocation)
        let normalized = (json["entropy_normalized"] as? [Double])?.first ?? .nan
        #expect(abs(normalized - want.entropy / log(8)) < 1e-5, sourceLocation: sourceLocation)
        let imbalance = (json["imbalance"] as? [Double])?.first ?? .nan
        #expect(abs(imbalance - Double(want.load.max()!) * 8 / Double(want.load.reduce(0, +))) < 1e-5, sourceLocation: sourceLocation)
        return json
    }
}

/// `moec run --stats`: the statistics of one run, written with the outputs, all or nothing.
@Suite struct RunStatsTests {
    static let x = Files.example + "/x.npy"

    @Test func statsMatchTheRoutingWorkedOutByHand() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)",
                "--output", "y=y.npy", "--stats", "stats.json"
            ], in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("wrote statistics of 1 MoE layer to stats.json"), "\(r)")
        let json = try ExampleRouting.check(dir.file("stats.json"), against: try ExampleRouting.expected())
        #expect(json["tokens"] as? Int == 16 && json["batches"] as? Int == 1)
        let layers = json["layers"] as? [[String: Any]]
        #expect(layers?.first?["name"] as? String == "y" && layers?.first?["slots"] as? Int == 2)
        expectFolder(dir.path, holds: ["y.npy", "stats.json"], after: r)
    }

    @Test func statsAloneFromAPlan() throws {
        let dir = TemporaryDirectory()
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        let r = try Moec.run(["run", "p.json", "--input", "x=\(Self.x)", "--stats", "stats.json"], in: dir.path)
        expectSuccess(r)
        _ = try ExampleRouting.check(dir.file("stats.json"), against: try ExampleRouting.expected())
        expectFolder(dir.path, holds: ["p.json", "stats.json"], after: r)
    }

    @Test func nothingIsWrittenWhenTheStatsCannotBe() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)",
                "--output", "y=y.npy", "--stats", "no/such/stats.json"
            ], in: dir.path)
        expectFailure(r, ["cannot write 'no/such/stats.json': folder 'no/such' does not exist"])
        expectFolder(dir.path, holds: [], after: r)
    }

    @Test func statsNeedMoEBlocks() throws {
        let dir = TemporaryDirectory()
        try Files.write("model dense\ninput x: [tokens, 32]\noutput y = x * 2.0\n", to: dir.file("dense.moe"))
        let r = try Moec.run(["run", "dense.moe", "--model", Files.example, "--input", "x=\(Self.x)", "--stats", "s.json"], in: dir.path)
        expectFailure(r, ["--stats: graph 'dense' has no moe blocks"])
        expectFolder(dir.path, holds: ["dense.moe"], after: r)
    }

    @Test func statsAndAnOutputCannotShareAFile() throws {
        let r = try Moec.run(["run", "p.json", "--input", "x=x.npy", "--output", "y=out.json", "--stats", "out.json"], in: RepoPaths.root)
        expectFailure(r, status: 2, ["--output y=out.json and --stats out.json write the same file"])
    }
}
