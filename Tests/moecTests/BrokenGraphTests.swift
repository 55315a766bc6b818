import Foundation
import MoETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Broken `.moe` sources: every one must give a message, exit 1, and write no plan.
@Suite struct BrokenGraphTests {
    /// Compiles `graph` (a path relative to `dir`) with the example weights to `-o out.plan`,
    /// and checks that it fails with `messages` and leaves the folder as it was.
    func expectCompileFails(
        _ graph: String, in dir: TemporaryDirectory, _ messages: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Moec.Result {
        let before = folderEntries(dir.path)
        let r = try Moec.run(["compile", graph, "--model", Files.example, "-o", "out.plan"], in: dir.path)
        expectFailure(r, messages, sourceLocation: sourceLocation)
        expectFolder(dir.path, holds: before, after: r, sourceLocation: sourceLocation)
        return r
    }

    /// `file:line:col: error:` at the start of a line of stderr.
    static func hasLocatedError(_ stderr: String, file: String) -> Bool {
        stderr.split(separator: "\n").contains { line in
            guard line.hasPrefix(file + ":") else { return false }
            let rest = line.dropFirst(file.count + 1).split(separator: ":", maxSplits: 2)
            return rest.count == 3 && Int(rest[0]) != nil && Int(rest[1]) != nil && rest[2].hasPrefix(" error: ")
        }
    }

    @Test func everyPrefixOfARealGraphFailsWithALocation() throws {
        let source = try Files.read(Files.mixtralGraph)
        let dir = TemporaryDirectory()
        // Cuts ending in the middle of a declaration, and between declarations ("no outputs",
        // at the end of the file).
        var cut = 411
        var checked = 0
        while cut < source.count - 12 {
            defer { cut += 13 }
            try Files.write(source.prefix(cut), to: dir.file("g.moe"))
            let r = try expectCompileFails("g.moe", in: dir, [])
            if r.stderr.contains("not UTF-8 text") { continue }
            #expect(Self.hasLocatedError(r.stderr, file: "g.moe"), "prefix of \(cut) bytes:\n\(r)")
            checked += 1
        }
        #expect(checked > 30)
    }

    @Test func everyPrefixFailsCleanly() throws {
        // All prefixes, including those that end between declarations: a message, exit 1, no plan.
        let source = try Files.read(Files.mixtralGraph)
        let dir = TemporaryDirectory()
        for cut in stride(from: 0, to: source.count - 12, by: 37) {
            try Files.write(source.prefix(cut), to: dir.file("g.moe"))
            let r = try expectCompileFails("g.moe", in: dir, ["error: "])
            #expect(r.stderr.contains("g.moe"), "the message names the file; prefix of \(cut) bytes:\n\(r)")
        }
    }

    @Test func garbledSourcesPointAtTheMistake() throws {
        let dir = TemporaryDirectory()
        let cases: [(String, String, String)] = [
            ("router:  x |> linear(gate)", "router:  x |> linear(gate", "g.moe:27:"),
            ("topk(top_k)", "topk(top_k", "g.moe:27:"),
            ("[num_experts, hidden]", "[num_experts, hidden", "g.moe:20:"),
            ("output y", "output zz", "g.moe:31:"),
            ("softmax", "softmx", "g.moe:27:"),
            ("= 8", "= \"eight\"", "g.moe:"),
            ("let y = moe(x) {", "let y = moe(x) {{", "g.moe:26:"),
            ("model mixtral", "model", "g.moe:")
        ]
        let source = try String(contentsOfFile: Files.mixtralGraph, encoding: .utf8)
        for (from, to, location) in cases {
            try #require(source.contains(from), "graphs/mixtral.moe changed: no '\(from)'")
            try Files.write(source.replacingOccurrences(of: from, with: to), to: dir.file("g.moe"))
            let r = try expectCompileFails("g.moe", in: dir, [location])
            #expect(Self.hasLocatedError(r.stderr, file: "g.moe"), "\(from) → \(to)\n\(r)")
        }
    }

    @Test func randomBytesAndBinaryFiles() throws {
        let dir = TemporaryDirectory()
        var generator = SystemRandomNumberGenerator()
        let random = Data((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try Files.write(random, to: dir.file("random.moe"))
        _ = try expectCompileFails("random.moe", in: dir, ["random.moe", "not UTF-8 text"])

        try Files.write(Files.read(Files.example + "/model.safetensors"), to: dir.file("weights.moe"))
        _ = try expectCompileFails("weights.moe", in: dir, ["weights.moe"])

        // Printable junk that is valid UTF-8: a located error.
        try Files.write("@@@ ¿qué? \u{0}\u{7} 🙂 \n}}}{{{", to: dir.file("junk.moe"))
        let r = try expectCompileFails("junk.moe", in: dir, [])
        #expect(Self.hasLocatedError(r.stderr, file: "junk.moe"), "\(r)")
        // 150,000 characters the lexer does not know (it once recursed once per character).
        try Files.write("model m\n" + String(repeating: "@\u{1}$", count: 50_000), to: dir.file("long.moe"))
        let long = try expectCompileFails("long.moe", in: dir, ["long.moe:2:1: error: unexpected character '@'"])
        #expect(long.stderr.contains("20 errors generated."), "\(long)")
    }

    @Test func emptyMissingAndFolderGraphs() throws {
        let dir = TemporaryDirectory()
        try Files.write("", to: dir.file("empty.moe"))
        _ = try expectCompileFails("empty.moe", in: dir, ["the graph declares no outputs"])
        _ = try expectCompileFails("missing.moe", in: dir, ["cannot read 'missing.moe': no such file"])
        try FileManager.default.createDirectory(atPath: dir.file("folder.moe"), withIntermediateDirectories: false)
        let r = try expectCompileFails("folder.moe", in: dir, ["cannot read 'folder.moe': it is a folder, not a .moe graph"])
        #expect(!r.stderr.contains("NSCocoaErrorDomain"), "\(r)")
        // A FIFO (like /dev/stdin or /dev/zero) used to give "You don't have permission".
        #expect(mkfifo(dir.file("fifo.moe"), 0o644) == 0)
        _ = try expectCompileFails("fifo.moe", in: dir, ["cannot read 'fifo.moe': not a regular file"])
        _ = try expectCompileFails("/dev/zero", in: dir, ["cannot read '/dev/zero': not a regular file"])
    }

    @Test func hugeParamsGiveALocatedError() throws {
        // Shapes whose element count, or byte count, overflows an Int: an error at each
        // declaration, from the lowering, not a trap in a later stage.
        let r = try Moec.run(["compile", "graphs/mixtral.moe", "--set", "hidden=9223372036854775807", "--emit", "plan"], in: RepoPaths.root)
        expectFailure(
            r,
            [
                "graphs/mixtral.moe:17:10: error: input 'x': the shape [tokens, 9223372036854775807] has more elements per token than moec can address",
                "graphs/mixtral.moe:20:9: error: weight 'gate': the shape [8, 9223372036854775807] has more elements than moec can address",
                "graphs/mixtral.moe:21:9: error: weight 'w1': the shape [8, 14336, 9223372036854775807] has more elements than moec can address",
                "note: a tensor may have at most 2305843009213693951 elements (Int.max / 4), so that its size in bytes fits in an Int"
            ])
        #expect(r.stdout.isEmpty, "\(r)")
        let r2 = try Moec.run(["compile", "graphs/mixtral.moe", "--set", "hidden=4294967296", "--set", "ffn=4294967296", "--emit", "plan"], in: RepoPaths.root)
        expectFailure(
            r2,
            [
                "graphs/mixtral.moe:21:9: error: weight 'w1': the shape [8, 4294967296, 4294967296] has more elements than moec can address",
                "graphs/mixtral.moe:23:9: error: weight 'w2'", "3 errors generated"
            ])
        // Compile-time arithmetic that overflows is an error too, not a wrapped-around shape.
        let dir = TemporaryDirectory()
        try Files.write("model m\nparam n = 4611686018427387904\ninput x: [tokens, n * 2]\noutput x\n", to: dir.file("g.moe"))
        expectFailure(try Moec.run(["compile", "g.moe", "--emit", "ir"], in: dir.path), ["g.moe:3:21: error: 4611686018427387904 * 2 does not fit in a 64-bit integer"])
    }

    @Test func shapesJustSmallEnoughArePlanned() throws {
        // Every tensor fits, but the weights together, the packed experts and the arena for
        // many tokens do not fit in an Int: the plan says so instead of trapping.
        let r = try Moec.run(["compile", "graphs/mixtral.moe", "--set", "hidden=1125899906842624", "--set", "ffn=1", "--emit", "plan"], in: RepoPaths.root)
        expectSuccess(r)
        #expect(r.stdout.contains("@w1             f32[8, 1, 1125899906842624] 36028797.02 GB"), "\(r)")
        #expect(r.stdout.contains("     512   more bytes than moec can address"), "\(r)")
        let r2 = try Moec.run(
            ["compile", "graphs/mixtral.moe", "--set", "hidden=72057594037927936", "--set", "ffn=1", "--set", "num_experts=2", "--emit", "plan"],
            in: RepoPaths.root)
        expectSuccess(r2)
        #expect(r2.stdout.contains("weights (2305843009.21 GB as f32)"), "\(r2)")
        #expect(r2.stdout.contains("       1   more bytes than moec can address"), "\(r2)")
    }

    @Test func graphWithoutOutputsHasALocation() throws {
        // The end of the file, where an output line would go; 1:1 in an empty file.
        let dir = TemporaryDirectory()
        try Files.write("", to: dir.file("empty.moe"))
        try Files.write("model m\ninput x: [tokens, 4]\nlet y = x\n", to: dir.file("nooutput.moe"))
        try Files.write("model m\ninput x: [tokens, 4]\nlet h = x", to: dir.file("nonewline.moe"))
        for (name, location, note) in [
            ("empty.moe", "empty.moe:1:1: error: ", "'output y'"),
            ("nooutput.moe", "nooutput.moe:4:1: error: ", "'output y'"),
            ("nonewline.moe", "nonewline.moe:3:10: error: ", "'output h'")
        ] {
            let r = try Moec.run(["compile", name, "--emit", "ir"], in: dir.path)
            expectFailure(r, [location + "the graph declares no outputs", "note: add 'output NAME' for each result, e.g. " + note])
            #expect(Self.hasLocatedError(r.stderr, file: name), "\(r)")
        }
    }

    @Test func runAndBenchRefuseBrokenGraphsToo() throws {
        let dir = TemporaryDirectory()
        try Files.write("model m\ninput x: [tokens, 4]\nlet y = x |> nosuch\noutput y\n", to: dir.file("g.moe"))
        let r = try Moec.run(["run", "g.moe", "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path)
        expectFailure(r, ["g.moe:3:"])
        let b = try Moec.run(["bench", "g.moe", "--model", Files.example, "--tokens", "1"], in: dir.path)
        expectFailure(b, ["g.moe:3:"])
        #expect(b.stdout.isEmpty, "\(b)")
        try FileManager.default.createDirectory(atPath: dir.file("folder.moe"), withIntermediateDirectories: false)
        expectFailure(
            try Moec.run(["run", "folder.moe", "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path),
            ["folder.moe", "is a folder"])
        expectFolder(dir.path, holds: ["g.moe", "folder.moe"])
    }

    @Test func setUnknownParamOrBadValue() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        let unknown = try Moec.run(["compile", "g.moe", "--model", Files.example, "--set", "bogus=3", "-o", "p.json"], in: dir.path)
        expectFailure(unknown, ["--set bogus=3: no param named 'bogus'", "hidden, ffn, num_experts, top_k, layer"])
        let bad = try Moec.run(["compile", "g.moe", "--model", Files.example, "--set", "top_k=abc", "-o", "p.json"], in: dir.path)
        expectFailure(bad, ["g.moe:14:7: error: --set top_k=abc: 'abc' is not a valid int"])
        let fraction = try Moec.run(["compile", "g.moe", "--set", "top_k=2.5", "--emit", "ir"], in: dir.path)
        expectFailure(fraction, ["g.moe:14:7: error: --set top_k=2.5: '2.5' is not a valid int"])
        let zero = try Moec.run(["compile", "g.moe", "--set", "top_k=0", "--emit", "ir"], in: dir.path)
        expectFailure(zero, ["g.moe:27:44: error: topk k must be at least 1, got 0"])
        let tooMany = try Moec.run(["compile", "g.moe", "--model", Files.example, "--set", "top_k=9", "-o", "p.json"], in: dir.path)
        expectFailure(tooMany, ["g.moe:27:", "larger than the number of experts"])
        let layer = try Moec.run(["compile", "g.moe", "--model", Files.example, "--set", "layer=7", "-o", "p.json"], in: dir.path)
        expectFailure(layer, ["g.moe:20:3: error: weight 'gate': the checkpoint has no tensor 'model.layers.7.block_sparse_moe.gate.weight'"])
        for r in [unknown, bad, fraction, zero, tooMany, layer] { #expect(r.stdout.isEmpty, "\(r)") }
        expectFolder(dir.path, holds: ["g.moe"])
    }
}
