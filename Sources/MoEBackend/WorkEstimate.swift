import MoEIR

/// How much work one run did: multiply-add FLOPs of the matrix products (what a GEMM peak
/// bounds) and bytes of weights read (what memory bandwidth bounds), counting only the
/// experts that received tokens, each weight in its storage format (`WeightInfo.format`: 2
/// bytes an element for bf16), experts and plain layers alike. Element-wise work and the router's softmax are left out, as in the
/// usual "active FLOPs" of MoE papers; attention's products of queries, keys and values count.
public struct WorkEstimate: Sendable {
    public var flops: Double = 0
    public var weightBytes: Double = 0
    public var expertsHit = 0
    public var expertsTotal = 0

    /// Keys a run of `t` rows at positions `c ..< c + t` attends to, summed over its rows: row p
    /// sees p + 1 keys, at most `window` when it is positive.
    static func attentionPairs(tokens t: Int, context c: Int, window: Int) -> Double {
        func triangle(_ n: Int) -> Double { Double(n) * Double(n + 1) / 2 } // 1 + 2 + … + n
        let end = c + t
        guard window > 0 else { return triangle(end) - triangle(c) }
        let ramp = min(end, window) // rows before `window` see all the keys before them
        return (ramp > c ? triangle(ramp) - triangle(c) : 0) + Double(end - max(ramp, c)) * Double(window)
    }

    /// `context`: the run's rows follow that many tokens of a sequence (a decode step's KV cache).
    public init(graph g: Graph, tokens: Int, expertLoads: [[Int]], context: Int = 0) {
        var moeIndex = 0
        func rows(_ t: TensorType) -> Double {
            Double(t.elementCount(tokens: tokens)) / Double(max(t.last?.fixedValue ?? 1, 1))
        }
        /// A matrix's bytes: a weight's in its format (a shared expert's int8 matrices, …), a
        /// computed one's in f32.
        func bytes(_ id: ValueID) -> Double {
            let format = g[id].op == .weight ? g[id].attributes.int("index").map { g.weights[$0].format } : nil
            return Double(g[id].tensorType!.elementCount(tokens: tokens)) * (format?.bytesPerWeight ?? 4)
        }
        for n in g.nodes {
            switch n.op {
            case .linear:
                let w = g[n.operands[1]].tensorType!.fixedShape!
                flops += 2 * rows(g[n.operands[0]].tensorType!) * Double(w[0] * w[1])
                weightBytes += bytes(n.operands[1])
            case .swiglu, .mlp:
                let m = rows(g[n.operands[0]].tensorType!)
                for o in n.operands.dropFirst() {
                    flops += 2 * m * Double(g[o].tensorType!.fixedShape!.reduce(1, *))
                    weightBytes += bytes(o)
                }
            case .moe_experts:
                let loads = moeIndex < expertLoads.count ? expertLoads[moeIndex] : []
                moeIndex += 1
                let view = n.expertsView!
                let experts = g[view.routing].type.routing!.experts
                // Per expert: the product of each of its matrices' sizes, and their bytes.
                var perExpert = 0.0, perExpertBytes = 0.0
                for o in view.expertWeights {
                    let elements = Double(g[o].tensorType!.fixedShape!.dropFirst().reduce(1, *))
                    let index = g[o].op == .weight ? g[o].attributes.int("index") : nil
                    perExpert += elements
                    perExpertBytes += elements * (index.map { g.weights[$0].format.bytesPerWeight } ?? 4)
                }
                expertsTotal += experts
                for c in loads where c > 0 {
                    flops += 2 * Double(c) * perExpert
                    weightBytes += perExpertBytes
                    expertsHit += 1
                }
            case .attention:
                // Each (row, seen row) pair: a query·key product of D and a weighted value row
                // of Dv, per query head.
                let heads = n.attributes.int("heads") ?? 1, kvHeads = n.attributes.int("kv_heads") ?? heads
                let d = g[n.operands[0]].tensorType!.last!.fixedValue! / heads
                let dv = g[n.operands[2]].tensorType!.last!.fixedValue! / kvHeads
                let t = Int(rows(g[n.operands[0]].tensorType!)), window = n.attributes.int("window") ?? 0
                let pairs = Self.attentionPairs(tokens: t, context: context, window: window)
                flops += 2 * pairs * Double(heads * (d + dv))
            default:
                break
            }
        }
    }
}
