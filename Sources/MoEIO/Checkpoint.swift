import Foundation
import MoEBasics

/// The weights of one model: a Hugging Face style folder holding `model.safetensors`, or shards
/// described by `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard}}`),
/// or a single `.safetensors` file (or an index file) named directly, or a GGUF file (llama.cpp's:
/// its tensors by their GGUF names, dequantized to `Float` when read; `ggufMetadata` stands in
/// for config.json), or any one of a GGUF file's splits (`NAME-00001-of-00003.gguf`, as
/// llama.cpp's gguf-split and gguf-py write them: all of them are opened).
///
/// A GPTQ or AWQ checkpoint (config.json next to the weights declares `quantization_config`,
/// `Int4Quantization`) has, for each quantized linear `X`, a tensor `X.weight` that the files
/// do not hold: it is made of `X.qweight`, `X.qzeros` and `X.scales` (its `TensorInfo` has
/// `int4Group`), read as 4-bit groups with zero points (`copyInt4Rows`) or dequantized to
/// floats by the `copyFloats` methods.
///
/// Opening checks the index: it is valid JSON of that form and every shard it names exists.
/// Shards are opened (mapped, their headers validated) on first use; opening one also checks
/// that every tensor the index assigns to it is really there. `validate()` opens all of them.
/// Safe to use from several threads.
public final class Checkpoint: @unchecked Sendable {
    /// The folder or file that was opened.
    public let path: String
    /// The index file, when the weights are sharded.
    public let indexPath: String?
    /// Every weight file, in sorted order: the shards, or the one `.safetensors` file.
    public let shardPaths: [String]
    /// The index's `"metadata"` object (empty without an index).
    public let indexMetadata: JSONObject

    private let shardOfTensor: [String: Int]
    /// The tensors the index assigns to each shard, sorted (checked when the shard is opened).
    private let tensorsOfShard: [[String]]
    private var shards: [SafetensorsFile?]
    private let lock = NSLock()
    /// The GGUF file, or its splits in order, when the checkpoint is one.
    public let ggufFiles: [GGUFFile]
    /// The GPTQ or AWQ quantization config.json declares, if any.
    public let int4Quantization: Int4Quantization?
    /// "X.weight" → "X." for every quantized linear (a tensor "X.qweight" and no "X.weight").
    private let quantizedLinears: [String: String]
    /// The quantized linears' tensors, checked once (under `lock`).
    private var checkedLinears: [String: QuantizedLinear] = [:]

    /// A GGUF checkpoint's metadata as a JSON object (the first split's, which holds the model's
    /// keys; nil for safetensors checkpoints).
    public var ggufMetadata: JSONObject? { ggufFiles.first?.metadataJSON }

    /// The GGUF split holding each tensor (for a GGUF checkpoint).
    private func gguf(_ name: String) -> GGUFFile? {
        guard !ggufFiles.isEmpty, let i = shardOfTensor[name] else { return nil }
        return ggufFiles[i]
    }

