import Foundation
import MoEIR

/// Plain layers, written out (see `DenseOp`).
extension DenseOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, a = n.attributes
        func tensor(_ i: Int) -> HostTensor { c.tensor(i) }
        switch self {
        case .linear:
            let x = tensor(0), w = tensor(1)
            let bias = n.operands.count == 3 ? tensor(2).floats : nil
            return .tensor(R.linear(x, w, bias: bias))

        case .rmsnorm:
            let x = tensor(0), w = tensor(1).floats
            let d = x.shape.last! / (a.int("groups") ?? 1), eps = a.float("eps") ?? 1e-6
            var out = x.floats
            for row in 0..<(x.count / max(d, 1)) {
                var ss = 0.0
                for j in 0..<d { let v = Double(out[row * d + j]); ss += v * v }
                let inv = 1 / (ss / Double(d) + eps).squareRoot()
                for j in 0..<d { out[row * d + j] = Float(Double(out[row * d + j]) * inv * Double(w[j])) }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out))

        case .layernorm:
            let x = tensor(0), w = tensor(1).floats
            let b = n.operands.count == 3 ? tensor(2).floats : nil
            let d = x.shape.last! / (a.int("groups") ?? 1), eps = a.float("eps") ?? 1e-5
            var out = x.floats
            for row in 0..<(x.count / max(d, 1)) {
                var mean = 0.0
                for j in 0..<d { mean += Double(out[row * d + j]) }
                mean /= Double(d)
                var variance = 0.0
                for j in 0..<d { let c = Double(out[row * d + j]) - mean; variance += c * c }
                variance /= Double(d)
                let inv = 1 / (variance + eps).squareRoot()
                for j in 0..<d {
                    out[row * d + j] = Float((Double(out[row * d + j]) - mean) * inv * Double(w[j]) + Double(b?[j] ?? 0))
                }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out))

        case .swiglu:
            let x = tensor(0)
            let g = R.linear(x, tensor(1)), u = R.linear(x, tensor(2))
            let h = zip(g.floats, u.floats).map { Float(R.silu(Double($0)) * Double($1)) }
            return .tensor(R.linear(HostTensor(shape: g.shape, floats: h), tensor(3)))

        case .mlp:
            let x = tensor(0)
            let act = R.unary((Activation(rawValue: a.string("act")!) ?? .relu).op)
            let u = R.linear(x, tensor(1))
            let h = u.floats.map { Float(act(Double($0))) }
            return .tensor(R.linear(HostTensor(shape: u.shape, floats: h), tensor(2)))
        }
    }
}
