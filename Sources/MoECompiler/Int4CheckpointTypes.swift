import MoEIO
import MoEIR
import MoEPasses

/// A GPTQ or AWQ checkpoint's 4-bit linears kept as they are: when no `--weights` is given,
/// every weight that `--weights` would change (`FeedForwardWeightFormat`: the matrices pre-packed
/// MoE blocks read as expert matrices, and those only `swiglu`/`mlp` layers read, a shared
/// expert's) and whose tensors are all the checkpoint's quantized linears
/// (`TensorInfo.int4Group`) gets the int4 format with zero points of the checkpoint's group
/// (`int4z`, `int4z:64`, `int4z:128`). The executor reads them as 4-bit groups (`Int4Rows`) and
/// repacks them into its int4 panels with the same values: each weight fma(u, S, −z·S), which is
/// S·(q − z) exactly for fp16 scales, and no f32 copy is made.
///
/// Other weights stored as quantized linears (a router, a plain `linear`) stay f32: their values
/// are dequantized at load. Gate and up read into one matrix (`ExpertGateUpFusion`)
/// must share a format; when they do not, both stay f32 (`GGUFWeightTypes.keepOnlyWhereGateAndUpAgree`).
enum Int4CheckpointTypes {
    static func apply(_ graph: Graph, _ checkpoint: Checkpoint) -> Graph {
        guard let q = checkpoint.int4Quantization else { return graph }
        let format: WeightFormat = q.group == 32 ? .int4z : q.group == 64 ? .int4zg64 : .int4zg128
        var g = graph
        var kept: Set<Int> = []
        let feedForward = FeedForwardWeightFormat.expertMatrixWeights(graph) + FeedForwardWeightFormat.denseFeedForwardWeights(graph)
        for i in feedForward where graph.weights[i].format == .f32 {
            let w = g.weights[i]
            guard !w.tensors.isEmpty, w.repeats == nil, w.layout.allSatisfy(\.keepsOrder),
                w.tensors.allSatisfy({ (try? checkpoint.info($0.name))??.int4Group == q.group })
            else { continue }
            g.weights[i].format = format
            kept.insert(i)
        }
        return GGUFWeightTypes.keepOnlyWhereGateAndUpAgree(g, kept: kept)
    }
}
