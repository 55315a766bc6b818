import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoEPlacement
import MoETestSupport
import Testing

/// Router statistics of a run, checked against the same numbers computed by hand: the example
/// Mixtral checkpoint's router is `softmax(x · gateᵀ)`, top 2, so loads, entropy and margins follow
/// from `x.npy` and the gate matrix alone, with no moec code involved.
@Suite struct RoutingStatisticsTests {
    static let example = RepoPaths.path("examples/mixtral-tiny")

    /// What the statistics must say, computed in Double straight from the checkpoint.
    struct Expected {
        var load = [Int](repeating: 0, count: 8)
        var entropy = 0.0, margin = 0.0, auxLoss = 0.0
        var tokens = 0
    }

    static func expected(rows: Range<Int>? = nil) throws -> Expected {
        let x = try NpyArray(path: example + "/x.npy")
        let gate = try SafetensorsFile(path: example + "/model.safetensors").floats("model.layers.0.block_sparse_moe.gate.weight")
        let (tokens, d, e) = (x.shape[0], x.shape[1], 8)
        let xs = x.floats()
        var out = Expected()
        var meanP = [Double](repeating: 0, count: e)
        for t in rows ?? 0..<tokens {
            var logits = (0..<e).map { j in (0..<d).reduce(0.0) { $0 + Double(xs[t * d + $1]) * Double(gate[j * d + $1]) } }
            let m = logits.max()!
            logits = logits.map { exp($0 - m) }
            let p = logits.map { $0 / logits.reduce(0, +) }
            // Top 2, ties to the lower index.
            let order = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
            out.load[order[0]] += 1
            out.load[order[1]] += 1
            out.entropy += -p.reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) }
            out.margin += p[order[0]] - p[order[1]]
            for j in 0..<e { meanP[j] += p[j] }
            out.tokens += 1
        }
        let n = Double(out.tokens)
        out.entropy /= n
        out.margin /= n
        out.auxLoss = Double(e) * (0..<e).reduce(0) { $0 + Double(out.load[$1]) / (2 * n) * meanP[$1] / n }
        return out
    }

    static func runner(threads: Int = 1) throws -> ModelRunner {
        let session = CompilerSession(CompileOptions(graphPath: RepoPaths.path("graphs/mixtral.moe"), modelDirectory: example))
        return try ModelRunner.compile(session, options: ExecutionOptions(threads: threads), recordRouting: true)
    }

    static func input(rows: Range<Int>? = nil) throws -> HostTensor {
        let x = try NpyArray(path: example + "/x.npy")
        let r = rows ?? 0..<x.shape[0]
        let d = x.shape[1]
        return HostTensor(shape: [r.count, d], floats: Array(x.floats()[(r.lowerBound * d)..<(r.upperBound * d)]))
    }

    @Test func matchesTheRouterComputedByHand() throws {
        let want = try Self.expected()
        for threads in [1, 2] {
            let runner = try Self.runner(threads: threads)
            var stats = runner.emptyRoutingStatistics()
            let out = try runner.run(["x": try Self.input()], recordingInto: &stats)
            #expect(Array(out.keys) == ["y"], "the router scores are not returned as outputs")
            let layer = try #require(stats.layers.first)
            #expect(stats.layers.count == 1 && stats.tokens == 16 && stats.runs == 1)
            #expect(layer.load == want.load)
            #expect(layer.tokens == 16 && layer.measuredTokens == 16 && layer.assignments == 32)
            #expect(abs(layer.entropy! - want.entropy) < 1e-5, "entropy \(layer.entropy!) vs \(want.entropy)")
            #expect(abs(layer.normalizedEntropy! - want.entropy / log(8)) < 1e-5)
            #expect(abs(layer.margin! - want.margin) < 1e-5, "margin \(layer.margin!) vs \(want.margin)")
            #expect(abs(layer.auxLoss! - want.auxLoss) < 1e-5)
            #expect(abs(layer.imbalance! - Double(want.load.max()!) / 4) < 1e-12)
            // The router is fused (softmax, top-k and renormalize in one step): the probe reads the
            // logits and applies the softmax itself.
            #expect(layer.probe.distribution == .softmaxOfScores && layer.scoresFrom == "softmax")
        }
    }

    /// Batches add up: the statistics of 16 tokens run as 5 + 11 are those of the 16 at once.
    @Test func accumulatesOverBatches() throws {
        let runner = try Self.runner()
        var stats = runner.emptyRoutingStatistics()
        for rows in [0..<5, 5..<16] { _ = try runner.run(["x": try Self.input(rows: rows)], recordingInto: &stats) }
        let want = try Self.expected()
        let layer = stats.layers[0]
        #expect(stats.tokens == 16 && stats.runs == 2 && layer.tokens == 16)
        #expect(layer.load == want.load)
        #expect(abs(layer.entropy! - want.entropy) < 1e-5)
        #expect(abs(layer.margin! - want.margin) < 1e-5)
    }

    /// The JSON document: `moec place` reads its "expert_load"; the per-layer numbers line up.
    @Test func jsonDocument() throws {
        let runner = try Self.runner()
        var stats = runner.emptyRoutingStatistics()
        _ = try runner.run(["x": try Self.input()], recordingInto: &stats)
        let json = try JSON.parse(stats.json.pretty)
        let want = try Self.expected()
        #expect(json["format"]?.string == "moec-load-statistics")
        #expect(json["expert_load"]?.array?.count == 1)
        #expect(json["expert_load"]?[0]?.array?.compactMap(\.int) == want.load)
        #expect(abs((json["entropy"]?[0]?.double ?? 0) - want.entropy) < 1e-5)
        #expect(abs((json["top1_top2_margin"]?[0]?.double ?? 0) - want.margin) < 1e-5)
        // One expert: w1 and w3 [64, 32], w2 [32, 64], f32.
        #expect(json["expert_bytes"]?.int == 3 * 64 * 32 * 4)
        #expect(json["layers"]?[0]?["name"]?.string == "y")
        #expect(json["layers"]?[0]?["hottest"]?.array?.count == 3)
        #expect(json["layers"]?[0]?["hop_load"] == nil, "hop_load is for multi-hop blocks only")
    }

    @Test func tableNamesEveryLayer() throws {
        let runner = try Self.runner()
        var stats = runner.emptyRoutingStatistics()
        _ = try runner.run(["x": try Self.input()], recordingInto: &stats)
        let lines = stats.table().split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasPrefix("layer  experts  k    tokens  max/mean"))
        #expect(lines[1].hasPrefix("y            8  2        16"), "\(lines[1])")
    }

    /// Plain runs of a runner that records return only the graph's outputs.
    @Test func plainRunsHideTheScores() throws {
        let out = try Self.runner().run(["x": try Self.input()])
        #expect(Array(out.keys) == ["y"])
    }
}

