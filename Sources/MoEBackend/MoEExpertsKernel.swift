import Foundation
import MoEIR
import MoEKernels

/// The experts of a MoE block: dispatch tokens to experts, run each expert's FFN once on all
/// of its tokens, combine the results with the routing weights.
///
/// 1. Count the (token, slot) pairs per expert and take prefix sums (a counting sort), so each
///    expert's rows are contiguous: `perm` holds their tokens, `permWeight` their weights.
/// 2. Gather the tokens' rows of x into `xs` in that order.
/// 3. Per expert with rows: gate and up projections into one `[rows, 2F]` buffer (gate
///    columns first), the activation in place, the down projection into `ys`.
/// 4. Scatter: `y[token] += weight · ys[row]`, in row order (deterministic).
enum MoEExpertsKernel {
    struct Sizes {
        let tokens, slots, experts, hidden, ffn: Int
        var pairs: Int { tokens * slots }
    }

    static func sizes(_ n: Node, _ g: Graph, tokens: Int) -> Sizes {
        let r = g[n.operands[1]].type.routing!
        let h = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let kind = ExpertKind(rawValue: n.attributes.string("kind")!)!
        let w0 = g[n.operands[2]].tensorType!.fixedShape!
        let f = kind == .swiglu_fused ? w0[1] / 2 : w0[1]
        return Sizes(tokens: tokens, slots: r.slots, experts: r.experts, hidden: h, ffn: f)
    }

