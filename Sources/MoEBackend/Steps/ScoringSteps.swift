import Foundation
import MoEIR
import MoEKernels

/// Executor steps of the scoring family (see `ScoringOp`): row normalisations and router scores
/// that are not matrix products.
extension ScoringOp: StepFamily {
    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch self {
        case .sparsemax:
            // One row, sorted.
            return [try ByteCount.product(g[n.operands[0]].tensorType!.last!.fixedValue!, 4)]
        case .softmax, .cosine, .distance, .subspace, .sinkhorn, .dselect: return []
        }
    }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        switch self {
        case .softmax: return ScoringSteps.softmax(s, n, i)
        case .cosine, .distance: return ScoringSteps.centroids(s, n, i)
        case .subspace: return ScoringSteps.subspace(s, n, i)
        case .sinkhorn: return ScoringSteps.sinkhorn(s, n, i)
        case .dselect: return ScoringSteps.dselect(s, n, i)
        case .sparsemax: return ScoringSteps.sparsemax(s, n, i)
        }
    }
}

enum ScoringSteps {
    /// Sparsemax of each row (see `ScoringReference`): the row's finite values sorted in
    /// descending order into scratch, the support size k found in one pass over the prefix sums,
    /// then max(z − τ, 0) with τ = (Σ of the k largest − 1)/k.
    static func sparsemax(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let x = UnsafePointer(s.floats(n.operands[0])), y = s.floats(ValueID(i))
        let d = s.executable.graph[n.operands[0]].tensorType!.last!.fixedValue!
        let rows = s.rows(n.tensorType!)
        let sorted = s.scratch(i, 0).assumingMemoryBound(to: Float.self)
        return {
            for r in 0..<rows {
                let row = x + r * d, out = y + r * d
                var count = 0
                for j in 0..<d where row[j] > -.infinity {
                    // Insertion into the descending prefix.
                    var p = count
                    while p > 0 && sorted[p - 1] < row[j] { sorted[p] = sorted[p - 1]; p -= 1 }
                    sorted[p] = row[j]
                    count += 1
                }
                guard count > 0 else { for j in 0..<d { out[j] = 0 }; continue }
                var sum: Float = 0, support: Float = 0, supportSum: Float = 0
                for k in 0..<count {
                    sum += sorted[k]
                    if 1 + Float(k + 1) * sorted[k] > sum { support = Float(k + 1); supportSum = sum }
                }
                let tau = (supportSum - 1) / support
                for j in 0..<d { out[j] = max(row[j] - tau, 0) }
            }
        }
    }

    /// Softmax over the last axis (or within each of `groups` equal parts of it), after dividing
    /// by the temperature.
    static func softmax(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let xt = s.executable.graph[n.operands[0]].tensorType!
        let x = UnsafePointer(s.floats(n.operands[0])), y = s.floats(ValueID(i))
        let count = n.tensorType!.elementCount(tokens: s.tokens)
        let groups = n.attributes.int("groups") ?? 1
        let d = (xt.last!.fixedValue ?? s.tokens) / groups, rows = max(count / max(d, 1), 1)
        let inv = Float(1 / (n.attributes.float("temperature") ?? 1))
        if inv == 1 { return { Kernels.softmaxRows(x, y, rows: rows, cols: d) } }
        return {
            Kernels.scale(alpha: inv, x, y, count: rows * d)
            Kernels.softmaxRows(UnsafePointer(y), y, rows: rows, cols: d)
        }
    }

    static func centroids(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let x = UnsafePointer(s.floats(n.operands[0])), c = UnsafePointer(s.floats(n.operands[1]))
        let d = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let e = g[n.operands[1]].tensorType!.shape[0].fixedValue!
        let y = s.floats(ValueID(i))
        let tokens = s.tokens, cosine = n.op == .cosine
        return {
            for t in 0..<tokens {
                let xr = x + t * d
                for j in 0..<e {
                    let cr = c + j * d
                    var dot: Float = 0, nx: Float = 0, nc: Float = 0, dist: Float = 0
                    for q in 0..<d {
                        let u = xr[q], v = cr[q]
                        dot += u * v; nx += u * u; nc += v * v; dist += (u - v) * (u - v)
                    }
                    y[t * e + j] = cosine ? dot / max((nx * nc).squareRoot(), 1e-8) : dist.squareRoot()
                }
            }
        }
    }

