/// libFuzzer entry point for a `.moe` source through the whole compiler front end (built by
/// scripts/fuzz.sh source): the path `moec compile GRAPH --emit ir-opt` takes without a model.
///
/// The input is the source text. It is parsed; when that succeeds it is lowered with each
/// `param` at its default (`ASTToIR.lower`: shapes evaluated, names bound, types checked), the
/// graph verified, printed, and run through every optimisation pass (`Pipeline.run`, verifying
/// after each pass as a debug build does) and printed again. Every step must end in a result or
/// in diagnostics that render; never a trap. A pass that breaks a graph the verifier accepted is
/// a bug and stops the fuzzer with the pass's message.
@_cdecl("LLVMFuzzerTestOneInput")
public func sourceFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    let file = SourceFile(path: "fuzz.moe", text: text)
    let diagnostics = DiagnosticEngine()
    diagnostics.register(file)
    let ast = Parser.parse(file, diagnostics: diagnostics)
    guard !diagnostics.hasErrors else {
        _ = diagnostics.render()
        return 0
    }
    let graph = ASTToIR.lower(ast, sources: ParamSources(), diagnostics: diagnostics)
    _ = diagnostics.render()
    guard let graph else { return 0 }
    let problems = Verifier.verify(graph)
    guard problems.isEmpty else {
        _ = DiagnosticEngine().render(problems)
        return 0
    }
    _ = IRPrinter().print(graph)
    do {
        let optimized = try Pipeline.run(graph, verifyEachPass: true, enabled: Set(Pipeline.optionalNames))
        _ = IRPrinter().print(optimized)
    } catch let error as DiagnosticError {
        // The passes refuse some graphs with located errors (e.g. sizes past what a plan can
        // address); a verifier failure after a pass is a bug in that pass.
        if error.diagnostics.contains(where: { $0.message.hasPrefix("after pass ") }) {
            fatalError("a pass broke a verified graph:\n\(DiagnosticEngine().render(error.diagnostics))--- source:\n\(text)")
        }
    } catch {
        return 0
    }
    return 0
}
