import Foundation
import MoEIR

/// Element-wise functions and broadcasting arithmetic, in Double (see `ElementwiseOp`).
extension ElementwiseOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, tokens = c.tokens
        func tensor(_ i: Int) -> HostTensor { c.tensor(i) }
        switch self {
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg:
            let x = tensor(0)
            let f = R.unary(self)
            return .tensor(HostTensor(shape: x.shape, floats: x.floats.map { Float(f(Double($0))) }))

        case .add, .sub, .mul, .div:
            return .tensor(R.broadcastBinary(self, tensor(0), tensor(1), resultShape: n.tensorType!.shape.map { $0.resolve(tokens: tokens) }))
        }
    }
}

extension ReferenceInterpreter {
    static func unary(_ op: ElementwiseOp) -> (Double) -> Double {
        switch op {
        case .silu: return silu
        // ½x(1 + erf(x/√2)) and ½x(1 + tanh u) cancel to 0 for x ≲ −8; these equal forms do not.
        case .gelu: return { 0.5 * $0 * erfc(-$0 / 2.0.squareRoot()) }
        case .gelu_tanh: return { $0 / (1 + Foundation.exp(-2 * (2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
        case .relu: return { max($0, 0) }
        case .sigmoid: return { 1 / (1 + Foundation.exp(-$0)) }
        case .tanh: return { Foundation.tanh($0) }
        case .exp: return { Foundation.exp($0) }
        case .sqrt: return { $0.squareRoot() }
        case .neg: return { -$0 }
        case .add, .sub, .mul, .div: preconditionFailure("\(op) is not unary")
        }
    }

    static func broadcastBinary(_ op: ElementwiseOp, _ a: HostTensor, _ b: HostTensor, resultShape: [Int]) -> HostTensor {
        let rank = resultShape.count
        func strides(_ shape: [Int]) -> [Int] {
            // Broadcast dimensions get stride 0.
            let padded = [Int](repeating: 1, count: rank - shape.count) + shape
            var s = [Int](repeating: 0, count: rank)
            var acc = 1
            for i in stride(from: rank - 1, through: 0, by: -1) {
                s[i] = padded[i] == 1 && resultShape[i] != 1 ? 0 : acc
                acc *= padded[i]
            }
            return s
        }
        let sa = strides(a.shape), sb = strides(b.shape)
        let fa = a.floats, fb = b.floats
        let count = resultShape.reduce(1, *)
        var out = [Float](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        for i in 0..<count {
            var ia = 0, ib = 0
            for d in 0..<rank { ia += index[d] * sa[d]; ib += index[d] * sb[d] }
            let x = Double(fa[ia]), y = Double(fb[ib])
            let r: Double
            switch op {
            case .add: r = x + y
            case .sub: r = x - y
            case .mul: r = x * y
            case .div: r = x / y
            case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg: preconditionFailure("\(op) is not binary")
            }
            out[i] = Float(r)
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < resultShape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return HostTensor(shape: resultShape, floats: out)
    }
}
