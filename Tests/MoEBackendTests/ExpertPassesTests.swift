import Foundation
import MoEBasics
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

@testable import MoEBackend

/// Each expert pass changes how a block runs, not what it computes: every graph in `graphs/`,
/// compiled with one pass disabled (and with all of them disabled), gives the outputs of the
/// full pipeline up to rounding, on both matrix backends and on 1 and 2 threads. The marks each
/// pass leaves, and what the executor does with them, are checked too.
@Suite struct ExpertPassesTests {
    static let expertPasses = ["token-permutation", "expert-weight-prepacking", "combine-fusion", "expert-gate-up-fusion"]

    /// Every pass alone, all of them together, and memory planning.
    static let disabledSets: [[String]] = expertPasses.map { [$0] } + [expertPasses, ["memory-planning"]]

    static func compile(_ file: String, _ model: RandomModel, disabling passes: [String]) throws -> Graph {
        try CompilerSession(
            CompileOptions(
                graphPath: RepoPaths.graphs + "/" + file, modelDirectory: model.directory.path,
                overrides: try SmallParams.overrides(for: file), verifyEachPass: true,
                disabledPasses: Set(passes))
        ).boundGraph()
    }

    @Test(arguments: SmallParams.graphFiles)
    func disablingAnExpertPassKeepsTheOutputs(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 22)
        for disabled in Self.disabledSets {
            let graph = try Self.compile(file, model, disabling: disabled)
            for (label, options) in Backends.configurations {
                let full = model.executable(options)
                let partial = Executable(graph: graph, weights: model.buffers, options: options)
                for t in [1, 7, 64, 300] {
                    let inputs = model.inputs(tokens: t, seed: 4)
                    let a = try full.run(inputs), b = try partial.run(inputs)
                    for (name, x) in b {
                        let err = relativeError(try #require(a[name]), x)
                        #expect(err <= 1e-5, "graphs/\(file) without \(disabled) \(label) tokens=\(t) output \(name): \(err)")
                    }
                }
            }
        }
    }

    /// The full pipeline marks every block; each disabled pass takes exactly its mark away, and
    /// only a permuted, pre-packed block runs as the packed experts kernel.
    @Test func eachPassLeavesItsMark() throws {
        let file = "mixtral.moe"
        let model = try RandomCheckpoint.make(graphFile: file, seed: 23)
        let marks = [
            "token-permutation": "permute", "expert-weight-prepacking": "prepacked",
            "combine-fusion": "combine_in_down", "expert-gate-up-fusion": "fuse_gate_up"
        ]
        let full = model.graph.nodes.filter { $0.op == .moe_experts }
        #expect(full.count == 1)
        for mark in marks.values { #expect(full.allSatisfy { $0.attributes.bool(mark) == true }, "\(mark)") }
        #expect(full.allSatisfy { Executable.runsPackedKernel($0, model.graph) })
        for (pass, mark) in marks {
            let g = try Self.compile(file, model, disabling: [pass])
            let block = try #require(g.nodes.first { $0.op == .moe_experts })
            #expect(block.attributes[mark] == nil, "\(pass) disabled, yet \(mark) is set")
            for other in marks.values where other != mark { #expect(block.attributes.bool(other) == true, "\(pass): \(other)") }
            let packed = pass != "token-permutation" && pass != "expert-weight-prepacking"
            #expect(Executable.runsPackedKernel(block, g) == packed, "\(pass)")
            let executable = Executable(graph: g, weights: model.buffers, options: ExecutionOptions(threads: 1, backend: .native))
            #expect((executable.expertMatrices.isEmpty) == !packed, "\(pass): weights packed at load only for the packed kernel")
            // Without pre-packing, the expert weights stay as stored and are packed per call.
            if pass == "expert-weight-prepacking" {
                let experts = block.operands[2...].map { g[$0].attributes.int("index")! }
                for w in experts {
                    #expect(executable.matrices[w].allSatisfy { $0.packed == nil && $0.raw != nil }, "weight \(w)")
                }
            }
        }
    }

    /// `memory-planning` records each value's last reader; without it every value keeps its own
    /// bytes, so the arena is the sum of the buffers; with it the arena reuses bytes.
    @Test func memoryPlanningLetsTheArenaReuseBytes() throws {
        let file = "qwen2_moe.moe"
        let model = try RandomCheckpoint.make(graphFile: file, seed: 24)
        let planned = model.graph
        let unplanned = try Self.compile(file, model, disabling: ["memory-planning"])
        let last = try #require(planned.lastReaders)
        #expect(unplanned.lastReaders == nil)
        for (i, n) in planned.nodes.enumerated() {
            for o in n.operands { #expect(last[o.index] >= i) }
        }
        for o in planned.outputs { #expect(last[o.value.index] == planned.nodes.count) }
        for tokens in [1, 64, 512] {
            let withPlan = try Schedule.memoryPlan(planned, tokens: tokens)
            let without = try Schedule.memoryPlan(unplanned, tokens: tokens)
            #expect(withPlan.layout.totalBytes < without.layout.totalBytes, "tokens=\(tokens)")
            // Without liveness, only the steps' scratch (live during its step) can share bytes.
            let scratch = try Self.scratchBytes(unplanned, tokens: tokens)
            #expect(without.layout.totalBytes >= without.unsharedBytes - scratch)
        }
    }

    static func scratchBytes(_ g: Graph, tokens: Int) throws -> Int {
        try g.nodes.reduce(0) { sum, n in
            try sum + Schedule.scratchBytes(n, g, tokens: tokens).reduce(0) { $0 + (($1 + 63) / 64 * 64) }
        }
    }
}
