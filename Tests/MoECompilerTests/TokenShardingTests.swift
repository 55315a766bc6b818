import Foundation
import MoEBackend
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// Which compiled graphs the ranks of an `mpirun` job may shard by tokens (`TokenSharding`):
/// every graph in `graphs/` whose router has no op that reads other tokens, and none of those
/// with a capacity, expert choice or Sinkhorn balancing (which the `.moe` sources name).
struct TokenShardingTests {
    static let mixing = [
        "nllb_moe.moe": "capacity", "switch.moe": "capacity", "mechanisms/expert_choice.moe": "expert_choice",
        "mechanisms/sinkhorn_router.moe": "sinkhorn"
    ]

    static var graphFiles: [String] {
        let fm = FileManager.default
        let top = (try? fm.contentsOfDirectory(atPath: RepoPaths.graphs)) ?? []
        let mechanisms = (try? fm.contentsOfDirectory(atPath: RepoPaths.graphs + "/mechanisms")) ?? []
        return (top + mechanisms.map { "mechanisms/" + $0 } + ["bench/skewed_mixtral.moe", "bench/shared_mixtral.moe"]).filter { $0.hasSuffix(".moe") }.sorted()
    }

    @Test func onlyGraphsWhoseTokensMeetAreRunWhole() throws {
        let files = Self.graphFiles
        #expect(files.count > 40 && Set(Self.mixing.keys).isSubset(of: files), "\(files)")
        for file in files {
            let g = try CompilerSession(CompileOptions(graphPath: RepoPaths.graphs + "/" + file)).optimize()
            let reason = TokenSharding.obstacle(g)
            if let op = Self.mixing[file] {
                #expect(reason?.contains(op) == true && reason?.contains("depends on the other tokens") == true, "\(file): \(reason ?? "nil")")
            } else {
                #expect(reason == nil, "\(file): \(reason ?? "")")
            }
        }
    }

    /// A softmax over a `[tokens]` value reduces over the tokens: the graph runs whole. Over
    /// `[tokens, 1]` (one score per token) it is per token.
    @Test func aReductionOverTheTokensKeepsTheGraphWhole() throws {
        let dir = TemporaryDirectory()
        for (shape, whole) in [("[tokens]", true), ("[tokens, 1]", false)] {
            let source = """
                model over_tokens
                input s: \(shape)
                output y = s |> softmax
                """
            try source.write(toFile: dir.file("g.moe"), atomically: true, encoding: .utf8)
            let g = try CompilerSession(CompileOptions(graphPath: dir.file("g.moe"))).optimize()
            let reason = TokenSharding.obstacle(g)
            #expect((reason != nil) == whole, "\(shape): \(reason ?? "nil")")
            if whole { #expect(reason?.contains("reduces over the tokens") == true, "\(reason ?? "nil")") }
        }
    }
}
