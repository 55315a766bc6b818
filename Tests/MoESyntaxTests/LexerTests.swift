import MoEBasics
import Testing

@testable import MoESyntax

@Suite struct LexerTests {
    func lex(_ text: String) -> (tokens: [Token.Kind], diagnostics: DiagnosticEngine) {
        let d = DiagnosticEngine()
        var lexer = Lexer(file: SourceFile(path: "t.moe", text: text), diagnostics: d)
        return (lexer.tokenize().map(\.kind), d)
    }

    @Test func keywordsIdentifiersAndPunctuation() {
        let (t, d) = lex("let y = x |> topk(k: 2) # comment\noutput y")
        #expect(!d.hasErrors)
        #expect(
            t == [
                .keyword(.let), .identifier("y"), .punct(.equal), .identifier("x"), .punct(.pipe),
                .identifier("topk"), .punct(.lparen), .identifier("k"), .punct(.colon), .int(2), .punct(.rparen),
                .keyword(.output), .identifier("y"), .eof
            ])
    }

    @Test func numbers() {
        let (t, d) = lex("14_336 1e-6 2.5 0.5e+3 7 3.")
        #expect(!d.hasErrors)
        #expect(t == [.int(14336), .float(1e-6), .float(2.5), .float(500), .int(7), .float(3), .eof])
    }

    @Test func stringsWithEscapes() {
        let (t, d) = lex(#""a\"b\\c" "model.layers.{layer}.w""#)
        #expect(!d.hasErrors)
        #expect(t == [.string("a\"b\\c"), .string("model.layers.{layer}.w"), .eof])
    }

    @Test func locationsAreLineAndColumn() {
        let d = DiagnosticEngine()
        var lexer = Lexer(file: SourceFile(path: "t.moe", text: "param a = 1\n  input x: [t]"), diagnostics: d)
        let tokens = lexer.tokenize()
        let input = tokens.first { $0.kind == .keyword(.input) }!
        #expect(input.range.start.line == 2)
        #expect(input.range.start.column == 3)
        #expect(input.range.length == 5)
    }

    @Test func reportsEveryLexicalErrorAndContinues() {
        let (t, d) = lex("let a = 3 $ 4\nlet b = \"open\nlet c = 5x\nlet d = a | b")
        let messages = d.diagnostics.map(\.message)
        #expect(messages == ["unexpected character '$'", "unterminated string", "invalid suffix 'x' on number", "unexpected character '|'"])
        #expect(d.diagnostics.map { $0.location!.line } == [1, 2, 3, 4])
        #expect(t.contains(.identifier("d")), "lexing continues after errors")
        #expect(d.diagnostics[3].notes.first?.message == "pipelines are written '|>'")
    }

    @Test func hugeIntegerIsAnErrorNotACrash() {
        let (_, d) = lex("param a = 99999999999999999999999")
        #expect(d.diagnostics.first?.message.contains("too large") == true)
    }
}
