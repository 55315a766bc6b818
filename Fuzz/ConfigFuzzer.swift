import Foundation

/// libFuzzer entry point for a model's config.json bound into a graph's params (built by
/// scripts/fuzz.sh config): the path `moec compile GRAPH --model DIR` takes with DIR/config.json.
///
/// The first byte picks one of the graphs in `graphs/` (the script copies the repo's graphs next
/// to the fuzzer), the rest is the config. It is read as `moec` reads it (`JSON.parse(bytes:)`,
/// the top level an object), then the graph is lowered with it (`ASTToIR.lower`: each `param`
/// bound from its config keys, the shapes evaluated) and, when that succeeds, verified and
/// printed. Every step must end in a result or in diagnostics that render; never a trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func configFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let graphs = ConfigFuzzGraphs.shared
    guard size > 0, !graphs.isEmpty else { return 0 }
    let (file, ast) = graphs[Int(data[0]) % graphs.count]
    let json: JSON
    do { json = try JSON.parse(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1)) } catch { return 0 }
    guard let object = json.object else { return 0 }
    let diagnostics = DiagnosticEngine()
    diagnostics.register(file)
    let sources = ParamSources(config: object, configPath: "model/config.json")
    let graph = ASTToIR.lower(ast, sources: sources, diagnostics: diagnostics)
    _ = diagnostics.render()
    guard let graph else { return 0 }
    let problems = Verifier.verify(graph)
    _ = DiagnosticEngine().render(problems)
    _ = IRPrinter().print(graph)
    return 0
}

/// Parses the graphs before the first input, so their trees are not counted as that input's leaks.
@_cdecl("LLVMFuzzerInitialize")
public func configFuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    _ = ConfigFuzzGraphs.shared.count
    return 0
}

/// The graphs of graphs/*.moe (in the fuzzer's folder), parsed once.
enum ConfigFuzzGraphs {
    static let shared: [(SourceFile, SourceFileAST)] = {
        let folder = "graphs"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".moe") }.sorted()
        if names.isEmpty { fatalError("no graphs in \(FileManager.default.currentDirectoryPath)/\(folder): run the fuzzer from scripts/fuzz.sh") }
        return names.compactMap { name in
            guard let text = try? String(contentsOfFile: folder + "/" + name, encoding: .utf8) else { return nil }
            let file = SourceFile(path: "graphs/" + name, text: text)
            let diagnostics = DiagnosticEngine()
            let ast = Parser.parse(file, diagnostics: diagnostics)
            return diagnostics.hasErrors ? nil : (file, ast)
        }
    }()
}
