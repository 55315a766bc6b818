import Foundation
import MoEIO
import MoETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs the built `moec` binary as a subprocess, the way a user or another tool would.
///
/// `swift test` builds every target of the package, the `moec` executable included, into the
/// same folder as the test bundle; the binary is looked for there first. `MOEC_BINARY=/path`
/// overrides the search.
enum Moec {
    /// Seconds after which a run is killed and reported as a hang.
    static let timeout: Double = 30

    struct NotBuilt: Error, CustomStringConvertible {
        var looked: [String]
        var description: String {
            "the moec binary is not built: run 'swift build' first (looked in: \(looked.joined(separator: ", ")))"
        }
    }

    struct Result: CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        var timedOut: Bool
        /// Ended by a signal (a crash: trap, SIGSEGV, SIGBUS …), not by exit().
        var crashed: Bool

        var description: String {
            "moec \(arguments.joined(separator: " "))\n  exit \(status)\(timedOut ? " (killed after \(Moec.timeout) s: hang)" : "")\(crashed ? " (crashed: signal)" : "")"
                + "\n  stdout: \(stdout.prefix(2000))\n  stderr: \(stderr.prefix(3000))"
        }
    }

    /// Folders that may hold the binary, best first.
    static var candidateFolders: [String] {
        var folders: [String] = []
        for b in Bundle.allBundles where b.bundleURL.pathExtension == "xctest" {
            folders.append(b.bundleURL.deletingLastPathComponent().path)
        }
        if let e = Bundle.main.executableURL { folders.append(e.deletingLastPathComponent().path) }
        folders.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path)
        folders.append(RepoPaths.path(".build/debug"))
        folders.append(RepoPaths.path(".build/release"))
        var seen = Set<String>()
        return folders.filter { seen.insert($0).inserted }
    }

    static let binary: Swift.Result<String, NotBuilt> = {
        if let p = ProcessInfo.processInfo.environment["MOEC_BINARY"] {
            return FileManager.default.isExecutableFile(atPath: p) ? .success(p) : .failure(NotBuilt(looked: ["MOEC_BINARY=\(p)"]))
        }
        let folders = candidateFolders
        for f in folders {
            let p = f + "/moec"
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: p, isDirectory: &isDirectory), !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: p)
            {
                return .success(p)
            }
        }
        return .failure(NotBuilt(looked: folders))
    }()

    /// Runs `moec ARGUMENTS` in `directory` with stdout and stderr captured, killing it after
    /// `timeout` seconds. `launcher` runs moec through another program (`mpirun -n 2`): its first
    /// element is that program's path, the rest its arguments before moec's path. `stdin`: what
    /// moec reads on its standard input (else nothing).
    static func run(
        _ arguments: [String], in directory: String, environment: [String: String] = [:], launcher: [String] = [], stdin: Data? = nil
    ) throws -> Result {
        let path = try binary.get()
        let capture = TemporaryDirectory("moec-capture")
        let outPath = capture.file("stdout"), errPath = capture.file("stderr")
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
            FileManager.default.createFile(atPath: errPath, contents: nil)
        else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: capture.path])
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: launcher.first ?? path)
        process.arguments = launcher.isEmpty ? arguments : launcher.dropFirst() + [path] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = out
        process.standardError = err
        if let stdin {
            let inPath = capture.file("stdin")
            try stdin.write(to: URL(fileURLWithPath: inPath))
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        let start = Date()
        try process.run()
        var timedOut = false
        if done.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            done.wait()
        }
        try out.close()
        try err.close()
        let read = { (p: String) in String(decoding: FileManager.default.contents(atPath: p) ?? Data(), as: UTF8.self) }
        return Result(
            arguments: arguments, status: process.terminationStatus, stdout: read(outPath), stderr: read(errPath),
            seconds: Date().timeIntervalSince(start), timedOut: timedOut,
            crashed: process.terminationReason == .uncaughtSignal)
    }
}

