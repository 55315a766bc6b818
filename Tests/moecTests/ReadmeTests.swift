import Foundation
import MoEIO
import MoETestSupport
import Testing

/// The README's first example is what a newcomer types first: it must work as written.
@Suite struct ReadmeTests {
    /// The `sh` block of the README that runs `moec run`, with continuation lines joined, and the
    /// output block printed after it.
    static func example() throws -> (command: [String], output: [String]) {
        let text = try String(contentsOfFile: RepoPaths.path("README.md"), encoding: .utf8)
        let blocks = text.components(separatedBy: "```")
        // Odd pieces are inside fences; the first line is the language.
        for i in stride(from: 1, to: blocks.count, by: 2) where blocks[i].contains("moec run graphs/mixtral.moe") && blocks[i].hasPrefix("sh") {
            let command = blocks[i].dropFirst(2).replacingOccurrences(of: "\\\n", with: " ")
                .split(whereSeparator: \.isWhitespace).map(String.init)
            let output = i + 2 < blocks.count ? blocks[i + 2].split(separator: "\n").map(String.init) : []
            return (command, output)
        }
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "README.md has no ```sh block running 'moec run graphs/mixtral.moe'"])
    }

    @Test func exampleCommandRunsAsWritten() throws {
        let (command, output) = try Self.example()
        // `swift run -c release moec` builds and runs the binary; the tests run the one just built.
        let launcher = ["swift", "run", "-c", "release", "moec"]
        try #require(Array(command.prefix(launcher.count)) == launcher, "README command changed: \(command)")
        let arguments = Array(command.dropFirst(launcher.count))
        #expect(arguments.first == "run")
        #expect(arguments.contains("--check"))

        // The command uses paths relative to the repository; run it in a scratch folder that
        // sees the repository's graphs and examples, so y.npy lands there.
        let dir = TemporaryDirectory()
        for name in ["graphs", "examples"] {
            try FileManager.default.createSymbolicLink(atPath: dir.file(name), withDestinationPath: RepoPaths.path(name))
        }
        let r = try Moec.run(arguments, in: dir.path)
        expectSuccess(r)

        // The output the README shows: the same first line, a check line that says ok.
        try #require(output.count == 3, "README output block: \(output)")
        #expect(r.stderr.contains(output[0]), "README says '\(output[0])'\n\(r)")
        #expect(output[1].hasPrefix("ran mixtral on 16 tokens in ") && r.stderr.contains("ran mixtral on 16 tokens in "), "\(r)")
        let check = r.stderr.split(separator: "\n").first { $0.hasPrefix("check y: max |Δ| / max |ref| = ") }
        #expect(check?.hasSuffix("ok (tolerance 1e-04)") == true, "\(r)")
        #expect(output[2].hasSuffix("ok (tolerance 1e-04)"))

        let y = try NpyArray(path: dir.file("y.npy"))
        let reference = try NpyArray(path: Files.example + "/y_transformers.npy")
        #expect(y.shape == [16, 32])
        #expect(relativeError(y.floats(), reference.floats()) <= 1e-4)
    }

    /// The "Expert placement" section: each `moec profile` / `moec place` command runs as
    /// written (in order, in one folder), and the output block after it is what it prints.
    @Test func expertPlacementExampleRunsAsWritten() throws {
        let text = try String(contentsOfFile: RepoPaths.path("README.md"), encoding: .utf8)
        let section = try #require(
            text.components(separatedBy: "## Expert placement").dropFirst().first?
                .components(separatedBy: "\n## ").first, "README.md has no 'Expert placement' section")
        let blocks = section.components(separatedBy: "```")
        var steps: [(command: [String], output: [String])] = []
        for i in stride(from: 1, to: blocks.count, by: 2) where blocks[i].hasPrefix("sh") {
            let command = blocks[i].dropFirst(2).replacingOccurrences(of: "\\\n", with: " ")
                .split(whereSeparator: \.isWhitespace).map(String.init)
            let output = i + 2 < blocks.count ? blocks[i + 2].split(separator: "\n", omittingEmptySubsequences: false).map(String.init) : []
            steps.append((command, output.filter { !$0.isEmpty }))
        }
        try #require(steps.map { $0.command.prefix(2).joined(separator: " ") } == ["moec profile", "moec place"], "\(steps)")
        let dir = TemporaryDirectory()
        for name in ["graphs", "examples"] {
            try FileManager.default.createSymbolicLink(atPath: dir.file(name), withDestinationPath: RepoPaths.path(name))
        }
        for step in steps {
            #expect(!step.output.isEmpty, "README shows no output for '\(step.command.joined(separator: " "))'")
            let r = try Moec.run(Array(step.command.dropFirst()), in: dir.path)
            expectSuccess(r)
            let printed = r.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            #expect(printed == step.output, "README output of '\(step.command.joined(separator: " "))' differs:\n\(r)")
        }
        expectFolder(dir.path, holds: ["graphs", "examples", "stats.json", "placement.json"])
    }
}
