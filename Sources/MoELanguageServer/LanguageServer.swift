import Foundation
import MoEBasics
import MoECompiler
import MoESyntax

/// A Language Server Protocol server for `.moe` files (`moec lsp`): diagnostics as the editor
/// types (everything `moec compile` reports, at its source range), hovers (a name's declaration,
/// a param's value, a value's type, a builtin's signature), completion (builtins, keywords, the
/// document's names), go to definition, and the document's outline.
///
/// `handle` takes one decoded message and returns what to send back, in order: the reply to a
/// request, and notifications (`textDocument/publishDiagnostics`). It never throws and never
/// stops the process: a request it cannot serve gets a JSON-RPC error. `exitCode` is set by the
/// `exit` notification (0 after `shutdown`, else 1, as the protocol says).
///
/// Client settings (`initializationOptions`): `model` (a checkpoint folder or GGUF file, for
/// params read `from` its config) and `params` (an object of param values, as `--set`).
public final class LanguageServer {
    public private(set) var exitCode: Int32?
    private var initialized = false
    private var shuttingDown = false
    private var model: String?
    private var params: [(name: String, value: String)] = []
    /// Open documents by URI.
    private var documents: [String: DocumentAnalysis] = [:]

    public init() {}

    public func handle(_ message: JSON) -> [JSON] {
        guard let object = message.object, let method = object["method"]?.string else {
            if message.object?["id"] != nil, message.object?["method"] == nil { return [] } // a reply to us: none expected
            return [Self.error(id: message.object?["id"] ?? .null, code: -32600, "not a JSON-RPC request or notification")]
        }
        let id = object["id"]
        let params = object["params"]
        if let id {
            if !initialized && method != "initialize" { return [Self.error(id: id, code: -32002, "the server is not initialized yet")] }
            if shuttingDown { return [Self.error(id: id, code: -32600, "the server is shutting down")] }
            return request(id: id, method: method, params: params)
        }
        return notification(method: method, params: params)
    }

    private func request(id: JSON, method: String, params: JSON?) -> [JSON] {
        switch method {
        case "initialize":
            initialized = true
            if let options = params?["initializationOptions"]?.object {
                model = options["model"]?.string
                self.params = (options["params"]?.object ?? JSONObject()).map { ($0.key, Self.text(of: $0.value)) }
            }
            let capabilities = JSON([
                "positionEncoding": JSON("utf-16"),
                "textDocumentSync": JSON(["openClose": JSON(true), "change": JSON(2), "save": JSON(["includeText": JSON(false)])]),
                "hoverProvider": JSON(true),
                "definitionProvider": JSON(true),
                "documentSymbolProvider": JSON(true),
                "completionProvider": JSON(["triggerCharacters": JSON([JSON("|"), JSON("(")])])
            ])
            return [Self.reply(id: id, JSON(["capabilities": capabilities, "serverInfo": JSON(["name": JSON("moec"), "version": JSON(MoECompilerVersion.string)])]))]
        case "shutdown":
            shuttingDown = true
            return [Self.reply(id: id, .null)]
        case "textDocument/hover":
            guard let (doc, word) = wordAt(params) else { return [Self.reply(id: id, .null)] }
            guard let markdown = doc.hover(named: word.name) else { return [Self.reply(id: id, .null)] }
            return [Self.reply(id: id, JSON(["contents": JSON(["kind": JSON("markdown"), "value": JSON(markdown)])]))]
        case "textDocument/completion":
            // Every builtin, keyword and name the document declares; the client filters by what
            // is typed.
            guard let uri = params?["textDocument"]?["uri"]?.string, let doc = documents[uri] else { return [Self.reply(id: id, JSON([JSON]()))] }
            var items: [JSON] = BuiltinSignatures.all.map { b in
                JSON(["label": JSON(b.name), "kind": JSON(3), "detail": JSON(b.signature)])
            }
            items += Keyword.allCases.map { JSON(["label": JSON($0.rawValue), "kind": JSON(14)]) }
            var seen = Set<String>()
            for d in doc.declarations {
                let name = d.name.name
                guard seen.insert(name).inserted else { continue }
                items.append(JSON(["label": JSON(name), "kind": JSON(6), "detail": JSON(DocumentAnalysis.kind(of: d).word)]))
            }
            return [Self.reply(id: id, JSON(items))]
        case "textDocument/definition":
            guard let (doc, word) = wordAt(params), let d = doc.declaration(named: word.name), let uri = params?["textDocument"]?["uri"]?.string
            else { return [Self.reply(id: id, .null)] }
            return [Self.reply(id: id, JSON(["uri": JSON(uri), "range": doc.positions.range(d.range)]))]
        case "textDocument/documentSymbol":
            guard let uri = params?["textDocument"]?["uri"]?.string, let doc = documents[uri] else {
                return [Self.error(id: id, code: -32602, "no open document \(params?["textDocument"]?["uri"]?.string ?? "(no uri)")")]
            }
            let symbols = doc.declarations.map { d -> JSON in
                let kind = DocumentAnalysis.kind(of: d), range = doc.positions.range(d.range)
                return JSON([
                    "name": JSON(d.name.name), "detail": JSON(kind.word), "kind": JSON(kind.symbol), "range": range,
                    "selectionRange": range
                ])
            }
            return [Self.reply(id: id, JSON(symbols))]
        default:
            return [Self.error(id: id, code: -32601, "moec lsp does not serve '\(method)'")]
        }
    }

