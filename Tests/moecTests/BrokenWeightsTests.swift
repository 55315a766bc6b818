import Foundation
import MoEIO
import MoETestSupport
import Testing

/// Broken checkpoints: each must name the file (and the tensor and byte offset where one
/// applies), exit 1, and leave neither a plan nor an output behind.
@Suite struct BrokenWeightsTests {
    /// A folder with the mixtral graph as g.moe and the example checkpoint as model/, whose
    /// model.safetensors is `weights`.
    static func setUp(weights: Data) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        try Files.model(dir.path, weights: weights)
        return dir
    }

    /// Both `compile -o` and `run --output` fail with `messages` and write nothing.
    static func expectBothFail(_ dir: TemporaryDirectory, _ messages: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = folderEntries(dir.path)
        let c = try Moec.run(["compile", "g.moe", "--model", "model", "-o", "out.plan"], in: dir.path)
        expectFailure(c, messages, sourceLocation: sourceLocation)
        expectFolder(dir.path, holds: before, after: c, sourceLocation: sourceLocation)
        let r = try Moec.run(["run", "g.moe", "--model", "model", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path)
        expectFailure(r, messages, sourceLocation: sourceLocation)
        expectFolder(dir.path, holds: before, after: r, sourceLocation: sourceLocation)
        let b = try Moec.run(["bench", "g.moe", "--model", "model", "--tokens", "1", "--repeat", "1", "--json"], in: dir.path)
        expectFailure(b, messages, sourceLocation: sourceLocation)
        #expect(b.stdout.isEmpty, "\(b)", sourceLocation: sourceLocation)
    }

    static var original: Data { get throws { try Files.read(Files.example + "/model.safetensors") } }

    @Test func truncatedInTheData() throws {
        let dir = try Self.setUp(weights: try Self.original.prefix(150_000))
        try Self.expectBothFail(dir, ["model/model.safetensors: tensor 'model.layers.0.", "end beyond the data section (146200 bytes, data begins at byte 3800)"])
    }

    @Test func truncatedInTheHeader() throws {
        let dir = try Self.setUp(weights: try Self.original.prefix(1000))
        try Self.expectBothFail(dir, ["model/model.safetensors: header length 3792 is larger than the file (1000 bytes"])
    }

    @Test func truncatedInTheLengthAndEmpty() throws {
        let dir = try Self.setUp(weights: try Self.original.prefix(5))
        try Self.expectBothFail(dir, ["model/model.safetensors: file is 5 bytes, too short to hold the 8-byte header length"])
        try Files.write(Data(), to: dir.file("model/model.safetensors"))
        try Self.expectBothFail(dir, ["model/model.safetensors: file is 0 bytes"])
    }

    @Test func headerLengthBiggerThanTheFile() throws {
        func withLength(_ n: UInt64) throws -> Data {
            var d = try Self.original
            withUnsafeBytes(of: n.littleEndian) { d.replaceSubrange(0..<8, with: $0) }
            return d
        }
        let size = try Self.original.count
        let dir = try Self.setUp(weights: try withLength(UInt64(size)))
        try Self.expectBothFail(dir, ["model/model.safetensors: header length \(size) is larger than the file (\(size) bytes"])
        try Files.write(try withLength(1_000_000_000_000), to: dir.file("model/model.safetensors"))
        try Self.expectBothFail(dir, ["header length 1000000000000 is absurd"])
    }

    @Test func headerLiesAboutOffsets() throws {
        let weights = try Files.editedSafetensors(Files.example + "/model.safetensors") { h in
            var gate = h[Tensor.gate] as! [String: Any]
            let o = gate["data_offsets"] as! [Int]
            gate["data_offsets"] = [o[0] + 100_000_000, o[1] + 100_000_000]
            h[Tensor.gate] = gate
        }
        let dir = try Self.setUp(weights: weights)
        try Self.expectBothFail(dir, ["tensor '\(Tensor.gate)': data_offsets [", "end beyond the data section", "data begins at byte"])
    }

    @Test func headerLiesWithOverlappingTensors() throws {
        let weights = try Files.editedSafetensors(Files.example + "/model.safetensors") { h in
            var gate = h[Tensor.gate] as! [String: Any]
            gate["data_offsets"] = [0, 1024]
            h[Tensor.gate] = gate
        }
        let dir = try Self.setUp(weights: weights)
        try Self.expectBothFail(dir, ["model/model.safetensors: tensor '", "overlap tensor '", "(starting at byte "])
    }

    @Test func headerLiesAboutDtype() throws {
        let weights = try Files.editedSafetensors(Files.example + "/model.safetensors") { h in
            var gate = h[Tensor.gate] as! [String: Any]
            gate["dtype"] = "F16"
            h[Tensor.gate] = gate
        }
        let dir = try Self.setUp(weights: weights)
        try Self.expectBothFail(dir, ["tensor '\(Tensor.gate)': data_offsets [", "hold 1024 bytes but shape [8, 32] of F16 needs 256 × 2 = 512 bytes"])
    }

    @Test func headerLiesAboutShape() throws {
        let weights = try Files.editedSafetensors(Files.example + "/model.safetensors") { h in
            var w = h[Tensor.expert(2, "w3")] as! [String: Any]
            w["shape"] = [64, 33]
            h[Tensor.expert(2, "w3")] = w
        }
        let dir = try Self.setUp(weights: weights)
        try Self.expectBothFail(dir, ["tensor '\(Tensor.expert(2, "w3"))': data_offsets [", "shape [64, 33] of F32 needs 2112 × 4 = 8448 bytes"])
    }

    @Test func headerWithAnUnknownDtypeOrBrokenJSON() throws {
        let unknown = try Files.editedSafetensors(Files.example + "/model.safetensors") { h in
            var gate = h[Tensor.gate] as! [String: Any]
            gate["dtype"] = "Q4_K"
            h[Tensor.gate] = gate
        }
        let dir = try Self.setUp(weights: unknown)
        try Self.expectBothFail(dir, ["tensor '\(Tensor.gate)': unknown dtype \"Q4_K\"", "(header entry at byte "])

        var garbled = try Self.original
        garbled.replaceSubrange(200..<210, with: Data("!!!!!!!!!!".utf8))
        try Files.write(garbled, to: dir.file("model/model.safetensors"))
        try Self.expectBothFail(dir, ["model/model.safetensors: header is not valid JSON at byte "])
    }

    @Test func missingTensorPointsAtTheDeclaration() throws {
        let missing = Tensor.expert(5, "w2")
        let tensors = try Files.exampleTensors().map { t in
            var t = t
            if t.name == missing { t.name = Tensor.prefix + "experts.5.w2_renamed.weight" }
            return t
        }
        let dir = try Self.setUp(weights: try SafetensorsWriter.encode(tensors: tensors))
        try Self.expectBothFail(
            dir,
            [
                "g.moe:23:3: error: weight 'w2': the checkpoint has no tensor '\(missing)'",
                "w2:   [num_experts, hidden, ffn]  = \"experts.{e}.w2.weight\"",
                "note: the checkpoint has similar tensors: '\(Tensor.prefix)experts.0.w2.weight'"
            ])
    }

    @Test func wrongShapeNamesTensorShapesAndDeclaration() throws {
        let bad = Tensor.expert(3, "w1")
        let tensors = try Files.exampleTensors().map { t in
            var t = t
            if t.name == bad { t.shape = [64, 31]; t.values = Array(t.values.prefix(64 * 31)) }
            return t
        }
        let dir = try Self.setUp(weights: try SafetensorsWriter.encode(tensors: tensors))
        try Self.expectBothFail(
            dir,
            [
                "g.moe:21:3: error: tensor '\(bad)' has shape [64, 31], but weight 'w1' expects [64, 32]",
                "note: 'w1' is declared [8, 64, 32] and read per expert ({e}), so each tensor must be [64, 32]"
            ])
    }

    @Test func transposedTensorGetsAHint() throws {
        let tensors = try Files.exampleTensors().map { t in
            var t = t
            if t.name == Tensor.gate { t.shape = [32, 8] }
            return t
        }
        let dir = try Self.setUp(weights: try SafetensorsWriter.encode(tensors: tensors))
        try Self.expectBothFail(
            dir,
            [
                "g.moe:20:3: error: tensor '\(Tensor.gate)' has shape [32, 8], but weight 'gate' expects [8, 32]",
                "looks transposed"
            ])
    }

    @Test func shardedCheckpointWithAMissingShard() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        try Files.copy(RepoPaths.fixtures + "/mixtral-h12-f20-e8-k2-t6-s13-shard3", to: dir.file("model"))
        let shards = try FileManager.default.contentsOfDirectory(atPath: dir.file("model")).filter { $0.hasSuffix(".safetensors") }.sorted()
        try #require(shards.count == 3)
        try FileManager.default.removeItem(atPath: dir.file("model/" + shards[1]))
        let before = folderEntries(dir.path)
        let c = try Moec.run(["compile", "g.moe", "--model", "model", "--set", "layer=1", "-o", "out.plan"], in: dir.path)
        expectFailure(c, ["model/model.safetensors.index.json", "shard '\(shards[1])' named in the weight_map does not exist"])
        expectFolder(dir.path, holds: before, after: c)
    }

    @Test func folderWithoutWeightsOrWithoutConfig() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        try FileManager.default.createDirectory(atPath: dir.file("model"), withIntermediateDirectories: false)
        try Files.copy(Files.example + "/config.json", to: dir.file("model/config.json"))
        try Self.expectBothFail(dir, ["model: no model.safetensors or model.safetensors.index.json in this folder"])

        try FileManager.default.removeItem(atPath: dir.file("model/config.json"))
        try Files.copy(Files.example + "/model.safetensors", to: dir.file("model/model.safetensors"))
        try Self.expectBothFail(dir, ["model/config.json: no such file (a model folder needs a config.json)"])
    }

    @Test func modelThatIsNotAFolder() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        let c = try Moec.run(["compile", "g.moe", "--model", "nowhere", "-o", "out.plan"], in: dir.path)
        expectFailure(c, ["--model nowhere: no such folder"])
        try Files.copy(Files.example + "/model.safetensors", to: dir.file("model.safetensors"))
        let f = try Moec.run(["run", "g.moe", "--model", "model.safetensors", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path)
        expectFailure(f, ["--model model.safetensors: not a folder"])
        expectFolder(dir.path, holds: ["g.moe", "model.safetensors"])
    }
}
