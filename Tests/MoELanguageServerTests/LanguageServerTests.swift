import Foundation
import MoEBasics
import MoESyntax
import MoETestSupport
import Testing

@testable import MoELanguageServer

/// `moec lsp`'s server, driven message by message as an editor drives it.
@Suite struct LanguageServerTests {
    static let uri = "file:///tmp/moec-lsp-test/graph%20one.moe"
    static let broken = """
        model m
        input x: [tokens, 4]
        let y = frobnicate(x)
        output y

        """

    static func request(_ id: Int, _ method: String, _ params: JSON = .null) -> JSON {
        JSON(["jsonrpc": JSON("2.0"), "id": JSON(id), "method": JSON(method), "params": params])
    }

    static func notification(_ method: String, _ params: JSON) -> JSON {
        JSON(["jsonrpc": JSON("2.0"), "method": JSON(method), "params": params])
    }

    static func at(_ line: Int, _ character: Int) -> JSON {
        JSON(["textDocument": JSON(["uri": JSON(uri)]), "position": JSON(["line": JSON(line), "character": JSON(character)])])
    }

    static func initialized() -> LanguageServer {
        let server = LanguageServer()
        _ = server.handle(request(1, "initialize", JSON(["capabilities": .object(JSONObject())])))
        _ = server.handle(notification("initialized", .object(JSONObject())))
        return server
    }

    static func open(_ server: LanguageServer, _ text: String) -> [JSON] {
        server.handle(
            notification(
                "textDocument/didOpen",
                JSON(["textDocument": JSON(["uri": JSON(uri), "languageId": JSON("moe"), "version": JSON(1), "text": JSON(text)])])))
    }

    @Test func initializeAnnouncesWhatItServes() throws {
        let server = LanguageServer()
        let early = server.handle(Self.request(7, "textDocument/hover", Self.at(0, 0)))
        #expect(early.first?["error"]?["code"]?.int == -32002, "a request before initialize is refused")
        let replies = server.handle(Self.request(1, "initialize", JSON(["capabilities": .object(JSONObject())])))
        let capabilities = try #require(replies.first?["result"]?["capabilities"])
        #expect(replies.first?["id"]?.int == 1)
        #expect(capabilities["hoverProvider"]?.bool == true)
        #expect(capabilities["definitionProvider"]?.bool == true)
        #expect(capabilities["documentSymbolProvider"]?.bool == true)
        #expect(capabilities["textDocumentSync"]?["change"]?.int == 2)
        #expect(capabilities["completionProvider"] != nil)
    }

    @Test func errorsArePublishedAtTheirRangeAndClearedWhenFixed() throws {
        let server = Self.initialized()
        let published = Self.open(server, Self.broken)
        #expect(published.count == 1)
        let params = try #require(published.first?["params"])
        #expect(published.first?["method"]?.string == "textDocument/publishDiagnostics")
        #expect(params["uri"]?.string == Self.uri)
        let diagnostics = try #require(params["diagnostics"]?.array)
        #expect(diagnostics.count == 1)
        let d = try #require(diagnostics.first)
        #expect(d["message"]?.string == "unknown function 'frobnicate'")
        #expect(d["severity"]?.int == 1)
        // `frobnicate` on line 3 (0-based 2), columns 9–18 (0-based characters 8 ..< 18).
        #expect(d["range"]?["start"]?["line"]?.int == 2)
        #expect(d["range"]?["start"]?["character"]?.int == 8)
        #expect(d["range"]?["end"]?["character"]?.int == 18)

        // An incremental edit: `frobnicate` → `softmax`.
        let range = JSON(["start": JSON(["line": JSON(2), "character": JSON(8)]), "end": JSON(["line": JSON(2), "character": JSON(18)])])
        let change = Self.notification(
            "textDocument/didChange",
            JSON([
                "textDocument": JSON(["uri": JSON(Self.uri), "version": JSON(2)]),
                "contentChanges": JSON([JSON(["range": range, "text": JSON("softmax")])])
            ]))
        let after = server.handle(change)
        #expect(after.first?["params"]?["diagnostics"]?.array?.isEmpty == true, "\(after.first?.compact ?? "")")

        // Closing clears the document's diagnostics.
        let closed = server.handle(Self.notification("textDocument/didClose", JSON(["textDocument": JSON(["uri": JSON(Self.uri)])])))
        #expect(closed.first?["params"]?["diagnostics"]?.array?.isEmpty == true)
    }

