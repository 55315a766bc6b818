import Foundation
import MoEIR
import MoEKernels

/// Steps for the selections beyond top-k (see `ReferenceInterpreter.select` and its siblings
/// for the rules), and for scoring ops that are not matrix products.
enum SelectionSteps {
    /// Scratch for per-token selection: E indices and E flags.
    static func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        switch n.op {
        case .threshold, .top_p, .stat_topk, .nonzero, .dense_route, .within:
            let e = g[n.operands[n.op == .within ? 1 : 0]].tensorType!.shape[1].fixedValue!
            return [try ByteCount.sum(try ByteCount.product(e, 8), 64)]
        case .expert_choice:
            let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
            return [try ByteCount.sum(try ByteCount.product(tokens, 4), 64), try ByteCount.sum(try ByteCount.product(tokens, e), 64)]
        default:
            return []
        }
    }

    /// Sorts `count` expert indices in place: larger value first, ties to the lower index.
    @inline(__always)
    static func sortBest(_ idx: UnsafeMutablePointer<Int32>, _ count: Int, _ v: UnsafePointer<Float>) {
        guard count > 1 else { return }
        for i in 1..<count {
            let x = idx[i]
            var j = i - 1
            while j >= 0 && (v[Int(idx[j])] < v[Int(x)] || (v[Int(idx[j])] == v[Int(x)] && idx[j] > x)) {
                idx[j + 1] = idx[j]
                j -= 1
            }
            idx[j + 1] = x
        }
    }

    static func variableK(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let scores = UnsafePointer(s.floats(n.operands[0]))
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let slots = n.type.routing!.slots
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: slots)
        let idx = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let tokens = s.tokens
        let op = n.op
        let a = n.attributes
        let tau = Float(a.float("tau") ?? 0), p = Float(a.float("p") ?? 1)
        let quantile = op == .stat_topk ? RoutingMath.normalQuantile(1 - Double(a.int("k")!) / Double(e)) : 0
        return {
            for t in 0..<tokens {
                let row = scores + t * e
                var count = 0
                switch op {
                case .threshold:
                    for j in 0..<e where row[j] >= tau { idx[count] = Int32(j); count += 1 }
                    sortBest(idx, count, row)
                case .nonzero:
                    for j in 0..<e where row[j] != 0 { idx[count] = Int32(j); count += 1 }
                    sortBest(idx, count, row)
                case .stat_topk:
                    var mean = 0.0
                    for j in 0..<e { mean += Double(row[j]) }
                    mean /= Double(e)
                    var variance = 0.0
                    for j in 0..<e { variance += (Double(row[j]) - mean) * (Double(row[j]) - mean) }
                    let cut = Float(mean + (variance / Double(e)).squareRoot() * quantile)
                    for j in 0..<e where row[j] >= cut { idx[count] = Int32(j); count += 1 }
                    sortBest(idx, count, row)
                case .top_p:
                    for j in 0..<e { idx[j] = Int32(j) }
                    sortBest(idx, e, row)
                    var sum: Float = 0
                    while count < e && sum < p { sum += row[Int(idx[count])]; count += 1 }
                default:  // dense_route: every expert in index order
                    for j in 0..<e { idx[j] = Int32(j) }
                    count = e
                }
                let kept = min(count, slots)
                for slot in 0..<slots {
                    if slot < kept {
                        let j = Int(idx[slot])
                        out.experts[t * slots + slot] = Int32(j)
                        out.weights[t * slots + slot] = row[j]
                    } else {
                        out.experts[t * slots + slot] = -1
                        out.weights[t * slots + slot] = 0
                    }
                }
            }
        }
    }

    static func expertChoice(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let scores = UnsafePointer(s.floats(n.operands[0]))
        let e = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: e)
        let order = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let chosen = s.scratch(i, 1).assumingMemoryBound(to: UInt8.self)
        let tokens = s.tokens
        let k = n.attributes.int("k")!
        let factorPointer = n.operands.count == 2 ? UnsafePointer(s.floats(n.operands[1])) : nil
        let fixedFactor = n.attributes.float("capacity_factor") ?? 1
        return {
            let factor = factorPointer.map { Double($0[0]) } ?? fixedFactor
            let cap = RoutingMath.expertChoiceCapacity(tokens: tokens, k: k, factor: factor, experts: e)
            chosen.initialize(repeating: 0, count: tokens * e)
            for ex in 0..<e {
                // Partial selection: the `cap` best tokens of this expert's column.
                for t in 0..<tokens { order[t] = Int32(t) }
                for c in 0..<cap {
                    var best = c
                    for t in (c + 1)..<max(tokens, c + 1) {
                        let a = scores[Int(order[t]) * e + ex], b = scores[Int(order[best]) * e + ex]
                        if a > b || (a == b && order[t] < order[best]) { best = t }
                    }
                    let tmp = order[c]; order[c] = order[best]; order[best] = tmp
                    chosen[Int(order[c]) * e + ex] = 1
                }
            }
            for t in 0..<tokens {
                var slot = 0
                for ex in 0..<e where chosen[t * e + ex] != 0 {
                    out.experts[t * e + slot] = Int32(ex)
                    out.weights[t * e + slot] = scores[t * e + ex]
                    slot += 1
                }
                while slot < e {
                    out.experts[t * e + slot] = -1
                    out.weights[t * e + slot] = 0
                    slot += 1
                }
            }
        }
    }

    static func hash(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let ids = s.pointer(n.operands[0]).assumingMemoryBound(to: Int32.self)
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: 1)
        let e = n.attributes.int("experts")!, method = n.attributes.string("method")!, seed = n.attributes.int("seed") ?? 0
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                out.experts[t] = Int32(RoutingMath.hashExpert(id: ids[t], experts: e, method: method, seed: seed))
                out.weights[t] = 1
            }
        }
    }

    static func within(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let outerType = g[n.operands[0]].type.routing!
        let outer = RoutingBuffer(s.pointer(n.operands[0]), tokens: s.tokens, slots: outerType.slots)
        let inner = UnsafePointer(s.floats(n.operands[1]))
        let e = g[n.operands[1]].tensorType!.shape[1].fixedValue!
        let size = e / outerType.experts, k = n.attributes.int("k")!
        let slots = outerType.slots * k
        let out = RoutingBuffer(s.pointer(ValueID(i)), tokens: s.tokens, slots: slots)
        let idx = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                for o in 0..<outerType.slots {
                    let gi = Int(outer.experts[t * outerType.slots + o])
                    for j in 0..<k { out.experts[t * slots + o * k + j] = -1; out.weights[t * slots + o * k + j] = 0 }
                    guard gi >= 0 else { continue }
                    let row = inner + t * e + gi * size
                    for j in 0..<size { idx[j] = Int32(j) }
                    sortBest(idx, size, row)
                    let w = outer.weights[t * outerType.slots + o]
                    for j in 0..<k {
                        out.experts[t * slots + o * k + j] = Int32(gi * size + Int(idx[j]))
                        out.weights[t * slots + o * k + j] = w * row[Int(idx[j])]
                    }
                }
            }
        }
    }

    // MARK: Scoring

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
            let target = Float(tokens) / Float(e)
            for _ in 0..<iterations {
                for j in 0..<e {
                    var col: Float = 0
                    for t in 0..<tokens { col += y[t * e + j] }
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
                            r *= (ex >> j) & 1 == 1 ? sj : 1 - sj
                        }
                        w += Foundation.exp(Double(ar[c]) - mx) / sum * r
                    }
                    y[t * e + ex] = Float(w)
                }
            }
        }
    }

    static func haltMask(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let h = UnsafePointer(s.floats(n.operands[0])), d = UnsafePointer(s.floats(n.operands[1]))
        let active = n.operands.count == 3 ? UnsafePointer(s.floats(n.operands[2])) : nil
        let w = g[n.operands[0]].tensorType!.shape[1].fixedValue!
        let tau = Float(n.attributes.float("tau")!)
        let y = s.floats(ValueID(i))
        let tokens = s.tokens
        return {
            for t in 0..<tokens {
                if let active, active[t] == 0 { y[t] = 0; continue }
                var nh: Float = 0, nd: Float = 0
                for j in 0..<w { nh += h[t * w + j] * h[t * w + j]; nd += d[t * w + j] * d[t * w + j] }
                y[t] = nd.squareRoot() >= tau * nh.squareRoot() ? 1 : 0
            }
        }
    }
}
