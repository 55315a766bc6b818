import Foundation

/// libFuzzer entry point for the IR text reader (built by scripts/fuzz.sh ir): `IRReader.read`,
/// which ends in `Verifier.verify`, then `IRPrinter`.
///
/// Any input must be read or refused with diagnostics. A graph that reads must print, and the
/// printed text must read back to the same graph (`read(print(g)) == g`, `IRReader`'s contract).
@_cdecl("LLVMFuzzerTestOneInput")
public func irReaderFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let reader = IRReader(file: "fuzz.ir")
    let graph: Graph
    do { graph = try reader.read(text) } catch {
        if error.diagnostics.isEmpty { fatalError("the reader refused the text without a diagnostic") }
        return 0
    }
    let printed = IRPrinter().print(graph)
    let again: Graph
    do { again = try reader.read(printed) } catch { fatalError("the printed graph does not read back:\n\(error)\n\(printed)") }
    if again != graph { fatalError("the graph changes through its printed form:\n\(printed)") }
    return 0
}
