import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoETestSupport
import Testing

/// Checks moec against Hugging Face `transformers`: each folder in Tests/Fixtures is a small
/// checkpoint written by transformers with an input `x.npy` and the block's fp32 output
/// `y.npy` (see scripts/make_fixtures.py). The family's graph runs through a compiled plan
/// written to disk and read back, and through the reference interpreter; both must match
/// within 1e-4 of max |y|.
@Suite struct ParityTests {
    static let tolerance: Float = 1e-4

    struct Fixture: CustomStringConvertible {
        let name: String
        let path: String
        let family: String
        let layer: Int
        let layout: String
        var description: String { name }

        /// The graph in graphs/ that describes this fixture's block.
        var graph: String {
            let base = layout.hasPrefix("stacked") ? "\(family)_stacked" : family
            return RepoPaths.graphs + "/\(base).moe"
        }
    }

    static var fixtures: [Fixture] {
        let root = RepoPaths.fixtures
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
        return names.compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(root)/\(name)/meta.json"),
                  let meta = try? JSON.parse(bytes: data),
                  let family = meta["family"]?.string, let layer = meta["layer"]?.int else { return nil }
            return Fixture(name: name, path: "\(root)/\(name)", family: family, layer: layer,
                           layout: meta["layout"]?.string ?? "hub")
        }
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var maxDiff: Float = 0, maxRef: Float = 0
        for (x, y) in zip(a, b) {
            maxDiff = max(maxDiff, abs(x - y))
            maxRef = max(maxRef, abs(y))
        }
        return maxDiff / max(maxRef, 1e-30)
    }

    func load(_ f: Fixture) throws -> (x: HostTensor, y: [Float]) {
        let x = try NpyArray(path: f.path + "/x.npy")
        let y = try NpyArray(path: f.path + "/y.npy")
        return (HostTensor(shape: x.shape, floats: x.floats()), y.floats())
    }

    func session(_ f: Fixture) -> CompilerSession {
        CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: [("layer", String(f.layer))],
                                       verifyEachPass: true))
    }

    @Test func everyFamilyHasFixtures() {
        let families = Set(Self.fixtures.map(\.family))
        #expect(families.isSuperset(of: ["mixtral", "qwen2_moe", "olmoe", "deepseek_v3", "switch"]), "\(families)")
    }

    @Test(arguments: fixtures)
    func compiledPlanMatchesTransformers(_ f: Fixture) throws {
        let (x, y) = try load(f)
        let dir = TemporaryDirectory()
        let planPath = try session(f).writePlan(to: dir.file("plan.json"))
        for threads in [1, 2] {
            let runner = try ModelRunner.load(planPath: planPath, options: ExecutionOptions(threads: threads))
            let out = try runner.run(["x": x])
            let err = Self.relativeError(out["y"]!.floats, y)
            #expect(err <= Self.tolerance, "\(f.name) via plan, \(threads) threads: max error / max |y| = \(err)")
        }
    }

    @Test(arguments: fixtures)
    func referenceInterpreterMatchesTransformers(_ f: Fixture) throws {
        let (x, y) = try load(f)
        let s = session(f)
        let graph = try s.boundGraph()
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try s.checkpoint()))
        let out = try interpreter.run(["x": x])
        let err = Self.relativeError(out["y"]!.floats, y)
        #expect(err <= Self.tolerance, "\(f.name) via interpreter: max error / max |y| = \(err)")
    }
}