    @Test func aShapeErrorFromLoweringComesWithItsRange() throws {
        let server = Self.initialized()
        let text = """
            model m
            input x: [tokens, 4]
            weight w: [8, 5] = "w"
            let y = x |> linear(w)
            output y

            """
        let diagnostics = try #require(Self.open(server, text).first?["params"]?["diagnostics"]?.array)
        let d = try #require(diagnostics.first, "a [tokens, 4] input cannot go through a [8, 5] linear")
        #expect(d["severity"]?.int == 1)
        #expect(d["range"]?["start"]?["line"]?.int == 3, "\(d.compact)")
    }

    @Test func hoverDefinitionAndOutline() throws {
        let server = Self.initialized()
        let text = """
            model m
            param width = 4
            input x: [tokens, width]
            let y = softmax(x)
            output y

            """
        _ = Self.open(server, text)
        // Hover on `x` in `softmax(x)`: the declaration and the type.
        let hover = server.handle(Self.request(2, "textDocument/hover", Self.at(3, 16)))
        let markdown = try #require(hover.first?["result"]?["contents"]?["value"]?.string)
        #expect(markdown.contains("input x: [tokens, width]"))
        #expect(markdown.contains("f32[tokens, 4]"), "\(markdown)")
        // Hover on `width`: the param's value.
        let param = server.handle(Self.request(3, "textDocument/hover", Self.at(2, 20)))
        let paramText = try #require(param.first?["result"]?["contents"]?["value"]?.string)
        #expect(paramText.contains("param width = 4"), "\(paramText)")
        // Definition of `x` at its use: its declaration on line 3 (0-based 2).
        let definition = server.handle(Self.request(4, "textDocument/definition", Self.at(3, 16)))
        #expect(definition.first?["result"]?["uri"]?.string == Self.uri)
        #expect(definition.first?["result"]?["range"]?["start"]?["line"]?.int == 2)
        #expect(definition.first?["result"]?["range"]?["start"]?["character"]?.int == 6)
        // Nothing under the cursor: a null result, not an error.
        let nothing = server.handle(Self.request(5, "textDocument/hover", Self.at(5, 0)))
        #expect(nothing.first?["result"]?.isNull == true)
        // A builtin: its signature.
        let builtin = server.handle(Self.request(7, "textDocument/hover", Self.at(3, 10)))
        let signature = try #require(builtin.first?["result"]?["contents"]?["value"]?.string)
        #expect(signature.contains("softmax(x, temperature:, groups:)"), "\(signature)")
        // Completion: builtins with their signatures, keywords, the document's names.
        let completion = server.handle(Self.request(8, "textDocument/completion", Self.at(3, 8)))
        let items = try #require(completion.first?["result"]?.array)
        let labels = Set(items.compactMap { $0["label"]?.string })
        #expect(labels.isSuperset(of: ["softmax", "topk", "linear", "param", "weights", "width", "x"]))
        #expect(items.first { $0["label"]?.string == "softmax" }?["detail"]?.string == "softmax(x, temperature:, groups:)")
        #expect(items.filter { $0["label"]?.string == "y" }.count == 1, "a name declared twice (let, output) is offered once")
        // The outline.
        let symbols = server.handle(
            Self.request(6, "textDocument/documentSymbol", JSON(["textDocument": JSON(["uri": JSON(Self.uri)])])))
        let names = symbols.first?["result"]?.array?.compactMap { $0["name"]?.string }
        #expect(names == ["m", "width", "x", "y", "y"])
    }

    @Test func badMessagesGetErrorsAndTheServerStops() {
        let server = Self.initialized()
        #expect(server.handle(Self.request(9, "textDocument/formatting"))[0]["error"]?["code"]?.int == -32601)
        #expect(server.handle(JSON([JSON(1)]))[0]["error"]?["code"]?.int == -32600)
        #expect(server.handle(Self.notification("$/cancelRequest", JSON(["id": JSON(9)]))).isEmpty)
        #expect(server.handle(Self.request(10, "shutdown"))[0]["result"]?.isNull == true)
        #expect(server.handle(Self.request(11, "textDocument/hover", Self.at(0, 0)))[0]["error"]?["code"]?.int == -32600)
        _ = server.handle(Self.notification("exit", .null))
        #expect(server.exitCode == 0)
        let abrupt = Self.initialized()
        _ = abrupt.handle(Self.notification("exit", .null))
        #expect(abrupt.exitCode == 1, "exit without shutdown is status 1")
    }

