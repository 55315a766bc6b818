import Foundation
import MoEIO
import MoETestSupport
import Testing

/// GPTQ and AWQ checkpoints (Tests/Fixtures/gptq, packed by scripts/make_gptq_fixtures.py as
/// AutoGPTQ and AutoAWQ pack): a quantized linear `X.weight` is there though only `X.qweight`,
/// `X.qzeros`, `X.scales` are stored; its values, read as floats or as int4 rows, are the
/// script's dequantized weights bit for bit; act-order `g_idx` and configs moec cannot keep as
/// int4 groups are errors naming the tensor or the config key.
@Suite struct Int4CheckpointTests {
    static let folder = RepoPaths.fixtures + "/gptq"
    static let w1 = "model.layers.0.block_sparse_moe.experts.0.w1.weight"

    @Test(arguments: [("mixtral-gptq-g32", 32), ("mixtral-gptq-g128-sym", 128), ("mixtral-awq-g64", 64)])
    func linearsReadAsTheirDequantizedValues(_ name: String, _ group: Int) throws {
        let checkpoint = try Checkpoint(path: Self.folder + "/" + name)
        let reference = try NpyArray(path: Self.folder + "/\(name)/w1.npy")
        #expect(checkpoint.int4Quantization?.group == group)
        #expect(checkpoint.contains(Self.w1))
        #expect(!checkpoint.contains("model.layers.0.block_sparse_moe.gate.qweight"))
        let info = try #require(try checkpoint.info(Self.w1))
        #expect(info.shape == reference.shape && info.int4Group == group)
        // The router is stored as it is (fp16), not as a quantized linear.
        #expect(try checkpoint.info("model.layers.0.block_sparse_moe.gate.weight")?.int4Group == nil)
        let want = reference.floats()
        let floats = try checkpoint.floats(Self.w1)
        #expect(floats.map(\.bitPattern) == want.map(\.bitPattern), "\(name): dequantized w1 differs from the script's")
        // A range across rows reads the same values.
        let k = info.shape[1], range = (k / 2)..<(3 * k + 5)
        var part = [Float](repeating: 0, count: range.count)
        try part.withUnsafeMutableBufferPointer { try checkpoint.copyFloats(Self.w1, elements: range, into: $0) }
        #expect(part == Array(want[range]))
        // As int4 rows: groups of `group` values, each fma(u, S, M), u in 0…15.
        let rows = info.shape[0], rowBytes = Int4Rows.rowBytes(k: k, group: group)
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 16)
        defer { bytes.deallocate() }
        try checkpoint.copyInt4Rows(Self.w1, rows: 0..<rows, into: bytes)
        var fromRows = [Float](repeating: .nan, count: rows * k)
        var groups = 0
        for r in 0..<rows {
            Int4Rows.forEachGroup(row: bytes + r * rowBytes, k: k, group: group) { gi, s, m, u in
                groups += 1
                for j in 0..<group {
                    #expect(u[j] < 16)
                    fromRows[r * k + gi * group + j] = m.addingProduct(Float(u[j]), s)
                }
            }
        }
        #expect(groups == rows * k / group)
        #expect(fromRows.map(\.bitPattern) == want.map(\.bitPattern))
    }

    /// Shards may split one linear's tensors between files: each is read from its own shard.
    @Test func linearSplitAcrossShards() throws {
        let source = Self.folder + "/mixtral-gptq-g32"
        let file = try SafetensorsFile(path: source + "/model.safetensors")
        let dir = TemporaryDirectory()
        var shards: [(header: [String], data: [UInt8])] = [([], []), ([], [])]
        var map: [String] = []
        for (i, name) in file.tensorNames.enumerated() {
            let t = try file.info(name)
            let bytes = try file.withBytes(name) { Array($0) }
            let s = i % 2, at = shards[s].data.count
            shards[s].header.append(#""\#(name)": {"dtype": "\#(t.dtype.rawValue)", "shape": \#(t.shape), "data_offsets": [\#(at), \#(at + bytes.count)]}"#)
            shards[s].data += bytes
            map.append(#""\#(name)": "model-0000\#(s + 1)-of-00002.safetensors""#)
        }
        for (s, shard) in shards.enumerated() {
            let data = RawSafetensors.bytes(header: "{" + shard.header.joined(separator: ", ") + "}", data: shard.data)
            RawSafetensors.write(data, to: dir.file("model-0000\(s + 1)-of-00002.safetensors"))
        }
        try ("{\"metadata\": {}, \"weight_map\": {" + map.joined(separator: ", ") + "}}").write(
            toFile: dir.file("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: source + "/config.json", toPath: dir.file("config.json"))
        let checkpoint = try Checkpoint(path: dir.path)
        #expect(checkpoint.shardPaths.count == 2)
        let prefix = "model.layers.0.block_sparse_moe.experts.0.w1."
        let names = file.tensorNames
        let parity = Set(["qweight", "qzeros", "scales"].compactMap { names.firstIndex(of: prefix + $0).map { $0 % 2 } })
        #expect(parity.count == 2, "the linear's tensors are in both shards")
        let want = try NpyArray(path: source + "/w1.npy").floats()
        #expect(try checkpoint.floats(Self.w1).map(\.bitPattern) == want.map(\.bitPattern))
    }

    /// An act-order checkpoint (desc_act: g_idx follows a permutation of the inputs) is refused
    /// when its linear is first described: the error names the g_idx tensor and the byte of its
    /// first entry that is not i / g.
    @Test func actOrderIsAnErrorAtTheFirstOffendingEntry() throws {
        let path = Self.folder + "/mixtral-gptq-actorder"
        let checkpoint = try Checkpoint(path: path)
        let gIdxName = "model.layers.0.block_sparse_moe.experts.0.w1.g_idx"
        let file = try SafetensorsFile(path: path + "/model.safetensors")
        let gIdx = try file.floats(gIdxName).map { Int($0) }
        let first = try #require(gIdx.indices.first { gIdx[$0] != $0 / 32 })
        let byte = try file.info(gIdxName).byteRange.lowerBound + 4 * first
        let error = try #require(weightError { _ = try checkpoint.info(Self.w1) })
        #expect(error.tensor == gIdxName && error.byteOffset == byte)
        #expect(error.description.contains("g_idx[\(first)] is \(gIdx[first])") && error.description.contains("byte \(byte)"))
        #expect(error.description.contains("act-order"))
        #expect(weightError { _ = try checkpoint.floats(Self.w1) } == error)
    }

    /// Configs whose weights moec cannot keep as int4 groups: an error naming the key, its value
    /// and where it is in config.json.
    @Test(arguments: [
        ("\"bits\": 4", "\"bits\": 8", "quantization_config.bits", "is 8"),
        ("\"group_size\": 32", "\"group_size\": 48", "quantization_config.group_size", "is 48"),
        ("\"group_size\": 32", "\"group_size\": -1", "quantization_config.group_size", "is -1"),
        ("\"checkpoint_format\": \"gptq\"", "\"checkpoint_format\": \"marlin\"", "quantization_config.checkpoint_format", "'marlin'")
    ])
    func unsupportedConfigIsAnError(_ from: String, _ to: String, _ key: String, _ value: String) throws {
        let dir = TemporaryDirectory()
        let source = Self.folder + "/mixtral-gptq-g32"
        try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: dir.file("model.safetensors"))
        let text = try String(contentsOfFile: source + "/config.json", encoding: .utf8)
        #expect(text.contains(from))
        try text.replacingOccurrences(of: from, with: to).write(toFile: dir.file("config.json"), atomically: true, encoding: .utf8)
        let error = try #require(weightError { _ = try Checkpoint(path: dir.path) })
        #expect(error.path == dir.file("config.json"))
        #expect(error.description.contains(key) && error.description.contains(value), "\(error)")
        let line = try #require(to.split(separator: ":").first.map(String.init))
        let lines = text.replacingOccurrences(of: from, with: to).split(separator: "\n", omittingEmptySubsequences: false)
        let n = try #require(lines.firstIndex { $0.contains(to) && $0.contains(line) })
        #expect(error.description.contains("(line \(n + 1), column"), "\(error)")
    }

    @Test func awqOtherPackingsAreErrors() throws {
        let source = Self.folder + "/mixtral-awq-g64"
        for (from, to, key) in [
            ("\"version\": \"gemm\"", "\"version\": \"gemv\"", "quantization_config.version"),
            ("\"zero_point\": true", "\"zero_point\": false", "quantization_config.zero_point")
        ] {
            let dir = TemporaryDirectory()
            try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: dir.file("model.safetensors"))
            let text = try String(contentsOfFile: source + "/config.json", encoding: .utf8)
            #expect(text.contains(from))
            try text.replacingOccurrences(of: from, with: to).write(toFile: dir.file("config.json"), atomically: true, encoding: .utf8)
            let error = try #require(weightError { _ = try Checkpoint(path: dir.path) })
            #expect(error.description.contains(key), "\(error)")
        }
    }

    /// Tensors of a linear that do not fit together: an error naming the tensor, its shape and
    /// the one its qweight needs.
    @Test func mismatchedTensorsAreErrors() throws {
        let dir = TemporaryDirectory()
        let config = #"{"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": false}}"#
        try config.write(toFile: dir.file("config.json"), atomically: true, encoding: .utf8)
        func write(scales: [Int], qweightType: String = "I32") {
            let scaleBytes = scales.reduce(2, *)
            let header =
                #"{"l.qweight": {"dtype": "\#(qweightType)", "shape": [8, 8], "data_offsets": [0, 256]}, "l.qzeros": {"dtype": "I32", "shape": [2, 1], "data_offsets": [256, 264]}, "l.scales": {"dtype": "F16", "shape": \#(scales), "data_offsets": [264, \#(264 + scaleBytes)]}}"#
            RawSafetensors.write(RawSafetensors.bytes(header: header, data: [UInt8](repeating: 0, count: 264 + scaleBytes)), to: dir.file("model.safetensors"))
        }
        write(scales: [2, 8])
        let good = try Checkpoint(path: dir.path)
        #expect(try good.info("l.weight")?.shape == [8, 64])
        #expect(try good.floats("l.weight").allSatisfy { $0 == 0 })
        write(scales: [3, 8])
        let error = try #require(weightError { _ = try Checkpoint(path: dir.path).info("l.weight") })
        #expect(error.tensor == "l.scales" && error.description.contains("[3, 8]") && error.description.contains("needs [2, 8]"), "\(error)")
        write(scales: [2, 8], qweightType: "F32")
        let dtype = try #require(weightError { _ = try Checkpoint(path: dir.path).info("l.weight") })
        #expect(dtype.tensor == "l.qweight" && dtype.description.contains("F32"), "\(dtype)")
    }

    /// Without a quantization config the packed tensors are just tensors: no `X.weight` appears.
    @Test func withoutConfigNoLinearIsMade() throws {
        let dir = TemporaryDirectory()
        try FileManager.default.copyItem(atPath: Self.folder + "/mixtral-gptq-g32/model.safetensors", toPath: dir.file("model.safetensors"))
        let checkpoint = try Checkpoint(path: dir.path)
        #expect(checkpoint.int4Quantization == nil)
        #expect(!checkpoint.contains(Self.w1))
        #expect(checkpoint.contains("model.layers.0.block_sparse_moe.experts.0.w1.qweight"))
    }
}
