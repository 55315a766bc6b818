import Foundation
import MoEBasics
import MoECompiler
import MoETestSupport
import Testing

/// Each `Diagnostics/NAME.moe` parses but is wrong in meaning (names, types, shapes, routing);
/// `NAME.expected` holds what the compiler must report, with source positions. Re-record with
/// MOEC_BLESS=1 and review the diff.
@Suite struct LoweringDiagnosticTests {
    static let folder = RepoPaths.path("Tests/MoECompilerTests/Diagnostics")

    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".moe") }.sorted()
    }

    @Test(arguments: cases)
    func loweringDiagnostics(_ name: String) throws {
        let session = CompilerSession(CompileOptions(graphPath: Self.folder + "/" + name))
        var rendered = ""
        do {
            _ = try session.lower()
            Issue.record("\(name) is meant to fail")
        } catch let e as DiagnosticError {
            let others = session.diagnostics.diagnostics.filter { !e.diagnostics.contains($0) }
            rendered = session.diagnostics.render(others + e.diagnostics)
        }
        rendered = rendered.replacingOccurrences(of: Self.folder + "/", with: "")
        let golden = Self.folder + "/" + name.replacingOccurrences(of: ".moe", with: ".expected")
        if let problem = Golden.check(rendered, against: golden) { Issue.record(Comment(rawValue: problem)) }
    }
}