/// A placement planned from a run's statistics fits the graph it was measured on, and only that.
@Suite struct PlacementBindingTests {
    @Test func placementFromStatisticsFitsItsGraph() throws {
        let runner = try RoutingStatisticsTests.runner()
        var stats = runner.emptyRoutingStatistics()
        _ = try runner.run(["x": try RoutingStatisticsTests.input()], recordingInto: &stats)
        let dir = TemporaryDirectory()
        try stats.json.pretty.write(toFile: dir.file("stats.json"), atomically: true, encoding: .utf8)
        let placed = try PlaceCommand.parse([
            "--load", dir.file("stats.json"), "--workers", "2", "--replicas", "10",
            "-o", dir.file("placement.json")
        ]).run()
        #expect(placed.hasPrefix("1 layer, 2 workers × 5 slots"), "\(placed)")
        let placement = try PlacementBinding.read(dir.file("placement.json"), for: runner.graph)
        #expect(placement.layers.count == 1 && placement.experts == 8 && placement.physicalSlots == 10)

        let two = try PlacementPlanner.plan(
            try LoadStatistics(layers: [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]]),
            PlacementOptions(workers: 2)
        ).placement
        #expect(PlacementBinding.mismatch(two, runner.graph) == "the placement has 2 layers but graph 'mixtral' has 1 moe block")
        let four = try PlacementPlanner.plan(try LoadStatistics(layers: [[1, 2, 3, 4]]), PlacementOptions(workers: 2)).placement
        #expect(PlacementBinding.mismatch(four, runner.graph) == "the placement places 4 experts per layer but moe block 'y' has 8")
    }
}
