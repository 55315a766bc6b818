import Foundation

/// libFuzzer entry point for a plan's graph (built by scripts/fuzz.sh plan): the JSON reader,
/// `Graph(json:)` and `Verifier.verify`, the path `moec run PLAN` takes before it trusts a graph.
///
/// Any input must be read or refused with an error. A graph the verifier accepts is one the
/// backend relies on, so it must print as IR, and its JSON form must read back to the same graph.
@_cdecl("LLVMFuzzerTestOneInput")
public func planFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let json = try? JSON.parse(bytes: UnsafeBufferPointer(start: data, count: size)) else { return 0 }
    // A whole plan file (the seeds) or a bare graph.
    let graph: Graph
    do { graph = try Graph(json: json["graph"] ?? json) } catch { return 0 }
    guard Verifier.verify(graph).isEmpty else { return 0 }
    _ = IRPrinter().print(graph)
    let again: Graph
    do { again = try Graph(json: graph.toJSON()) } catch { fatalError("a verified graph's JSON does not read back: \(error.message)") }
    if again != graph { fatalError("a verified graph changes through its JSON form:\n\(IRPrinter().print(graph))") }
    return 0
}
