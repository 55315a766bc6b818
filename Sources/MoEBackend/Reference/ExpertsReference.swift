import Foundation
import MoEIR

/// The experts of a MoE block, one token and one expert at a time, and halting (see `ExpertsOp`).
extension ExpertsOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, a = n.attributes
        func tensor(_ i: Int) -> HostTensor { c.tensor(i) }
        func routing(_ i: Int) -> ReferenceInterpreter.Routing { c.routing(i) }
        switch self {
        case .moe_experts:
            let x = tensor(0)
            let r = routing(1)
            let experts = n.expertsView!
            let kind = experts.kind
            let active = experts.active.map { _ in tensor(n.operands.count - 1).floats }
            let ws = experts.matrices.indices.map { tensor($0) }
            let h = x.shape[1]
            let xs = x.floats
            var out = [Double](repeating: 0, count: x.count)
            for t in 0..<r.tokens {
                let row = Array(xs[(t * h)..<((t + 1) * h)]).map(Double.init)
                // The one rule for non-finite values: a token with a non-finite input row or
                // invalid router scores gets a NaN output row.
                if row.contains(where: { !$0.isFinite }) || (0..<r.slots).contains(where: { r.expert[t * r.slots + $0] == Int(RoutingMath.invalidToken) }) {
                    for j in 0..<h { out[t * h + j] = .nan }
                    continue
                }
                guard (active?[t] ?? 1) != 0 else { continue }
                for s in 0..<r.slots {
                    let e = r.expert[t * r.slots + s]
                    guard e >= 0 else { continue }
                    let w = r.weight[t * r.slots + s]
                    // `weighting: "input"`: the expert sees w·x and its output is added as is.
                    if experts.weightOnInput {
                        let y = R.expert(kind, act: a.string("act"), e, row.map { w * $0 }, ws)
                        for j in 0..<h { out[t * h + j] += y[j] }
                    } else {
                        let y = R.expert(kind, act: a.string("act"), e, row, ws)
                        for j in 0..<h { out[t * h + j] += w * y[j] }
                    }
                }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out.map(Float.init)))

        case .halt_mask:
            // A token stays active while ‖Δh‖ ≥ τ·‖h‖.
            let h = tensor(0), d = tensor(1)
            let active = n.operands.count == 3 ? tensor(2).floats : nil
            let t = h.shape[0], w = h.shape[1], tau = a.float("tau")!
            let hf = h.floats, df = d.floats
            var out = [Float](repeating: 0, count: t)
            for i in 0..<t where (active?[i] ?? 1) != 0 {
                var nh = 0.0, nd = 0.0
                for j in 0..<w {
                    nh += Double(hf[i * w + j]) * Double(hf[i * w + j])
                    nd += Double(df[i * w + j]) * Double(df[i * w + j])
                }
                out[i] = nd.squareRoot() >= tau * nh.squareRoot() ? 1 : 0
            }
            return .tensor(HostTensor(shape: [t], floats: out))
        }
    }
}

extension ReferenceInterpreter {
    /// One expert's FFN on one token, in Double.
    static func expert(_ kind: ExpertKind, act: String?, _ e: Int, _ x: [Double], _ ws: [HostTensor]) -> [Double] {
        func matvec(_ w: HostTensor, _ e: Int, rows: Range<Int>, _ v: [Double]) -> [Double] {
            let r = w.shape[1], c = w.shape[2]
            let f = w.floats
            return rows.map { i in
                var acc = 0.0
                let base = (e * r + i) * c
                for j in 0..<c { acc += Double(f[base + j]) * v[j] }
                return acc
            }
        }
        switch kind {
        case .swiglu:
            let f = ws[0].shape[1]
            let g = matvec(ws[0], e, rows: 0..<f, x), u = matvec(ws[1], e, rows: 0..<f, x)
            let h = zip(g, u).map { silu($0) * $1 }
            return matvec(ws[2], e, rows: 0..<ws[2].shape[1], h)
        case .swiglu_fused:
            let f = ws[0].shape[1] / 2
            let g = matvec(ws[0], e, rows: 0..<f, x), u = matvec(ws[0], e, rows: f..<(2 * f), x)
            let h = zip(g, u).map { silu($0) * $1 }
            return matvec(ws[1], e, rows: 0..<ws[1].shape[1], h)
        case .mlp:
            let f = ws[0].shape[1]
            let actFn = unary((Activation(rawValue: act ?? "relu") ?? .relu).op)
            let h = matvec(ws[0], e, rows: 0..<f, x).map(actFn)
            return matvec(ws[1], e, rows: 0..<ws[1].shape[1], h)
        }
    }
}
