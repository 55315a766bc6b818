/// libFuzzer entry point for the `.moe` front end (built by scripts/fuzz.sh parser).
///
/// Any input must lex and parse without a crash, render its diagnostics, and print. When it
/// parses without errors, the printed text must parse without errors to a tree that prints the
/// same (the printer and parser agree); a difference stops the fuzzer with both texts.
@_cdecl("LLVMFuzzerTestOneInput")
public func parserFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    let diagnostics = DiagnosticEngine()
    let ast = Parser.parse(SourceFile(path: "fuzz.moe", text: text), diagnostics: diagnostics)
    _ = diagnostics.render()
    let printer = ASTPrinter(showLocations: false)
    let printed = printer.print(ast)
    guard !diagnostics.hasErrors else { return 0 }
    let again = DiagnosticEngine()
    let reparsed = Parser.parse(SourceFile(path: "printed.moe", text: printed), diagnostics: again)
    if again.hasErrors {
        fatalError("the printed tree does not parse:\n\(again.render())--- printed:\n\(printed)")
    }
    let reprinted = printer.print(reparsed)
    if reprinted != printed {
        fatalError("printing is not stable:\n--- printed:\n\(printed)--- reprinted:\n\(reprinted)")
    }
    return 0
}
