import MoEBasics
import MoEIR

/// Expert weight format (`moec compile --weights bf16`): every weight that only pre-packed MoE
/// blocks read, and only as expert matrices, gets the storage format asked for
/// (`WeightInfo.format`). The executor then packs those matrices once, at load, into panels of
/// that format (bfloat16: half the bytes of f32, rounded to nearest even from f32 values; a
/// bf16 checkpoint's values are kept exactly), and the packed experts kernel widens them in
/// registers. Other weights (the router, shared experts, biases, a `program` expert's weights, a
/// weight also read elsewhere) keep f32.
///
/// Not one of the default passes: it runs after them when the compile options ask for a format
/// other than f32 (`Pipeline.run(…, weights:)`), and changes no node, only the weight table.
/// A weight whose format the source gives (`w1: […] = "…" as int8`) keeps it.
public struct ExpertWeightFormat: Pass {
    public static let name = "expert-weight-format"
    public let format: WeightFormat
    public init(_ format: WeightFormat) { self.format = format }

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        // A format written in the source (`… as int8`) stays: `--weights` sets the others.
        let chosen = Self.expertMatrixWeights(graph).filter { graph.weights[$0].format == .f32 }
        if let group = format.group {
            // Quantized rows are cut in groups along k (each matrix's last dimension).
            for i in chosen where (g.weights[i].shape.last ?? 0) % group != 0 {
                let w = g.weights[i]
                let node = g.ids.first { g[$0].op == .weight && g[$0].attributes.int("index") == i }
                throw DiagnosticError(
                    .error(
                        "--weights \(format.optionName): weight '\(w.name)' has rows of \(w.shape.last ?? 0) values, which groups of \(group) do not divide"
                            + (group > 32 ? " (try a smaller group)" : ""),
                        at: node.flatMap { g[$0].location }))
            }
        }
        for i in chosen { g.weights[i].format = format }
        return g
    }

    /// Weight-table indices of the weights that only `prepacked` blocks read, only as expert
    /// matrices, and that are no graph output.
    public static func expertMatrixWeights(_ g: Graph) -> [Int] {
        var readers = [[ValueID]](repeating: [], count: g.nodes.count)
        for id in g.ids { for o in g[id].operands { readers[o.index].append(id) } }
        var ok = [Bool?](repeating: nil, count: g.weights.count)
        for id in g.ids where g[id].op == .weight {
            guard let index = g[id].attributes.int("index"), index >= 0, index < g.weights.count else { continue }
            let onlyMatrix =
                !readers[id.index].isEmpty && !g.outputs.contains { $0.value == id }
                && readers[id.index].allSatisfy { r in
                    guard let experts = g[r].expertsView, experts.has(.prepacked) else { return false }
                    return g[r].operands.filter { $0 == id }.count == experts.matrices.filter { $0 == id }.count && experts.matrices.contains(id)
                }
            ok[index] = (ok[index] ?? true) && onlyMatrix
        }
        return ok.indices.filter { ok[$0] == true }
    }
}
