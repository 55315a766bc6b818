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

    // MARK: List-valued keys, null, comparisons

    func hasOp(_ g: Graph?, _ op: Op) -> Bool { g?.nodes.contains { $0.op == op } == true }

    @Test func listValuedKeysAreIndexed() {
        let (g, d) = lower("param k: int from \"moe_topk\"[1]\ninput x: [tokens, k]\noutput x", config: #"{"moe_topk": [2, 3]}"#)
        #expect(!d.hasErrors, "\(d.render())")
        #expect(value(g, "k")?.value == .int(3))
        #expect(value(g, "k")?.source == "config.json:moe_topk[1]")
    }

    @Test func aListIsIndexedByAnEarlierIntParam() {
        let text = "param layer = 1\nparam k: int from \"moe_topk\"[layer]\ninput x: [tokens, k]\noutput x"
        let (g, d) = lower(text, config: #"{"moe_topk": [2, 3]}"#)
        #expect(!d.hasErrors, "\(d.render())")
        #expect(value(g, "k")?.value == .int(3) && value(g, "k")?.source == "config.json:moe_topk[1]")
        let (_, d2) = lower(text, config: #"{"moe_topk": [2, 3]}"#, set: [("layer", "5")])
        #expect(d2.diagnostics.first?.message == #"config.json: key "moe_topk" has 2 elements; index 5 is out of range"#, "\(d2.render())")
        let (_, d3) = lower("param k: int from \"moe_topk\"[layr]\ninput x: [tokens, k]\noutput x", config: #"{"moe_topk": [2, 3]}"#)
        #expect(d3.diagnostics.first?.message == #"unknown param 'layr' in the index of "moe_topk"[layr]"#, "\(d3.render())")
        #expect(d3.diagnostics.first?.location?.column == 30)
    }

    @Test func anIndexedKeyFallsBackToALaterKeyWhenItIsNoList() {
        let text = "param layer = 1\nparam k: int from \"moe_topk\"[layer], \"moe_topk\"\ninput x: [tokens, k]\noutput x"
        let (g, d) = lower(text, config: #"{"moe_topk": 4}"#)
        #expect(!d.hasErrors, "\(d.render())")
        #expect(value(g, "k")?.value == .int(4) && value(g, "k")?.source == "config.json:moe_topk")
        let (g2, _) = lower(text, config: #"{"moe_topk": [2, 3]}"#)
        #expect(value(g2, "k")?.value == .int(3) && value(g2, "k")?.source == "config.json:moe_topk[1]")
    }

    @Test func listIndexOutOfRangeIsLocated() {
        let (g, d) = lower("param k: int from \"moe_topk\"[2]\ninput x: [tokens, k]\noutput x", config: #"{"moe_topk": [2, 3]}"#)
        #expect(g == nil)
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message == #"config.json: key "moe_topk" has 2 elements; index 2 is out of range"#, "\(d.render())")
        #expect(e?.location?.line == 1 && e?.location?.column == 30)
    }

    @Test func indexingANonListIsLocated() {
        let (_, d) = lower("param k: int from \"top_k\"[0]\ninput x: [tokens, k]\noutput x", config: #"{"top_k": 2}"#)
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message == #"config.json: key "top_k" is 2, not a list, so it has no element [0]"#, "\(d.render())")
        #expect(e?.location?.column == 27)
    }

    @Test func aListWithoutAnIndexSaysHowToPickOne() {
        let (_, d) = lower("param k: int from \"moe_topk\"\ninput x: [tokens, k]\noutput x", config: #"{"moe_topk": [2, 2]}"#)
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message == #"config.json: key "moe_topk" is [2,2], not an integer"#, "\(d.render())")
        #expect(e?.notes.first?.message == #"the key holds a list: pick an element with "moe_topk"[0]"#)
    }

    let nullable = """
        param hidden = 8
        param n_group: int? from "n_group"
        param method = "greedy" from "topk_method"
        input x: [tokens, hidden]
        let a = x |> softmax if n_group == null
        let b = a |> sigmoid if method == "noaux_tc"
        output b
        """

    @Test func nullIsAValueTheGraphCanTest() {
        let (g, d) = lower(nullable, config: #"{"n_group": null, "topk_method": "noaux_tc"}"#)
        #expect(!d.hasErrors, "\(d.render())")
        #expect(value(g, "n_group")?.value == .null)
        #expect(value(g, "n_group")?.source == "config.json:n_group")
        #expect(hasOp(g, .softmax) && hasOp(g, .sigmoid))
        let (g2, d2) = lower(nullable, config: #"{"n_group": 4, "topk_method": "greedy"}"#)
        #expect(!d2.hasErrors, "\(d2.render())")
        #expect(value(g2, "n_group")?.value == .int(4))
        #expect(!hasOp(g2, .softmax) && !hasOp(g2, .sigmoid))
        let (g3, _) = lower(nullable, config: #"{"n_group": 4, "topk_method": "greedy"}"#, set: [("n_group", "null")])
        #expect(value(g3, "n_group")?.value == .null && value(g3, "n_group")?.source == "--set")
    }

    @Test func nullForAParamThatCannotBeNullIsAnError() {
        let (g, d) = lower("param n: int = 1 from \"n_group\"\ninput x: [tokens, n]\noutput x", config: #"{"n_group": null}"#)
        #expect(g == nil, "a null is not silently replaced by the default")
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message == #"config.json: key "n_group" is null, but param 'n' is an integer"#, "\(d.render())")
        #expect(e?.location?.column == 23)
        #expect(e?.notes.first?.message.contains("declare it 'n: int?'") == true)
    }

    @Test func nullUsedAsANumberIsLocated() {
        let (g, d) = lower("param n: int? from \"n_group\"\ninput x: [tokens, n * 2]\noutput x", config: #"{"n_group": null}"#)
        #expect(g == nil)
        let e = d.diagnostics.first { $0.severity == .error }
        #expect(e?.message == "'n' is null here, not a number or a tensor", "\(d.render())")
        #expect(e?.location?.line == 2 && e?.location?.column == 19)
        #expect(e?.notes.first?.message == "its value is null (from config.json:n_group); guard the use with 'if n != null'")
    }
}
