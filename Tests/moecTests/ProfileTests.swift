import Foundation
import MoETestSupport
import Testing

/// `moec profile` through the binary: statistics summed over batches, then `moec place` on them.
@Suite struct ProfileTests {
    static let x = Files.example + "/x.npy"

    /// profile → place, the way the README shows it.
    @Test func profileThenPlace() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(
            [
                "profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)",
                "--batch-tokens", "5", "-o", "stats.json"
            ], in: dir.path)
        expectSuccess(r)
        // 16 tokens in batches of 5: 5 + 5 + 5 + 1, the same numbers as one run over all 16.
        let json = try ExampleRouting.check(dir.file("stats.json"), against: try ExampleRouting.expected())
        #expect(json["tokens"] as? Int == 16 && json["batches"] as? Int == 4, "\(json)")
        #expect(r.stdout.contains("layer  experts  k    tokens  max/mean  entropy (/ln E)  top1−top2  hottest experts"), "\(r)")
        #expect(r.stdout.contains("\ny            8  2        16 "), "\(r)")
        #expect(r.stderr.contains("profiled 16 tokens in 4 batches of up to 5"), "\(r)")
        // stderr is not a terminal here: no bar, no carriage returns.
        #expect(!r.stderr.contains("\r") && !r.stderr.contains("█") && !r.stderr.contains("\u{1B}"), "\(r)")

