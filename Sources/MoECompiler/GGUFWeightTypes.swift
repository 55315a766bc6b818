import MoEIO
import MoEIR
import MoEPasses

/// A `.gguf` model's quantized feed-forward tensors kept as they are: when no `--weights` is
/// given, every weight that `--weights` would change (`FeedForwardWeightFormat`: the matrices
/// pre-packed MoE blocks read as expert matrices, and those only `swiglu`/`mlp` layers read, a
/// shared expert's `ffn_*_shexp`) and whose tensors all have one of Q8_0, Q4_0, Q4_K, Q5_K or
/// Q6_K gets that type as its format. The executor then reads their blocks as stored and repacks
/// them (`GGMLType.forEachGroup`; `ExpertMatrices`, `Executable.matricesPackedInFormat`) into its
/// int8, int6, int5 or int4 panels with the same values, so the model runs on the file's numbers with
/// no f32 copy:
///
///   Q8_0 → int8, groups of 32               1.125 bytes a weight (the file: 1.0625)
///   Q4_0 → int4, groups of 32               0.625 (0.5625)
///   Q4_K → int4, groups of 32 with offsets  0.75  (0.5625)
///   Q5_K → int5, groups of 32 with offsets  0.875 (0.6875)
///   Q6_K → int6, groups of 16               1.0   (0.8203)
///
/// BF16 and F16 tensors get the bf16 and f16 formats (the same values). A weight whose
/// tensors mix types stays f32 (widened at load).
///
/// Gate and up read into one matrix (the `ExpertGateUpFusion` pass) must share a type; when
/// they do not, both stay f32 (exactly the file's values, widened).
enum GGUFWeightTypes {
    static func apply(_ graph: Graph, _ checkpoint: Checkpoint) -> Graph {
        var g = graph
        var kept: Set<Int> = []
        let feedForward = FeedForwardWeightFormat.expertMatrixWeights(graph) + FeedForwardWeightFormat.denseFeedForwardWeights(graph)
        for i in feedForward where graph.weights[i].format == .f32 {
            let w = g.weights[i]
            let types = Set(w.tensors.map { (try? checkpoint.info($0.name))??.ggmlType })
            guard types.count == 1, let type = types.first ?? nil else { continue }
            if type == .bf16 || type == .f16 {
                // Widened to f32 at load and packed back as bf16 or f16: the same values, half the bytes.
                g.weights[i].format = type == .bf16 ? .bf16 : .f16
                continue
            }
            guard type.keptGroup != nil, let format = WeightFormat(rawValue: type.description.lowercased()),
                let k = w.shape.last, k % type.blockSize == 0, w.repeats == nil, w.layout.allSatisfy(\.keepsOrder)
            else { continue }
            g.weights[i].format = format
            kept.insert(i)
        }
        return keepOnlyWhereGateAndUpAgree(g, kept: kept)
    }

    /// `graph` with the formats of the weights in `kept` (set from the checkpoint's types) back
    /// to f32 in MoE blocks whose first-layer matrices end with different formats, or that read
    /// gate and up from one stored tensor (`swiglu_fused`, split by rows of floats).
    static func keepOnlyWhereGateAndUpAgree(_ graph: Graph, kept: Set<Int>) -> Graph {
        var g = graph
        for n in g.nodes {
            guard let view = n.expertsView else { continue }
            let first = view.matrices.dropLast().compactMap { g[$0].attributes.int("index") }
            if Set(first.map { g.weights[$0].format }).count > 1 || view.kind == .swiglu_fused {
                for i in view.matrices.compactMap({ g[$0].attributes.int("index") }) where kept.contains(i) {
                    g.weights[i].format = .f32
                }
            }
        }
        return g
    }
}