    /// The scratch of `PackedExpertsKernel`; the BLAS path uses part of it (counts 0, perm 1,
    /// permWeight 2, gathered x in 5, hidden 6, ys 8).
    static func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        let s = sizes(n, g, tokens: tokens)
        let kind = ExpertKind(rawValue: n.attributes.string("kind")!)!
        return try PackedExpertsKernel.scratchBytes(s, firstWidth: kind == .mlp ? s.ffn : try ByteCount.product(2, s.ffn))
    }

    static func step(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        if s.executable.expertMatrices[i] != nil { return PackedExpertsKernel.step(s, n, i) }
        return blasStep(s, n, i)
    }

    /// The token permutation shared by both paths: a counting sort of the (token, slot) pairs by
    /// expert. Afterwards expert e's rows are `starts[e] ..< starts[e + 1]`, `perm`/`permWeight`
    /// hold each row's token and routing weight, `rowOf` (when given) each pair's row or -1, and
    /// `loads` the rows per expert. Pairs of inactive tokens and dropped slots (-1) get no row.
    /// Returns the number of rows. `counts` (E + 1 values) is scratch.
    static func permute(_ routing: RoutingBuffer, sizes z: Sizes, active: UnsafePointer<Float>?,
                        counts: UnsafeMutablePointer<Int32>, starts: UnsafeMutablePointer<Int32>,
                        perm: UnsafeMutablePointer<Int32>, permWeight: UnsafeMutablePointer<Float>,
                        rowOf: UnsafeMutablePointer<Int32>?, loads: UnsafeMutablePointer<Int32>) -> Int {
        counts.initialize(repeating: 0, count: z.experts + 1)
        for p in 0..<z.pairs {
            if let active, active[p / z.slots] == 0 { continue }
            let e = routing.experts[p]
            if e >= 0 { counts[Int(e)] += 1 }
        }
        var total: Int32 = 0
        for e in 0..<z.experts {
            starts[e] = total
            total += counts[e]
        }
        starts[z.experts] = total
        loads.update(from: counts, count: z.experts)
        for e in 0..<z.experts { counts[e] = starts[e] }   // reuse as fill cursors
        for t in 0..<z.tokens {
            let inactive = active.map { $0[t] == 0 } ?? false
            for slot in 0..<z.slots {
                let p = t * z.slots + slot
                let e = routing.experts[p]
                guard e >= 0, !inactive else { rowOf?[p] = -1; continue }
                let row = Int(counts[Int(e)])
                counts[Int(e)] += 1
                perm[row] = Int32(t)
                permWeight[row] = routing.weights[p]
                rowOf?[p] = Int32(row)
            }
        }
        return Int(total)
    }

    /// One BLAS call per expert and projection (BLAS threads inside each call).
    static func blasStep(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let z = sizes(n, g, tokens: s.tokens)
        let kind = ExpertKind(rawValue: n.attributes.string("kind")!)!
        let act = Op(rawValue: n.attributes.string("act") ?? "relu") ?? .relu
        let backend = s.executable.options.backend
        let threads = s.executable.options.threads
        let x = UnsafePointer(s.floats(n.operands[0]))
        let routing = RoutingBuffer(s.pointer(n.operands[1]), tokens: s.tokens, slots: z.slots)
        let y = s.floats(ValueID(i))
        let withActive = n.attributes.bool("with_active") ?? false
        let active = withActive ? UnsafePointer(s.floats(n.operands[n.operands.count - 1])) : nil
        let weights = (2..<(n.operands.count - (withActive ? 1 : 0))).map { s.matrices(n.operands[$0]) }
        let counts = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let starts = counts + z.experts + 1
        let perm = s.scratch(i, 1).assumingMemoryBound(to: Int32.self)
        let permWeight = s.scratch(i, 2).assumingMemoryBound(to: Float.self)
        let xs = s.scratch(i, 5).assumingMemoryBound(to: Float.self)
        let hidden = s.scratch(i, 6).assumingMemoryBound(to: Float.self)
        let ys = s.scratch(i, 8).assumingMemoryBound(to: Float.self)
        let h = z.hidden, f = z.ffn
        let loads = s.loadCounts(i)

        return {
            // 1. Counting sort of (token, slot) pairs by expert.
            let total = permute(routing, sizes: z, active: active, counts: counts, starts: starts, perm: perm,
                                permWeight: permWeight, rowOf: nil, loads: loads)
            // 2. Gather.
            let rows = total
            for r in 0..<rows {
                (xs + r * h).update(from: x + Int(perm[r]) * h, count: h)
            }
            // 3. Each expert on its rows.
            for e in 0..<z.experts {
                let begin = Int(starts[e]), m = Int(starts[e + 1]) - begin
                guard m > 0 else { continue }
                let xe = UnsafePointer(xs + begin * h)
                let he = hidden + begin * (kind == .mlp ? f : 2 * f)
                switch kind {
                case .swiglu:
                    backend.linear(xe, m: m, ldx: h, weights[0][e], he, ldy: 2 * f, accumulate: false, threads: threads)
                    backend.linear(xe, m: m, ldx: h, weights[1][e], he + f, ldy: 2 * f, accumulate: false, threads: threads)
                    Kernels.swiglu(he, he, rows: m, f: f, ldOut: 2 * f)
                    backend.linear(he, m: m, ldx: 2 * f, weights[2][e], ys + begin * h, ldy: h, accumulate: false, threads: threads)
                case .swiglu_fused:
                    backend.linear(xe, m: m, ldx: h, weights[0][e], he, ldy: 2 * f, accumulate: false, threads: threads)
                    Kernels.swiglu(he, he, rows: m, f: f, ldOut: 2 * f)
                    backend.linear(he, m: m, ldx: 2 * f, weights[1][e], ys + begin * h, ldy: h, accumulate: false, threads: threads)
                case .mlp:
                    backend.linear(xe, m: m, ldx: h, weights[0][e], he, ldy: f, accumulate: false, threads: threads)
                    Schedule.applyUnary(act, he, he, count: m * f)
                    backend.linear(he, m: m, ldx: f, weights[1][e], ys + begin * h, ldy: h, accumulate: false, threads: threads)
                }
            }
            // 4. Weighted scatter-add in row order.
            y.initialize(repeating: 0, count: z.tokens * h)
            for r in 0..<rows {
                Kernels.axpy(alpha: permWeight[r], ys + r * h, y + Int(perm[r]) * h, count: h)
            }
        }
    }
}
