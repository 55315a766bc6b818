import Foundation
import MoEIO
import MoETestSupport
import Testing

/// compile → plan file → run → output, bench and --emit, through the binary.
@Suite struct PipelineTests {
    struct Fixture: CustomStringConvertible, Sendable {
        var name: String
        var description: String { name }
        var path: String { RepoPaths.fixtures + "/" + name }

        /// The graph for the fixture's family and layout, and the layer it holds.
        func graphAndLayer() throws -> (graph: String, layer: Int) {
            let meta = try JSONSerialization.jsonObject(with: Files.read(path + "/meta.json")) as! [String: Any]
            let family = meta["family"] as! String
            let layout = meta["layout"] as? String ?? "hub"
            let base = layout.hasPrefix("stacked") ? "\(family)_stacked" : family
            return (RepoPaths.graphs + "/\(base).moe", meta["layer"] as! Int)
        }
    }

    /// One per family, plus the sharded, stacked and half-precision layouts.
    static let fixtures: [Fixture] = [
        "mixtral-h24-f40-e8-k2-s3", // layer 1 of 2: needs --set layer=1
        "mixtral-h12-f20-e8-k2-t6-s13-shard3", // three shards and an index
        "mixtral-h16-f20-e8-k2-t13-s31-stacked",
        "mixtral-h20-f28-e8-k2-t11-s21-bf16",
        "qwen2_moe-h16-f16-e4-k3-t5-s43-norm",
        "olmoe-h10-f7-e5-k3-t1-s53",
        "deepseek_v3-h16-f8-e16-k4-g4-tg2-t13-s61",
        "switch-h16-f24-e4-cap2-t11-s71"
    ].map { Fixture(name: $0) }

    @Test(arguments: fixtures)
    func compileThenRunMatchesTransformers(_ f: Fixture) throws {
        let (graph, layer) = try f.graphAndLayer()
        let dir = TemporaryDirectory()
        let c = try Moec.run(["compile", graph, "--model", f.path, "--set", "layer=\(layer)", "-o", "plan.json"], in: dir.path)
        expectSuccess(c)
        #expect(c.stderr.contains("wrote plan.json"), "\(c)")
        let r = try Moec.run(["run", "plan.json", "--input", "x=\(f.path)/x.npy", "--output", "y=y.npy", "--threads", "2"], in: dir.path)
        expectSuccess(r)
        expectFolder(dir.path, holds: ["plan.json", "y.npy"], after: r)

        let y = try NpyArray(path: dir.file("y.npy"))
        let reference = try NpyArray(path: f.path + "/y.npy")
        #expect(y.shape == reference.shape)
        let error = relativeError(y.floats(), reference.floats())
        #expect(error <= 1e-4, "max |Δ| / max |y| = \(error)")
    }

    @Test func planIsAVersionedJSONFileThatNamesItsWeights() throws {
        let dir = TemporaryDirectory()
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        let plan = try JSONSerialization.jsonObject(with: Files.read(dir.file("p.json"))) as! [String: Any]
        #expect(plan["format"] as? String == "moec-plan")
        #expect(plan["version"] as? Int == 4)
        let files = (plan["model"] as? [String: Any])?["files"] as? [[String: Any]] ?? []
        #expect(files.map { ($0["path"] as? String ?? "").hasSuffix("mixtral-tiny/model.safetensors") } == [true])
    }

