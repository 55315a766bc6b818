import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIO

@Suite struct CheckpointTests {
    let dir = TemporaryDirectory("moeio-ckpt")

    /// Two shards and an index: experts in shard 1, the rest in shard 2.
    func makeSharded(indexText: String? = nil) throws -> String {
        let folder = dir.path
        try SafetensorsWriter.write(
            tensors: [
                .init(name: "model.layers.0.mlp.experts.0.w1", shape: [2, 2], values: [1, 2, 3, 4]),
                .init(name: "model.layers.0.mlp.experts.1.w1", shape: [2, 2], dtype: .bf16, values: [5, 6, 7, 8])
            ], to: folder + "/model-00001-of-00002.safetensors")
        try SafetensorsWriter.write(
            tensors: [
                .init(name: "model.layers.0.mlp.gate.weight", shape: [2], dtype: .f16, values: [0.5, -0.5]),
                .init(name: "model.embed_tokens.weight", shape: [1, 2], values: [9, 10])
            ], to: folder + "/model-00002-of-00002.safetensors")
        let index =
            indexText ?? """
                {"metadata": {"total_size": 40},
                 "weight_map": {
                  "model.layers.0.mlp.experts.0.w1": "model-00001-of-00002.safetensors",
                  "model.layers.0.mlp.experts.1.w1": "model-00001-of-00002.safetensors",
                  "model.layers.0.mlp.gate.weight": "model-00002-of-00002.safetensors",
                  "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}
                """
        try index.write(toFile: folder + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        return folder
    }

    @Test func opensAShardedFolder() throws {
        let c = try Checkpoint(path: try makeSharded())
        #expect(c.indexPath == dir.path + "/model.safetensors.index.json")
        #expect(c.shardPaths.map { ($0 as NSString).lastPathComponent } == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(c.indexMetadata["total_size"] == JSON(40))
        #expect(
            c.tensorNames == [
                "model.embed_tokens.weight", "model.layers.0.mlp.experts.0.w1",
                "model.layers.0.mlp.experts.1.w1", "model.layers.0.mlp.gate.weight"
            ])
        #expect(try c.floats("model.layers.0.mlp.experts.1.w1") == [5, 6, 7, 8])
        #expect(try c.floats("model.layers.0.mlp.gate.weight") == [0.5, -0.5])
        let info = try c.info("model.embed_tokens.weight")
        #expect(info?.shape == [1, 2] && info?.dtype == .f32)
        #expect(try c.info("nope") == nil)
        var out = [Float](repeating: 0, count: 4)
        try out.withUnsafeMutableBufferPointer { try c.copyFloats("model.layers.0.mlp.experts.0.w1", into: $0) }
        #expect(out == [1, 2, 3, 4])
        try c.validate()
        #expect(try c.fingerprints().count == 3)
    }

    @Test func opensASingleFileFolderAndAFileDirectly() throws {
        try SafetensorsWriter.write(tensors: [.init(name: "w", shape: [1], values: [3])], to: dir.file("model.safetensors"))
        let a = try Checkpoint(path: dir.path)
        #expect(a.indexPath == nil && a.tensorNames == ["w"])
        #expect(try a.floats("w") == [3])
        let b = try Checkpoint(path: dir.file("model.safetensors"))
        #expect(try b.floats("w") == [3])
    }

    @Test func findsTheOnlyWeightsUnderAnotherName() throws {
        try SafetensorsWriter.write(tensors: [.init(name: "w", shape: [1], values: [3])], to: dir.file("tiny-moe.safetensors"))
        #expect(try Checkpoint(path: dir.path).tensorNames == ["w"])
        try SafetensorsWriter.write(tensors: [.init(name: "v", shape: [1], values: [3])], to: dir.file("other.safetensors"))
        let e = weightError { _ = try Checkpoint(path: dir.path) }
        #expect(e?.message == "no model.safetensors or model.safetensors.index.json in this folder (found other.safetensors, tiny-moe.safetensors; name one directly)")
    }

    @Test func emptyFolderAndMissingPath() {
        var e = weightError { _ = try Checkpoint(path: dir.path) }
        #expect(e?.message.contains("no model.safetensors or model.safetensors.index.json in this folder (and no other .safetensors files)") == true)
        e = weightError { _ = try Checkpoint(path: dir.file("absent")) }
        #expect(e?.message == "no such file or folder")
    }

    @Test func missingTensorSuggestsCloseNames() throws {
        let c = try Checkpoint(path: try makeSharded())
        #expect(c.suggestions(for: "model.layers.0.mlp.experts.2.w1", limit: 2) == ["model.layers.0.mlp.experts.0.w1", "model.layers.0.mlp.experts.1.w1"])
        #expect(c.suggestions(for: "lm_head.weight", limit: 3) == [])
        let e = weightError { _ = try c.floats("model.layers.0.mlp.gate.weights") }
        #expect(e?.tensor == "model.layers.0.mlp.gate.weights")
        #expect(e?.message.contains("no such tensor in the checkpoint (4 tensors); did you mean 'model.layers.0.mlp.gate.weight'") == true)
    }

    @Test func missingShard() throws {
        let folder = try makeSharded()
        try FileManager.default.removeItem(atPath: folder + "/model-00002-of-00002.safetensors")
        let e = weightError { _ = try Checkpoint(path: folder) }
        #expect(e?.path == folder + "/model.safetensors.index.json")
        #expect(e?.tensor == "model.layers.0.mlp.gate.weight")
        #expect(e?.message == "shard 'model-00002-of-00002.safetensors' named in the weight_map does not exist (2 tensors are mapped to it)")
    }

