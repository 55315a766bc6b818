import Foundation
import MoEIR
import MoEKernels

/// The closure for each op, with pointers and sizes bound for one token count. Every case here
/// has a twin in `ReferenceInterpreter`, and the executor tests compare the two.
extension Schedule {
    func makeStep(node i: Int, _ n: Node) -> (() -> Void)? {
        let g = executable.graph
        let backend = executable.options.backend
        let threads = executable.options.threads
        let a = n.attributes
        let outType = n.tensorType
        let count = outType?.elementCount(tokens: tokens) ?? 0
        let rowsOf: (TensorType) -> Int = { t in max(t.elementCount(tokens: self.tokens) / max(t.last?.fixedValue ?? 1, 1), 1) }

        switch n.op {
        case .input, .weight, .constant:
            return nil

        case .linear:
            let x = UnsafePointer(floats(n.operands[0]))
            let w = matrices(n.operands[1])[0]
            let y = floats(ValueID(i))
            let m = rowsOf(g[n.operands[0]].tensorType!)
            let bias = n.operands.count == 3 ? UnsafePointer(floats(n.operands[2])) : nil
            let pack = scratch(i, 0).assumingMemoryBound(to: Float.self)
            let gemmJob = GemmJob()
            return {
                backend.linear(x, m: m, ldx: w.k, w, y, ldy: w.n, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                if let bias { for r in 0..<m { Kernels.add(y + r * w.n, bias, y + r * w.n, count: w.n) } }
            }

        case .rmsnorm, .layernorm:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(floats(n.operands[0])), w = UnsafePointer(floats(n.operands[1]))
            let y = floats(ValueID(i))
            let d = xt.last!.fixedValue!, rows = rowsOf(xt)
            let eps = Float(a.float("eps") ?? (n.op == .rmsnorm ? 1e-6 : 1e-5))
            if n.op == .rmsnorm {
                return { Kernels.rmsNormRows(x, weight: w, y, rows: rows, cols: d, eps: eps) }
            }
            let b = n.operands.count == 3 ? UnsafePointer(floats(n.operands[2])) : nil
            return { Kernels.layerNormRows(x, weight: w, bias: b, y, rows: rows, cols: d, eps: eps) }

        case .softmax:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(floats(n.operands[0])), y = floats(ValueID(i))
            let groups = a.int("groups") ?? 1
            let d = (xt.last!.fixedValue ?? tokens) / groups, rows = max(count / max(d, 1), 1)
            let inv = Float(1 / (a.float("temperature") ?? 1))
            if inv == 1 { return { Kernels.softmaxRows(x, y, rows: rows, cols: d) } }
            return {
                Kernels.scale(alpha: inv, x, y, count: rows * d)
                Kernels.softmaxRows(UnsafePointer(y), y, rows: rows, cols: d)
            }

        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg:
            let x = UnsafePointer(floats(n.operands[0])), y = floats(ValueID(i))
            return Schedule.unaryStep(n.op, x, y, count: count)

        case .add, .sub, .mul, .div:
            return binaryStep(n, i)

        case .swiglu, .mlp:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(floats(n.operands[0])), y = floats(ValueID(i))
            let rows = rowsOf(xt), h = xt.last!.fixedValue!
            let hidden = scratch(i, 0).assumingMemoryBound(to: Float.self)
            let pack = scratch(i, 1).assumingMemoryBound(to: Float.self)
            let gemmJob = GemmJob()
            if n.op == .swiglu {
                let wg = matrices(n.operands[1])[0], wu = matrices(n.operands[2])[0], wd = matrices(n.operands[3])[0]
                let f = wg.n
                return {
                    backend.linear(x, m: rows, ldx: h, wg, hidden, ldy: 2 * f, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                    backend.linear(x, m: rows, ldx: h, wu, hidden + f, ldy: 2 * f, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                    Kernels.swiglu(hidden, hidden, rows: rows, f: f, ldOut: 2 * f)
                    backend.linear(hidden, m: rows, ldx: 2 * f, wd, y, ldy: h, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                }
            }
            let wu = matrices(n.operands[1])[0], wd = matrices(n.operands[2])[0]
            let f = wu.n
            let act = Op(rawValue: a.string("act") ?? "relu") ?? .relu
            let activation = Schedule.unaryStep(act, hidden, hidden, count: rows * f)
            return {
                backend.linear(x, m: rows, ldx: h, wu, hidden, ldy: f, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                activation()
                backend.linear(hidden, m: rows, ldx: f, wd, y, ldy: h, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
            }

        case .topk:
            return RoutingSteps.topk(self, n, i)
        case .fused_router:
            return RoutingSteps.fusedRouter(self, n, i)
        case .threshold, .top_p, .stat_topk, .nonzero, .dense_route:
            return SelectionSteps.variableK(self, n, i)
        case .expert_choice:
            return SelectionSteps.expertChoice(self, n, i)
        case .hash_route:
            return SelectionSteps.hash(self, n, i)
        case .within:
            return SelectionSteps.within(self, n, i)
        case .cosine, .distance:
            return SelectionSteps.centroids(self, n, i)
        case .subspace:
            return SelectionSteps.subspace(self, n, i)
        case .sinkhorn:
            return SelectionSteps.sinkhorn(self, n, i)
        case .dselect:
            return SelectionSteps.dselect(self, n, i)
        case .halt_mask:
            return SelectionSteps.haltMask(self, n, i)
        case .route_renormalize, .route_softmax, .route_scale, .route_sqrt, .route_capacity:
            return RoutingSteps.transform(self, n, i)
        case .moe_experts:
            return MoEExpertsKernel.step(self, n, i)
        }
    }

    static func unaryStep(_ op: Op, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) -> () -> Void {
        precondition(op.isElementwiseUnary, "\(op) is not unary")
        return { applyUnary(op, x, y, count: count) }
    }

    /// `y = op(x)` element-wise, called directly (no closure is built: steps call it per run).
    static func applyUnary(_ op: Op, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch op {
        case .silu: Kernels.silu(x, y, count: count)
        case .gelu: Kernels.gelu(x, y, count: count)
        case .gelu_tanh: Kernels.geluTanh(x, y, count: count)
        case .relu: Kernels.relu(x, y, count: count)
        case .sigmoid: Kernels.sigmoid(x, y, count: count)
        case .exp: Kernels.exp(x, y, count: count)
        case .tanh: for j in 0..<count { y[j] = Foundation.tanh(x[j]) }
        case .sqrt: for j in 0..<count { y[j] = x[j].squareRoot() }
        case .neg: Kernels.scale(alpha: -1, x, y, count: count)
        default: preconditionFailure("\(op) is not unary")
        }
    }

    /// Element-wise binary ops with broadcasting. Equal shapes use the vector kernels; a
    /// scalar operand and a repeated row have fast paths; anything else walks the strides.
    private func binaryStep(_ n: Node, _ i: Int) -> () -> Void {
        let g = executable.graph
        let outShape = n.tensorType!.shape.map { $0.resolve(tokens: tokens) }
        let at = g[n.operands[0]].tensorType!, bt = g[n.operands[1]].tensorType!
        let aShape = at.shape.map { $0.resolve(tokens: tokens) }, bShape = bt.shape.map { $0.resolve(tokens: tokens) }
        let x = UnsafePointer(floats(n.operands[0])), z = UnsafePointer(floats(n.operands[1]))
        let y = floats(ValueID(i))
        let count = outShape.reduce(1, *)
        let op = n.op
        let apply: (Float, Float) -> Float
        switch op {
        case .add: apply = { $0 + $1 }
        case .sub: apply = { $0 - $1 }
        case .mul: apply = { $0 * $1 }
        default: apply = { $0 / $1 }
        }
        if aShape == outShape && bShape == outShape {
            switch op {
            case .add: return { Kernels.add(x, z, y, count: count) }
            case .mul: return { Kernels.mul(x, z, y, count: count) }
            default: return { for j in 0..<count { y[j] = apply(x[j], z[j]) } }
            }
        }
        let aCount = aShape.reduce(1, *), bCount = bShape.reduce(1, *)
        if aShape == outShape && bCount == 1 {
            if op == .mul { return { Kernels.scale(alpha: z[0], x, y, count: count) } }
            return { let s = z[0]; for j in 0..<count { y[j] = apply(x[j], s) } }
        }
        if bShape == outShape && aCount == 1 {
            if op == .mul { return { Kernels.scale(alpha: x[0], z, y, count: count) } }
            return { let s = x[0]; for j in 0..<count { y[j] = apply(s, z[j]) } }
        }
        // General case: per output element, operand indices from broadcast strides.
        let rank = outShape.count
        func strides(_ shape: [Int]) -> [Int] {
            let padded = [Int](repeating: 1, count: rank - shape.count) + shape
            var s = [Int](repeating: 0, count: rank)
            var acc = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                s[d] = padded[d] == 1 && outShape[d] != 1 ? 0 : acc
                acc *= padded[d]
            }
            return s
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
