import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// The fused router step computes what the unfused steps compute: every graph in `graphs/`,
/// compiled with and without `router-fusion` against the same random checkpoint, gives the same
/// outputs on both matrix backends. (`GraphParityTests` separately checks the fused plan against
/// the reference interpreter, which evaluates a `fused_router` as the chain it replaced.)
@Suite struct RouterFusionTests {
    @Test(arguments: SmallParams.graphFiles)
    func fusedAndUnfusedRoutersAgree(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 21)
        let unfused = try CompilerSession(
            CompileOptions(
                graphPath: RepoPaths.graphs + "/" + file, modelDirectory: model.directory.path,
                overrides: try SmallParams.overrides(for: file), verifyEachPass: true,
                disabledPasses: ["router-fusion"])
        ).boundGraph()
        let fusedCount = model.graph.nodes.filter { $0.op == .fused_router }.count
        #expect(fusedCount == unfused.nodes.filter { $0.op == .topk }.count, "\(file): every top-k router is fused")
        for (label, options) in Backends.configurations {
            let fused = model.executable(options)
            let plain = Executable(graph: unfused, weights: model.buffers, options: options)
            for t in [1, 7, 64] {
                let inputs = model.inputs(tokens: t, seed: 3)
                let a = try fused.run(inputs), b = try plain.run(inputs)
                for (name, x) in b {
                    let err = relativeError(try #require(a[name]), x)
                    #expect(err <= 1e-6, "graphs/\(file) \(label) tokens=\(t) output \(name): fused vs unfused \(err)")
                }
            }
        }
    }
}
