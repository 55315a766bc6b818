import Foundation
import MoEIR

/// Rotary embeddings and causal self-attention, written out in float64 (see `SequenceOp`).
extension SequenceOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let a = c.node.attributes
        switch self {
        case .rope:
            // Row t is position t; in each head the pair (j, j + D/2) turns by t · θ^(−2j/D).
            let x = c.tensor(0)
            let d = a.int("head_dim")!, theta = a.float("theta") ?? 10000
            let rows = x.shape[0], width = x.shape[1], half = d / 2
            // YaRN: frequency j is θ^(−2j/D) below the ramp's low end (extrapolated), that over
            // the factor above its high end (interpolated), linear between; cos and sin scaled.
            let yarn = Self.yarn(a)
            let range = yarn?.correctionRange(headDim: d, theta: theta)
            let frequencies = (0..<half).map { j -> Double in
                let plain = Foundation.pow(theta, -Double(2 * j) / Double(d))
                guard let yarn, let range else { return plain }
                let ramp = min(max((Double(j) - range.low) / (range.high == range.low ? 0.001 : range.high - range.low), 0), 1)
                return plain / yarn.factor * ramp + plain * (1 - ramp)
            }
            let scale = yarn?.scale ?? 1
            var out = x.floats
            for t in 0..<rows {
                for head in stride(from: 0, to: width, by: d) {
                    for j in 0..<half {
                        let angle = Double(t) * frequencies[j]
                        let x1 = Double(x.floats[t * width + head + j]), x2 = Double(x.floats[t * width + head + j + half])
                        out[t * width + head + j] = Float(scale * (x1 * Foundation.cos(angle) - x2 * Foundation.sin(angle)))
                        out[t * width + head + j + half] = Float(scale * (x2 * Foundation.cos(angle) + x1 * Foundation.sin(angle)))
                    }
                }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out))

        case .attention:
            // Query head h reads key/value head h / (heads / kv_heads); row t sees rows s ≤ t
            // (and t − s < window when a window is set); a sink joins the softmax.
            let q = c.tensor(0), k = c.tensor(1), v = c.tensor(2)
            let heads = a.int("heads")!, kvHeads = a.int("kv_heads") ?? heads
            let rows = q.shape[0], d = q.shape[1] / heads, dv = v.shape[1] / kvHeads
            let scale = a.float("scale") ?? 1 / Double(d).squareRoot()
            let window = a.int("window") ?? 0
            let sinks = c.node.operands.count == 4 ? c.tensor(3).floats : nil
            var out = [Float](repeating: 0, count: rows * heads * dv)
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                for t in 0..<rows {
                    let seen = Array((window > 0 ? max(0, t - window + 1) : 0)...t)
                    let logits = seen.map { s in
                        scale * (0..<d).reduce(0.0) { $0 + Double(q.floats[t * heads * d + h * d + $1]) * Double(k.floats[s * kvHeads * d + g * d + $1]) }
                    }
                    // A sink is one more logit in the softmax, with no value row.
                    let p = R.softmax(logits + (sinks.map { [Double($0[h])] } ?? []))
                    for j in 0..<dv {
                        let sum = zip(seen, p).reduce(0.0) { $0 + $1.1 * Double(v.floats[$1.0 * kvHeads * dv + g * dv + j]) }
                        out[t * heads * dv + h * dv + j] = Float(sum)
                    }
                }
            }
            return .tensor(HostTensor(shape: [rows, heads * dv], floats: out))
        }
    }
}
