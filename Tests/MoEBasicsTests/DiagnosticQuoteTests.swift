import Testing

@testable import MoEBasics

/// A diagnostic quotes at most `quotedLineLimit` characters of its source line, around the caret.
@Suite struct DiagnosticQuoteTests {
    func render(_ line: String, column: Int, length: Int = 1) -> [Substring] {
        let engine = DiagnosticEngine()
        engine.register(SourceFile(path: "long.moe", text: line + "\n"))
        let at = SourceRange(SourceLocation(file: "long.moe", line: 1, column: column), length: length)
        return engine.render([.error("bad", at: at)]).split(separator: "\n", omittingEmptySubsequences: false)
    }

    /// One million characters on one line, the error in the middle: a window of the line is
    /// quoted, cut at both ends, and the caret stands under the character the column names.
    @Test func aMegabyteLineIsCutAroundTheCaret() {
        let column = 500_000
        let line = String(repeating: "a", count: column - 1) + "X" + String(repeating: "b", count: 500_000)
        let out = render(line, column: column)
        #expect(out[0] == "long.moe:1:500000: error: bad")
        let quote = out[1], caret = out[2]
        #expect(quote.count <= DiagnosticEngine.quotedLineLimit + 2)
        #expect(quote.hasPrefix("…") && quote.hasSuffix("…"))
        let caretAt = caret.firstIndex(of: "^").map { caret.distance(from: caret.startIndex, to: $0) }
        #expect(caretAt.map { Array(quote)[$0] } == "X")
    }

    /// Near the start of a long line only the end is cut; short lines are quoted whole.
    @Test func cutsOnlyWhereTheLineContinues() {
        let long = "X" + String(repeating: "b", count: 999)
        let out = render(long, column: 1)
        #expect(out[1].hasPrefix("X") && out[1].hasSuffix("…") && out[2].hasPrefix("^"))
        let short = "let y = foo(x)"
        #expect(render(short, column: 9, length: 3)[1] == "let y = foo(x)")
        #expect(render(short, column: 9, length: 3)[2] == "        ^~~")
    }
}
