import Foundation
import MoETestSupport
import Testing

/// Input nested far deeper than any real file (a `.moe` expression, or any JSON moec reads)
/// ends with a located error and exit status 1, never a stack overflow, and writes nothing.
@Suite struct DeepNestingTests {
    /// The parser's limit (`Parser.maxNestingDepth`).
    static let limit = 128
    static let tooDeep = "error: expression nested too deeply (more than \(limit) levels)"

    /// graphs/mixtral.moe with `let z = EXPR` before `output z` in place of `output y`.
    static func graph(_ expr: String) throws -> String {
        let source = try String(contentsOfFile: Files.mixtralGraph, encoding: .utf8)
        try #require(source.hasSuffix("output y\n"), "graphs/mixtral.moe changed")
        return source.dropLast("output y\n".count) + "let z = \(expr)\noutput z\n"
    }

    /// The line `let z = …` is on.
    static var line: Int { get throws { try String(contentsOfFile: Files.mixtralGraph, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).count - 1 } }

    func expectCompileFails(_ expr: String, at column: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = TemporaryDirectory()
        try Files.write(try Self.graph(expr), to: dir.file("g.moe"))
        let r = try Moec.run(["compile", "g.moe", "--model", Files.example, "-o", "out.plan"], in: dir.path)
        expectFailure(r, ["g.moe:\(try Self.line):\(column): \(Self.tooDeep)", "note: "], sourceLocation: sourceLocation)
        expectFolder(dir.path, holds: ["g.moe"], after: r, sourceLocation: sourceLocation)
    }

    // `let z = ` is 8 columns: the expression starts in column 9.

    @Test func twentyThousandParentheses() throws {
        try expectCompileFails(String(repeating: "(", count: 20_000) + "y" + String(repeating: ")", count: 20_000), at: 9 + Self.limit)
    }

    @Test func twentyThousandMinusSigns() throws {
        try expectCompileFails(String(repeating: "-", count: 20_000) + "y", at: 9 + Self.limit)
    }

    @Test func deepListsAndCalls() throws {
        try expectCompileFails(String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000), at: 9 + Self.limit)
        try expectCompileFails(String(repeating: "silu(", count: 20_000) + "y" + String(repeating: ")", count: 20_000), at: 9 + 5 * Self.limit + 4)
    }

    @Test func longPipelinesAndChains() throws {
        // " |> silu" is 8 columns; the 129th '|>' is one too many.
        try expectCompileFails("y" + String(repeating: " |> silu", count: 100_000), at: 10 + 8 * Self.limit + 1)
        try expectCompileFails("y" + String(repeating: " + y", count: 100_000), at: 10 + 4 * Self.limit + 1)
    }

    /// At the limit the whole compiler (the lowering recurses once per level too) gets through,
    /// even in a debug build.
    @Test func atTheLimitTheGraphCompiles() throws {
        let n = Self.limit
        for expr in [
            "y" + String(repeating: " |> softmax", count: n),
            String(repeating: "softmax(", count: n) + "y" + String(repeating: ")", count: n),
            String(repeating: "-", count: n) + "y",
            String(repeating: "(", count: n) + "y" + String(repeating: " + y)", count: n)
        ] {
            let dir = TemporaryDirectory()
            try Files.write(try Self.graph(expr), to: dir.file("g.moe"))
            let r = try Moec.run(["compile", "g.moe", "--model", Files.example, "-o", "out.plan"], in: dir.path)
            expectSuccess(r)
        }
    }

    // MARK: JSON files

    /// 100,000 `[`: the 257th (byte 256, column 257) is one level too deep.
    static let deepJSON = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    static let jsonTooDeep = "arrays and objects nested deeper than 256 levels"

    @Test func deepConfig() throws {
        let r = try BrokenConfigTests.compile(config: Self.deepJSON)
        expectFailure(r, ["model/config.json:1:257: error: invalid JSON: \(Self.jsonTooDeep)"])
    }

    @Test func deepPlan() throws {
        let dir = TemporaryDirectory()
        try Files.write(Self.deepJSON, to: dir.file("deep.json"))
        try PlanFileTests.expectPlanRefused(dir, plan: "deep.json", ["deep.json: not a plan: invalid JSON at 1:257: \(Self.jsonTooDeep)"])
    }

    @Test func deepLoadStatisticsAndPlacements() throws {
        let dir = TemporaryDirectory()
        try Files.write(Self.deepJSON, to: dir.file("deep.json"))
        try Files.write(PlaceTests.skewed, to: dir.file("stats.json"))
        let stats = try Moec.run(["place", "--load", "deep.json", "--workers", "2", "-o", "p.json"], in: dir.path)
        expectFailure(stats, ["deep.json:1:257: \(Self.jsonTooDeep)"])
        let previous = try Moec.run(["place", "--load", "stats.json", "--workers", "2", "--previous", "deep.json", "-o", "p.json"], in: dir.path)
        expectFailure(previous, ["deep.json:1:257: \(Self.jsonTooDeep)"])
        let run = try RunByPlacementTests().run(["--placement", "deep.json"], in: dir)
        expectFailure(run, ["deep.json:1:257: \(Self.jsonTooDeep)"])
        expectFolder(dir.path, holds: ["deep.json", "stats.json"], after: run)
    }

    @Test func deepSafetensorsHeaderAndIndex() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        // A safetensors file whose header is the deep JSON.
        let header = Data(Self.deepJSON.utf8)
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(header)
        try Files.model(dir.path, "st", weights: file)
        let st = try Moec.run(["compile", "g.moe", "--model", "st", "-o", "out.plan"], in: dir.path)
        expectFailure(st, ["st/model.safetensors: header is not valid JSON at byte \(8 + 256) (header line 1, column 257): \(Self.jsonTooDeep)"])
        // A sharded checkpoint whose index is the deep JSON.
        let m = try Files.model(dir.path, "idx")
        try Files.write(Self.deepJSON, to: m + "/model.safetensors.index.json")
        let idx = try Moec.run(["compile", "g.moe", "--model", "idx", "-o", "out.plan"], in: dir.path)
        expectFailure(idx, ["idx/model.safetensors.index.json: index is not valid JSON at 1:257 (byte 256): \(Self.jsonTooDeep)"])
        expectFolder(dir.path, holds: ["g.moe", "st", "idx"], after: idx)
    }
}
