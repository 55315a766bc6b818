import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoEPlacement
import MoETestSupport
import Testing

/// A multi-hop block is one MoE layer: its hops share the expert weights. The statistics sum the
/// hops' loads into one layer named after the block's `let`, keep each hop's loads in `hopLoad`,
/// and a placement has one layer for it. The expected loads come from the fixtures' meta.json,
/// written by the numpy reference (scripts/mechanisms_reference.py), not by moec.
@Suite struct MultiHopLayerTests {
    static let fixtures = ["multihop_h16-f16-e8-k2-h3-t04-n13", "multihop_h12-f16-e6-k1-h4-t03-n11"]

    /// The fixture, its runner (recording routing) and its meta.json.
    static func load(_ name: String) throws -> (ParityTests.Fixture, ModelRunner, JSON) {
        let dir = RepoPaths.fixtures + "/mechanisms/" + name
        let fixture = try #require(ParityTests.loadFixture(dir, name: name))
        let session = CompilerSession(CompileOptions(graphPath: fixture.graph, modelDirectory: dir, overrides: fixture.overrides))
        let runner = try ModelRunner.compile(session, options: ExecutionOptions(threads: 2), recordRouting: true)
        let meta = try JSON.parse(bytes: [UInt8](try #require(FileManager.default.contents(atPath: dir + "/meta.json"))))
        return (fixture, runner, meta)
    }

    static func input(_ fixture: ParityTests.Fixture) throws -> HostTensor {
        let x = try NpyArray(path: fixture.path + "/x.npy")
        return HostTensor(shape: x.shape, floats: x.floats())
    }

    @Test(arguments: fixtures)
    func oneLayerWithTheLoadsOfEveryHop(_ name: String) throws {
        let (fixture, runner, meta) = try Self.load(name)
        let hops = try #require(meta["params"]?["hops"]?.int)
        let k = try #require(meta["params"]?["top_k"]?.int)
        let experts = try #require(meta["params"]?["num_experts"]?.int)
        let tokens = try #require(meta["tokens"]?.int)
        #expect(runner.graph.nodes.filter { $0.op == .moe_experts }.count == hops)
        #expect(runner.graph.moeLayers.map(\.name) == ["y"] && runner.graph.moeLayers[0].hops == hops)

        var stats = runner.emptyRoutingStatistics()
        _ = try runner.run(["x": try Self.input(fixture)], recordingInto: &stats)
        try #require(stats.layers.count == 1)
        let layer = stats.layers[0]
        #expect(layer.probe.name == "y" && layer.hopLoad.count == hops && layer.tokens == tokens)
        // The load is the hops' loads summed, expert by expert.
        #expect(layer.load == (0..<experts).map { e in layer.hopLoad.reduce(0) { $0 + $1[e] } })
        // Hop 0 routes every token: the reference's counts. Later hops compute k experts for
        // each token still active.
        let hop0 = try #require(meta["routing"]?["tokens_per_expert"]?.object)
        #expect(layer.hopLoad[0] == (0..<experts).map { hop0[String($0)]?.int ?? 0 }, "\(layer.hopLoad[0])")
        let active = try #require(meta["routing"]?["active_per_hop"]?.array).compactMap(\.int)
        #expect(layer.hopLoad.map { $0.reduce(0, +) } == active.map { $0 * k }, "\(layer.hopLoad) vs active \(active)")
        #expect(active.last! < active.first!, "the fixture halts tokens")
        // Every hop's router scores every token, halted or not.
        #expect(layer.measuredTokens == hops * tokens)
        // The run's halting report counts the same pairs.
        let halting = try #require(HaltingReport(graph: runner.graph, expertLoads: runner.lastExpertLoads(tokens: tokens)))
        #expect(halting.pairsPerHop == active.map { $0 * k })

        let json = try JSON.parse(stats.json.pretty)
        #expect(json["expert_load"]?.array?.count == 1)
        #expect(json["expert_load"]?[0]?.array?.compactMap(\.int) == layer.load)
        #expect(json["layers"]?[0]?["name"]?.string == "y")
        #expect(json["layers"]?[0]?["hop_load"]?.array?.map { $0.array?.compactMap(\.int) ?? [] } == layer.hopLoad)
        #expect(json["layers"]?[0]?["measured_tokens"]?.int == hops * tokens)
    }

    /// Router statistics over all hops: the means over (token, hop) pairs are the means of the
    /// hops' means, each hop measured on its own from the same run's scores.
    @Test func routerStatisticsCoverEveryHop() throws {
        let (fixture, runner, _) = try Self.load(Self.fixtures[0])
        let tokens = try Self.input(fixture).shape[0]
        // The executable returns the router scores of every hop along with the outputs.
        let outputs = try runner.executable.run(["x": try Self.input(fixture)])
        let loads = runner.lastExpertLoads(tokens: tokens)
        var stats = runner.emptyRoutingStatistics()
        stats.add(tokens: tokens, loads: loads, outputs: outputs)
        let hops = runner.routerProbes[0].hops.count
        let perHop = (0..<hops).map { h in
            let name = RouterProbe.outputName(layer: 0, hop: h)
            var single = runner.emptyRoutingStatistics()
            single.add(tokens: tokens, loads: loads, outputs: outputs.filter { $0.key == name })
            return single.layers[0]
        }
        let all = stats.layers[0]
        #expect(all.measuredTokens == hops * tokens && perHop.allSatisfy { $0.measuredTokens == tokens })
        let meanEntropy = perHop.reduce(0) { $0 + $1.entropy! } / Double(hops)
        let meanMargin = perHop.reduce(0) { $0 + $1.margin! } / Double(hops)
        #expect(abs(all.entropy! - meanEntropy) < 1e-9 && abs(all.margin! - meanMargin) < 1e-9)
        #expect(Set(perHop.map { $0.entropy! }).count == hops, "the hops route differently")
    }

    /// Multi-hop blocks and a single-hop one: one layer each, in source order, named after their
    /// lets (two blocks in one let: `w`, `w#2`).
    @Test func layersFollowTheSourceBlocks() throws {
        let dir = TemporaryDirectory()
        let source = """
            model two_blocks
            input x: [tokens, 16]
            weights "moe." {
              gate:   [8, 16]      = "router.weight"
              w_gate: [8, 16, 16]  = "experts.{e}.gate_proj.weight"
              w_up:   [8, 16, 16]  = "experts.{e}.up_proj.weight"
              w_down: [8, 16, 16]  = "experts.{e}.down_proj.weight"
            }
            let h = moe(x) {
              router:  x |> linear(gate) |> softmax |> topk(2)
              experts: 8 of swiglu(gate: w_gate, up: w_up, down: w_down)
              hops:    2
            }
            let single = moe(h) {
              router:  h |> linear(gate) |> softmax |> topk(2)
              experts: 8 of swiglu(gate: w_gate, up: w_up, down: w_down)
            }
            let z = moe(single) {
              router:  single |> linear(gate) |> softmax |> topk(2)
              experts: 8 of swiglu(gate: w_gate, up: w_up, down: w_down)
              hops:    3
              halt:    0.5
            }
            let w = moe(z) {
              router:  z |> linear(gate) |> softmax |> topk(2)
              experts: 8 of swiglu(gate: w_gate, up: w_up, down: w_down)
              hops:    2
            } + moe(z) {
              router:  z |> linear(gate) |> softmax |> topk(1)
              experts: 8 of swiglu(gate: w_gate, up: w_up, down: w_down)
              hops:    2
            }
            output w
            """
        try source.write(toFile: dir.file("two.moe"), atomically: true, encoding: .utf8)
        let session = CompilerSession(CompileOptions(graphPath: dir.file("two.moe"), verifyEachPass: true))
        let g = try session.optimize()
        let layers = g.moeLayers
        #expect(layers.map(\.name) == ["h", "single", "z", "w", "w#2"])
        #expect(layers.map(\.hops) == [2, 1, 3, 2, 2])
        #expect(layers.map(\.nodePositions) == [[0, 1], [2], [3, 4, 5], [6, 7], [8, 9]])
        for l in layers where l.hops > 1 {
            #expect(l.nodes.map { g[$0].attributes.string("block") } == Array(repeating: l.name, count: l.hops))
            #expect(l.nodes.map { g[$0].attributes.int("hop") } == (0..<l.hops).map { $0 })
        }
        #expect(g[layers[1].nodes[0]].attributes.string("block") == nil, "a single-hop block needs no block attribute")
        #expect(RouterProbe.find(in: g).map { $0.hops.count } == [2, 1, 3, 2, 2])
        #expect(RouterProbe.find(in: g).map(\.slots) == [2, 2, 2, 2, 1])
    }

    /// The verifier keeps a block's hops together: numbered in order, with one expert count.
    @Test func verifierChecksTheHops() throws {
        let (_, runner, _) = try Self.load(Self.fixtures[0])
        var g = runner.graph
        #expect(Verifier.verify(g).isEmpty)
        let hops = g.moeLayers[0].nodes
        g[hops[2]].attributes["hop"] = .int(1)
        let problems = Verifier.verify(g).map(\.message)
        #expect(problems.count == 1 && problems[0].contains("moe block 'y': expected hop 2 here, found hop 1"), "\(problems)")
    }

    /// A placement has one layer per block: every hop runs by it.
    @Test func placementsHaveOneLayerPerBlock() throws {
        let (_, runner, _) = try Self.load(Self.fixtures[0])
        let one = try PlacementPlanner.plan(try LoadStatistics(layers: [[1, 2, 3, 4, 5, 6, 7, 8]]), PlacementOptions(workers: 2)).placement
        #expect(PlacementBinding.mismatch(one, runner.graph) == nil)
        let perHop = try PlacementPlanner.plan(
            try LoadStatistics(layers: Array(repeating: [1, 2, 3, 4, 5, 6, 7, 8], count: 3)),
            PlacementOptions(workers: 2)
        ).placement
        #expect(PlacementBinding.mismatch(perHop, runner.graph) == "the placement has 3 layers but graph 'multihop' has 1 moe block")
    }
}
