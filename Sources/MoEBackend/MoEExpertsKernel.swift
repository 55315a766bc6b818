import Foundation
import MoEIR
import MoEKernels

/// The experts of a MoE block: dispatch tokens to experts, run each expert's FFN, combine the
/// results with the routing weights. Two paths:
///
/// - `PackedExpertsKernel`, on moec's kernels for blocks the passes marked `permute` and
///   `prepacked` (expert matrices that are weights): the fused, phase-parallel kernel.
/// - `unfusedStep` otherwise (BLAS, a pass disabled, computed matrices): with `permute`, a
///   counting sort of the (token, slot) pairs by expert (`permute(…)`, shared by both paths), a
///   gather, one product per expert and projection, and a weighted scatter-add; without it, each
///   pair's expert on its one row.
enum MoEExpertsKernel {
    struct Sizes {
        let tokens, slots, experts, hidden, ffn: Int
        var pairs: Int { tokens * slots }
    }

    static func sizes(_ n: Node, _ g: Graph, tokens: Int) -> Sizes {
        let experts = n.expertsView!
        let r = g[experts.routing].type.routing!
        let h = g[experts.input].tensorType!.shape[1].fixedValue!
        let w0 = g[experts.matrices.first!].tensorType!.fixedShape!
        let f = experts.kind == .swiglu_fused ? w0[1] / 2 : w0[1]
        // Fixed experts (zero, copy, constant) past the computed ones get no rows: `ExpertsSteps.fixedExperts`.
        return Sizes(tokens: tokens, slots: r.slots, experts: experts.computedExperts, hidden: h, ffn: f)
    }

