import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoETestSupport
import Testing

/// Checks moec against independent references:
/// - `Tests/Fixtures/<name>`: small checkpoints written by Hugging Face `transformers` with an
///   input `x.npy` and the MoE block's fp32 output `y.npy` (scripts/make_fixtures.py);
/// - `Tests/Fixtures/mechanisms/<name>`: routing mechanisms transformers lacks, with outputs
///   from a plain-numpy reference (scripts/mechanisms_reference.py);
/// - `Tests/Fixtures/decoder/<name>`: whole decoder layers (attention and MoE block) as
///   transformers runs them (scripts/make_decoder_fixtures.py), for `graphs/decoder`.
/// Each fixture's graph runs through a compiled plan written to disk and read back (1 and 2
/// threads), and through the reference interpreter; every output must match within 1e-4 of
/// its max |ref|.
@Suite struct ParityTests {
    static let tolerance = 1e-4

    struct Fixture: CustomStringConvertible, Sendable {
        let name: String
        let path: String
        let graph: String
        let overrides: [(name: String, value: String)]
        let inputs: [(name: String, file: String)]
        let outputs: [(name: String, file: String)]
        let family: String
        var description: String { name }
    }

    static func loadFixture(_ dir: String, name: String) -> Fixture? {
        guard let data = FileManager.default.contents(atPath: "\(dir)/meta.json"),
            let meta = try? JSON.parse(bytes: data)
        else { return nil }
        if let graph = meta["graph"]?.string {
            let pairs = { (key: String) -> [(String, String)] in
                (meta[key]?.object ?? JSONObject()).compactMap { k, v in v.string.map { (k, $0) } }
            }
            let overrides = (meta["set"]?.object ?? JSONObject()).map { k, v -> (String, String) in
                (k, v.string ?? (v.int.map(String.init) ?? JSON.format(v.double ?? 0)))
            }
            return Fixture(
                name: name, path: dir, graph: RepoPaths.path(graph), overrides: overrides,
                inputs: pairs("inputs"), outputs: pairs("outputs"),
                family: (graph as NSString).lastPathComponent.replacingOccurrences(of: ".moe", with: ""))
        }
        guard let family = meta["family"]?.string, let layer = meta["layer"]?.int else { return nil }
        let layout = meta["layout"]?.string ?? "hub"
        let base = layout.hasPrefix("stacked") ? "\(family)_stacked" : family
        return Fixture(
            name: name, path: dir, graph: RepoPaths.graphs + "/\(base).moe", overrides: [("layer", String(layer))],
            inputs: [("x", "x.npy")], outputs: [("y", "y.npy")], family: family)
    }

    static var fixtures: [Fixture] {
        var out: [Fixture] = []
        for sub in ["", "mechanisms", "decoder"] {
            let root = sub.isEmpty ? RepoPaths.fixtures : RepoPaths.fixtures + "/" + sub
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
            for name in names {
                if let f = loadFixture("\(root)/\(name)", name: sub.isEmpty ? name : "\(sub)/\(name)") { out.append(f) }
            }
        }
        return out
    }

    func inputs(_ f: Fixture) throws -> [String: HostTensor] {
        var out: [String: HostTensor] = [:]
        for (name, file) in f.inputs {
            let a = try NpyArray(path: f.path + "/" + file)
            switch a.storage {
            case .int32, .int64: out[name] = HostTensor(shape: a.shape, ints: try a.int32s())
            default: out[name] = HostTensor(shape: a.shape, floats: a.floats())
            }
        }
        return out
    }

    func check(_ f: Fixture, _ result: [String: HostTensor], via: String) throws {
        for (name, file) in f.outputs {
            let reference = try NpyArray(path: f.path + "/" + file)
            guard let got = result[name] else { Issue.record("\(f.name): no output '\(name)'"); continue }
            #expect(got.shape == reference.shape, "\(f.name) \(name) shape")
            let err = relativeError(got.floats, reference.floats())
            #expect(err <= Self.tolerance, "\(f.name) via \(via): \(name) max error / max |ref| = \(err)")
        }
    }

    func session(_ f: Fixture) -> CompilerSession {
        CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides, verifyEachPass: true))
    }

    @Test func everyFamilyAndMechanismHasFixtures() throws {
        let families = Set(Self.fixtures.map(\.family))
        #expect(families.isSuperset(of: ["mixtral", "qwen2_moe", "olmoe", "deepseek_v3", "switch"]), "\(families)")
        let mechanisms = try FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs + "/mechanisms")
            .filter { $0.hasSuffix(".moe") }.map { $0.replacingOccurrences(of: ".moe", with: "") }
        let missing = Set(mechanisms).subtracting(families)
        #expect(missing.isEmpty, "mechanism graphs without a reference fixture: \(missing.sorted())")
        // Every model family's graph is checked against transformers on a checkpoint of its own.
        // So is every whole decoder layer's (graphs/decoder).
        let checked = Set(Self.fixtures.map { String($0.graph.dropFirst(RepoPaths.graphs.count + 1)) })
        for sub in ["", "decoder/"] {
            let graphs = try FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs + "/" + sub).filter { $0.hasSuffix(".moe") }
            let unchecked = Set(graphs.map { sub + $0 }).subtracting(checked)
            #expect(unchecked.isEmpty, "graphs without a transformers fixture: \(unchecked.sorted())")
        }
    }

    @Test(arguments: fixtures)
    func compiledPlanMatchesReference(_ f: Fixture) throws {
        let x = try inputs(f)
        let dir = TemporaryDirectory()
        let planPath = try session(f).writePlan(to: dir.file("plan.json"))
        for threads in [1, 2] {
            let runner = try ModelRunner.load(planPath: planPath, options: ExecutionOptions(threads: threads))
            try check(f, try runner.run(x), via: "plan, \(threads) threads")
        }
    }

    /// A decoder layer decodes as transformers runs the whole sequence: the first few tokens
    /// as one run (a prompt), then a token at a time through the sequence's KV cache.
    @Test(arguments: fixtures.filter { $0.name.hasPrefix("decoder/") })
    func decoderLayerDecodesATokenAtATime(_ f: Fixture) throws {
        let x = try inputs(f)["x"]!
        let tokens = x.shape[0], width = x.shape[1]
        for threads in [1, 2] {
            let runner = try ModelRunner.compile(session(f), options: ExecutionOptions(threads: threads))
            let sequence = try runner.makeSequence(capacity: tokens)
            var rows: [Float] = []
            var at = 0
            for count in [3] + Array(repeating: 1, count: tokens - 3) {
                let piece = HostTensor(shape: [count, width], floats: Array(x.floats[at * width..<(at + count) * width]))
                rows += try runner.run(["x": piece], sequence: sequence)["y"]!.floats
                at += count
            }
            try check(f, ["y": HostTensor(shape: x.shape, floats: rows)], via: "a prompt of 3 tokens, then one at a time, \(threads) threads")
        }
    }

    @Test(arguments: fixtures)
    func referenceInterpreterMatchesReference(_ f: Fixture) throws {
        let s = session(f)
        let graph = try s.boundGraph()
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try s.checkpoint()))
        try check(f, try interpreter.run(try inputs(f)), via: "interpreter")
    }
}
