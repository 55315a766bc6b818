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
            let gemmJob = GemmJob(scratchFloats: Self.narrowScratchFloats([w]), threads: threads)
            return {
                backend.linear(x, m: m, ldx: w.k, w, y, ldy: w.n, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
                if let bias { for r in 0..<m { Kernels.add(y + r * w.n, bias, y + r * w.n, count: w.n) } }
            }

        case .rmsnorm, .layernorm:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(s.floats(n.operands[0])), w = UnsafePointer(s.floats(n.operands[1]))
            let y = s.floats(ValueID(i))
            // With groups, each group of the last axis is a row of its own.
            let groups = n.attributes.int("groups") ?? 1
            let d = xt.last!.fixedValue! / groups, rows = s.rows(xt) * groups
            let eps = Float(n.attributes.float("eps") ?? (self == .rmsnorm ? 1e-6 : 1e-5))
            if self == .rmsnorm {
                return { Kernels.rmsNormRows(x, weight: w, y, rows: rows, cols: d, eps: eps) }
            }
            let b = n.operands.count == 3 ? UnsafePointer(s.floats(n.operands[2])) : nil
            return { Kernels.layerNormRows(x, weight: w, bias: b, y, rows: rows, cols: d, eps: eps) }

        case .swiglu, .mlp:
            // The hidden activations go to scratch 0; each GEMM packs its left operand in scratch 1.
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(s.floats(n.operands[0])), y = s.floats(ValueID(i))
            let rows = s.rows(xt), h = xt.last!.fixedValue!
            let hidden = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
            let pack = s.scratch(i, 1).assumingMemoryBound(to: Float.self)
            let w = n.operands.dropFirst().map { s.matrices($0)[0] }
            let gemmJob = GemmJob(scratchFloats: Self.narrowScratchFloats(w), threads: threads)
            let f = w[0].n
            func multiply(_ a: UnsafePointer<Float>, lda: Int, _ m: LinearWeight, _ out: UnsafeMutablePointer<Float>, ldy: Int) {
                backend.linear(a, m: rows, ldx: lda, m, out, ldy: ldy, accumulate: false, threads: threads, packBuffer: pack, job: gemmJob)
            }
            if self == .swiglu {
                return {
                    multiply(x, lda: h, w[0], hidden, ldy: 2 * f)
                    multiply(x, lda: h, w[1], hidden + f, ldy: 2 * f)
                    Kernels.swiglu(hidden, hidden, rows: rows, f: f, ldOut: 2 * f)
                    multiply(hidden, lda: 2 * f, w[2], y, ldy: h)
                }
            }
            let act = (Activation(rawValue: n.attributes.string("act") ?? "") ?? .relu).op
            return {
                multiply(x, lda: h, w[0], hidden, ldy: f)
                act.apply(hidden, hidden, count: rows * f)
                multiply(hidden, lda: f, w[1], y, ldy: h)
            }
        }
    }

    /// Floats of scratch a product by any of `matrices` needs per thread: a bf16, f16 or
    /// quantized panel format's widening strip or int8 activation rows (0 when all are f32, or
    /// when they are not packed).
    static func narrowScratchFloats(_ matrices: [LinearWeight]) -> Int {
        matrices.compactMap(\.packed).filter { $0.format != .f32 }.map { Kernels.quantizedScratchFloats(k: $0.k, format: $0.format) }.max() ?? 0
    }
}
