import Foundation
import MoEIR

/// Router scoring, written out (see `ScoringOp`).
extension ScoringOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, a = n.attributes, tokens = c.tokens
        func tensor(_ i: Int) -> HostTensor { c.tensor(i) }
        switch self {
        case .softmax:
            // Over the last axis, or within each of `groups` contiguous groups of it.
            let x = tensor(0)
            let t = a.float("temperature") ?? 1
            let d = x.shape.last!
            let size = d / (a.int("groups") ?? 1)
            var out = x.floats
            for row in 0..<(x.count / max(d, 1)) {
                for g in stride(from: 0, to: d, by: max(size, 1)) {
                    let r = (g..<(g + size)).map { Double(out[row * d + $0]) / t }
                    for (j, p) in R.softmax(r).enumerated() { out[row * d + g + j] = Float(p) }
                }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out))

        case .sparsemax:
            // Martins & Astudillo (2016): the Euclidean projection of each row z onto the probability
            // simplex. With z sorted in descending order, the support size is
            // k = max{k : 1 + k·z₍ₖ₎ > Σ_{j≤k} z₍ⱼ₎}, the threshold τ = (Σ_{j≤k} z₍ⱼ₎ − 1)/k, and
            // p = max(z − τ, 0). −∞ entries get 0 (a masked expert gets no weight); a row of only
            // −∞ gives zeros, as softmax does.
            let x = tensor(0)
            let d = x.shape.last!
            var out = [Float](repeating: 0, count: x.count)
            for row in 0..<(x.count / max(d, 1)) {
                let z = (0..<d).map { Double(x.floats[row * d + $0]) }
                let sorted = z.filter { $0 > -.infinity }.sorted(by: >)
                guard !sorted.isEmpty else { continue }
                var sum = 0.0, support = 0, supportSum = 0.0
                for (k, v) in sorted.enumerated() {
                    sum += v
                    if 1 + Double(k + 1) * v > sum { support = k + 1; supportSum = sum }
                }
                let tau = (supportSum - 1) / Double(support)
                for j in 0..<d { out[row * d + j] = Float(max(z[j] - tau, 0)) }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out))

        case .cosine, .distance:
            let x = tensor(0), c = tensor(1)
            let t = x.shape[0], d = x.shape[1], e = c.shape[0]
            let xs = x.floats.map(Double.init), cs = c.floats.map(Double.init)
            var out = [Float](repeating: 0, count: t * e)
            for i in 0..<t {
                for j in 0..<e {
                    var dot = 0.0, nx = 0.0, nc = 0.0, dist = 0.0
                    for q in 0..<d {
                        let u = xs[i * d + q], v = cs[j * d + q]
                        dot += u * v; nx += u * u; nc += v * v; dist += (u - v) * (u - v)
                    }
                    out[i * e + j] = Float(n.op == .cosine ? dot / max((nx * nc).squareRoot(), 1e-8) : dist.squareRoot())
                }
            }
            return .tensor(HostTensor(shape: [t, e], floats: out))

        case .subspace:
            let x = tensor(0), u = tensor(1)
            let t = x.shape[0], d = x.shape[1], e = u.shape[0], rank = u.shape[2]
            let xs = x.floats.map(Double.init), us = u.floats.map(Double.init)
            var out = [Float](repeating: 0, count: t * e)
            for i in 0..<t {
                let nx = (0..<d).reduce(0.0) { $0 + xs[i * d + $1] * xs[i * d + $1] }.squareRoot()
                for j in 0..<e {
                    var ss = 0.0
                    for c in 0..<rank {
                        var v = 0.0
                        for q in 0..<d { v += xs[i * d + q] * us[(j * d + q) * rank + c] }
                        ss += v * v
                    }
                    out[i * e + j] = Float(ss.squareRoot() / max(nx, 1e-12))
                }
            }
            return .tensor(HostTensor(shape: [t, e], floats: out))

        case .sinkhorn:
            // Row softmax, then alternately scale columns to sum T/E and rows to sum 1.
            let s = tensor(0)
            let t = s.shape[0], e = s.shape[1]
            // A token with invalid scores takes no part: a NaN row, left out of T and the columns.
            var p = [Double]()
            var valid = [Bool]()
            for i in 0..<t {
                let row = (0..<e).map { Double(s.floats[i * e + $0]) }
                valid.append(!R.invalid(row))
                p += valid[i] ? R.softmax(row) : [Double](repeating: .nan, count: e)
            }
            let target = Double(valid.filter { $0 }.count) / Double(e)
            for _ in 0..<a.int("iterations")! {
                for j in 0..<e {
                    let col = (0..<t).filter { valid[$0] }.reduce(0.0) { $0 + p[$1 * e + j] }
                    if col > 0 { for i in 0..<t where valid[i] { p[i * e + j] *= target / col } }
                }
                for i in 0..<t where valid[i] {
                    let row = (0..<e).reduce(0.0) { $0 + p[i * e + $1] }
                    if row > 0 { for j in 0..<e { p[i * e + j] /= row } }
                }
            }
            return .tensor(HostTensor(shape: s.shape, floats: p.map(Float.init)))

        case .dselect:
            let t = n.tensorType!.shape[0].resolve(tokens: tokens)
            let z = tensor(1), alpha = tensor(2)
            let e = a.int("experts")!, gamma = a.float("gamma")!
            let kSel = alpha.shape.last!, m = RoutingMath.selectorBits(e)
            let zf = z.floats.map(Double.init), af = alpha.floats.map(Double.init)
            var out = [Float](repeating: 0, count: t * e)
            for i in 0..<t {
                let zr = z.shape.count == 2 ? Array(zf[(i * kSel * m)..<((i + 1) * kSel * m)]) : zf
                let ar = alpha.shape.count == 2 ? Array(af[(i * kSel)..<((i + 1) * kSel)]) : af
                // NaN z or α, or +∞ α: an invalid token, a NaN row (z = ±∞ saturates S).
                if R.invalid(ar) || zr.contains(where: \.isNaN) {
                    for ex in 0..<e { out[i * e + ex] = .nan }
                    continue
                }
                let mix = R.softmax(ar)
                for ex in 0..<e {
                    var w = 0.0
                    for c in 0..<kSel {
                        var r = 1.0
                        for j in 0..<m {
                            let sj = RoutingMath.smoothStep(zr[c * m + j], gamma: gamma)
                            r *= (ex >> (m - 1 - j)) & 1 == 1 ? sj : 1 - sj
                        }
                        w += mix[c] * r
                    }
                    out[i * e + ex] = Float(w)
                }
            }
            return .tensor(HostTensor(shape: [t, e], floats: out))
        }
    }
}