// MARK: - Expectations

/// The run succeeded: exit 0, no hang, no crash.
func expectSuccess(_ r: Moec.Result, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == 0 && !r.timedOut && !r.crashed, "expected success:\n\(r)", sourceLocation: sourceLocation)
}

/// The run failed cleanly: it ended by itself (no hang, no crash) with `status`, and stderr
/// holds every one of `messages`.
func expectFailure(_ r: Moec.Result, status: Int32 = 1, _ messages: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!r.timedOut, "hang: killed after \(Moec.timeout) s\n\(r)", sourceLocation: sourceLocation)
    #expect(!r.crashed, "crashed\n\(r)", sourceLocation: sourceLocation)
    #expect(r.status == status, "expected exit status \(status)\n\(r)", sourceLocation: sourceLocation)
    for m in messages {
        #expect(r.stderr.contains(m), "stderr lacks \"\(m)\"\n\(r)", sourceLocation: sourceLocation)
    }
}

/// The folder holds exactly `names` (no output, plan or temporary file was left behind).
func expectFolder(_ dir: String, holds names: Set<String>, after r: Moec.Result? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    let entries = Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
    #expect(
        entries == names, "folder has \(entries.subtracting(names).sorted()) extra, \(names.subtracting(entries).sorted()) missing\(r.map { "\n\($0)" } ?? "")",
        sourceLocation: sourceLocation)
}

func folderEntries(_ dir: String) -> Set<String> {
    Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
}

// MARK: - Files

enum Files {
    static let example = RepoPaths.path("examples/mixtral-tiny")
    static let mixtralGraph = RepoPaths.path("graphs/mixtral.moe")

    /// Copies `source` to `destination` (a file or a whole folder).
    static func copy(_ source: String, to destination: String) throws {
        try FileManager.default.copyItem(atPath: source, toPath: destination)
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    static func write(_ data: Data, to path: String) throws {
        try data.write(to: URL(fileURLWithPath: path))
    }

    static func read(_ path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path))
    }

    /// A folder `name` in `dir` holding the example's config.json and `weights` as model.safetensors.
    @discardableResult
    static func model(_ dir: String, _ name: String = "model", config: String? = nil, weights: Data? = nil) throws -> String {
        let m = dir + "/" + name
        try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: true)
        if let config { try write(config, to: m + "/config.json") } else { try copy(example + "/config.json", to: m + "/config.json") }
        try write(weights ?? read(example + "/model.safetensors"), to: m + "/model.safetensors")
        return m
    }

    /// The example checkpoint's tensors, read back for rewriting.
    static func exampleTensors() throws -> [SafetensorsWriter.Tensor] {
        let file = try SafetensorsFile(path: example + "/model.safetensors")
        return try file.tensorNames.map { name in
            let info = try file.info(name)
            return SafetensorsWriter.Tensor(name: name, shape: info.shape, dtype: info.dtype, values: try file.floats(name))
        }
    }

    /// A safetensors file with a rewritten JSON header: `edit` changes the header object; the
    /// data section is kept byte for byte. `lengthPrefix` overrides the 8-byte header length.
    static func editedSafetensors(
        _ source: String, lengthPrefix: UInt64? = nil,
        edit: (inout [String: Any]) -> Void = { _ in }
    ) throws -> Data {
        let data = try read(source)
        let n = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        edit(&header)
        var h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while h.count % 8 != 0 { h.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: (lengthPrefix ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(h)
        out.append(data.subdata(in: (8 + n)..<data.count))
        return out
    }

}

/// Tensor names of the example checkpoint (Mixtral, layer 0).
enum Tensor {
    static let prefix = "model.layers.0.block_sparse_moe."
    static let gate = prefix + "gate.weight"
    static func expert(_ e: Int, _ w: String) -> String { prefix + "experts.\(e).\(w).weight" }
}
