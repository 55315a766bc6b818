import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoESyntax

@Suite struct ParserTests {
    func parse(_ text: String) -> (SourceFileAST, DiagnosticEngine) {
        let d = DiagnosticEngine()
        return (Parser.parse(SourceFile(path: "t.moe", text: text), diagnostics: d), d)
    }

    @Test func parsesEveryDeclarationKind() {
        let (ast, d) = parse(
            """
            model m
            param hidden = 64 from "hidden_size", "d_model"
            param norm: bool from "norm_topk_prob"
            input x: [tokens, hidden]
            input ids: i32[tokens]
            weight g: [8, hidden] = "gate.weight"
            weights "experts." { a: [8, 4, hidden] = "{e}.a"  b: [8, hidden, 4] = "{e}.b" }
            let h = x + 1
            output y = h * 2
            """)
        #expect(!d.hasErrors, "\(d.diagnostics)")
        #expect(ast.declarations.count == 10)
        guard case .param(let p) = ast.declarations[1] else { Issue.record("param"); return }
        #expect(p.configKeys.map(\.key) == ["hidden_size", "d_model"])
        #expect(p.defaultValue == .int(64))
        guard case .param(let q) = ast.declarations[2] else { Issue.record("param"); return }
        #expect(q.type == .bool && q.defaultValue == nil)
        guard case .input(let ids) = ast.declarations[4] else { Issue.record("input"); return }
        #expect(ids.elementType == .i32)
        guard case .weight(let b) = ast.declarations[7] else { Issue.record("weight"); return }
        #expect(b.pattern == "experts.{e}.b", "the group prefix is prepended")
    }

    @Test func precedenceAndPipelines() {
        let (ast, d) = parse("let a = 1 + 2 * 3 - -x |> f(4) |> g if c")
        #expect(!d.hasErrors)
        guard case .let(let l) = ast.declarations[0] else { Issue.record("let"); return }
        #expect(ASTPrinter().expr(l.value) == "((1 + (2 * 3)) - -x) |> f(4) |> g if c")
        guard case .call(let g) = l.value else { Issue.record("call"); return }
        #expect(g.piped && g.callee.name == "g" && g.condition != nil)
        guard case .call(let f) = g.arguments[0].value else { Issue.record("inner call"); return }
        #expect(f.arguments.count == 2, "the piped value is the first argument")
    }

    @Test func moeBlockFields() {
        let (ast, d) = parse(
            """
            let y = moe(x) {
              router: x |> linear(g) |> softmax |> topk(2)
              experts: 8 of swiglu(gate: a, up: b, down: c)
              shared: swiglu(x, gate: d, up: e, down: f)
            }
            """)
        #expect(!d.hasErrors, "\(d.diagnostics)")
        guard case .let(let l) = ast.declarations[0], case .moe(let m) = l.value else { Issue.record("moe"); return }
        #expect(m.fields.map(\.name.name) == ["router", "experts", "shared"])
        #expect(m.fields[1].kind?.callee.name == "swiglu")
        #expect(m.fields[1].kind?.arguments.map { $0.label?.name } == ["gate", "up", "down"])
        #expect(m.fields[0].kind == nil)
    }

    /// Printing what was parsed, then parsing the print, gives the same print: for every
    /// example graph in the repository.
    @Test func printedGraphsReparseToTheSameText() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs).filter { $0.hasSuffix(".moe") }
        #expect(!files.isEmpty)
        for f in files {
            let text = try String(contentsOfFile: RepoPaths.graphs + "/" + f, encoding: .utf8)
            let (ast, d) = parse(text)
            #expect(!d.hasErrors, "\(f): \(d.render())")
            let printed = ASTPrinter(showLocations: false).print(ast)
            let (again, d2) = parse(printed)
            #expect(!d2.hasErrors, "\(f) reprinted: \(d2.render())")
            #expect(ASTPrinter(showLocations: false).print(again) == printed, "\(f)")
        }
    }

    @Test func recoversAndReportsSeveralErrors() {
        let (ast, d) = parse(
            """
            param a = 
            input x: [tokens, 4
            let ok = x
            weight w [4, 4] = "w"
            output ok
            """)
        #expect(d.errorCount == 3, "\(d.render())")
        let lets = ast.declarations.filter {
            if case .let = $0 { return true }; return false
        }
        let outputs = ast.declarations.filter {
            if case .output = $0 { return true }; return false
        }
        #expect(lets.count == 1 && outputs.count == 1, "declarations after errors are still parsed")
    }

    @Test func garbageNeverCrashesOrHangs() {
        // Truncations of a real graph at every length, and random bytes: the parser must
        // always finish with diagnostics, never crash or loop.
        let text = (try? String(contentsOfFile: RepoPaths.graphs + "/mixtral.moe", encoding: .utf8)) ?? "let y = moe(x) { router: x }"
        let scalars = Array(text.unicodeScalars)
        for cut in stride(from: 0, to: scalars.count, by: 7) {
            var s = ""
            s.unicodeScalars.append(contentsOf: scalars[0..<cut])
            _ = parse(s)
        }
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("moe(){}[]|>:,=+-*/#\"\n abc123 let param input weights of if".unicodeScalars)
        for _ in 0..<200 {
            var s = ""
            for _ in 0..<Int.random(in: 0..<120, using: &rng) { s.unicodeScalars.append(alphabet.randomElement(using: &rng)!) }
            _ = parse(s)
        }
    }
}