    /// Edits at any position, in the middle of a surrogate pair or past the end included, never
    /// crash the server, and every one is answered with the document's diagnostics.
    @Test func editsAnywhereAreSafe() {
        let server = Self.initialized()
        _ = Self.open(server, "model m # 😀é\ninput x: [tokens, 4] # 😀\nlet y = softmax(x)\noutput y\n")
        var rng = SplitMix64(state: 5)
        for version in 2..<200 {
            func position() -> JSON {
                JSON(["line": JSON(Int.random(in: 0..<6, using: &rng)), "character": JSON(Int.random(in: 0..<30, using: &rng))])
            }
            let insert = ["", "😀", "x", "\n", "(", "let", "é"].randomElement(using: &rng)!
            let change = Self.notification(
                "textDocument/didChange",
                JSON([
                    "textDocument": JSON(["uri": JSON(Self.uri), "version": JSON(version)]),
                    "contentChanges": JSON([JSON(["range": JSON(["start": position(), "end": position()]), "text": JSON(insert)])])
                ]))
            let replies = server.handle(change)
            #expect(replies.count == 1 && replies[0]["params"]?["diagnostics"]?.array != nil)
            _ = server.handle(Self.request(version, "textDocument/hover", JSON(["textDocument": JSON(["uri": JSON(Self.uri)]), "position": position()])))
        }
    }

    @Test func framingTakesWholeMessagesOnly() throws {
        let one = MessageFraming.frame(Self.request(1, "shutdown"))
        let two = MessageFraming.frame(Self.notification("exit", .null))
        var buffer = Array(one.prefix(10))
        #expect(try MessageFraming.takeMessage(from: &buffer) == nil)
        buffer = Array(one.dropLast())
        #expect(try MessageFraming.takeMessage(from: &buffer) == nil)
        buffer = one + two
        let first = try #require(try MessageFraming.takeMessage(from: &buffer))
        #expect(try JSON.parse(bytes: first)["method"]?.string == "shutdown")
        let second = try #require(try MessageFraming.takeMessage(from: &buffer))
        #expect(try JSON.parse(bytes: second)["method"]?.string == "exit")
        #expect(buffer.isEmpty)
        var typed = Array("content-length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}".utf8)
        #expect(try MessageFraming.takeMessage(from: &typed) == Array("{}".utf8))
        for bad in ["Content-Length: lots\r\n\r\n{}", "X-Other: 1\r\n\r\n{}", "Content-Length: 999999999999\r\n\r\n"] {
            var b = Array(bad.utf8)
            #expect(throws: MessageFraming.Error.self, "\(bad)") { try MessageFraming.takeMessage(from: &b) }
        }
    }

    @Test func positionsCountUTF16() {
        // "é" is one scalar and one UTF-16 unit; "😀" one scalar and two units.
        let p = TextPositions("a😀é b\nx")
        #expect(p.position(line: 1, column: 3)["character"]?.int == 3)
        #expect(p.position(line: 1, column: 5)["character"]?.int == 5)
        #expect(p.location(line: 0, character: 3)?.column == 3)
        #expect(p.word(line: 1, column: 6)?.name == "b")
        #expect(TextPositions.offset(in: "ab\n😀c", line: 1, character: 2) == "ab\n😀c".firstIndex(of: "c"))
    }

    /// Every keyword of the language is highlighted by the editors' TextMate grammar
    /// (editors/vscode), and its literals as constants.
    @Test func theTextMateGrammarKnowsEveryKeyword() throws {
        let path = RepoPaths.path("editors/vscode/syntaxes/moe.tmLanguage.json")
        let grammar = try JSON.parse(String(contentsOfFile: path, encoding: .utf8))
        #expect(grammar["scopeName"]?.string == "source.moe")
        func words(_ rule: String) throws -> Set<String> {
            let match = try #require(grammar["repository"]?[rule]?["match"]?.string, "rule \(rule)")
            let open = try #require(match.range(of: "\\b(")), close = try #require(match.range(of: ")\\b"))
            return Set(match[open.upperBound..<close.lowerBound].split(separator: "|").map(String.init))
        }
        let highlighted = try words("keyword").union(words("constant"))
        for k in Keyword.allCases { #expect(highlighted.contains(k.rawValue), "keyword \(k.rawValue)") }
    }
}
