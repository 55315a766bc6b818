import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoESyntax

/// Each `Diagnostics/NAME.moe` is a broken source; `NAME.expected` holds the diagnostics the
/// parser must print for it. Re-record with MOEC_BLESS=1 and review the diff.
@Suite struct DiagnosticGoldenTests {
    static let folder = RepoPaths.path("Tests/MoESyntaxTests/Diagnostics")

    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".moe") }.sorted()
    }

    @Test(arguments: cases)
    func parserDiagnostics(_ name: String) throws {
        let text = try String(contentsOfFile: Self.folder + "/" + name, encoding: .utf8)
        let d = DiagnosticEngine()
        _ = Parser.parse(SourceFile(path: name, text: text), diagnostics: d)
        #expect(d.hasErrors, "\(name) is meant to be broken")
        let golden = Self.folder + "/" + name.replacingOccurrences(of: ".moe", with: ".expected")
        if let problem = Golden.check(d.render(), against: golden) { Issue.record(Comment(rawValue: problem)) }
    }
}
