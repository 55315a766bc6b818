import Foundation
import MoEBasics
import MoEIO
import MoEIR

/// A compiled graph, ready for `moec run`: the optimised IR, the checkpoint it reads with a
/// fingerprint of every weight file (so a changed or vanished file is an error, not wrong
/// numbers), and the source it came from.
public struct Plan: Sendable {
    public static let format = "moec-plan"
    /// 2: the expert passes' marks (`permute`, `prepacked`, `combine_in_down`) and the memory
    /// plan (`last_readers`) replaced version 1's `fused_kernel`; a version 1 plan would run its
    /// experts the slow, unfused way, so it is refused instead. 3: weights may carry a layout
    /// (`transpose`, `reshape`, …) that a version 2 moec would ignore, reading them wrongly.
    /// 4: a weight may carry a storage `format` (`"bf16"`), which a version 3 moec would ignore,
    /// running different numbers. Version 3 plans still load (every weight f32).
    public static let version = 4
    /// The oldest version this moec reads.
    public static let oldestReadableVersion = 3

    public var graph: Graph
    /// Absolute path of the checkpoint folder (or file).
    public var modelPath: String
    public var fingerprints: [WeightFileFingerprint]
    /// Absolute path of the `.moe` source, for messages.
    public var sourcePath: String
    /// Free-form facts recorded at compile time (moec version, BLAS, …).
    public var notes: JSONObject

    public init(graph: Graph, modelPath: String, fingerprints: [WeightFileFingerprint], sourcePath: String, notes: JSONObject = JSONObject()) {
        self.graph = graph
        self.modelPath = modelPath
        self.fingerprints = fingerprints
        self.sourcePath = sourcePath
        self.notes = notes
    }

    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var message: String
        public var description: String { "\(path): \(message)" }
    }

    public func toJSON() -> JSON {
        var o = JSONObject()
        o["format"] = .string(Plan.format)
        o["version"] = JSON(Plan.version)
        o["source"] = .string(sourcePath)
        o["model"] = JSON(["path": JSON(modelPath), "files": .array(fingerprints.map { $0.toJSON() })])
        o["notes"] = .object(notes)
        o["graph"] = graph.toJSON()
        return .object(o)
    }

    public init(json: JSON, path: String) throws(LoadError) {
        func fail(_ m: String) -> LoadError { LoadError(path: path, message: m) }
        guard json["format"]?.string == Plan.format else {
            throw fail("not a moec plan (no \"format\": \"\(Plan.format)\")")
        }
        guard let v = json["version"]?.int else { throw fail("plan has no version") }
        guard (Plan.oldestReadableVersion...Plan.version).contains(v) else {
            throw fail(
                "plan format version \(v) is not supported (this moec reads versions \(Plan.oldestReadableVersion) to \(Plan.version)); compile the graph again")
        }
        guard let model = json["model"], let modelPath = model["path"]?.string, let files = model["files"]?.array else {
            throw fail("plan has no model section")
        }
        var prints: [WeightFileFingerprint] = []
        for f in files {
            do { prints.append(try WeightFileFingerprint(json: f)) } catch { throw fail("bad weight file record: \(error)") }
        }
        guard let g = json["graph"] else { throw fail("plan has no graph") }
        let graph: Graph
        do { graph = try Graph(json: g) } catch { throw fail(error.message) }
        let problems = Verifier.verify(graph)
        if let p = problems.first { throw fail("the plan's graph is invalid: \(p.message)") }
        self.init(
            graph: graph, modelPath: modelPath, fingerprints: prints,
            sourcePath: json["source"]?.string ?? "", notes: json["notes"]?.object ?? JSONObject())
    }

    /// Reads a plan file.
    public static func read(_ path: String) throws(LoadError) -> Plan {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(path: path, message: FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file")
        }
        let json: JSON
        do { json = try JSON.parse(bytes: data) } catch {
            throw LoadError(path: path, message: "not a plan: invalid JSON at \(error.line):\(error.column): \(error.message)")
        }
        return try Plan(json: json, path: path)
    }

    /// Writes the plan atomically (never a half-written file).
    public func write(to path: String) throws {
        try AtomicFile.write(toJSON().pretty + "\n", to: path)
    }

    /// Checks that every weight file is still the one the plan was compiled against.
    public func checkWeights() throws(LoadError) {
        for f in fingerprints {
            do { try f.check() } catch {
                throw LoadError(path: f.path, message: "\(error.message); compile the graph again")
            }
        }
    }

    /// Opens the plan's checkpoint, reading only weights the plan fingerprinted: every
    /// fingerprinted file is unchanged (`checkWeights`), and the model path still resolves to
    /// exactly those files. A file added since, such as an index next to `model.safetensors`,
    /// would otherwise make the folder resolve to weights nobody checked. Throws `LoadError`,
    /// or `WeightFileError` when the checkpoint cannot be opened.
    public func openCheckpoint() throws -> Checkpoint {
        try checkWeights()
        let checkpoint = try Checkpoint(path: modelPath)
        let absolute = { (p: String) in URL(fileURLWithPath: p).standardizedFileURL.path }
        let now = ((checkpoint.indexPath.map { [$0] } ?? []) + checkpoint.shardPaths).map(absolute)
        let compiled = fingerprints.map { absolute($0.path) }
        if Set(now) != Set(compiled) {
            let folder = absolute(modelPath) + "/"
            let name = { (p: String) in p.hasPrefix(folder) ? String(p.dropFirst(folder.count)) : p }
            let list = { (paths: [String]) in paths.map(name).sorted().joined(separator: ", ") }
            throw LoadError(path: modelPath, message: "the model now reads \(list(now)) instead of \(list(compiled)), which the plan was compiled against; compile the graph again")
        }
        return checkpoint
    }
}