    private func notification(method: String, params: JSON?) -> [JSON] {
        switch method {
        case "exit":
            exitCode = shuttingDown ? 0 : 1
            return []
        case "textDocument/didOpen":
            guard let item = params?["textDocument"], let uri = item["uri"]?.string, let text = item["text"]?.string else { return [] }
            return analyse(uri: uri, text: text)
        case "textDocument/didChange":
            guard let uri = params?["textDocument"]?["uri"]?.string, let doc = documents[uri] else { return [] }
            var text = doc.text
            for change in params?["contentChanges"]?.array ?? [] {
                guard let new = change["text"]?.string else { continue }
                if let range = change["range"], let start = range["start"], let end = range["end"] {
                    let a = TextPositions.offset(in: text, line: start["line"]?.int ?? 0, character: start["character"]?.int ?? 0)
                    let b = TextPositions.offset(in: text, line: end["line"]?.int ?? 0, character: end["character"]?.int ?? 0)
                    text.replaceSubrange(a..<max(a, b), with: new)
                } else {
                    text = new
                }
            }
            return analyse(uri: uri, text: text)
        case "textDocument/didClose":
            guard let uri = params?["textDocument"]?["uri"]?.string else { return [] }
            documents[uri] = nil
            return [Self.publish(uri: uri, [])]
        default:
            return [] // initialized, didSave, $/cancelRequest, settings: nothing to do
        }
    }

    private func analyse(uri: String, text: String) -> [JSON] {
        let doc = DocumentAnalysis(path: Self.path(of: uri), text: text, model: model, params: params)
        documents[uri] = doc
        return [Self.publish(uri: uri, doc.lspDiagnostics(uri: uri))]
    }

    /// The open document and the identifier at a request's `textDocument` / `position`.
    private func wordAt(_ params: JSON?) -> (DocumentAnalysis, (name: String, column: Int))? {
        guard let uri = params?["textDocument"]?["uri"]?.string, let doc = documents[uri],
            let line = params?["position"]?["line"]?.int, let character = params?["position"]?["character"]?.int,
            let at = doc.positions.location(line: line, character: character), let word = doc.positions.word(line: at.line, column: at.column)
        else { return nil }
        return (doc, word)
    }

    /// A file path for a `file:` URI (percent-decoded); other URIs are used as they are, so that
    /// diagnostics still name something.
    static func path(of uri: String) -> String {
        if let url = URL(string: uri), url.isFileURL { return url.path }
        return uri
    }

    private static func text(of value: JSON) -> String {
        switch value {
        case .string(let s): return s
        case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
        case .bool(let b): return b ? "true" : "false"
        default: return value.compact
        }
    }

    static func reply(id: JSON, _ result: JSON) -> JSON {
        JSON(["jsonrpc": JSON("2.0"), "id": id, "result": result])
    }

    static func error(id: JSON, code: Int, _ message: String) -> JSON {
        JSON(["jsonrpc": JSON("2.0"), "id": id, "error": JSON(["code": JSON(code), "message": JSON(message)])])
    }

    static func publish(uri: String, _ diagnostics: [JSON]) -> JSON {
        JSON([
            "jsonrpc": JSON("2.0"), "method": JSON("textDocument/publishDiagnostics"),
            "params": JSON(["uri": JSON(uri), "diagnostics": JSON(diagnostics)])
        ])
    }
}

/// The server on a byte stream: reads framed messages from `input` until end of input or
/// `exit`, writes replies to `output`. A body that is not JSON gets a parse-error reply; framing
/// that is not LSP's ends the loop with status 1 (there is no telling where the next message
/// starts), as does a client that stops reading. Returns the exit status.
public func runLanguageServer(input: FileHandle, output: FileHandle, log: (String) -> Void) -> Int32 {
    let server = LanguageServer()
    var buffer: [UInt8] = []
    while true {
        let chunk = input.availableData
        if chunk.isEmpty { return server.exitCode ?? 1 } // the client went away without `exit`
        buffer.append(contentsOf: chunk)
        while true {
            let body: [UInt8]
            do {
                guard let b = try MessageFraming.takeMessage(from: &buffer) else { break }
                body = b
            } catch {
                log("moec lsp: \(error)")
                return 1
            }
            let replies: [JSON]
            do {
                replies = server.handle(try JSON.parse(bytes: body))
            } catch {
                replies = [LanguageServer.error(id: .null, code: -32700, "the message is not JSON: \(error)")]
            }
            do {
                for r in replies { try output.write(contentsOf: Data(MessageFraming.frame(r))) }
            } catch {
                log("moec lsp: cannot write to the client (it closed its end?); stopping")
                return 1
            }
            if let code = server.exitCode { return code }
        }
    }
}
