import Foundation
import MoEBasics
import MoETestSupport
import Testing

/// `moec bench --context C`: decode steps of a decoder layer, each run the next tokens of a
/// sequence that holds C (a KV cache).
@Suite struct DecodeBenchTests {
    static let layer = RepoPaths.graphs + "/decoder/mixtral.moe"
    static let model = RepoPaths.fixtures + "/decoder/mixtral"

    @Test func timesDecodeStepsAfterTheContext() throws {
        let r = try Moec.run(
            ["bench", Self.layer, "--model", Self.model, "--tokens", "1,4", "--context", "20", "--repeat", "2", "--warmup", "0", "--json"],
            in: RepoPaths.root)
        expectSuccess(r)
        let lines = r.stdout.split(separator: "\n").map { try? JSON.parse(bytes: Array($0.utf8)) }
        #expect(lines.map { $0?["tokens"]?.int } == [1, 4], "\(r)")
        #expect(lines.allSatisfy { $0?["context"]?.int == 20 && $0?["runs"]?.int == 2 }, "\(r)")
        let text = try Moec.run(["bench", Self.layer, "--model", Self.model, "--tokens", "1", "--context", "20", "--repeat", "1"], in: RepoPaths.root)
        expectSuccess(text)
        #expect(text.stdout.contains("each run: the next tokens of a sequence holding 20 (its KV cache)"), "\(text)")
    }

    @Test func badContextsAreUsageErrors() throws {
        for value in ["0", "-3", "x", "99999999"] {
            let r = try Moec.run(["bench", Self.layer, "--model", Self.model, "--tokens", "1", "--context", value], in: RepoPaths.root)
            expectFailure(r, status: 2, ["--context"])
        }
    }
}
