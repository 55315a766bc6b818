import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIO

@Suite struct ModelConfigTests {
    let dir = TemporaryDirectory("moeio-config")

    func write(_ text: String) throws -> String {
        let path = dir.file("config.json")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func diagnostic(_ body: () throws -> Void) -> Diagnostic? {
        do { try body(); return nil } catch let d as Diagnostic { return d } catch { return nil }
    }

    @Test func readsValuesAndDottedPaths() throws {
        let c = try ModelConfig(
            path: write(
                """
                {"model_type": "qwen3_moe", "num_experts": 8, "rope_scaling": null,
                 "text_config": {"hidden_size": 64, "layer_types": ["full", "sliding"], "rope.theta": 1e6},
                 "a.b": 1, "a": {"b": 2}}
                """))
        #expect(c.value("model_type") == JSON("qwen3_moe"))
        #expect(c.value("num_experts")?.int == 8)
        #expect(c.value("rope_scaling")?.isNull == true)
        #expect(c.value("text_config.hidden_size")?.int == 64)
        #expect(c.value("text_config.layer_types.1") == JSON("sliding"))
        #expect(c.value("text_config.layer_types.2") == nil)
        #expect(c.value("text_config.missing") == nil)
        #expect(c.value("a.b")?.int == 1) // a literal key wins over the path
        #expect(c.value("") == nil)
        #expect(c.values.keys.first == "model_type")
    }

    @Test func invalidJSONGivesLineAndColumn() throws {
        let path = try write("{\n  \"hidden_size\": 64,\n  \"num_experts\": 8,,\n}")
        let d = diagnostic { _ = try ModelConfig(path: path) }
        #expect(d?.description == "\(path):3:20: error: invalid JSON: expected a string key in object")
    }

    @Test func topLevelMustBeAnObject() throws {
        let path = try write("[1, 2]")
        let d = diagnostic { _ = try ModelConfig(path: path) }
        #expect(d?.description == "\(path):1:1: error: the top level of a model config must be a JSON object, found an array")
        let m = diagnostic { _ = try ModelConfig(json: .number(3)) }
        #expect(m?.description == "config.json:1:1: error: the top level of a model config must be a JSON object, found a number")
    }

    @Test func missingFile() {
        let d = diagnostic { _ = try ModelConfig(path: dir.file("nope.json")) }
        #expect(d?.description == "\(dir.file("nope.json")): error: model config not found")
    }

    @Test func requireExplainsWhatIsMissing() throws {
        let c = try ModelConfig(json: JSON.parse(#"{"text_config": {"hidden_size": 64, "num_heads": 4}, "vocab_size": 10}"#), path: "config.json")
        #expect(try c.require("text_config.hidden_size").int == 64)
        var d = diagnostic { _ = try c.require("text_config.hiden_size") }
        #expect(d?.description == "config.json: error: model config has no 'text_config.hiden_size' (no 'hiden_size' in 'text_config')")
        #expect(d?.notes.map(\.message) == ["did you mean 'hidden_size'?"])
        d = diagnostic { _ = try c.require("vocab_size.x") }
        #expect(d?.message == "model config has no 'vocab_size.x' (no 'x' in 'vocab_size', which is a number)")
        d = diagnostic { _ = try c.require("vocab_sise") }
        #expect(d?.message == "model config has no 'vocab_sise'")
        #expect(d?.notes.map(\.message) == ["did you mean 'vocab_size'?"])
    }
}