        let placed = try Moec.run(["place", "--load", "stats.json", "--workers", "2", "--replicas", "10", "-o", "placement.json"], in: dir.path)
        expectSuccess(placed)
        let placement = try JSONSerialization.jsonObject(with: Files.read(dir.file("placement.json"))) as? [String: Any]
        let phy2log = placement?["phy2log"] as? [[Int]]
        #expect(phy2log?.count == 1 && phy2log?.first?.count == 10 && Set(phy2log?.first ?? []) == Set(0..<8), "\(placed)")
        // The expert size comes from the statistics: three [64, 32] f32 matrices.
        #expect(placement?["expert_bytes"] as? Int == 3 * 64 * 32 * 4, "\(placed)")
        expectFolder(dir.path, holds: ["stats.json", "placement.json"])
    }

    /// The same file as `moec run --stats` on the same tokens, but for the run-specific fields.
    @Test func writesWhatRunStatsWrites() throws {
        let dir = TemporaryDirectory()
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        expectSuccess(try Moec.run(["profile", "p.json", "--input", "x=\(Self.x)", "--batch-tokens", "16", "-o", "profile.json"], in: dir.path))
        expectSuccess(try Moec.run(["run", "p.json", "--input", "x=\(Self.x)", "--stats", "run.json"], in: dir.path))
        let a = try JSONSerialization.jsonObject(with: Files.read(dir.file("profile.json"))) as! [String: Any]
        let b = try JSONSerialization.jsonObject(with: Files.read(dir.file("run.json"))) as! [String: Any]
        #expect(Set(a.keys) == Set(b.keys))
        for key in ["expert_load", "imbalance", "entropy", "entropy_normalized", "top1_top2_margin", "aux_loss", "layers", "expert_bytes"] {
            #expect(a[key] != nil && (a[key] as? NSObject)?.isEqual(b[key]) == true, "\(key): \(a[key] ?? "nil") vs \(b[key] ?? "nil")")
        }
    }

    @Test func firstBatchesOnly() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(
            [
                "profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)",
                "--batch-tokens", "5", "--batches", "2", "-o", "stats.json"
            ], in: dir.path)
        expectSuccess(r)
        _ = try ExampleRouting.check(dir.file("stats.json"), against: try ExampleRouting.expected(rows: 0..<10))
        // More batches than the input holds: all of them, and a note.
        let more = try Moec.run(
            [
                "profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)",
                "--batch-tokens", "5", "--batches", "9", "-o", "all.json"
            ], in: dir.path)
        expectSuccess(more)
        #expect(more.stderr.contains("note: the input holds 4 batches of up to 5 tokens; running all 4, not 9"), "\(more)")
        _ = try ExampleRouting.check(dir.file("all.json"), against: try ExampleRouting.expected())
    }

    /// Without --input: seeded random batches, the same for the same seed.
    @Test func randomBatchesAreSeeded() throws {
        let dir = TemporaryDirectory()
        func profile(_ seed: String, _ out: String) throws -> Moec.Result {
            try Moec.run(
                [
                    "profile", Files.mixtralGraph, "--model", Files.example, "--batch-tokens", "32", "--batches", "3",
                    "--seed", seed, "-o", out, "--threads", "1"
                ], in: dir.path)
        }
        let r = try profile("5", "a.json")
        expectSuccess(r)
        #expect(r.stderr.contains("note: no --input, so the batches are seeded random normals (seed 5)"), "\(r)")
        expectSuccess(try profile("5", "b.json"))
        expectSuccess(try profile("6", "c.json"))
        let a = try JSONSerialization.jsonObject(with: Files.read(dir.file("a.json"))) as! [String: Any]
        let b = try JSONSerialization.jsonObject(with: Files.read(dir.file("b.json"))) as! [String: Any]
        let c = try JSONSerialization.jsonObject(with: Files.read(dir.file("c.json"))) as! [String: Any]
        #expect(a["tokens"] as? Int == 96 && a["batches"] as? Int == 3)
        let load = try #require((a["expert_load"] as? [[Int]])?.first)
        #expect(load.reduce(0, +) == 96 * 2)
        #expect(a["expert_load"] as? [[Int]] == b["expert_load"] as? [[Int]])
        #expect(a["expert_load"] as? [[Int]] != c["expert_load"] as? [[Int]])
    }

    @Test func graphWithoutMoEBlocks() throws {
        let dir = TemporaryDirectory()
        try Files.write("model dense\ninput x: [tokens, 32]\noutput y = x * 2.0\n", to: dir.file("dense.moe"))
        let r = try Moec.run(["profile", "dense.moe", "--model", Files.example, "--input", "x=\(Self.x)", "-o", "s.json"], in: dir.path)
        expectFailure(r, ["graph 'dense' has no moe blocks: there are no expert loads to profile"])
        expectFolder(dir.path, holds: ["dense.moe"], after: r)
    }

    @Test func badInputFilesFailBeforeAnyBatch() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["profile", Files.mixtralGraph, "--model", Files.example, "--input", "h=\(Self.x)", "-o", "s.json"], in: dir.path)
        expectFailure(r, ["--input h=…: the graph has no input 'h' (inputs: x)"])
        let missing = try Moec.run(["profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=nope.npy", "-o", "s.json"], in: dir.path)
        expectFailure(missing, ["nope.npy"])
        expectFolder(dir.path, holds: [])
    }

    @Test(arguments: [
        (["--batch-tokens", "0"], "--batch-tokens expects a positive integer, got '0'"),
        (["--batches", "0"], "--batches expects a positive integer or 'all', got '0'"),
        (["--batches", "some"], "--batches expects a positive integer or 'all', got 'some'"),
        (["--batches", "all"], "--batches all needs --input"),
        (["--input", "x=x.npy", "--seed", "3"], "--seed applies to random batches"),
        (["--seed", "-3"], "--seed expects a non-negative integer, got '-3'"),
        (["--input", "x=x.npy", "-o", "x.npy"], "-o x.npy would overwrite --input x=x.npy"),
        (["--input", "x=a.npy", "--input", "x=b.npy"], "--input x is given twice"),
        (["--batch-token", "4"], "unknown option '--batch-token' for 'moec profile' (did you mean '--batch-tokens'?)")
    ])
    func usageMistakes(_ arguments: [String], _ message: String) throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["profile", "p.json"] + arguments, in: dir.path)
        expectFailure(r, status: 2, [message, "run 'moec profile --help' for usage"])
        expectFolder(dir.path, holds: [], after: r)
    }

    /// Runs `moec profile` on the example with stderr into a pipe; returns the exit status and
    /// what came through the pipe.
    static func profileThroughAPipe(in dir: String) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Moec.binary.get())
        process.arguments = ["profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)", "--batch-tokens", "4"]
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Through a pipe (not a terminal) progress is plain lines: no carriage return, no bar, no
    /// escape; it ends with the summary line.
    @Test func progressThroughAPipeIsPlainText() throws {
        let dir = TemporaryDirectory()
        let (status, stderr) = try Self.profileThroughAPipe(in: dir.path)
        #expect(status == 0, "\(stderr)")
        #expect(!stderr.contains("\r") && !stderr.contains("█") && !stderr.contains("░") && !stderr.contains("\u{1B}"), "\(stderr.debugDescription)")
        #expect(stderr.contains("profile: done, 4/4 batches, 16 tokens in "), "\(stderr)")
    }

    /// On a terminal (a pseudo-terminal made by util-linux `script`), the bar is drawn in place
    /// and left at 100% on its own line.
    @Test(.enabled(if: hasUtilLinuxScript, "needs util-linux script"))
    func progressOnATerminalIsABar() throws {
        let dir = TemporaryDirectory()
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let command =
            ([
                try Moec.binary.get(), "profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Self.x)",
                "--batch-tokens", "4"
            ].map(quoted) + [">/dev/null"]).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["-qec", command, "/dev/null"]
        process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let tty = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(tty)")
        // The terminal turns "\n" into "\r\n"; the bar's own redraws start with a bare "\r".
        let full = "\rprofile " + String(repeating: "█", count: 30) + " 100%  4/4 batches  16 tokens"
        #expect(tty.contains(full), "\(tty.debugDescription)")
        let afterBar = tty.components(separatedBy: "\u{1B}[K").last ?? ""
        #expect(afterBar.hasPrefix("\r\n") || afterBar.hasPrefix("\n"), "the bar ends its line: \(tty.debugDescription)")
        #expect(!tty.contains("profile: done"), "no log lines on a terminal: \(tty.debugDescription)")
    }

    /// util-linux `script` (`-q -e -c COMMAND FILE`); BSD's takes other options.
    static let hasUtilLinuxScript: Bool = {
        #if os(Linux)
            return FileManager.default.isExecutableFile(atPath: "/usr/bin/script")
        #else
            return false
        #endif
    }()
}