    @Test func indexPointsAtATensorNotInItsShard() throws {
        let folder = try makeSharded(
            indexText: """
                {"weight_map": {
                  "model.layers.0.mlp.experts.0.w1": "model-00001-of-00002.safetensors",
                  "model.layers.0.mlp.gate.weight": "model-00001-of-00002.safetensors",
                  "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}
                """)
        let c = try Checkpoint(path: folder)
        // Shard 2 is consistent and usable; shard 1 is not.
        #expect(try c.floats("model.embed_tokens.weight") == [9, 10])
        let e = weightError { _ = try c.floats("model.layers.0.mlp.experts.0.w1") }
        #expect(e?.tensor == "model.layers.0.mlp.gate.weight")
        #expect(
            e?.description
                == "\(folder)/model.safetensors.index.json: tensor 'model.layers.0.mlp.gate.weight': the index puts it in shard 'model-00001-of-00002.safetensors', which has no such tensor (it has 2)"
        )
        let v = weightError { try c.validate() }
        #expect(v?.tensor == "model.layers.0.mlp.gate.weight")
    }

    @Test func brokenIndexFiles() throws {
        var e = weightError { _ = try Checkpoint(path: try makeSharded(indexText: "{\"weight_map\": {\n  \"a\": \"x\",,}}")) }
        #expect(e?.message.hasPrefix("index is not valid JSON at 2:12 (byte 28): expected a string key in object") == true)
        #expect(e?.byteOffset == 28)
        e = weightError { _ = try Checkpoint(path: try makeSharded(indexText: #"{"metadata": {}}"#)) }
        #expect(e?.message == "index has no \"weight_map\"")
        e = weightError { _ = try Checkpoint(path: try makeSharded(indexText: #"{"weight_map": []}"#)) }
        #expect(e?.message.hasPrefix("index \"weight_map\" is an array, expected an object") == true)
        e = weightError { _ = try Checkpoint(path: try makeSharded(indexText: #"{"weight_map": {"a": 3}}"#)) }
        #expect(e?.tensor == "a" && e?.message.hasPrefix("weight_map entry is a number") == true)
        e = weightError { _ = try Checkpoint(path: try makeSharded(indexText: "42")) }
        #expect(e?.message.hasPrefix("index is a number, expected an object") == true)
    }

    @Test func shardThatIsMissingAmongSeveralOrAFolder() throws {
        // A shard named with a path, that is not there.
        let folder = try makeSharded(
            indexText: """
                {"weight_map": {
                  "model.layers.0.mlp.gate.weight": "model-00002-of-00002.safetensors",
                  "lm_head.weight": "sub/model-00003-of-00003.safetensors"}}
                """)
        var e = weightError { _ = try Checkpoint(path: folder) }
        #expect(
            e?.description == "\(folder)/model.safetensors.index.json: tensor 'lm_head.weight': shard 'sub/model-00003-of-00003.safetensors' named in the weight_map does not exist"
        )
        // A shard that is a folder.
        _ = try makeSharded()
        try FileManager.default.removeItem(atPath: folder + "/model-00001-of-00002.safetensors")
        try FileManager.default.createDirectory(atPath: folder + "/model-00001-of-00002.safetensors", withIntermediateDirectories: false)
        e = weightError { _ = try Checkpoint(path: folder) }
        #expect(e?.tensor == "model.layers.0.mlp.experts.0.w1")
        #expect(e?.message == "shard 'model-00001-of-00002.safetensors' named in the weight_map is a folder, not a weight file (2 tensors are mapped to it)")
    }

    @Test func shardsOutsideTheModelFolderAreRefused() throws {
        for name in ["/etc/passwd", "../model-00002-of-00002.safetensors", "sub/../../x.safetensors"] {
            let folder = try makeSharded(
                indexText: """
                    {"weight_map": {
                      "model.embed_tokens.weight": "model-00002-of-00002.safetensors",
                      "lm_head.weight": "\(name)"}}
                    """)
            let e = weightError { _ = try Checkpoint(path: folder) }
            #expect(
                e?.description
                    == "\(folder)/model.safetensors.index.json: tensor 'lm_head.weight': weight_map names shard '\(name)' outside the model folder (shards are files of the folder)"
            )
        }
    }

    @Test func deepIndex() throws {
        let deep = String(repeating: "[", count: 100_000)
        let e = weightError { _ = try Checkpoint(path: try makeSharded(indexText: #"{"weight_map": "# + deep)) }
        // The object is level 1, so the 256th '[' (byte 15 + 255) is level 257.
        #expect(e?.message == "index is not valid JSON at 1:\(16 + 255) (byte \(15 + 255)): arrays and objects nested deeper than 256 levels")
        #expect(e?.byteOffset == 15 + 255)
    }

    @Test func brokenShardIsReportedWhenOpened() throws {
        let folder = try makeSharded()
        precondition(FileManager.default.createFile(atPath: folder + "/model-00001-of-00002.safetensors", contents: Data([9, 0, 0])))
        let c = try Checkpoint(path: folder) // shards are opened lazily
        let e = weightError { _ = try c.info("model.layers.0.mlp.experts.0.w1") }
        #expect(e?.path == folder + "/model-00001-of-00002.safetensors")
        #expect(e?.message.contains("too short") == true)
        #expect(try c.floats("model.embed_tokens.weight") == [9, 10])
    }

    @Test func concurrentReadersShareShards() throws {
        let c = try Checkpoint(path: try makeSharded())
        let names = c.tensorNames
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let name = names[i % names.count]
            #expect((try? c.floats(name))?.isEmpty == false)
        }
    }
}
