import Foundation
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// The IR text form loses nothing: every example graph, as `--emit ir` (lowered) and
/// `--emit ir-opt` (optimised) print it, reads back to the same graph and prints the same text.
@Suite struct IRTextRoundTripTests {
    static let graphs: [String] = {
        var out: [String] = []
        for folder in ["", "mechanisms/"] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs + "/" + folder)) ?? []
            out += names.filter { $0.hasSuffix(".moe") }.sorted().map { folder + $0 }
        }
        return out
    }()

    @Test func everyExampleGraphIsCovered() {
        #expect(Self.graphs.count >= 20, "\(Self.graphs)")
        #expect(Self.graphs.contains("mixtral.moe") && Self.graphs.contains("mechanisms/upcycling.moe"))
    }

    @Test(arguments: graphs)
    func printedGraphsReadBack(_ file: String) throws {
        // Full paths: the printer shortens them and lists them in the header.
        let session = CompilerSession(CompileOptions(graphPath: RepoPaths.graphs + "/" + file, verifyEachPass: true))
        for (stage, g) in [("ir", try session.lower()), ("ir-opt", try session.optimize())] {
            let text = IRPrinter().print(g)
            #expect(text.hasPrefix("graph \(g.name) {") && text.contains("# \(RepoPaths.graphs)/\(file)\n"), "the header lists the source's path")
            #expect((g.lastReaders != nil) == (stage == "ir-opt"))
            let back = try IRReader(file: file + "." + stage).read(text)
            #expect(back == g, "\(file) --emit \(stage) reads back to another graph")
            #expect(IRPrinter().print(back) == text, "\(file) --emit \(stage)")
        }
    }
}
