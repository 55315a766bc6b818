import MoEBasics
import MoEIR

/// Feed-forward weight format (`moec compile --weights bf16|int8|int4[:GROUP]`): the matrices
/// of the feed-forward products get the storage format asked for (`WeightInfo.format`):
///
/// - every weight that only pre-packed MoE blocks read, and only as expert matrices
///   (`expertMatrixWeights`);
/// - every weight that only `swiglu` and `mlp` layers read as their matrices: shared experts and
///   dense feed-forward layers (`denseFeedForwardWeights`), where a decode step reads as many
///   bytes as in one or more experts.
///
/// The executor packs those matrices once, at load, into panels of that format, and the kernels
/// read them as they are (bf16 widened in registers, int8/int4 by integer products or widened).
/// Other weights keep f32: the router, whose scores choose the experts and which llama.cpp does
/// not quantize either (`ffn_gate_inp`), a shared expert's gate (`linear(x, shared_mix)`),
/// norms, biases, a `program` expert's weights, and any weight also read some other way. A
/// format written in the source (`w: […] = "…" as int8`) is that weight's, whatever its reader.
///
/// Not one of the default passes: it runs after them when the compile options ask for a format
/// other than f32 (`Pipeline.run(…, weights:)`), and changes no node, only the weight table.
public struct FeedForwardWeightFormat: Pass {
    public static let name = "feed-forward-weight-format"
    public let format: WeightFormat
    public init(_ format: WeightFormat) { self.format = format }

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        // A format written in the source (`… as int8`) stays: `--weights` sets the others.
        let chosen = (Self.expertMatrixWeights(graph) + Self.denseFeedForwardWeights(graph)).filter { graph.weights[$0].format == .f32 }
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
        weights(g) { reader, id in
            guard let experts = reader.expertsView, experts.has(.prepacked) else { return false }
            return reader.operands.filter { $0 == id }.count == experts.matrices.filter { $0 == id }.count && experts.matrices.contains(id)
        }
    }

    /// Weight-table indices of the 2-D weights that only `swiglu` and `mlp` layers read, only as
    /// their matrices (not as the input), and that are no graph output.
    public static func denseFeedForwardWeights(_ g: Graph) -> [Int] {
        weights(g) { reader, id in
            (reader.op == .swiglu || reader.op == .mlp) && reader.operands.first != id && g[id].tensorType?.shape.count == 2
        }
    }

    /// Weight-table indices of the weights that some node reads, that every reader reads as
    /// `reads` accepts (through every weight node of the entry), and that are no graph output.
    private static func weights(_ g: Graph, readBy reads: (Node, ValueID) -> Bool) -> [Int] {
        var readers = [[ValueID]](repeating: [], count: g.nodes.count)
        for id in g.ids { for o in g[id].operands { readers[o.index].append(id) } }
        var ok = [Bool?](repeating: nil, count: g.weights.count)
        for id in g.ids where g[id].op == .weight {
            guard let index = g[id].attributes.int("index"), index >= 0, index < g.weights.count else { continue }
            let accepted =
                !readers[id.index].isEmpty && !g.outputs.contains { $0.value == id }
                && readers[id.index].allSatisfy { reads(g[$0], id) }
            ok[index] = (ok[index] ?? true) && accepted
        }
        return ok.indices.filter { ok[$0] == true }
    }
}