    static func subspace(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let x = UnsafePointer(s.floats(n.operands[0])), u = UnsafePointer(s.floats(n.operands[1]))
        let shape = g[n.operands[1]].tensorType!.fixedShape!
        let e = shape[0], d = shape[1], rank = shape[2]
        let y = s.floats(ValueID(i))
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                let xr = x + t * d
                var nx: Float = 0
                for q in 0..<d { nx += xr[q] * xr[q] }
                for j in 0..<e {
                    var ss: Float = 0
                    for c in 0..<rank {
                        var v: Float = 0
                        for q in 0..<d { v += xr[q] * u[(j * d + q) * rank + c] }
                        ss += v * v
                    }
                    y[t * e + j] = ss.squareRoot() / max(nx.squareRoot(), 1e-12)
                }
            }
        }
    }

    static func sinkhorn(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let x = UnsafePointer(s.floats(n.operands[0]))
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let y = s.floats(ValueID(i))
        let tokens = s.tokens, iterations = n.attributes.int("iterations")!
        return {
            Kernels.softmaxRows(x, y, rows: tokens, cols: e)
            // A token with an invalid score (`RoutingMath.isInvalidScore`) takes no part in the
            // balancing: its row is NaN (so the selection marks it invalid), the target counts
            // the other tokens only, and NaN rows add nothing to a column (`col += 0`).
            var valid = 0
            for t in 0..<tokens {
                if RoutingMath.hasInvalidScore(x + t * e, e) {
                    for j in 0..<e { y[t * e + j] = .nan }
                } else {
                    valid += 1
                }
            }
            let target = Float(valid) / Float(e)
            for _ in 0..<iterations {
                for j in 0..<e {
                    var col: Float = 0
                    for t in 0..<tokens where !y[t * e + j].isNaN { col += y[t * e + j] }
                    if col > 0 { let f = target / col; for t in 0..<tokens { y[t * e + j] *= f } }
                }
                for t in 0..<tokens {
                    var row: Float = 0
                    for j in 0..<e { row += y[t * e + j] }
                    if row > 0 { let f = 1 / row; for j in 0..<e { y[t * e + j] *= f } }
                }
            }
        }
    }

    static func dselect(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let zt = g[n.operands[1]].tensorType!, at = g[n.operands[2]].tensorType!
        let z = UnsafePointer(s.floats(n.operands[1])), alpha = UnsafePointer(s.floats(n.operands[2]))
        let e = n.attributes.int("experts")!, gamma = n.attributes.float("gamma")!
        let kSel = at.last!.fixedValue!, m = RoutingMath.selectorBits(e)
        let zPerToken = zt.rank == 2, aPerToken = at.rank == 2
        let y = s.floats(ValueID(i))
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                let zr = z + (zPerToken ? t * kSel * m : 0), ar = alpha + (aPerToken ? t * kSel : 0)
                // NaN in z or α, or +∞ in α (a NaN softmax), makes the token invalid: a NaN row,
                // which `nonzero` turns into `RoutingMath.invalidToken`. (z = ±∞ saturates S.)
                var invalid = RoutingMath.hasInvalidScore(ar, kSel)
                for j in 0..<(kSel * m) where zr[j].isNaN { invalid = true }
                if invalid {
                    for ex in 0..<e { y[t * e + ex] = .nan }
                    continue
                }
                var mx = -Double.infinity
                for c in 0..<kSel { mx = max(mx, Double(ar[c])) }
                if mx == -.infinity {
                    // softmax(α) of all −∞ is zeros (see `ReferenceInterpreter.softmax`).
                    for ex in 0..<e { y[t * e + ex] = 0 }
                    continue
                }
                var sum = 0.0
                for c in 0..<kSel { sum += Foundation.exp(Double(ar[c]) - mx) }
                for ex in 0..<e {
                    var w = 0.0
                    for c in 0..<kSel {
                        var r = 1.0
                        for j in 0..<m {
                            let sj = RoutingMath.smoothStep(Double(zr[c * m + j]), gamma: gamma)
                            r *= (ex >> (m - 1 - j)) & 1 == 1 ? sj : 1 - sj
                        }
                        w += Foundation.exp(Double(ar[c]) - mx) / sum * r
                    }
                    y[t * e + ex] = Float(w)
                }
            }
        }
    }
}
