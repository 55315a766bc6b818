import Foundation
import MoETestSupport
import Testing

/// Broken config.json: syntax errors point at config.json:LINE:COL; a config of the wrong shape
/// or a key of the wrong type says which key and points at the param that reads it.
@Suite struct BrokenConfigTests {
    static func compile(config: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Moec.Result {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        try Files.model(dir.path, config: config)
        let r = try Moec.run(["compile", "g.moe", "--model", "model", "-o", "out.plan"], in: dir.path)
        expectFolder(dir.path, holds: ["g.moe", "model"], after: r, sourceLocation: sourceLocation)
        return r
    }

    static var exampleConfig: String { get throws { try String(contentsOfFile: Files.example + "/config.json", encoding: .utf8) } }

    @Test func syntaxErrorHasLineAndColumn() throws {
        let r = try Self.compile(config: "{\n  \"hidden_size\": 32,\n  \"intermediate_size\": 64\n  \"num_local_experts\": 8\n}\n")
        expectFailure(r, ["model/config.json:4:3: error: invalid JSON: "])
    }

    @Test func truncatedConfig() throws {
        let text = try Self.exampleConfig
        let r = try Self.compile(config: String(text.prefix(300)))
        expectFailure(r, ["model/config.json:", "error: invalid JSON: "])
        let empty = try Self.compile(config: "")
        expectFailure(empty, ["model/config.json:1:1: error: invalid JSON: unexpected end of input"])
    }

    @Test func topLevelNotAnObject() throws {
        expectFailure(try Self.compile(config: "[1, 2, 3]\n"), ["model/config.json: the top level must be a JSON object, found an array"])
        expectFailure(try Self.compile(config: "\"mixtral\"\n"), ["model/config.json: the top level must be a JSON object, found a string"])
    }

    @Test func keyOfTheWrongType() throws {
        let text = try Self.exampleConfig
        let string = try Self.compile(config: text.replacingOccurrences(of: "\"hidden_size\": 32", with: "\"hidden_size\": \"32\""))
        expectFailure(
            string,
            [
                "g.moe:11:33: error: model/config.json: key \"hidden_size\" is \"32\", not an integer",
                "param hidden      = 4096   from \"hidden_size\""
            ])
        let fraction = try Self.compile(config: text.replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 2.5"))
        expectFailure(fraction, ["g.moe:14:33: error: model/config.json: key \"num_experts_per_tok\" is 2.5, not an integer"])
        let object = try Self.compile(config: text.replacingOccurrences(of: "\"num_local_experts\": 8", with: "\"num_local_experts\": {\"n\": 8}"))
        expectFailure(object, ["g.moe:13:33: error: model/config.json: key \"num_local_experts\" is "])
    }

    @Test func valueThatMakesTheGraphInvalid() throws {
        let text = try Self.exampleConfig
        let r = try Self.compile(config: text.replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 12"))
        expectFailure(r, ["g.moe:27:", "larger than the number of experts"])
    }

    @Test func configThatIsAFolder() throws {
        let dir = TemporaryDirectory()
        try Files.copy(Files.mixtralGraph, to: dir.file("g.moe"))
        try FileManager.default.createDirectory(atPath: dir.file("model/config.json"), withIntermediateDirectories: true)
        try Files.copy(Files.example + "/model.safetensors", to: dir.file("model/model.safetensors"))
        let r = try Moec.run(["compile", "g.moe", "--model", "model", "-o", "out.plan"], in: dir.path)
        expectFailure(r, ["model/config.json: cannot read the file"])
        expectFolder(dir.path, holds: ["g.moe", "model"], after: r)
    }
}
