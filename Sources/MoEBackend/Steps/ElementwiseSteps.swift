import Foundation
import MoEIR
import MoEKernels

/// Executor steps of the element-wise family (see `ElementwiseOp`).
extension ElementwiseOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg, .add, .sub, .mul, .div: return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        if isBinary { return binaryStep(s, n, i) }
        let x = UnsafePointer(s.floats(n.operands[0])), y = s.floats(ValueID(i))
        let count = n.tensorType!.elementCount(tokens: s.tokens)
        return { self.apply(x, y, count: count) }
    }

    /// `y = op(x)` element-wise for a unary op, called directly (steps that apply an activation
    /// call it per run, building no closure).
    func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .silu: Kernels.silu(x, y, count: count)
        case .gelu: Kernels.gelu(x, y, count: count)
        case .gelu_tanh: Kernels.geluTanh(x, y, count: count)
        case .relu: Kernels.relu(x, y, count: count)
        case .sigmoid: Kernels.sigmoid(x, y, count: count)
        case .exp: Kernels.exp(x, y, count: count)
        case .tanh: for j in 0..<count { y[j] = Foundation.tanh(x[j]) }
        case .sqrt: for j in 0..<count { y[j] = x[j].squareRoot() }
        case .neg: Kernels.scale(alpha: -1, x, y, count: count)
        case .add, .sub, .mul, .div: preconditionFailure("\(self) is not unary")
        }
    }

    /// Binary ops with broadcasting. Equal shapes use the vector kernels; a scalar operand and a
    /// repeated row have fast paths; anything else walks the strides.
    private func binaryStep(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let tokens = s.tokens
        let outShape = n.tensorType!.shape.map { $0.resolve(tokens: tokens) }
        let at = g[n.operands[0]].tensorType!, bt = g[n.operands[1]].tensorType!
        let aShape = at.shape.map { $0.resolve(tokens: tokens) }, bShape = bt.shape.map { $0.resolve(tokens: tokens) }
        let x = UnsafePointer(s.floats(n.operands[0])), z = UnsafePointer(s.floats(n.operands[1]))
        let y = s.floats(ValueID(i))
        let count = outShape.reduce(1, *)
        let apply: (Float, Float) -> Float
        switch self {
        case .add: apply = { $0 + $1 }
        case .sub: apply = { $0 - $1 }
        case .mul: apply = { $0 * $1 }
        case .div: apply = { $0 / $1 }
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg: preconditionFailure("\(self) is not binary")
        }
        if aShape == outShape && bShape == outShape {
            switch self {
            case .add: return { Kernels.add(x, z, y, count: count) }
            case .mul: return { Kernels.mul(x, z, y, count: count) }
            default: return { for j in 0..<count { y[j] = apply(x[j], z[j]) } }
            }
        }
        let aCount = aShape.reduce(1, *), bCount = bShape.reduce(1, *)
        if aShape == outShape && bCount == 1 {
            if self == .mul { return { Kernels.scale(alpha: z[0], x, y, count: count) } }
            return {
                let c = z[0]; for j in 0..<count { y[j] = apply(x[j], c) }
            }
        }
        if bShape == outShape && aCount == 1 {
            if self == .mul { return { Kernels.scale(alpha: x[0], z, y, count: count) } }
            return {
                let c = x[0]; for j in 0..<count { y[j] = apply(c, z[j]) }
            }
        }
        // General case: per output element, operand indices from broadcast strides.
        let rank = outShape.count
        func strides(_ shape: [Int]) -> [Int] {
            let padded = [Int](repeating: 1, count: rank - shape.count) + shape
            var st = [Int](repeating: 0, count: rank)
            var acc = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                st[d] = padded[d] == 1 && outShape[d] != 1 ? 0 : acc
                acc *= padded[d]
            }
            return st
        }
        let sa = strides(aShape), sb = strides(bShape)
        return {
            for j in 0..<count {
                var rem = j, ia = 0, ib = 0
                for d in stride(from: rank - 1, through: 0, by: -1) {
                    let idx = rem % outShape[d]
                    rem /= outShape[d]
                    ia += idx * sa[d]
                    ib += idx * sb[d]
                }
                y[j] = apply(x[ia], z[ib])
            }
        }
    }
}
