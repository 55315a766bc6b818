import Foundation
import MoEIO
import MoETestSupport
import Testing

/// Plans whose weights changed or vanished after compiling, and plan files that are broken:
/// a clear error, never wrong numbers, and no output file.
@Suite struct PlanFileTests {
    /// A folder with a private copy of the example checkpoint (model/) and a plan of it (p.json).
    static func compiled() throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        try Files.copy(Files.example, to: dir.file("model"))
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", "model", "-o", "p.json"], in: dir.path)
        expectSuccess(r)
        return dir
    }

    /// `run p.json` and `bench p.json` both fail with `messages`; no output is written.
    static func expectPlanRefused(
        _ dir: TemporaryDirectory, plan: String = "p.json", _ messages: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let before = folderEntries(dir.path)
        let r = try Moec.run(["run", plan, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path)
        expectFailure(r, messages, sourceLocation: sourceLocation)
        #expect(!r.stderr.contains("ran mixtral"), "\(r)", sourceLocation: sourceLocation)
        expectFolder(dir.path, holds: before, after: r, sourceLocation: sourceLocation)
        let b = try Moec.run(["bench", plan, "--tokens", "1", "--repeat", "1", "--json"], in: dir.path)
        expectFailure(b, messages, sourceLocation: sourceLocation)
        #expect(b.stdout.isEmpty, "\(b)", sourceLocation: sourceLocation)
    }

    static func weights(_ dir: TemporaryDirectory) -> String { dir.file("model/model.safetensors") }

    @Test func planRunsWhileWeightsAreUnchanged() throws {
        let dir = try Self.compiled()
        let r = try Moec.run(
            [
                "run", "p.json", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy",
                "--check", "y=\(Files.example)/y_transformers.npy"
            ], in: dir.path)
        expectSuccess(r)
    }

    @Test func touchedWeights() throws {
        let dir = try Self.compiled()
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(60)], ofItemAtPath: Self.weights(dir))
        try Self.expectPlanRefused(dir, ["model/model.safetensors: weight file was modified since the plan was compiled", "compile the graph again"])
    }

    @Test func rewrittenWeightsOfTheSameSize() throws {
        // New values, same header and size: only the modification time tells.
        let dir = try Self.compiled()
        var data = try Files.read(Self.weights(dir))
        data[data.count - 100] ^= 0xFF
        try Files.write(data, to: Self.weights(dir))
        try Self.expectPlanRefused(dir, ["model/model.safetensors: weight file was modified since the plan was compiled"])
    }

    @Test func rewrittenWeightsWithAnotherHeader() throws {
        // Same size, another header (a renamed tensor), and the old modification time: the header hash tells.
        let dir = try Self.compiled()
        let path = Self.weights(dir)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        var data = try Files.read(path)
        let needle = Data("experts.0.w1.weight".utf8), replacement = Data("experts.0.w9.weight".utf8)
        let range = try #require(data.range(of: needle))
        data.replaceSubrange(range, with: replacement)
        try Files.write(data, to: path)
        try FileManager.default.setAttributes([.modificationDate: attributes[.modificationDate]!], ofItemAtPath: path)
        try Self.expectPlanRefused(dir, ["weight file changed since the plan was compiled: its header is different"])
    }

    @Test func truncatedWeights() throws {
        let dir = try Self.compiled()
        try Files.write(try Files.read(Self.weights(dir)).prefix(100_000), to: Self.weights(dir))
        try Self.expectPlanRefused(dir, ["weight file changed since the plan was compiled: size was 213080 bytes, now 100000"])
    }

    @Test func vanishedWeights() throws {
        let dir = try Self.compiled()
        try FileManager.default.removeItem(atPath: Self.weights(dir))
        try Self.expectPlanRefused(dir, ["model/model.safetensors: weight file is missing", "it existed when the plan was compiled"])
        try FileManager.default.removeItem(atPath: dir.file("model"))
        try Self.expectPlanRefused(dir, ["model/model.safetensors: weight file is missing"])
    }

    @Test func vanishedShard() throws {
        let dir = TemporaryDirectory()
        try Files.copy(RepoPaths.fixtures + "/mixtral-h12-f20-e8-k2-t6-s13-shard3", to: dir.file("model"))
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", "model", "--set", "layer=1", "-o", "p.json"], in: dir.path))
        let shard = try #require(FileManager.default.contentsOfDirectory(atPath: dir.file("model")).filter { $0.hasSuffix(".safetensors") }.sorted().last)
        try FileManager.default.removeItem(atPath: dir.file("model/" + shard))
        let r = try Moec.run(["run", "p.json", "--input", "x=model/x.npy", "--output", "y=y.npy"], in: dir.path)
        expectFailure(r, ["model/\(shard): weight file is missing"])
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
    }

    @Test func weightFilesAddedAfterCompiling() throws {
        // The plan fingerprints model/model.safetensors. Adding an index that points at other
        // weights makes the folder resolve to them: the plan must refuse, not compute with them.
        let dir = try Self.compiled()
        let doubled = try Files.exampleTensors().map { t in
            var t = t
            t.values = t.values.map { $0 * 2 }
            return t
        }
        try SafetensorsWriter.write(tensors: doubled, to: dir.file("model/other.safetensors"))
        // A weight file nothing reads changes nothing.
        expectSuccess(
            try Moec.run(
                [
                    "run", "p.json", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy",
                    "--check", "y=\(Files.example)/y_transformers.npy"
                ], in: dir.path))
        try FileManager.default.removeItem(atPath: dir.file("y.npy"))
        let map = Dictionary(uniqueKeysWithValues: doubled.map { ($0.name, "other.safetensors") })
        try Files.write(try JSONSerialization.data(withJSONObject: ["weight_map": map]), to: dir.file("model/model.safetensors.index.json"))
        try Self.expectPlanRefused(
            dir,
            [
                "/model: the model now reads model.safetensors.index.json, other.safetensors instead of model.safetensors, which the plan was compiled against; compile the graph again"
            ])
    }

    @Test func standardWeightFileAddedAfterCompiling() throws {
        // A folder whose only weight file has another name; a model.safetensors added later
        // takes its place when the folder is opened.
        let dir = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("model"), withIntermediateDirectories: false)
        try Files.copy(Files.example + "/model.safetensors", to: dir.file("model/weights.safetensors"))
        try Files.copy(Files.example + "/config.json", to: dir.file("model/config.json"))
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", "model", "-o", "p.json"], in: dir.path))
        try Files.copy(Files.example + "/model.safetensors", to: dir.file("model/model.safetensors"))
        try Self.expectPlanRefused(dir, ["the model now reads model.safetensors instead of weights.safetensors", "compile the graph again"])
    }

    @Test func garbagePlans() throws {
        let dir = try Self.compiled()
        let plan = try Files.read(dir.file("p.json"))
        try Files.write("garbage\n", to: dir.file("garbage.json"))
        try Self.expectPlanRefused(dir, plan: "garbage.json", ["garbage.json: not a plan: invalid JSON at 1:1"])
        try Files.write(plan.prefix(2000), to: dir.file("cut.json"))
        try Self.expectPlanRefused(dir, plan: "cut.json", ["cut.json: not a plan: invalid JSON at "])
        try Files.write(Data(), to: dir.file("empty.json"))
        try Self.expectPlanRefused(dir, plan: "empty.json", ["empty.json: not a plan: invalid JSON"])
        try Files.write("{}", to: dir.file("object.json"))
        try Self.expectPlanRefused(dir, plan: "object.json", ["object.json: not a moec plan (no \"format\": \"moec-plan\")"])
        try Files.write(try Files.read(Files.example + "/x.npy"), to: dir.file("binary.json"))
        try Self.expectPlanRefused(dir, plan: "binary.json", ["binary.json: not a plan"])
        try Self.expectPlanRefused(dir, plan: "nothere.json", ["nothere.json: no such file"])
        try Self.expectPlanRefused(dir, plan: "model", ["cannot read 'model': it is a folder, not a plan"])
        try Self.expectPlanRefused(dir, plan: "/dev/zero", ["cannot read '/dev/zero': not a regular file"])
    }

    @Test func planFromAFutureVersion() throws {
        let dir = try Self.compiled()
        var plan = try JSONSerialization.jsonObject(with: Files.read(dir.file("p.json"))) as! [String: Any]
        plan["version"] = 5
        try Files.write(try JSONSerialization.data(withJSONObject: plan), to: dir.file("future.json"))
        try Self.expectPlanRefused(
            dir, plan: "future.json", ["future.json: plan format version 5 is not supported (this moec reads versions 3 to 4); compile the graph again"])
        // A version 1 plan (before the expert passes' marks) is refused, not run unfused.
        plan["version"] = 1
        try Files.write(try JSONSerialization.data(withJSONObject: plan), to: dir.file("old.json"))
        try Self.expectPlanRefused(dir, plan: "old.json", ["old.json: plan format version 1 is not supported (this moec reads versions 3 to 4); compile the graph again"])
    }

    @Test func tamperedPlanGraph() throws {
        // A plan edited by hand so that its graph no longer type-checks.
        let dir = try Self.compiled()
        let text = try String(contentsOfFile: dir.file("p.json"), encoding: .utf8)
        try #require(text.contains("\"route_slots\": 2"))
        try Files.write(text.replacingOccurrences(of: "\"route_slots\": 2", with: "\"route_slots\": 3"), to: dir.file("tampered.json"))
        try Self.expectPlanRefused(dir, plan: "tampered.json", ["tampered.json: the plan's graph is invalid: "])
        var plan = try JSONSerialization.jsonObject(with: Files.read(dir.file("p.json"))) as! [String: Any]
        plan["graph"] = nil
        try Files.write(try JSONSerialization.data(withJSONObject: plan), to: dir.file("nograph.json"))
        try Self.expectPlanRefused(dir, plan: "nograph.json", ["nograph.json: plan has no graph"])
    }

    @Test func planWithShapesTooLargeToAddress() throws {
        // hidden 32 → 2^50 and ffn 64 → 2^20 everywhere, consistently: the graph type-checks,
        // but w1 [8, 2^20, 2^50] has more elements than an Int counts.
        let dir = try Self.compiled()
        var plan = try JSONSerialization.jsonObject(with: Files.read(dir.file("p.json"))) as! [String: Any]
        var graph = plan["graph"] as! [String: Any]
        func grow(_ shape: [Any]) -> [Any] { shape.map { ($0 as? Int) == 32 ? 1 << 50 : ($0 as? Int) == 64 ? 1 << 20 : $0 } }
        graph["weights"] = (graph["weights"] as! [[String: Any]]).map { w in
            var w = w; w["shape"] = grow(w["shape"] as! [Any]); return w
        }
        graph["nodes"] = (graph["nodes"] as! [[String: Any]]).map { n in
            var n = n
            if var t = n["type"] as? [String: Any], let shape = t["shape"] as? [Any] { t["shape"] = grow(shape); n["type"] = t }
            return n
        }
        plan["graph"] = graph
        try Files.write(try JSONSerialization.data(withJSONObject: plan), to: dir.file("huge.json"))
        try Self.expectPlanRefused(
            dir, plan: "huge.json", ["huge.json: the plan's graph is invalid: weight @w1: the shape [8, 1048576, 1125899906842624] has more elements than moec can address"])
    }

    /// Hand-edited memory plans and pass marks: a last reader before a read, an output freed
    /// early, a list of the wrong length, and a mark that is not a flag are all refused, never
    /// run with a buffer overwritten too soon.
    @Test func tamperedMemoryPlanOrMarks() throws {
        let dir = try Self.compiled()
        let plan = try JSONSerialization.jsonObject(with: Files.read(dir.file("p.json"))) as! [String: Any]
        let graph = plan["graph"] as! [String: Any]
        let last = try #require(graph["last_readers"] as? [Int])
        let nodes = graph["nodes"] as! [[String: Any]]
        try #require(last.count == nodes.count)
        func write(_ name: String, _ edit: (inout [String: Any]) -> Void) throws {
            var g = graph
            edit(&g)
            var p = plan
            p["graph"] = g
            try Files.write(try JSONSerialization.data(withJSONObject: p), to: dir.file(name))
        }
        // The input x (node 0) freed right after it is computed, though later nodes read it.
        try write("early.json") { $0["last_readers"] = [0] + last.dropFirst() }
        try Self.expectPlanRefused(dir, plan: "early.json", ["early.json: the plan's graph is invalid: ", "reads %x, whose memory the plan frees after step 0"])
        let output = try #require(((graph["outputs"] as! [[String: Any]]).first)?["value"] as? Int)
        try write("output.json") { g in
            var l = last; l[output] = output; g["last_readers"] = l
        }
        try Self.expectPlanRefused(dir, plan: "output.json", ["must live to the end of the run, but the memory plan frees it after step \(output)"])
        try write("short.json") { $0["last_readers"] = Array(last.dropLast()) }
        try Self.expectPlanRefused(dir, plan: "short.json", ["short.json: malformed graph: last_readers must hold one node index per node (\(nodes.count))"])
        try write("flag.json") { g in
            g["nodes"] = nodes.map { n in
                guard n["op"] as? String == "moe_experts" else { return n }
                var n = n, attrs = n["attrs"] as! [String: Any]
                attrs["permute"] = "yes"
                n["attrs"] = attrs
                return n
            }
        }
        try Self.expectPlanRefused(dir, plan: "flag.json", ["moe_experts attribute 'permute' must be true or false"])
    }
}