    @Test func compileWithoutOutputWritesThePlanInTheCurrentFolder() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example], in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("wrote mixtral.plan.json"), "\(r)")
        expectFolder(dir.path, holds: ["mixtral.plan.json"], after: r)
        // Without --model there is nothing to bind: an error, and no plan.
        try FileManager.default.removeItem(atPath: dir.file("mixtral.plan.json"))
        expectFailure(try Moec.run(["compile", Files.mixtralGraph], in: dir.path), ["this needs weights: pass --model DIR"])
        expectFolder(dir.path, holds: [])
    }

    @Test func runCompilesAGraphDirectlyAndChecksAReference() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy",
                "--output", "y=y.npy", "--check", "y=\(Files.example)/y_transformers.npy"
            ], in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("check y: max |Δ| / max |ref| = ") && r.stderr.contains("ok (tolerance 1e-04)"), "\(r)")
    }

    @Test func failedCheckExitsOne() throws {
        // A reference of the right shape but other values: the check must fail, loudly.
        let dir = TemporaryDirectory()
        let x = try NpyArray(path: Files.example + "/x.npy")
        try NpyArray(shape: [16, 32], storage: .float32(x.floats().map { $0 + 1 })).write(to: dir.file("wrong.npy"))
        let r = try Moec.run(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy",
                "--check", "y=wrong.npy"
            ], in: dir.path)
        expectFailure(r, ["check y: max |Δ| / max |ref| = ", "FAILED (tolerance 1e-04)"])
    }

    @Test func hugeCapacityDoesNotCrashRun() throws {
        // Any capacity of at least the token count drops nothing, so 10^6 and 3·10^9 (more
        // than Int32 holds) must agree exactly; 1 drops tokens, so it must differ.
        let fixture = RepoPaths.fixtures + "/switch-h16-f24-e4-cap2-t11-s71"
        let dir = TemporaryDirectory()
        let args = ["run", RepoPaths.graphs + "/switch.moe", "--model", fixture, "--input", "x=\(fixture)/x.npy"]
        expectSuccess(try Moec.run(args + ["--set", "expert_capacity=1000000", "--output", "y=small.npy"], in: dir.path))
        let r = try Moec.run(args + ["--set", "expert_capacity=3000000000", "--output", "y=huge.npy", "--check", "y=small.npy", "--tolerance", "0"], in: dir.path)
        expectSuccess(r)
        let one = try Moec.run(args + ["--set", "expert_capacity=1", "--output", "y=one.npy", "--check", "y=small.npy", "--tolerance", "0"], in: dir.path)
        expectFailure(one, [])
    }

    @Test func benchJSONLinesHaveTokensAndMedian() throws {
        let dir = TemporaryDirectory()
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        let r = try Moec.run(["bench", "p.json", "--tokens", "1,3,16", "--repeat", "2", "--warmup", "0", "--threads", "1", "--json"], in: dir.path)
        expectSuccess(r)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 3, "\(r)")
        var tokens: [Int] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let o = try #require(object, "not a JSON object: \(line)")
            tokens.append(o["tokens"] as? Int ?? -1)
            let median = try #require(o["median_ms"] as? Double, "no median_ms in \(line)")
            #expect(median > 0)
            #expect(o["runs"] as? Int == 2)
            #expect(o["threads"] as? Int == 1)
            #expect(o["graph"] as? String == "mixtral")
        }
        #expect(tokens == [1, 3, 16])
    }

    @Test func benchTableFromAGraph() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["bench", Files.mixtralGraph, "--model", Files.example, "--tokens", "2", "--repeat", "2", "--warmup", "0"], in: dir.path)
        expectSuccess(r)
        #expect(r.stdout.contains("tokens   median ms"), "\(r)")
        #expect(r.stdout.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("2 ") }, "\(r)")
    }

    // MARK: --emit

    @Test func emitAST() throws {
        let r = try Moec.run(["compile", Files.mixtralGraph, "--emit", "ast"], in: RepoPaths.root)
        expectSuccess(r)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("model mixtral") == true, "\(r)")
        #expect(lines.contains { $0.hasPrefix("param top_k = 2 from \"num_experts_per_tok\"") }, "\(r)")
        #expect(lines.contains { $0.hasPrefix("input x: [tokens, hidden]") }, "\(r)")
        #expect(lines.contains { $0.hasPrefix("  router: x |> linear(gate) |> softmax |> topk(top_k) |> renormalize") }, "\(r)")
        #expect(lines.contains { $0.hasPrefix("output y") }, "\(r)")
    }

    @Test func emitIRShowsTypesAndSourcePositions() throws {
        let r = try Moec.run(["compile", "graphs/mixtral.moe", "--emit", "ir"], in: RepoPaths.root)
        expectSuccess(r)
        #expect(r.stdout.hasPrefix("graph mixtral {"), "\(r)")
        #expect(r.stdout.contains("%x = input \"x\" : f32[tokens, 4096]"), "\(r)")
        #expect(r.stdout.range(of: #"= topk %\d+ \{k = 2\} : route\[tokens, 2 of 8\]"#, options: .regularExpression) != nil, "\(r)")
        #expect(r.stdout.contains("# mixtral.moe:27:44"), "\(r)")
        #expect(r.stdout.contains("output y = %y"), "\(r)")
    }

    @Test func emitIROptUsesConfigParams() throws {
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--emit", "ir-opt"], in: RepoPaths.root)
        expectSuccess(r)
        #expect(r.stdout.hasPrefix("graph mixtral {"), "\(r)")
        #expect(r.stdout.contains("f32[tokens, 32]"), "hidden comes from config.json\n\(r)")
        #expect(r.stdout.contains("moe_experts"), "\(r)")
        #expect(!r.stdout.contains("4096"), "\(r)")
    }

    @Test func emitPlanShowsWeightsScheduleAndMemory() throws {
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--emit", "plan"], in: RepoPaths.root)
        expectSuccess(r)
        let out = r.stdout
        #expect(out.hasPrefix("plan mixtral"), "\(r)")
        #expect(out.contains("(1 weight file)"), "\(r)")
        #expect(out.contains("@w1             f32[8, 64, 32]"), "\(r)")
        #expect(out.contains("schedule"), "\(r)")
        #expect(out.range(of: #"%y = moe_experts %x, %\d+, %w1, %w3, %w2"#, options: .regularExpression) != nil, "\(r)")
        #expect(out.contains("memory"), "\(r)")
        #expect(out.contains("outputs: y f32[tokens, 32]"), "\(r)")
        // --emit prints; it writes no plan.
        #expect(!r.stderr.contains("wrote"))
    }

    @Test func emitWritesNoFile() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        for stage in ["ast", "ir", "ir-opt", "plan"] {
            expectSuccess(try Moec.run(["compile", "g.moe", "--model", Files.example, "--emit", stage], in: dir.path))
        }
        expectFolder(dir.path, holds: ["g.moe"])
    }
}