    public init(path: String) throws(WeightFileError) {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WeightFileError(path: path, message: "no such file or folder")
        }
        var weightFile: String
        if isDirectory.boolValue {
            weightFile = try Self.findWeights(inFolder: path)
        } else {
            weightFile = path
        }
        if !isDirectory.boolValue && (path.hasSuffix(".gguf") || GGUFFile.looksLikeGGUF(path: path)) {
            let files = try Self.openGGUFSplits(path)
            ggufFiles = files
            indexPath = nil
            indexMetadata = JSONObject()
            shardPaths = files.map(\.path)
            var owner: [String: Int] = [:]
            for (i, f) in files.enumerated() {
                for t in f.tensorList {
                    if let other = owner[t.name] {
                        throw WeightFileError(
                            path: f.path, tensor: t.name, message: "also in split '\((files[other].path as NSString).lastPathComponent)'")
                    }
                    owner[t.name] = i
                }
            }
            shardOfTensor = owner
            shards = Array(repeating: nil, count: files.count)
            tensorsOfShard = Array(repeating: [], count: files.count)
            int4Quantization = nil
            quantizedLinears = [:]
            return
        }
        ggufFiles = []
        if weightFile.hasSuffix(".json") {
            let index = try Self.readIndex(weightFile)
            indexPath = weightFile
            indexMetadata = index.metadata
            shardPaths = index.shards
            shardOfTensor = index.shardOfTensor
            shards = Array(repeating: nil, count: index.shards.count)
            var lists = Array(repeating: [String](), count: index.shards.count)
            for (name, i) in index.shardOfTensor { lists[i].append(name) }
            tensorsOfShard = lists.map { $0.sorted() }
        } else {
            let file = try SafetensorsFile(path: weightFile)
            indexPath = nil
            indexMetadata = JSONObject()
            shardPaths = [weightFile]
            shardOfTensor = Dictionary(uniqueKeysWithValues: file.tensors.keys.map { ($0, 0) })
            shards = [file]
            tensorsOfShard = [[]]
        }
        let folder = isDirectory.boolValue ? path : (weightFile as NSString).deletingLastPathComponent
        int4Quantization = try Self.readQuantization(configPath: (folder.isEmpty ? "." : folder) + "/config.json")
        var linears: [String: String] = [:]
        if int4Quantization != nil {
            for name in shardOfTensor.keys where name.hasSuffix(".qweight") {
                let prefix = String(name.dropLast("qweight".count))
                if shardOfTensor[prefix + "weight"] == nil { linears[prefix + "weight"] = prefix }
            }
        }
        quantizedLinears = linears
    }

    /// The GPTQ or AWQ quantization a config.json declares (nil without the file, or when it is
    /// not a JSON object: its errors are the config reader's).
    private static func readQuantization(configPath: String) throws(WeightFileError) -> Int4Quantization? {
        guard let data = FileManager.default.contents(atPath: configPath), let json = try? JSON.parse(bytes: data), let config = json.object else {
            return nil
        }
        return try Int4Quantization.read(config: config, path: configPath, text: Array(data))
    }

    /// The checked tensors of a quantized linear "X.weight", or nil when `name` is no such linear.
    private func quantizedLinear(_ name: String) throws(WeightFileError) -> QuantizedLinear? {
        guard let prefix = quantizedLinears[name], let q = int4Quantization else { return nil }
        lock.lock()
        let known = checkedLinears[name]
        lock.unlock()
        if let known { return known }
        let linear = try QuantizedLinear(prefix: prefix, quantization: q) { (tensor) throws(WeightFileError) in try file(containing: tensor) }
        lock.lock()
        checkedLinears[name] = linear
        lock.unlock()
        return linear
    }

    /// Rows `rows` of a GPTQ or AWQ linear (a name whose `info` has `int4Group`) as `Int4Rows`:
    /// `Int4Rows.rowBytes(k:group:)` bytes per row at `destination`.
    public func copyInt4Rows(_ name: String, rows: Range<Int>, into destination: UnsafeMutableRawPointer) throws(WeightFileError) {
        guard let linear = try quantizedLinear(name) else { throw missingTensorError(name) }
        guard rows.lowerBound >= 0, rows.upperBound <= linear.out else {
            throw WeightFileError(path: linear.qweightFile.path, tensor: name, message: "rows \(rows) of a linear of \(linear.out)")
        }
        try linear.copyRows(rows, into: destination)
    }

    /// Every tensor name, sorted.
    public var tensorNames: [String] { (Array(shardOfTensor.keys) + quantizedLinears.keys).sorted() }

    public func contains(_ name: String) -> Bool { shardOfTensor[name] != nil || quantizedLinears[name] != nil }

    /// The tensor's description, or nil when the checkpoint has no such tensor. Throws when its
    /// shard cannot be opened or is inconsistent with the index.
    public func info(_ name: String) throws(WeightFileError) -> TensorInfo? {
        if let linear = try quantizedLinear(name) { return linear.info(name: name) }
        guard let i = shardOfTensor[name] else { return nil }
        if let gguf = gguf(name), let t = gguf.tensors[name] {
            let relative = (t.byteRange.lowerBound - gguf.dataStart)..<(t.byteRange.upperBound - gguf.dataStart)
            return TensorInfo(name: name, dtype: .f32, shape: t.shape, dataOffsets: relative, byteRange: t.byteRange, ggmlType: t.type)
        }
        return try shard(i).tensors[name]
    }

    /// The open shard holding the tensor (opening it if needed), or nil when there is no such tensor.
    public func file(containing name: String) throws(WeightFileError) -> SafetensorsFile? {
        guard ggufFiles.isEmpty, let i = shardOfTensor[name] else { return nil }
        return try shard(i)
    }

    /// The tensor's bytes as a GGUF file stores them (blocks of its type), copied to `destination`
    /// (which holds `info(name)!.byteRange.count` bytes). Only for GGUF checkpoints.
    public func copyStoredBytes(_ name: String, into destination: UnsafeMutableRawPointer) throws(WeightFileError) {
        guard let gguf = gguf(name) else { throw missingTensorError(name) }
        try gguf.copyBytes(name, into: destination)
    }

    /// Converts the tensor to `Float` into caller memory (count must equal its element count).
    /// A missing tensor is an error that suggests the closest names.
    public func copyFloats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        if !ggufFiles.isEmpty {
            guard let gguf = gguf(name) else { throw missingTensorError(name) }
            let count = try gguf.info(name).elementCount
            guard buffer.count == count else {
                throw WeightFileError(path: path, tensor: name, message: "destination holds \(buffer.count) floats but the tensor has \(count)")
            }
            return try gguf.copyFloats(name, elements: 0..<count, into: buffer)
        }
        if let linear = try quantizedLinear(name) { return try linear.copyFloats(0..<(linear.out * linear.k), into: buffer) }
        try existingFile(name).copyFloats(name, into: buffer)
    }

    /// Converts elements `elements` of the tensor (row-major) to `Float` into caller memory,
    /// reading none of its other bytes.
    public func copyFloats(_ name: String, elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        if !ggufFiles.isEmpty {
            guard let gguf = gguf(name) else { throw missingTensorError(name) }
            return try gguf.copyFloats(name, elements: elements, into: buffer)
        }
        if let linear = try quantizedLinear(name) { return try linear.copyFloats(elements, into: buffer) }
        try existingFile(name).copyFloats(name, elements: elements, into: buffer)
    }

    /// The tensor's values converted to `Float`.
    public func floats(_ name: String) throws(WeightFileError) -> [Float] {
        if !ggufFiles.isEmpty {
            guard let gguf = gguf(name) else { throw missingTensorError(name) }
            return try gguf.floats(name)
        }
        if let linear = try quantizedLinear(name) {
            var out = [Float](repeating: 0, count: linear.out * linear.k)
            try out.withUnsafeMutableBufferPointer { (b) throws(WeightFileError) in try linear.copyFloats(0..<b.count, into: b) }
            return out
        }
        return try existingFile(name).floats(name)
    }

    /// Up to `limit` tensor names closest to `name` by edit distance, for "did you mean".
    public func suggestions(for name: String, limit: Int = 3) -> [String] {
        NameSuggestions.closest(to: name, in: Array(shardOfTensor.keys) + quantizedLinears.keys, limit: limit)
    }

    /// The error for a tensor the checkpoint does not have, with suggestions.
    public func missingTensorError(_ name: String) -> WeightFileError {
        let close = suggestions(for: name)
        var message = "no such tensor in the checkpoint (\(shardOfTensor.count) tensors)"
        if !close.isEmpty { message += "; did you mean " + close.map { "'\($0)'" }.joined(separator: ", ") + "?" }
        return WeightFileError(path: indexPath ?? shardPaths[0], tensor: name, message: message)
    }

    /// Opens every shard, so every inconsistency is found now.
    public func validate() throws(WeightFileError) {
        if !ggufFiles.isEmpty { return } // validated when opened
        for i in shardPaths.indices { _ = try shard(i) }
    }

    /// Fingerprints of the index (if any) and every shard, for a plan to check later.
    public func fingerprints() throws(WeightFileError) -> [WeightFileFingerprint] {
        var result: [WeightFileFingerprint] = []
        if let index = indexPath { result.append(try .of(path: index)) }
        for p in shardPaths { result.append(try .of(path: p)) }
        return result
    }

    // MARK: - Implementation

    private func existingFile(_ name: String) throws(WeightFileError) -> SafetensorsFile {
        guard let i = shardOfTensor[name] else { throw missingTensorError(name) }
        return try shard(i)
    }

    private func shard(_ i: Int) throws(WeightFileError) -> SafetensorsFile {
        lock.lock()
        defer { lock.unlock() }
        if let s = shards[i] { return s }
        let file = try SafetensorsFile(path: shardPaths[i])
        let shardName = (shardPaths[i] as NSString).lastPathComponent
        for name in tensorsOfShard[i] where file.tensors[name] == nil {
            throw WeightFileError(
                path: indexPath ?? path, tensor: name,
                message: "the index puts it in shard '\(shardName)', which has no such tensor (it has \(file.tensors.count))")
        }
        shards[i] = file
        return file
    }

    /// A GGUF file, or all the splits of the one named (`PREFIX-0000i-of-0000n.gguf`, each with
    /// `split.no` = i − 1 and `split.count` = n), in order.
    private static func openGGUFSplits(_ path: String) throws(WeightFileError) -> [GGUFFile] {
        let first = try GGUFFile(path: path)
        guard let countValue = first.metadata["split.count"] else { return [first] }
        guard case .unsigned(let c) = countValue, c >= 1, c <= 9999 else {
            throw WeightFileError(path: path, message: "split.count is \(countValue), expected a count of split files")
        }
        let count = Int(c)
        if count == 1 { return [first] }
        let name = (path as NSString).lastPathComponent, folder = (path as NSString).deletingLastPathComponent
        let suffix = String(format: "-of-%05d.gguf", count)
        guard name.hasSuffix(suffix), name.count >= suffix.count + 6 else {
            throw WeightFileError(
                path: path, message: "split.count is \(count), but the file is not named like a split (PREFIX-0000i\(suffix))")
        }
        let prefix = String(name.dropLast(suffix.count + 6))
        var files: [GGUFFile] = []
        for i in 0..<count {
            let splitName = prefix + String(format: "-%05d", i + 1) + suffix
            let splitPath = folder.isEmpty ? splitName : folder + "/" + splitName
            guard FileManager.default.fileExists(atPath: splitPath) else {
                throw WeightFileError(path: path, message: "split \(i + 1) of \(count), '\(splitName)', does not exist")
            }
            let file = splitPath == path ? first : try GGUFFile(path: splitPath)
            guard file.metadata["split.no"] == .unsigned(UInt64(i)), file.metadata["split.count"] == .unsigned(UInt64(count)) else {
                throw WeightFileError(
                    path: splitPath,
                    message:
                        "split.no / split.count are \(file.metadata["split.no"].map { "\($0)" } ?? "missing") / \(file.metadata["split.count"].map { "\($0)" } ?? "missing"), expected \(i) / \(count)"
                )
            }
            files.append(file)
        }
        return files
    }

    /// The weights in a folder: the standard names first, else the only index, else the only file.
    private static func findWeights(inFolder folder: String) throws(WeightFileError) -> String {
        let fm = FileManager.default
        for name in ["model.safetensors.index.json", "model.safetensors"] where fm.fileExists(atPath: folder + "/" + name) {
            return folder + "/" + name
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).sorted()
        let indexes = entries.filter { $0.hasSuffix(".safetensors.index.json") }
        let files = entries.filter { $0.hasSuffix(".safetensors") }
        if indexes.count == 1 { return folder + "/" + indexes[0] }
        if indexes.isEmpty && files.count == 1 { return folder + "/" + files[0] }
        let found = indexes + files
        throw WeightFileError(
            path: folder,
            message: "no model.safetensors or model.safetensors.index.json in this folder"
                + (found.isEmpty ? " (and no other .safetensors files)" : " (found \(found.joined(separator: ", ")); name one directly)"))
    }

    private struct Index {
        var metadata: JSONObject
        var shards: [String]
        var shardOfTensor: [String: Int]
    }

    private static func readIndex(_ path: String) throws(WeightFileError) -> Index {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw WeightFileError(path: path, message: "cannot read the index file")
        }
        let json: JSON
        do {
            json = try JSON.parse(bytes: data)
        } catch {
            throw WeightFileError(
                path: path, byteOffset: error.offset,
                message: "index is not valid JSON at \(error.line):\(error.column) (byte \(error.offset)): \(error.message)")
        }
        guard case .object(let root) = json else {
            throw WeightFileError(path: path, byteOffset: 0, message: "index is \(json.typeName), expected an object with a \"weight_map\"")
        }
        var metadata = JSONObject()
        if let m = root["metadata"], !m.isNull {
            guard case .object(let o) = m else {
                throw WeightFileError(path: path, message: "index \"metadata\" is \(m.typeName), expected an object")
            }
            metadata = o
        }
        guard let map = root["weight_map"] else {
            throw WeightFileError(path: path, message: "index has no \"weight_map\"")
        }
        guard case .object(let weightMap) = map else {
            throw WeightFileError(path: path, message: "index \"weight_map\" is \(map.typeName), expected an object of tensor name → shard file")
        }
        let folder = (path as NSString).deletingLastPathComponent
        var shardNames: [String] = []
        var firstTensor: [String: String] = [:]
        var counts: [String: Int] = [:]
        for (tensor, shard) in weightMap {
            guard let s = shard.string, !s.isEmpty else {
                throw WeightFileError(path: path, tensor: tensor, message: "weight_map entry is \(shard.typeName), expected a shard file name")
            }
            // A shard is a file of the model folder (or a folder in it), as the Hub writes them:
            // an index must not send the reader to other files of the machine.
            if s.hasPrefix("/") || s.split(separator: "/", omittingEmptySubsequences: false).contains("..") {
                throw WeightFileError(
                    path: path, tensor: tensor, message: "weight_map names shard '\(s)' outside the model folder (shards are files of the folder)")
            }
            if firstTensor[s] == nil { firstTensor[s] = tensor; shardNames.append(s) }
            counts[s, default: 0] += 1
        }
        shardNames.sort()
        var shards: [String] = []
        for s in shardNames {
            let full = folder.isEmpty ? s : folder + "/" + s
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue else {
                let n = counts[s]!
                let problem = FileManager.default.fileExists(atPath: full) ? "is a folder, not a weight file" : "does not exist"
                throw WeightFileError(
                    path: path, tensor: firstTensor[s],
                    message: "shard '\(s)' named in the weight_map \(problem)\(n > 1 ? " (\(n) tensors are mapped to it)" : "")")
            }
            shards.append(full)
        }
        var position: [String: Int] = [:]
        for (i, s) in shardNames.enumerated() { position[s] = i }
        var shardOfTensor: [String: Int] = [:]
        for (tensor, shard) in weightMap { shardOfTensor[tensor] = position[shard.string!]! }
        return Index(metadata: metadata, shards: shards, shardOfTensor: shardOfTensor)
    }
}
