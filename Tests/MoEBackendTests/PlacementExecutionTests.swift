import MoEBackend
import MoEIR
import MoEPlacement
import MoETestSupport
import Testing

/// Running the experts by a placement (workers = threads following slots, replicas sharing an
/// expert's tokens, LLEP spilling) changes who computes what, never the result.
@Suite struct PlacementExecutionTests {
    /// Placements of `experts` experts over `workers` workers: a static split, and one with the
    /// first two experts replicated on every worker.
    static func placements(experts: Int, workers: Int) throws -> [(String, PlacementExecution)] {
        let extra = workers * 2
        var slots = Array(0..<experts) + (0..<extra).map { $0 % 2 }
        // A multiple of the worker count: pad with replicas of expert 2.
        while slots.count % workers != 0 { slots.append(2) }
        let replicated = try ExpertPlacement(workers: workers, experts: experts, phy2log: [slots])
        return [
            ("static split", PlacementExecution(.staticSplit(workers: workers))),
            ("replicas", PlacementExecution(.placement(replicated))),
            ("replicas + LLEP 1.0", PlacementExecution(.placement(replicated), dynamicThreshold: 1.0)),
            ("static + LLEP 1.1", PlacementExecution(.staticSplit(workers: workers), dynamicThreshold: 1.1))
        ]
    }

    @Test(arguments: ["mixtral.moe", "olmoe.moe", "switch.moe"])
    func placedRunsEqualTheUnplacedRun(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 5)
        let experts = model.graph.nodes.first { $0.op == .moe_experts }!.attributes.int("experts")!
        let plain = model.executable(ExecutionOptions(threads: 1, backend: .native))
        for workers in [2, 4] where experts % workers == 0 {
            for (label, p) in try Self.placements(experts: experts, workers: workers) {
                let placed = model.executable(ExecutionOptions(threads: workers, backend: .native, placement: p))
                for tokens in [1, 7, 64, 300] {
                    let inputs = model.inputs(tokens: tokens, seed: UInt64(tokens))
                    let want = try plain.run(inputs)["y"]!, got = try placed.run(inputs)["y"]!
                    let err = relativeError(got, want)
                    #expect(err <= 1e-6, "\(file), \(label), \(workers) workers, \(tokens) tokens: \(err)")
                    #expect(placed.schedule(tokens: tokens).lastExpertLoads() == plain.schedule(tokens: tokens).lastExpertLoads())
                }
            }
        }
    }

    /// A multi-hop block is one layer of a placement: every hop runs by it (the hops share the
    /// expert weights), and the result is the unplaced run's.
    @Test func everyHopRunsByItsBlocksLayer() throws {
        let model = try RandomCheckpoint.make(
            graphPath: RepoPaths.graphs + "/mechanisms/multihop.moe",
            overrides: [("hidden", "16"), ("ffn", "24"), ("num_experts", "8"), ("top_k", "2")], seed: 5)
        #expect(model.graph.moeLayers.count == 1 && model.graph.moeLayers[0].hops == 3)
        let plain = model.executable(ExecutionOptions(threads: 1, backend: .native))
        for (label, p) in try Self.placements(experts: 8, workers: 2) {
            let placed = model.executable(ExecutionOptions(threads: 2, backend: .native, placement: p))
            for tokens in [1, 7, 64] {
                let inputs = model.inputs(tokens: tokens, seed: UInt64(tokens))
                let err = relativeError(try placed.run(inputs)["y"]!, try plain.run(inputs)["y"]!)
                #expect(err <= 1e-6, "multihop, \(label), \(tokens) tokens: \(err)")
                #expect(placed.schedule(tokens: tokens).lastExpertLoads() == plain.schedule(tokens: tokens).lastExpertLoads())
            }
        }
    }
}
