import Foundation
import MoEBasics
import MoECompiler
import MoEIR
import MoEPasses
import MoETestSupport
import Testing

/// `router-score-exposure`: off by default; when enabled, each probe's router scores become
/// outputs before `memory-planning`, so the memory plan keeps them to the end of the run.
@Suite struct RouterScoreExposureTests {
    static func session(_ file: String, enabled: Set<String> = []) -> CompilerSession {
        CompilerSession(
            CompileOptions(
                graphPath: RepoPaths.graphs + "/" + file, overrides: PassTests.small[file] ?? [],
                verifyEachPass: true, enabledPasses: enabled))
    }

    @Test func isOptionalAndRunsJustBeforeMemoryPlanning() {
        let order = Pipeline.passes.map { type(of: $0).name }
        #expect(Pipeline.optionalNames == ["router-score-exposure"])
        #expect(!Pipeline.names.contains("router-score-exposure"))
        #expect(Array(order.suffix(2)) == ["router-score-exposure", "memory-planning"])
    }

    @Test func offByDefault() throws {
        let g = try Self.session("mixtral.moe").optimize()
        #expect(g.outputs.map(\.name) == ["y"])
        #expect(!IRPrinter().print(g).contains("#router-scores"))
    }

    @Test(arguments: ["mixtral.moe", "deepseek_v3.moe", "mechanisms/multihop.moe"])
    func exposesEveryHopsScoresAndTheMemoryPlanKeepsThem(_ file: String) throws {
        let g = try Self.session(file, enabled: ["router-score-exposure"]).optimize()
        let probes = RouterProbe.find(in: g)
        var expected: [(String, ValueID)] = []
        for (l, p) in probes.enumerated() {
            for (h, hop) in p.hops.enumerated() { expected.append((RouterProbe.outputName(layer: l, hop: h), try #require(hop.scores))) }
        }
        let exposed = g.outputs.filter { RouterProbe.isScoresOutput($0.name) }
        #expect(!expected.isEmpty)
        #expect(exposed.map(\.name) == expected.map(\.0) && exposed.map(\.value) == expected.map(\.1), "\(file)")
        let lastReaders = try #require(g.lastReaders)
        for (_, id) in exposed { #expect(lastReaders[id.index] == g.nodes.count, "\(file): \(id) freed before the end") }
        // `--emit ir-opt` shows them.
        let text = try Self.session(file, enabled: ["router-score-exposure"]).emit(.irOpt)
        for (name, _) in expected { #expect(text.contains("  output \(name) = %"), "\(file)\n\(text)") }
    }

    /// A plan's graph (optimised without the pass) gets the same outputs and memory plan as a
    /// compilation with the pass enabled; exposing twice adds nothing.
    @Test func onAPlanGraphMatchesTheCompiledPipeline() throws {
        let plain = try Self.session("deepseek_v3.moe").optimize()
        let compiled = try Self.session("deepseek_v3.moe", enabled: ["router-score-exposure"]).optimize()
        let late = try Pipeline.exposingRouterScores(plain)
        #expect(late.outputs.map(\.name) == compiled.outputs.map(\.name))
        #expect(late.outputs.map(\.value) == compiled.outputs.map(\.value))
        #expect(late.lastReaders != nil && late.lastReaders == compiled.lastReaders)
        let twice = try Pipeline.exposingRouterScores(late)
        #expect(twice.outputs.map(\.name) == late.outputs.map(\.name) && twice.lastReaders == late.lastReaders)
        // Without memory planning at compile time, none is made afterwards.
        let unplanned = try CompilerSession(
            CompileOptions(
                graphPath: RepoPaths.graphs + "/deepseek_v3.moe", overrides: PassTests.small["deepseek_v3.moe"]!,
                disabledPasses: ["memory-planning"])
        ).optimize()
        #expect(try Pipeline.exposingRouterScores(unplanned).lastReaders == nil)
    }

    /// The pass drops a stale memory plan when it adds outputs, and leaves a graph without
    /// router scores (hash routing) alone.
    @Test func dropsAStaleMemoryPlanOnlyWhenItAddsOutputs() throws {
        let planned = try Self.session("mixtral.moe").optimize()
        #expect(planned.lastReaders != nil)
        #expect(try RouterScoreExposure().run(planned).lastReaders == nil)
        let hashed = try Self.session("mechanisms/hash_router.moe").optimize()
        #expect(RouterProbe.find(in: hashed).allSatisfy { $0.hops.allSatisfy { $0.scores == nil } })
        let same = try RouterScoreExposure().run(hashed)
        #expect(same.outputs.map(\.name) == hashed.outputs.map(\.name) && same.lastReaders == hashed.lastReaders)
    }
}
