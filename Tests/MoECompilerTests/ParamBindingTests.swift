import Foundation
import MoEBasics
import MoECompiler
import MoEIR
import MoESyntax
import MoETestSupport
import Testing

/// Params take `--set` first, then config.json, then the default; every failure is located.
@Suite struct ParamBindingTests {
    let source = """
        param hidden = 8 from "hidden_size"
        param k: int from "num_experts_per_tok", "top_k"
        param norm = false from "norm_topk_prob"
        param scale = 1.5 from "routed_scaling_factor"
        input x: [tokens, hidden]
        output x
        """

    func lower(_ text: String = "", config: String?, set: [(String, String)] = []) -> (Graph?, DiagnosticEngine) {
        let d = DiagnosticEngine()
        let file = SourceFile(path: "p.moe", text: text.isEmpty ? source : text)
        let ast = Parser.parse(file, diagnostics: d)
        var sources = ParamSources(overrides: set)
        if let config { sources.config = try! JSON.parse(config).object }
        return (ASTToIR.lower(ast, sources: sources, diagnostics: d), d)
    }

    func value(_ g: Graph?, _ name: String) -> ParamBinding? { g?.params.first { $0.name == name } }

    @Test func precedenceSetThenConfigThenDefault() {
        let (g, d) = lower(config: #"{"hidden_size": 32, "top_k": 3, "routed_scaling_factor": 2}"#, set: [("hidden", "64")])
        #expect(!d.hasErrors, "\(d.render())")
        #expect(value(g, "hidden")?.value == .int(64) && value(g, "hidden")?.source == "--set")
        #expect(value(g, "k")?.value == .int(3), "the second key is used when the first is absent")
        #expect(value(g, "norm")?.value == .bool(false) && value(g, "norm")?.source == "default")
        #expect(value(g, "scale")?.value == .float(2), "an integer in config.json fits a float param")
        #expect(
            d.diagnostics.contains { $0.severity == .warning && $0.message.contains("norm_topk_prob") },
            "a missing key with a default is a warning")
    }

    @Test func missingRequiredParam() {
        let (g, d) = lower(config: #"{"hidden_size": 32}"#)
        #expect(g == nil)
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message.contains("param 'k' has no value") == true, "\(d.render())")
        #expect(e?.location?.line == 2)
    }

    @Test func requiredParamWithoutModelSaysPassModel() {
        let (_, d) = lower(config: nil)
        #expect(d.diagnostics.first?.notes.first?.message.contains("pass --model DIR") == true, "\(d.render())")
    }

    @Test func configValueOfTheWrongType() {
        let (_, d) = lower(config: #"{"hidden_size": "wide", "top_k": 2}"#)
        #expect(d.diagnostics.first?.message.contains(#"key "hidden_size" is "wide", not an integer"#) == true, "\(d.render())")
        #expect(d.diagnostics.first?.location?.line == 1)
    }

    @Test func typoInConfigKeyIsAnError() {
        let (g, d) = lower("param hidden = 8 from \"hiden_size\"\ninput x: [tokens, hidden]\noutput x", config: #"{"hidden_size": 32}"#)
        #expect(g == nil)
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message.contains(#"has no key "hiden_size""#) == true, "\(d.render())")
        #expect(e?.notes.first?.message == #"did you mean "hidden_size"?"#)
        #expect(e?.location?.column == 23)
    }

    @Test func unknownOrBadSet() {
        let (_, d) = lower(config: #"{"top_k": 2}"#, set: [("hiden", "3"), ("norm", "maybe")])
        let messages = d.diagnostics.map(\.message)
        #expect(messages.contains { $0.contains("--set hiden=3: no param named 'hiden'") }, "\(messages)")
        #expect(messages.contains { $0.contains("'maybe' is not a valid bool") }, "\(messages)")
        let unknown = d.diagnostics.first { $0.message.contains("hiden=3") }
        #expect(unknown?.notes.first?.message == "did you mean 'hidden'?")
    }

    @Test func dottedKeysReachIntoNestedObjects() {
        let (g, d) = lower(
            "param hidden: int from \"text_config.hidden_size\"\ninput x: [tokens, hidden]\noutput x",
            config: #"{"text_config": {"hidden_size": 48}}"#)
        #expect(!d.hasErrors, "\(d.render())")
        #expect(value(g, "hidden")?.value == .int(48))
    }
}
