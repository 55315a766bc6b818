import Foundation
import MoEIO
import MoETestSupport
import Testing

/// A multi-hop block (graphs/mechanisms/multihop.moe: three hops sharing the experts) through the
/// binary: `run --stats` and `profile` report it as one layer with its hops' loads, `moec place`
/// plans one layer for it, and `run`/`bench --placement` run every hop by that layer.
@Suite struct MultiHopTests {
    static let graph = RepoPaths.graphs + "/mechanisms/multihop.moe"
    static let model = RepoPaths.fixtures + "/mechanisms/multihop_h16-f16-e8-k2-h3-t04-n13"
    static let x = model + "/x.npy"

    static func json(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Files.read(path)) as? [String: Any])
    }

    /// The numbers after `prefix` on the line of stderr that holds it: "… per hop 26, 14, 12; …".
    static func numbers(after prefix: String, in text: String) -> [Int]? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains(prefix) }),
            let start = line.range(of: prefix)?.upperBound
        else { return nil }
        return line[start...].prefix { $0 != ";" }.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    @Test func statsHaveOneLayerWithTheLoadOfEveryHop() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["run", Self.graph, "--model", Self.model, "--input", "x=\(Self.x)", "--stats", "stats.json"], in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("wrote statistics of 1 MoE layer to stats.json"), "\(r)")
        let perHop = try #require(Self.numbers(after: "multi-hop halting: (token, expert) pairs per hop ", in: r.stderr), "\(r)")
        #expect(perHop.count == 3, "\(r)")

        let stats = try Self.json(dir.file("stats.json"))
        let loads = try #require(stats["expert_load"] as? [[Int]])
        let layers = try #require(stats["layers"] as? [[String: Any]])
        try #require(loads.count == 1 && layers.count == 1, "\(stats)")
        #expect(layers[0]["name"] as? String == "y")
        let hopLoad = try #require(layers[0]["hop_load"] as? [[Int]], "\(layers[0])")
        #expect(hopLoad.count == 3 && hopLoad.allSatisfy { $0.count == 8 })
        // The layer's load is the hops' loads summed expert by expert …
        #expect(loads[0] == (0..<8).map { e in hopLoad.reduce(0) { $0 + $1[e] } }, "\(loads[0]) vs \(hopLoad)")
        #expect(layers[0]["assignments"] as? Int == loads[0].reduce(0, +))
        // … and each hop's loads add up to the pairs the run reports for it.
        #expect(hopLoad.map { $0.reduce(0, +) } == perHop, "\(hopLoad) vs \(perHop)")
        #expect(stats["imbalance"] as? [Double] != nil && (stats["imbalance"] as? [Double])?.count == 1)

        // moec profile writes the same layer.
        let p = try Moec.run(
            [
                "profile", Self.graph, "--model", Self.model, "--input", "x=\(Self.x)", "--batch-tokens", "4",
                "-o", "profile.json"
            ], in: dir.path)
        expectSuccess(p)
        let profiled = try Self.json(dir.file("profile.json"))
        #expect(profiled["expert_load"] as? [[Int]] == loads)
        #expect((profiled["layers"] as? [[String: Any]])?.first?["hop_load"] as? [[Int]] == hopLoad)
        #expect(p.stdout.contains("\ny            8  2        13 "), "\(p)")
        #expect(
            p.stdout.contains(
                "y: 3 hops sharing the experts; (token, slot) pairs per hop "
                    + perHop.map(String.init).joined(separator: ", ")), "\(p)")
    }

    /// stats → place → run --placement: the placed run computes what the plain run does.
    @Test func placedFromItsStatisticsRunsLikeTheUnplacedRun() throws {
        let dir = TemporaryDirectory()
        let base = ["run", Self.graph, "--model", Self.model, "--input", "x=\(Self.x)"]
        // --placement always runs moec's kernels, so the plain run does too (under MOEC_BLAS it would
        // use BLAS, whose rounding three hops amplify past 1e-6).
        expectSuccess(
            try Moec.run(
                base + ["--stats", "stats.json", "--output", "y=plain.npy"], in: dir.path,
                environment: ["MOEC_BLAS": "none"]))
        let placed = try Moec.run(
            ["place", "--load", "stats.json", "--workers", "2", "--replicas", "10", "-o", "placement.json", "--explain"],
            in: dir.path)
        expectSuccess(placed)
        #expect(placed.stdout.contains("layer 0 (") && !placed.stdout.contains("layer 1 ("), "\(placed)")
        let placement = try Self.json(dir.file("placement.json"))
        #expect((placement["phy2log"] as? [[Int]])?.count == 1, "\(placement)")

        for extra in [
            ["--placement", "placement.json", "--threads", "2"], ["--placement", "placement.json", "--threads", "2", "--llep", "1.0"],
            ["--placement", "static", "--threads", "2"]
        ] {
            let r = try Moec.run(base + extra + ["--output", "y=placed.npy"], in: dir.path)
            expectSuccess(r)
            let want = try NpyArray(path: dir.file("plain.npy")).floats(), got = try NpyArray(path: dir.file("placed.npy")).floats()
            #expect(want.count == 13 * 16 && got.count == want.count)
            let diff = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(diff <= 1e-6, "\(extra): max |Δ| = \(diff)")
        }
        let bench = try Moec.run(
            [
                "bench", Self.graph, "--model", Self.model, "--placement", "placement.json", "--threads", "2",
                "--tokens", "1,16", "--repeat", "2", "--warmup", "0"
            ], in: dir.path)
        expectSuccess(bench)
    }

    /// A placement with one layer per hop (what statistics used to hold) is refused.
    @Test func refusesOneLayerPerHop() throws {
        let dir = TemporaryDirectory()
        let row = "[0, 1, 2, 3, 4, 5, 6, 7]"
        try Files.write(#"{"workers": 2, "experts": 8, "phy2log": [\#(row), \#(row), \#(row)]}"#, to: dir.file("p.json"))
        expectFailure(
            try Moec.run(
                [
                    "run", Self.graph, "--model", Self.model, "--input", "x=\(Self.x)", "--placement", "p.json",
                    "--output", "y=y.npy"
                ], in: dir.path),
            ["--placement: the placement has 3 layers but graph 'multihop' has 1 moe block"])
    }
}
