import Foundation
import MoETestSupport
import Testing

/// --help, unknown commands and options, bad option values: the argument layer.
@Suite struct UsageTests {
    @Test func toolHelpListsCommandsWithAnExample() throws {
        for args in [["--help"], ["-h"], ["help"]] {
            let r = try Moec.run(args, in: RepoPaths.root)
            expectSuccess(r)
            for c in ["compile", "run", "bench", "profile", "place"] { #expect(r.stdout.contains("  \(c) "), "\(r)") }
            #expect(r.stdout.contains("EXAMPLES:"), "\(r)")
            #expect(r.stdout.contains("moec compile graphs/mixtral.moe"), "\(r)")
            #expect(r.stdout.contains("moec run "), "\(r)")
        }
    }

    @Test(arguments: ["compile", "run", "bench", "profile", "place", "lsp"])
    func commandHelpExplainsWithAnExample(_ command: String) throws {
        for args in [[command, "--help"], [command, "-h"], ["help", command], [command, "--help", "--bogus-after-help"]] {
            let r = try Moec.run(args, in: RepoPaths.root)
            expectSuccess(r)
            #expect(r.stdout.contains("USAGE:\n  moec \(command) "), "\(r)")
            #expect(r.stdout.contains("OPTIONS:"), "\(r)")
            let examples = r.stdout.components(separatedBy: "EXAMPLES:\n").last ?? ""
            #expect(r.stdout.contains("EXAMPLES:") && examples.contains("  moec \(command) "), "\(r)")
            #expect(r.stderr.isEmpty, "\(r)")
        }
    }

    @Test func noArgumentsPrintsHelpToStderrAndExitsTwo() throws {
        let r = try Moec.run([], in: RepoPaths.root)
        expectFailure(r, status: 2, ["USAGE:", "moec COMMAND"])
        #expect(r.stdout.isEmpty)
    }

    @Test func versionPrintsAVersion() throws {
        let r = try Moec.run(["--version"], in: RepoPaths.root)
        expectSuccess(r)
        #expect(r.stdout.hasPrefix("moec "), "\(r)")
    }

    @Test func unknownCommandSuggestsTheClosest() throws {
        expectFailure(
            try Moec.run(["compil", "graphs/mixtral.moe"], in: RepoPaths.root), status: 2,
            ["unknown command 'compil'", "did you mean 'compile'?"])
        expectFailure(try Moec.run(["bnech"], in: RepoPaths.root), status: 2, ["unknown command 'bnech'", "did you mean 'bench'?"])
        let far = try Moec.run(["frobnicate"], in: RepoPaths.root)
        expectFailure(far, status: 2, ["unknown command 'frobnicate'", "moec --help"])
        #expect(!far.stderr.contains("did you mean"))
    }

    @Test func unknownOptionSuggestsTheClosest() throws {
        expectFailure(
            try Moec.run(["compile", "graphs/mixtral.moe", "--modle", "x"], in: RepoPaths.root), status: 2,
            ["unknown option '--modle' for 'moec compile'", "did you mean '--model'?", "moec compile --help"])
        expectFailure(
            try Moec.run(["run", "p.json", "--inptu", "x=x.npy"], in: RepoPaths.root), status: 2,
            ["unknown option '--inptu'", "did you mean '--input'?"])
        expectFailure(
            try Moec.run(["bench", "p.json", "--token=4"], in: RepoPaths.root), status: 2,
            ["unknown option '--token'", "did you mean '--tokens'?"])
    }

    @Test func badOptionUse() throws {
        let cases: [([String], String)] = [
            (["compile"], "missing GRAPH.moe"),
            (["compile", "a.moe", "b.moe"], "expected one graph, got 2"),
            (["compile", "graphs/mixtral.moe", "--emit", "llvm"], "unknown stage 'llvm' for --emit (choose ast, ir, ir-opt or plan)"),
            (["compile", "graphs/mixtral.moe", "--emit=ir", "--emit=ast"], "option '--emit' is given more than once"),
            (["compile", "graphs/mixtral.moe", "--verify-each-pass=yes"], "option '--verify-each-pass' takes no value"),
            (["compile", "graphs/mixtral.moe", "-o"], "option '-o' needs a value (PLAN)"),
            (["compile", "graphs/mixtral.moe", "--set", "layer"], "--set expects NAME=VALUE, got 'layer'"),
            (["compile", "graphs/mixtral.moe", "--set", "=3"], "--set expects NAME=VALUE, got '=3'"),
            (["run", "p.json", "--input", "x=x.npy"], "give at least one --output NAME=FILE.npy"),
            (["run", "p.json", "--input", "x", "--output", "y=y.npy"], "--input expects NAME=VALUE, got 'x'"),
            (["run", "--input", "x=x.npy", "--output", "y=y.npy"], "missing PLAN or GRAPH.moe"),
            (["run", "p.json", "--output", "y=y.npy", "--threads", "0"], "--threads expects a positive integer, got '0'"),
            (["run", "p.json", "--output", "y=y.npy", "--tolerance", "-1"], "--tolerance expects a non-negative number, got '-1'"),
            (["bench", "p.json"], "missing --tokens N[,N...]"),
            (["bench", "p.json", "--tokens", "1", "--repeat", "0"], "--repeat expects a positive integer, got '0'")
        ]
        for (args, message) in cases {
            let r = try Moec.run(args, in: RepoPaths.root)
            expectFailure(r, status: 2, [message, "run 'moec \(args[0]) --help' for usage"])
        }
    }

    @Test(arguments: ["0", "abc", "-1", "1,,2", "1,x", "", "2.5", "99999999999"])
    func benchRejectsBadTokenCounts(_ tokens: String) throws {
        // Checked before anything is loaded: the plan need not even exist.
        let r = try Moec.run(["bench", "no-such.plan.json", "--tokens", tokens], in: RepoPaths.root)
        expectFailure(r, status: 2, ["--tokens expects positive integers separated by commas, got '\(tokens)'"])
        #expect(r.stdout.isEmpty, "\(r)")
    }

    @Test func benchRefusesTokenCountsThatDoNotFitInMemory() throws {
        // 2^24 tokens of 2^20 floats: petabytes of buffers. Refused before anything is allocated
        // (allocating them used to end the process with a trap).
        let dir = TemporaryDirectory()
        try Files.write("model wide\ninput x: [tokens, 1048576]\noutput y = x * 2.0\n", to: dir.file("wide.moe"))
        let r = try Moec.run(["bench", "wide.moe", "--model", Files.example, "--tokens", "1,16777216", "--json"], in: dir.path)
        expectFailure(r, ["error: --tokens: 16777216 tokens need ", "GB of buffers, more than this machine's memory ("])
        #expect(r.stdout.isEmpty, "\(r)")
    }

    @Test func planTakesNoModelOrSet() throws {
        let dir = TemporaryDirectory()
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        expectFailure(
            try Moec.run(["run", "p.json", "--set", "layer=1", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"], in: dir.path),
            status: 2, ["--model, --set and --weights apply to a .moe graph"])
        expectFolder(dir.path, holds: ["p.json"])
    }
}
