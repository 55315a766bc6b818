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
            let active = experts.active.map { _ in tensor(n.operands.count - 1).floats }
            let ws = experts.expertWeights.indices.map { tensor($0) }
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
                    // A fixed expert: zero adds nothing, copy its input, constant its row.
                    if e >= experts.computedExperts {
                        let j = e - experts.computedExperts, kind = experts.fixedExperts[j]
                        if kind == "copy" {
                            for q in 0..<h { out[t * h + q] += w * row[q] }
                        } else if kind == "constant" {
                            let c = experts.fixedExperts[..<j].filter { $0 == "constant" }.count
                            let v = tensor(n.operands.firstIndex(of: experts.constants!)!).floats
                            for q in 0..<h { out[t * h + q] += (experts.weightOnInput ? 1 : w) * Double(v[c * h + q]) }
                        }
                        continue
                    }
                    // `weighting: "input"`: the expert sees w·x and its output is added as is.
                    if experts.weightOnInput {
                        let y = R.expert(experts, e, row.map { w * $0 }, ws)
                        for j in 0..<h { out[t * h + j] += y[j] }
                    } else {
                        let y = R.expert(experts, e, row, ws)
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
    /// One expert's FFN on one token, in Double: `ws` are the block's expert weights
    /// (`ExpertsNode.expertWeights`: matrices, then biases; or a program's weights).
    static func expert(_ experts: ExpertsNode, _ e: Int, _ x: [Double], _ ws: [HostTensor]) -> [Double] {
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
        /// Row e of a stacked bias [E, n], rows `rows`.
        func biasRow(_ b: HostTensor, _ e: Int, rows: Range<Int>) -> [Double] {
            let n = b.shape[1]
            return rows.map { Double(b.floats[e * n + $0]) }
        }
        func plus(_ a: [Double], _ b: [Double]?) -> [Double] { b.map { zip(a, $0).map(+) } ?? a }
        let kind = experts.kind
        if kind == .program {
            // Expert e is expert `local` of its group, whose weights hold one slice per expert.
            let (group, local) = experts.group(ofExpert: e)
            let program = experts.bodies[group].program
            return program.evaluate([x]) { (v: [Double], w: Int, b: Int?) -> [Double] in
                let product = matvec(ws[w], local, rows: 0..<ws[w].shape[1], v)
                guard let b else { return product }
                return plus(product, biasRow(ws[b], local, rows: 0..<ws[b].shape[1]))
            }
        }
        let roles = kind.matrixRoles
        func bias(_ role: String, rows: Range<Int>) -> [Double]? {
            experts.biasRoles.firstIndex(of: role).map { biasRow(ws[roles.count + $0], e, rows: rows) }
        }
        let first: [[Double]]
        let f: Int
        switch kind {
        case .swiglu:
            f = ws[0].shape[1]
            first = [
                plus(matvec(ws[0], e, rows: 0..<f, x), bias("gate", rows: 0..<f)),
                plus(matvec(ws[1], e, rows: 0..<f, x), bias("up", rows: 0..<f))
            ]
        case .swiglu_fused:
            f = ws[0].shape[1] / 2
            first = [
                plus(matvec(ws[0], e, rows: 0..<f, x), bias("gate_up", rows: 0..<f)),
                plus(matvec(ws[0], e, rows: f..<(2 * f), x), bias("gate_up", rows: f..<(2 * f)))
            ]
        case .mlp:
            f = ws[0].shape[1]
            first = [plus(matvec(ws[0], e, rows: 0..<f, x), bias("up", rows: 0..<f))]
        case .program: preconditionFailure("handled above")
        }
        let program = experts.epilogue ?? (kind == .mlp ? ExpertProgram(inputs: 1, instructions: [.unary(experts.activation.rawValue, .register(0))]) : .swiglu)
        let h = program.evaluate(first) { _, _, _ in [] }
        let down = ws[roles.count - 1]
        return plus(matvec(down, e, rows: 0..<down.shape[1], h), bias("down", rows: 0..<down.shape[1]))
    }
}
