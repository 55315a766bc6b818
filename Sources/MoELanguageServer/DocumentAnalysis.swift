import MoEBasics
import MoECompiler
import MoEIR
import MoESyntax

/// What the server knows of one open `.moe` document: the compiler's diagnostics (parse,
/// lowering, verification and the optimisation passes, as `moec compile` runs them, with a model
/// folder and params when the client configured them), its declarations (from the parser, which
/// recovers after errors), and, when it lowered, the IR for types.
struct DocumentAnalysis {
    let path: String
    let text: String
    let positions: TextPositions
    let diagnostics: [Diagnostic]
    let declarations: [Declaration]
    /// The optimised graph, when the document compiled.
    let graph: Graph?

    init(path: String, text: String, model: String?, params: [(name: String, value: String)]) {
        self.path = path
        self.text = text
        positions = TextPositions(text)
        var options = CompileOptions(graphPath: path, modelDirectory: model, overrides: params)
        options.sourceText = text
        let session = CompilerSession(options)
        var found: [Diagnostic] = []
        var graph: Graph?
        do {
            graph = try session.optimize()
        } catch let e as DiagnosticError {
            found = e.diagnostics
        } catch {
            found = [.error("\(error)")]
        }
        // Warnings the engine kept (an error's DiagnosticError repeats the engine's list).
        for d in session.diagnostics.diagnostics where !found.contains(d) { found.append(d) }
        diagnostics = found
        self.graph = graph
        declarations = Parser.parse(SourceFile(path: path, text: text), diagnostics: DiagnosticEngine()).declarations
    }

    /// The diagnostics as LSP `Diagnostic`s. Those about another file, or about no place, sit at
    /// the start of the document.
    func lspDiagnostics(uri: String) -> [JSON] {
        diagnostics.map { d in
            let here = d.range.map { $0.start.file == path && $0.start.isKnown } ?? false
            let range = here ? positions.range(d.range!) : positions.range(SourceRange(SourceLocation(file: path, line: 1, column: 1), length: 0))
            var message = d.message
            if !here, let r = d.range, r.start.isKnown { message = "\(r.start): \(message)" }
            var related: [JSON] = []
            for note in d.notes {
                if let r = note.range, r.start.file == path, r.start.isKnown {
                    related.append(JSON(["location": JSON(["uri": JSON(uri), "range": positions.range(r)]), "message": JSON(note.message)]))
                } else {
                    message += "\nnote: \(note.message)"
                }
            }
            var fields: [(String, JSON)] = [
                ("range", range), ("severity", JSON(Self.severity(d.severity))), ("source", JSON("moec")), ("message", JSON(message))
            ]
            if !related.isEmpty { fields.append(("relatedInformation", JSON(related))) }
            return .object(JSONObject(fields))
        }
    }

    static func severity(_ s: Diagnostic.Severity) -> Int {
        switch s {
        case .error: return 1
        case .warning: return 2
        case .note: return 3
        }
    }

    /// The declaration of `name` (the first, as the compiler reads it).
    func declaration(named name: String) -> Declaration? {
        declarations.first { $0.name.name == name }
    }

    /// LSP `SymbolKind` and a word for each kind of declaration.
    static func kind(of d: Declaration) -> (symbol: Int, word: String) {
        switch d {
        case .model: return (2, "model")
        case .param: return (14, "param")
        case .input: return (13, "input")
        case .weight: return (8, "weight")
        case .let: return (13, "let")
        case .output: return (7, "output")
        }
    }

    /// Markdown for a hover on `name`: its declaration's line, and what compiling said of it (a
    /// param's value, a value's type, a weight's tensor and shape); for a builtin, its signature.
    func hover(named name: String) -> String? {
        guard let d = declaration(named: name) else {
            return BuiltinSignatures.all.first { $0.name == name }.map { "```moe\n\($0.signature)\n```\n\nbuiltin function" }
        }
        let line = d.range.start.line
        var text = "```moe\n\(positions.lines.indices.contains(line - 1) ? positions.lines[line - 1].trimmingCharacters(in: .whitespaces) : name)\n```"
        if let graph {
            let printer = IRPrinter(showLocations: false)
            switch d {
            case .param:
                // The printed IR says where each param's value came from; printed only on a hover.
                let irLines = printer.print(graph).split(separator: "\n")
                if let l = irLines.first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("param \(name) =") }) {
                    let words = l.split(separator: " ").filter { $0 != "#" }
                    text += "\n\n" + words.prefix(4).joined(separator: " ") + (words.count > 4 ? " (" + words.dropFirst(4).joined(separator: " ") + ")" : "")
                }
            case .weight:
                if let w = graph.weights.first(where: { $0.name == name }) {
                    text += "\n\n`\(w.pattern)`: \(w.shape.map(String.init).joined(separator: " × ")) (stored as \(w.format.rawValue))"
                }
            case .input, .let, .output:
                if let id = graph.ids.last(where: { graph[$0].name == name }) {
                    text += "\n\ntype: `\(printer.format(graph[id].type, graph))`"
                } else if case .output = d, let output = graph.outputs.first(where: { $0.name == name }) {
                    text += "\n\ntype: `\(printer.format(graph[output.value].type, graph))`"
                }
            case .model: break
            }
        }
        return text
    }
}