    /// The scratch of `PackedExpertsKernel` (indices 0–8); the unfused path uses part of it
    /// (counts 0, perm 1, permWeight 2, gathered x in 5, hidden 6, ys 8), and, for a block that is
    /// not `prepacked`, index 9: where each expert matrix is packed per call (empty otherwise).
    static func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        if n.expertsView?.kind == .program { return try ExpertProgramKernel.scratchBytes(n, g, tokens: tokens) }
        let s = sizes(n, g, tokens: tokens)
        let experts = n.expertsView!
        let kind = experts.kind
        // Room for the packed kernel's first-layer width (F rounded up to 16 when gate and up
        // are interleaved), which is at least the unfused path's 2F (or F).
        let f16 = try ByteCount.roundedUp(s.ffn, to: PackedWeight.panelWidth)
        let width = kind == .mlp ? s.ffn : try ByteCount.product(2, f16)
        var bytes = try PackedExpertsKernel.scratchBytes(s, firstWidth: width)
        var pack = 0
        // Matrices not packed at load (the block is not `prepacked`, or they are computed) are
        // packed here per call on moec's kernels.
        if !experts.has(.prepacked) || !ExpertMatrices.expertsAreWeights(n, g) {
            for o in experts.matrices {
                guard let shape = g[o].tensorType?.fixedShape, shape.count == 3 else { continue }
                let panelRows = try ByteCount.roundedUp(shape[1], to: PackedWeight.panelWidth)
                pack = max(pack, try ByteCount.product(panelRows, shape[2], 4))
            }
        }
        bytes.append(pack)
        return bytes
    }

    static func step(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        if n.expertsView?.kind == .program { return ExpertProgramKernel.step(s, n, i) }
        if s.executable.expertMatrices[i] != nil { return PackedExpertsKernel.step(s, n, i) }
        return unfusedStep(s, n, i)
    }

    /// The token permutation shared by both paths: a counting sort of the (token, slot) pairs by
    /// expert. Afterwards expert e's rows are `starts[e] ..< starts[e + 1]`, `perm`/`permWeight`
    /// hold each row's token and routing weight, `rowOf` (when given) each pair's row or -1, and
    /// `loads` the rows per expert. Pairs of inactive tokens and dropped slots (-1) get no row.
    /// Returns the number of rows. `counts` (E + 1 values) is scratch.
    static func permute(
        _ routing: RoutingBuffer, sizes z: Sizes, active: UnsafePointer<Float>?,
        counts: UnsafeMutablePointer<Int32>, starts: UnsafeMutablePointer<Int32>,
        perm: UnsafeMutablePointer<Int32>, permWeight: UnsafeMutablePointer<Float>,
        rowOf: UnsafeMutablePointer<Int32>?, loads: UnsafeMutablePointer<Int32>
    ) -> Int {
        counts.initialize(repeating: 0, count: z.experts + 1)
        for p in 0..<z.pairs {
            if let active, active[p / z.slots] == 0 { continue }
            let e = routing.experts[p]
            if e >= 0 && Int(e) < z.experts { counts[Int(e)] += 1 }
        }
        var total: Int32 = 0
        for e in 0..<z.experts {
            starts[e] = total
            total += counts[e]
        }
        starts[z.experts] = total
        loads.update(from: counts, count: z.experts)
        for e in 0..<z.experts { counts[e] = starts[e] } // reuse as fill cursors
        for t in 0..<z.tokens {
            let inactive = active.map { $0[t] == 0 } ?? false
            for slot in 0..<z.slots {
                let p = t * z.slots + slot
                let e = routing.experts[p]
                guard e >= 0, Int(e) < z.experts, !inactive else { rowOf?[p] = -1; continue }
                let row = Int(counts[Int(e)])
                counts[Int(e)] += 1
                perm[row] = Int32(t)
                permWeight[row] = routing.weights[p]
                rowOf?[p] = Int32(row)
            }
        }
        return Int(total)
    }

    /// The experts without the packed kernel: under BLAS, for blocks not both permuted and
    /// pre-packed, and for computed expert matrices. One matrix product per expert and projection
    /// (BLAS or moec's GEMM, threads inside each call), honouring the passes' marks:
    ///
    /// - `permute`: a counting sort, a gather, one GEMM per expert on its rows; without it, each
    ///   (token, slot) pair runs its expert on its one row.
    /// - `combine_in_down` is not used here: a separate pass scaling the rows would cost more than
    ///   the multiply in `y[token] += weight · row`, which costs what an add does. (The packed
    ///   kernel folds the weight in while it packs the down operand, for free.)
    /// - not `prepacked` (native kernels only): each expert matrix is packed into scratch per call.
    static func unfusedStep(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let z = sizes(n, g, tokens: s.tokens)
        let experts = n.expertsView!
        let kind = experts.kind
        let act = experts.activation.op
        let permuted = experts.has(.permute)
        let weightOnInput = experts.weightOnInput
        let backend = s.executable.options.backend
        let threads = s.executable.options.threads
        let x = UnsafePointer(s.floats(experts.input))
        let routing = RoutingBuffer(s.pointer(experts.routing), tokens: s.tokens, slots: z.slots)
        let y = s.floats(ValueID(i))
        let active = experts.active.map { UnsafePointer(s.floats($0)) }
        let weights = experts.matrices.map { s.matrices($0) }
        let counts = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let starts = counts + z.experts + 1
        let perm = s.scratch(i, 1).assumingMemoryBound(to: Int32.self)
        let permWeight = s.scratch(i, 2).assumingMemoryBound(to: Float.self)
        let xs = s.scratch(i, 5).assumingMemoryBound(to: Float.self)
        let hidden = s.scratch(i, 6).assumingMemoryBound(to: Float.self)
        let ys = s.scratch(i, 8).assumingMemoryBound(to: Float.self)
        let h = z.hidden, f = z.ffn
        let fw = kind == .mlp ? f : 2 * f
        let loads = s.loadCounts(i)
        let extras = ExpertExtras(s, experts, ffn: f, hidden: h)
        // Native kernels on matrices kept as stored: one packed matrix per role, in scratch,
        // refilled for each expert before its product. (Only where the scratch was sized for it;
        // a hand-edited plan could have an unpacked matrix elsewhere: it then runs as GEMVs.)
        let scratchForPacking = ((try? scratchBytes(n, g, tokens: s.tokens))?.last) ?? 0
        let packInScratch =
            backend.isNative && weights.contains { $0.first?.packed == nil }
            && weights.allSatisfy { PackedWeight.bytes(n: $0[0].n, k: $0[0].k) <= scratchForPacking }
        let scratchWeights =
            packInScratch
            ? weights.map { PackedWeight(n: $0[0].n, k: $0[0].k, storage: s.scratch(i, 9)) } : []

        /// `out[m, w.n] = in[m, k] · Wᵀ` for role `role`'s matrix of expert `e`.
        func product(
            _ role: Int, _ e: Int, _ input: UnsafePointer<Float>, m: Int, ldx: Int,
            _ out: UnsafeMutablePointer<Float>, ldy: Int
        ) {
            let w = weights[role][e]
            if packInScratch, w.packed == nil, let raw = w.raw {
                let p = scratchWeights[role]
                p.repack(from: raw, threads: threads)
                Kernels.gemm(input, p, out, m: m, ldx: ldx, ldy: ldy, threads: threads)
            } else {
                backend.linear(input, m: m, ldx: ldx, w, out, ldy: ldy, accumulate: false, threads: threads)
            }
        }
        /// Expert e's FFN on m rows `xe` (rows `h` apart) into `ye` (rows `h` apart).
        func expert(
            _ e: Int, _ xe: UnsafePointer<Float>, m: Int, _ he: UnsafeMutablePointer<Float>,
            _ ye: UnsafeMutablePointer<Float>
        ) {
            switch kind {
            case .swiglu:
                product(0, e, xe, m: m, ldx: h, he, ldy: fw)
                product(1, e, xe, m: m, ldx: h, he + f, ldy: fw)
            case .swiglu_fused, .mlp:
                product(0, e, xe, m: m, ldx: h, he, ldy: fw)
            case .program: preconditionFailure("program experts run on ExpertProgramKernel")
            }
            if let program = extras.program {
                extras.run(program, expert: e, rows: m, features: 0..<f, he, ld: fw, second: he + f)
            } else if kind == .mlp {
                act.apply(he, he, count: m * fw)
            } else {
                Kernels.swiglu(he, he, rows: m, f: f, ldOut: fw)
            }
            product(weights.count - 1, e, he, m: m, ldx: fw, ye, ldy: h)
            if let bias = extras.downBias {
                for r in 0..<m { Kernels.add(ye + r * h, bias + e * h, ye + r * h, count: h) }
            }
        }

        return {
            y.initialize(repeating: 0, count: z.tokens * h)
            guard permuted else {
                // Pair by pair, in routing order: each pair's expert on its one row.
                loads.initialize(repeating: 0, count: z.experts)
                for t in 0..<z.tokens where active.map({ $0[t] != 0 }) ?? true {
                    for slot in 0..<z.slots {
                        let p = t * z.slots + slot
                        let e = Int(routing.experts[p])
                        guard e >= 0, e < z.experts else { continue }
                        loads[e] += 1
                        if weightOnInput {
                            // `weighting: "input"`: the expert runs on w·x, its output added as is.
                            for j in 0..<h { xs[j] = routing.weights[p] * x[t * h + j] }
                            expert(e, xs, m: 1, hidden, ys)
                            Kernels.add(y + t * h, ys, y + t * h, count: h)
                        } else {
                            expert(e, x + t * h, m: 1, hidden, ys)
                            Kernels.axpy(alpha: routing.weights[p], ys, y + t * h, count: h)
                        }
                    }
                }
                return
            }
            // 1. Counting sort of (token, slot) pairs by expert.
            let rows = permute(
                routing, sizes: z, active: active, counts: counts, starts: starts, perm: perm,
                permWeight: permWeight, rowOf: nil, loads: loads)
            // 2. Gather (under `weighting: "input"`, each row scaled by its routing weight).
            for r in 0..<rows {
                if weightOnInput {
                    let src = x + Int(perm[r]) * h, w = permWeight[r]
                    for j in 0..<h { xs[r * h + j] = w * src[j] }
                } else {
                    (xs + r * h).update(from: x + Int(perm[r]) * h, count: h)
                }
            }
            // 3. Each expert on its rows.
            for e in 0..<z.experts {
                let begin = Int(starts[e]), m = Int(starts[e + 1]) - begin
                guard m > 0 else { continue }
                expert(e, xs + begin * h, m: m, hidden + begin * fw, ys + begin * h)
            }
            // 4. Weighted scatter-add in row order (deterministic); unweighted under `weighting: "input"`.
            for r in 0..<rows {
                Kernels.axpy(alpha: weightOnInput ? 1 : permWeight[r], ys + r * h, y + Int(perm[r]) * h, count: h)
            }
        }
    }
}
