import MoEIR
import MoEKernels

/// Executor steps of the plain layers (see `DenseOp`). Matrix products go through the
/// executable's backend (moec's packed kernels or BLAS), which packs the left operand into scratch.
extension DenseOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .linear:
            // The native kernels pack x here (see `MatMulBackend.linear`).
            guard let x = g[n.operands[0]].tensorType, let k = x.last?.fixedValue else { return [] }
            let rows = max(try ByteCount.elements(x, tokens: tokens) / max(k, 1), 1)
            return [try ByteCount.packedOperand(m: rows, k: k)]
        case .swiglu, .mlp:
            // The hidden activations, and where the native kernels pack each GEMM's left operand.
            guard let x = g[n.operands[0]].tensorType, let h = x.last?.fixedValue else { return [] }
            let rows = max(try ByteCount.elements(x, tokens: tokens) / max(h, 1), 1)
            let f = g[n.operands[1]].tensorType!.shape[0].fixedValue!
            return [try ByteCount.product(rows, 2, f, 4), try ByteCount.packedOperand(m: rows, k: max(h, f))]
        case .rmsnorm, .layernorm:
            return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        let backend = s.executable.options.backend, threads = s.executable.options.threads
        let g = s.executable.graph
        switch self {
        case .linear:
            let x = UnsafePointer(s.floats(n.operands[0]))
            let w = s.matrices(n.operands[1])[0]
            let y = s.floats(ValueID(i))
            let m = s.rows(g[n.operands[0]].tensorType!)
            let bias = n.operands.count == 3 ? UnsafePointer(s.floats(n.operands[2])) : nil
            let pack = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
            let gemmJob = GemmJob()
            return {
                backend.linear(x, m: m, ldx: w.k, w, y, ldy: w.n, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                if let bias { for r in 0..<m { Kernels.add(y + r * w.n, bias, y + r * w.n, count: w.n) } }
            }

        case .rmsnorm, .layernorm:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(s.floats(n.operands[0])), w = UnsafePointer(s.floats(n.operands[1]))
            let y = s.floats(ValueID(i))
            let d = xt.last!.fixedValue!, rows = s.rows(xt)
            let eps = Float(n.attributes.float("eps") ?? (self == .rmsnorm ? 1e-6 : 1e-5))
            if self == .rmsnorm {
                return { Kernels.rmsNormRows(x, weight: w, y, rows: rows, cols: d, eps: eps) }
            }
            let b = n.operands.count == 3 ? UnsafePointer(s.floats(n.operands[2])) : nil
            return { Kernels.layerNormRows(x, weight: w, bias: b, y, rows: rows, cols: d, eps: eps) }

        case .swiglu:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(s.floats(n.operands[0])), y = s.floats(ValueID(i))
            let rows = s.rows(xt), h = xt.last!.fixedValue!
            let hidden = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
            let pack = s.scratch(i, 1).assumingMemoryBound(to: Float.self)
            let gemmJob = GemmJob()
            let wg = s.matrices(n.operands[1])[0], wu = s.matrices(n.operands[2])[0], wd = s.matrices(n.operands[3])[0]
            let f = wg.n
            return {
                backend.linear(x, m: rows, ldx: h, wg, hidden, ldy: 2 * f, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                backend.linear(x, m: rows, ldx: h, wu, hidden + f, ldy: 2 * f, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                Kernels.swiglu(hidden, hidden, rows: rows, f: f, ldOut: 2 * f)
                backend.linear(hidden, m: rows, ldx: 2 * f, wd, y, ldy: h, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
            }

        case .mlp:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(s.floats(n.operands[0])), y = s.floats(ValueID(i))
            let rows = s.rows(xt), h = xt.last!.fixedValue!
            let hidden = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
            let pack = s.scratch(i, 1).assumingMemoryBound(to: Float.self)
            let gemmJob = GemmJob()
            let wu = s.matrices(n.operands[1])[0], wd = s.matrices(n.operands[2])[0]
            let f = wu.n
            let act = (Activation(rawValue: n.attributes.string("act") ?? "") ?? .relu).op
            return {
                backend.linear(x, m: rows, ldx: h, wu, hidden, ldy: f, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                act.apply(hidden, hidden, count: rows * f)
                backend.linear(hidden, m: rows, ldx: f, wd, y, ldy: h, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
            }
        }
    }
}
