import Foundation
import MoEBasics
import Testing

@testable import MoESyntax

/// Expressions nested past `Parser.maxNestingDepth` are a located error, never a stack
/// overflow; expressions at the limit parse, print and parse back.
@Suite struct NestingLimitTests {
    let limit = Parser.maxNestingDepth

    func parse(_ text: String) -> (SourceFileAST, DiagnosticEngine) {
        let d = DiagnosticEngine()
        return (Parser.parse(SourceFile(path: "t.moe", text: text), diagnostics: d), d)
    }

    /// The one error of `text`: its location and message, and the note every such error has.
    func expectTooDeep(_ text: String, at column: Int, line: Int = 1, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        let (_, d) = parse(text)
        let errors = d.diagnostics.filter { $0.severity == .error }
        #expect(errors.count == 1, "\(errors.prefix(3))", sourceLocation: sourceLocation)
        guard let e = errors.first else { return }
        #expect(
            e.description == "t.moe:\(line):\(column): error: expression nested too deeply (more than \(limit) levels)",
            sourceLocation: sourceLocation)
        #expect(e.notes.first?.message.contains("name parts with 'let'") == true, sourceLocation: sourceLocation)
    }

    /// `let y = ` is 8 columns, so the expression starts in column 9.
    let start = 9

    @Test func twentyThousandParentheses() {
        let n = 20_000
        let text = "let y = " + String(repeating: "(", count: n) + "x" + String(repeating: ")", count: n) + "\noutput y\n"
        // The 129th '(' is one too many.
        expectTooDeep(text, at: start + limit)
    }

    @Test func twentyThousandMinusSigns() {
        expectTooDeep("let y = " + String(repeating: "-", count: 20_000) + "x\noutput y\n", at: start + limit)
        // Alternating with parentheses: the limit counts both, so the 65th '-' is too deep.
        expectTooDeep("let y = " + String(repeating: "- (", count: 20_000) + "x", at: start + 3 * limit / 2)
    }

    @Test func deepLists() {
        let n = 100_000
        expectTooDeep("let y = " + String(repeating: "[", count: n) + String(repeating: "]", count: n), at: start + limit)
        // In a shape, where lists cannot even appear: still the nesting error, not a crash.
        expectTooDeep("input x: [" + String(repeating: "[", count: n) + "]", at: 11 + limit)
    }

    @Test func deepCalls() {
        // f(f(f(…))): each "f(" is two columns; the 129th '(' is one too many.
        expectTooDeep("let y = " + String(repeating: "f(", count: 20_000) + "x", at: start + 2 * limit + 1)
        // Labelled arguments nest the same way.
        expectTooDeep("let y = " + String(repeating: "f(a: ", count: 20_000) + "x", at: start + 5 * limit + 1)
    }

    @Test func longPipelinesAndOperatorChains() {
        // No recursion in the parser, but a tree one level deeper per stage or operator: the
        // 129th stage (or operator) is too deep.
        expectTooDeep("let y = x" + String(repeating: " |> f", count: 100_000), at: start + 1 + 5 * limit + 1)
        expectTooDeep("let y = x" + String(repeating: " + x", count: 100_000), at: start + 1 + 4 * limit + 1)
        expectTooDeep("let y = x" + String(repeating: " * x", count: 100_000), at: start + 1 + 4 * limit + 1)
        expectTooDeep("let y = x" + String(repeating: " |> f(1)", count: 100_000), at: start + 1 + 8 * limit + 1)
        // A chain inside parentheses inside a chain: the depths add up.
        let half = String(repeating: " + x", count: limit / 2)
        let inAndOut: String = "let y = (x" + half + ")" + half + " + x"
        expectTooDeep(inAndOut, at: start + 4 + 4 * limit)
    }

    @Test func deepMoEBlocks() {
        // A moe block's input is itself a moe block, 20,000 times: "moe(" is 4 columns.
        expectTooDeep("let y = " + String(repeating: "moe(", count: 20_000) + "x", at: start + 4 * limit)
        // Deep inside a field: reported, then the block and the file go on.
        let field = "  router: " + String(repeating: "(", count: 1_000) + "x" + String(repeating: ")", count: 1_000)
        let (ast, d) = parse("let y = moe(x) {\n\(field)\n  experts: 8 of swiglu(gate: a)\n}\noutput y\n")
        // The block is one level, so the 128th '(' is too deep.
        #expect(d.diagnostics.map(\.description) == ["t.moe:2:\(10 + limit): error: expression nested too deeply (more than \(limit) levels)"])
        #expect(ast.declarations.count == 2, "the let and the output survive")
    }

    @Test func parsingGoesOnAfterTheError() {
        let deep = "let a = " + String(repeating: "(", count: 5_000) + "x" + String(repeating: ")", count: 5_000)
        let (ast, d) = parse("model m\n\(deep)\nlet b = 1 + 2\noutput b\nlet c = )\n")
        #expect(
            d.diagnostics.map(\.description) == [
                "t.moe:2:\(start + limit): error: expression nested too deeply (more than \(limit) levels)",
                "t.moe:5:9: error: expected an expression, found ')'"
            ])
        #expect(ast.declarations.count == 3, "model, let b and output b")
    }

    /// Every construct at exactly the limit parses, prints and parses back to the same text.
    @Test func atTheLimitEverythingParses() {
        let n = limit
        let cases = [
            String(repeating: "(", count: n) + "x" + String(repeating: ")", count: n),
            String(repeating: "-", count: n) + "x",
            String(repeating: "[", count: n) + String(repeating: "]", count: n),
            String(repeating: "f(", count: n) + "x" + String(repeating: ")", count: n),
            "x" + String(repeating: " |> f", count: n),
            "x" + String(repeating: " + 1", count: n),
            String(repeating: "moe(", count: n - 1) + "x" + String(repeating: ") { router: r }", count: n - 1) + " |> f"
        ]
        for (i, expr) in cases.enumerated() {
            let (ast, d) = parse("let y = \(expr)\noutput y\n")
            #expect(!d.hasErrors, "case \(i): \(d.diagnostics.prefix(2))")
            let printed = ASTPrinter(showLocations: false).print(ast)
            let (again, d2) = parse(printed)
            #expect(!d2.hasErrors, "case \(i) printed: \(d2.diagnostics.prefix(2))")
            #expect(ASTPrinter(showLocations: false).print(again) == printed, "case \(i)")
        }
        // One more level is too deep, for each of them.
        let over = [
            String(repeating: "(", count: n + 1) + "x" + String(repeating: ")", count: n + 1),
            String(repeating: "-", count: n + 1) + "x",
            String(repeating: "[", count: n + 1) + String(repeating: "]", count: n + 1),
            String(repeating: "f(", count: n + 1) + "x" + String(repeating: ")", count: n + 1),
            "x" + String(repeating: " |> f", count: n + 1),
            "x" + String(repeating: " + 1", count: n + 1),
            String(repeating: "moe(", count: n) + "x" + String(repeating: ") { router: r }", count: n) + " |> f"
        ]
        for (i, expr) in over.enumerated() {
            let (_, d) = parse("let y = \(expr)\noutput y\n")
            #expect(d.diagnostics.first?.message == "expression nested too deeply (more than \(limit) levels)", "case \(i)")
        }
    }

    @Test func binaryJunkIsOneErrorPerCharacterUpToTheLimit() {
        // 200,000 characters the lexer does not know: reported (up to the error limit), no recursion.
        let (_, d) = parse("let y = x\n" + String(repeating: "$", count: 200_000) + "\noutput y\n")
        #expect(d.errorCount == d.errorLimit)
        #expect(d.diagnostics.first?.description == "t.moe:2:1: error: unexpected character '$'")
    }
}
