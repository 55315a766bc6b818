import Foundation
import MoEIR
import MoEPasses
import MoETestSupport
import Testing

/// Pass tests that start from IR text, as Cranelift's filetests and MLIR's lit tests do:
/// `Golden/<Pass>/<case>.ir` is read, the one pass runs, the verifier checks the result, and its
/// printed form must equal `<case>.ir.expected`. Re-record the expected files with
/// `MOEC_BLESS=1` and review the diff: each must show what the pass is meant to do, no more.
enum PassGolden {
    /// The graph read from the case's input and the graph the pass made of it.
    static func run(_ pass: some Pass, _ testCase: String) throws -> (before: Graph, after: Graph) {
        let input = RepoPaths.path("Tests/MoEPassesTests/Golden/\(type(of: pass))/\(testCase).ir")
        let before = try IRReader(file: input).read(try String(contentsOfFile: input, encoding: .utf8))
        let after = try pass.run(before)
        let problems = Verifier.verify(after)
        #expect(problems.isEmpty, "after \(type(of: pass).name): \(problems.map(\.description))")
        if let difference = Golden.check(IRPrinter().print(after), against: input + ".expected") {
            Issue.record(Comment(rawValue: difference))
        }
        return (before, after)
    }

    /// For cases the pass must leave alone: the graph after the pass is the graph before it.
    static func expectUnchanged(_ pass: some Pass, _ testCase: String) throws {
        let (before, after) = try run(pass, testCase)
        #expect(after == before, "\(type(of: pass).name) changed \(testCase).ir")
    }
}
