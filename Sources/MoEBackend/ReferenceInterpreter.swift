import Foundation
import MoEIR

/// A plain, obviously correct executor of the IR: the oracle every optimised path is tested
/// against. It favours clarity over speed: one loop nest per op, sums in Double, no fusion,
/// no threads, every routing decision spelled out.
public struct ReferenceInterpreter {
    public let graph: Graph
    /// Weight values by weight-table index, each with the weight's declared shape.
    public let weights: [HostTensor]

    /// One token's routing: `slots` (expert, weight) pairs, expert −1 for an empty slot.
    public struct Routing: Equatable, Sendable {
        public var tokens: Int
        public var slots: Int
        public var experts: Int
        public var expert: [Int]      // [tokens × slots]
        public var weight: [Double]   // [tokens × slots]
    }

    enum Value {
        case tensor(HostTensor)
        case routing(Routing)
    }

    public init(graph: Graph, weights: [HostTensor]) {
        precondition(weights.count == graph.weights.count, "one tensor per weight-table entry")
        for (w, t) in zip(graph.weights, weights) {
            precondition(w.shape == t.shape, "weight \(w.name) has shape \(t.shape), expected \(w.shape)")
        }
        self.graph = graph
        self.weights = weights
    }

    /// Runs the graph. Returns the outputs by name.
    public func run(_ inputs: [String: HostTensor]) throws -> [String: HostTensor] {
        try runAll(inputs).outputs
    }

    /// Runs the graph and also returns every routing it computed (by node index), for
    /// load statistics and tests.
    public func runAll(_ inputs: [String: HostTensor]) throws -> (outputs: [String: HostTensor], routings: [Int: Routing]) {
        let tokens = try graph.tokenCount(for: inputs)
        var values: [Value?] = Array(repeating: nil, count: graph.nodes.count)
        var routings: [Int: Routing] = [:]
        for id in graph.ids {
            let v = try evaluate(graph[id], values: values, inputs: inputs, tokens: tokens)
            if case .routing(let r) = v { routings[id.index] = r }
            values[id.index] = v
        }
        var out: [String: HostTensor] = [:]
        for o in graph.outputs {
            guard case .tensor(let t)? = values[o.value.index] else { preconditionFailure("outputs are tensors") }
            out[o.name] = t
        }
        return (out, routings)
    }

    private func evaluate(_ n: Node, values: [Value?], inputs: [String: HostTensor], tokens: Int) throws -> Value {
        func tensor(_ i: Int) -> HostTensor {
            guard case .tensor(let t)? = values[n.operands[i].index] else { preconditionFailure("operand \(i) is a tensor") }
            return t
        }
        func routing(_ i: Int) -> Routing {
            guard case .routing(let r)? = values[n.operands[i].index] else { preconditionFailure("operand \(i) is a routing") }
            return r
        }
        let a = n.attributes
        switch n.op {
        case .input:
            return .tensor(inputs[a.string("name")!]!)
        case .weight:
            return .tensor(weights[a.int("index")!])
        case .constant:
            return .tensor(HostTensor(shape: [], floats: [Float(a.float("value")!)]))

        case .linear:
            let x = tensor(0), w = tensor(1)
            let bias = n.operands.count == 3 ? tensor(2).floats : nil
            return .tensor(Self.linear(x, w, bias: bias))

        case .rmsnorm:
            let x = tensor(0), w = tensor(1).floats
            let d = x.shape.last!, eps = a.float("eps") ?? 1e-6
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
            let d = x.shape.last!, eps = a.float("eps") ?? 1e-5
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

        case .softmax:
            // Over the last axis, or within each of `groups` contiguous groups of it.
            let x = tensor(0)
            let t = a.float("temperature") ?? 1
            let d = x.shape.last!
            let size = d / (a.int("groups") ?? 1)
            var out = x.floats
            for row in 0..<(x.count / max(d, 1)) {
                for g in stride(from: 0, to: d, by: max(size, 1)) {
                    let r = (g..<(g + size)).map { Double(out[row * d + $0]) / t }
                    for (j, p) in Self.softmax(r).enumerated() { out[row * d + g + j] = Float(p) }
                }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out))

        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg:
            let x = tensor(0)
            let f = Self.unary(n.op)
            return .tensor(HostTensor(shape: x.shape, floats: x.floats.map { Float(f(Double($0))) }))

        case .add, .sub, .mul, .div:
            return .tensor(Self.broadcastBinary(n.op, tensor(0), tensor(1), resultShape: n.tensorType!.shape.map { $0.resolve(tokens: tokens) }))

        case .swiglu:
            let x = tensor(0)
            let g = Self.linear(x, tensor(1)), u = Self.linear(x, tensor(2))
            let h = zip(g.floats, u.floats).map { Float(Self.silu(Double($0)) * Double($1)) }
            return .tensor(Self.linear(HostTensor(shape: g.shape, floats: h), tensor(3)))

        case .mlp:
            let x = tensor(0)
            let act = Self.unary(Op(rawValue: a.string("act")!) ?? .relu)
            let u = Self.linear(x, tensor(1))
            let h = u.floats.map { Float(act(Double($0))) }
            return .tensor(Self.linear(HostTensor(shape: u.shape, floats: h), tensor(2)))

        case .topk:
            let s = tensor(0)
            var next = 1
            var bias: [Double]?, by: HostTensor?
            if a.bool("with_bias") == true { bias = tensor(next).floats.map(Double.init); next += 1 }
            if a.bool("with_by") == true { by = tensor(next) }
            return .routing(Self.topk(scores: s, bias: bias, by: by, attributes: a))

        case .fused_router:
            // By definition the chain `RouterFusion` replaced, each part evaluated as its own op.
            var vs = values
            func then(_ op: Op, _ operands: [ValueID], _ attrs: Attributes = [:]) throws -> ValueID {
                let v = try evaluate(Node(op: op, operands: operands, attributes: attrs, type: n.type), values: vs, inputs: inputs, tokens: tokens)
                vs.append(v)
                return ValueID(vs.count - 1)
            }
            var scores = n.operands[0]
            if let score = a.string("score"), score != "identity" { scores = try then(Op(rawValue: score)!, [scores]) }
            var selection = a
            for key in ["score", "normalize", "eps", "scale"] { selection[key] = nil }
            var r = try then(.topk, [scores] + n.operands.dropFirst(), selection)
            switch a.string("normalize") {
            case "sum"?: r = try then(.route_renormalize, [r], ["eps": .float(a.float("eps") ?? 0)])
            case "softmax"?: r = try then(.route_softmax, [r])
            default: break
            }
            if let f = a.float("scale") { r = try then(.route_scale, [r], ["factor": .float(f)]) }
            return vs[r.index]!

        case .threshold, .top_p, .stat_topk, .dense_route, .nonzero:
            return .routing(Self.select(n.op, scores: tensor(0), attributes: a))

        case .expert_choice:
            let s = tensor(0)
            let tokensN = s.shape[0], e = s.shape[1]
            let factor = n.operands.count == 2 ? Double(tensor(1).floats[0]) : a.float("capacity_factor")!
            let cap = RoutingMath.expertChoiceCapacity(tokens: tokensN, k: a.int("k")!, factor: factor, experts: e)
            let f = s.floats.map(Double.init)
            var chosen = [[Bool]](repeating: [Bool](repeating: false, count: e), count: tokensN)
            for ex in 0..<e {
                // Each expert takes its `cap` best tokens, ties to the lower token index.
                let column = (0..<tokensN).map { f[$0 * e + ex] }
                for t in Self.bestIndices(column, cap) { chosen[t][ex] = true }
            }
            var r = Routing(tokens: tokensN, slots: e, experts: e, expert: [Int](repeating: -1, count: tokensN * e),
                            weight: [Double](repeating: 0, count: tokensN * e))
            for t in 0..<tokensN {
                var slot = 0
                for ex in 0..<e where chosen[t][ex] {
                    r.expert[t * e + slot] = ex
                    r.weight[t * e + slot] = f[t * e + ex]
                    slot += 1
                }
            }
            return .routing(r)

        case .hash_route:
            let ids = tensor(0).ints!
            let e = a.int("experts")!
            let method = a.string("method")!, seed = a.int("seed") ?? 0
            return .routing(Routing(tokens: ids.count, slots: 1, experts: e,
                                    expert: ids.map { RoutingMath.hashExpert(id: $0, experts: e, method: method, seed: seed) },
                                    weight: [Double](repeating: 1, count: ids.count)))

        case .within:
            // For each chosen outer group, the inner group's k best experts; weight = outer · inner.
            let outer = routing(0)
            let inner = tensor(1)
            let e = inner.shape[1], size = e / outer.experts, k = a.int("k")!
            let f = inner.floats.map(Double.init)
            let slots = outer.slots * k
            var r = Routing(tokens: outer.tokens, slots: slots, experts: e, expert: [Int](repeating: -1, count: outer.tokens * slots),
                            weight: [Double](repeating: 0, count: outer.tokens * slots))
            for t in 0..<outer.tokens {
                for o in 0..<outer.slots {
                    let g = outer.expert[t * outer.slots + o]
                    guard g >= 0 else { continue }
                    let members = (0..<size).map { f[t * e + g * size + $0] }
                    for (j, idx) in Self.bestIndices(members, k).enumerated() {
                        r.expert[t * slots + o * k + j] = g * size + idx
                        r.weight[t * slots + o * k + j] = outer.weight[t * outer.slots + o] * members[idx]
                    }
                }
            }
            return .routing(r)

        case .cosine, .distance:
            let x = tensor(0), c = tensor(1)
            let t = x.shape[0], d = x.shape[1], e = c.shape[0]
            let xs = x.floats.map(Double.init), cs = c.floats.map(Double.init)
            var out = [Float](repeating: 0, count: t * e)
            for i in 0..<t {
                for j in 0..<e {
                    var dot = 0.0, nx = 0.0, nc = 0.0, dist = 0.0
                    for q in 0..<d {
                        let u = xs[i * d + q], v = cs[j * d + q]
                        dot += u * v; nx += u * u; nc += v * v; dist += (u - v) * (u - v)
                    }
                    out[i * e + j] = Float(n.op == .cosine ? dot / max((nx * nc).squareRoot(), 1e-8) : dist.squareRoot())
                }
            }
            return .tensor(HostTensor(shape: [t, e], floats: out))

        case .subspace:
            let x = tensor(0), u = tensor(1)
            let t = x.shape[0], d = x.shape[1], e = u.shape[0], rank = u.shape[2]
            let xs = x.floats.map(Double.init), us = u.floats.map(Double.init)
            var out = [Float](repeating: 0, count: t * e)
            for i in 0..<t {
                let nx = (0..<d).reduce(0.0) { $0 + xs[i * d + $1] * xs[i * d + $1] }.squareRoot()
                for j in 0..<e {
                    var ss = 0.0
                    for c in 0..<rank {
                        var v = 0.0
                        for q in 0..<d { v += xs[i * d + q] * us[(j * d + q) * rank + c] }
                        ss += v * v
                    }
                    out[i * e + j] = Float(ss.squareRoot() / max(nx, 1e-12))
                }
            }
            return .tensor(HostTensor(shape: [t, e], floats: out))

        case .sinkhorn:
            // Row softmax, then alternately scale columns to sum T/E and rows to sum 1.
            let s = tensor(0)
            let t = s.shape[0], e = s.shape[1]
            var p = [Double]()
            for i in 0..<t { p += Self.softmax((0..<e).map { Double(s.floats[i * e + $0]) }) }
            for _ in 0..<a.int("iterations")! {
                for j in 0..<e {
                    let col = (0..<t).reduce(0.0) { $0 + p[$1 * e + j] }
                    if col > 0 { for i in 0..<t { p[i * e + j] *= Double(t) / Double(e) / col } }
                }
                for i in 0..<t {
                    let row = (0..<e).reduce(0.0) { $0 + p[i * e + $1] }
                    if row > 0 { for j in 0..<e { p[i * e + j] /= row } }
                }
            }
            return .tensor(HostTensor(shape: s.shape, floats: p.map(Float.init)))

        case .dselect:
            let t = n.tensorType!.shape[0].resolve(tokens: tokens)
            let z = tensor(1), alpha = tensor(2)
            let e = a.int("experts")!, gamma = a.float("gamma")!
            let kSel = alpha.shape.last!, m = RoutingMath.selectorBits(e)
            let zf = z.floats.map(Double.init), af = alpha.floats.map(Double.init)
            var out = [Float](repeating: 0, count: t * e)
            for i in 0..<t {
                let zr = z.shape.count == 2 ? Array(zf[(i * kSel * m)..<((i + 1) * kSel * m)]) : zf
                let ar = alpha.shape.count == 2 ? Array(af[(i * kSel)..<((i + 1) * kSel)]) : af
                let mix = Self.softmax(ar)
                for ex in 0..<e {
                    var w = 0.0
                    for c in 0..<kSel {
                        var r = 1.0
                        for j in 0..<m {
                            let sj = RoutingMath.smoothStep(zr[c * m + j], gamma: gamma)
                            r *= (ex >> j) & 1 == 1 ? sj : 1 - sj
                        }
                        w += mix[c] * r
                    }
                    out[i * e + ex] = Float(w)
                }
            }
            return .tensor(HostTensor(shape: [t, e], floats: out))

        case .halt_mask:
            // A token stays active while ‖Δh‖ ≥ τ·‖h‖.
            let h = tensor(0), d = tensor(1)
            let active = n.operands.count == 3 ? tensor(2).floats : nil
            let t = h.shape[0], w = h.shape[1], tau = a.float("tau")!
            let hf = h.floats, df = d.floats
            var out = [Float](repeating: 0, count: t)
            for i in 0..<t where (active?[i] ?? 1) != 0 {
                var nh = 0.0, nd = 0.0
                for j in 0..<w {
                    nh += Double(hf[i * w + j]) * Double(hf[i * w + j])
                    nd += Double(df[i * w + j]) * Double(df[i * w + j])
                }
                out[i] = nd.squareRoot() >= tau * nh.squareRoot() ? 1 : 0
            }
            return .tensor(HostTensor(shape: [t], floats: out))

        case .route_renormalize:
            var r = routing(0)
            let eps = a.float("eps") ?? 0
            for t in 0..<r.tokens {
                var sum = 0.0
                for s in 0..<r.slots where r.expert[t * r.slots + s] >= 0 { sum += r.weight[t * r.slots + s] }
                for s in 0..<r.slots where r.expert[t * r.slots + s] >= 0 { r.weight[t * r.slots + s] /= (sum + eps) }
            }
            return .routing(r)

        case .route_softmax:
            var r = routing(0)
            for t in 0..<r.tokens {
                let live = (0..<r.slots).filter { r.expert[t * r.slots + $0] >= 0 }
                let p = Self.softmax(live.map { r.weight[t * r.slots + $0] })
                for (i, s) in live.enumerated() { r.weight[t * r.slots + s] = p[i] }
            }
            return .routing(r)

        case .route_scale:
            var r = routing(0)
            let f = a.float("factor")!
            for i in r.weight.indices where r.expert[i] >= 0 { r.weight[i] *= f }
            return .routing(r)

        case .route_sqrt:
            var r = routing(0)
            for i in r.weight.indices where r.expert[i] >= 0 { r.weight[i] = max(r.weight[i], 0).squareRoot() }
            return .routing(r)

        case .route_capacity:
            // Each expert accepts (token, slot) pairs in priority order until it holds
            // `capacity`: all tokens' first choices in token order, then all second choices, ...
            var r = routing(0)
            let cap = a.int("capacity")!
            var taken = [Int](repeating: 0, count: r.experts)
            for s in 0..<r.slots {
                for t in 0..<r.tokens {
                    let e = r.expert[t * r.slots + s]
                    guard e >= 0 else { continue }
                    if taken[e] < cap {
                        taken[e] += 1
                    } else {
                        r.expert[t * r.slots + s] = -1
                        r.weight[t * r.slots + s] = 0
                    }
                }
            }
            return .routing(r)

        case .moe_experts:
            let x = tensor(0)
            let r = routing(1)
            let kind = ExpertKind(rawValue: a.string("kind")!)!
            let withActive = a.bool("with_active") ?? false
            let active = withActive ? tensor(n.operands.count - 1).floats : nil
            let ws = (2..<(n.operands.count - (withActive ? 1 : 0))).map { tensor($0) }
            let h = x.shape[1]
            let xs = x.floats
            var out = [Double](repeating: 0, count: x.count)
            for t in 0..<r.tokens where (active?[t] ?? 1) != 0 {
                let row = Array(xs[(t * h)..<((t + 1) * h)]).map(Double.init)
                for s in 0..<r.slots {
                    let e = r.expert[t * r.slots + s]
                    guard e >= 0 else { continue }
                    let y = Self.expert(kind, act: a.string("act"), e, row, ws)
                    let w = r.weight[t * r.slots + s]
                    for j in 0..<h { out[t * h + j] += w * y[j] }
                }
            }
            return .tensor(HostTensor(shape: x.shape, floats: out.map(Float.init)))
        }
    }

    // MARK: Math, written out

    /// `x·Wᵀ (+ b)` for x [..., K] and W [N, K], summing in Double.
    static func linear(_ x: HostTensor, _ w: HostTensor, bias: [Float]? = nil) -> HostTensor {
        let k = w.shape[1], n = w.shape[0]
        let rows = x.count / max(k, 1)
        let xs = x.floats, ws = w.floats
        var out = [Float](repeating: 0, count: rows * n)
        for r in 0..<rows {
            for j in 0..<n {
                var acc = Double(bias?[j] ?? 0)
                for i in 0..<k { acc += Double(xs[r * k + i]) * Double(ws[j * k + i]) }
                out[r * n + j] = Float(acc)
            }
        }
        return HostTensor(shape: Array(x.shape.dropLast()) + [n], floats: out)
    }

    /// One expert's FFN on one token, in Double.
    static func expert(_ kind: ExpertKind, act: String?, _ e: Int, _ x: [Double], _ ws: [HostTensor]) -> [Double] {
        func matvec(_ w: HostTensor, _ e: Int, rows: Range<Int>, _ v: [Double]) -> [Double] {
            let r = w.shape[1], c = w.shape[2]
            let f = w.floats
            return rows.map { i in
                var acc = 0.0
                let base = (e * r + i) * c
                for j in 0..<c { acc += Double(f[base + j]) * v[j] }
                return acc
            }
        }
        switch kind {
        case .swiglu:
            let f = ws[0].shape[1]
            let g = matvec(ws[0], e, rows: 0..<f, x), u = matvec(ws[1], e, rows: 0..<f, x)
            let h = zip(g, u).map { silu($0) * $1 }
            return matvec(ws[2], e, rows: 0..<ws[2].shape[1], h)
        case .swiglu_fused:
            let f = ws[0].shape[1] / 2
            let g = matvec(ws[0], e, rows: 0..<f, x), u = matvec(ws[0], e, rows: f..<(2 * f), x)
            let h = zip(g, u).map { silu($0) * $1 }
            return matvec(ws[1], e, rows: 0..<ws[1].shape[1], h)
        case .mlp:
            let f = ws[0].shape[1]
            let actFn = unary(Op(rawValue: act ?? "relu") ?? .relu)
            let h = matvec(ws[0], e, rows: 0..<f, x).map(actFn)
            return matvec(ws[1], e, rows: 0..<ws[1].shape[1], h)
        }
    }

    /// Softmax of `v`. A row that is entirely −∞ (every entry masked out) gives all zeros, in
    /// every softmax moec computes (`softmax`, `route_softmax`, `sinkhorn`, `dselect`): a masked
    /// expert gets no weight, so a token whose choices are all masked contributes nothing, as
    /// a token dropped by capacity does. PyTorch gives NaN there, which poisons every later
    /// value; uniform would give weight to masked-out entries.
    static func softmax(_ v: [Double]) -> [Double] {
        guard let m = v.max() else { return [] }
        if m == -.infinity { return v.map { _ in 0 } }
        let e = v.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    static func silu(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    static func unary(_ op: Op) -> (Double) -> Double {
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
        default: preconditionFailure("\(op) is not unary")
        }
    }

    static func broadcastBinary(_ op: Op, _ a: HostTensor, _ b: HostTensor, resultShape: [Int]) -> HostTensor {
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
            default: r = x / y
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

    /// Top-k selection, optionally limited to the best groups.
    ///
    /// 1. Choice score = (`by` if given, else the score) + bias: they affect selection only.
    /// 2. With groups: group score = sum of the `group_top` best choice scores in the group;
    ///    keep the `keep_groups` best groups; choice scores outside them become `masked`
    ///    (−∞ unless the graph says otherwise).
    /// 3. Forced experts take the first slots, in the order listed; disabled experts are never
    ///    chosen; the remaining slots take the best choice scores, ties to the lower index.
    ///    Each slot carries the expert's (unbiased) score as its weight.
    static func topk(scores: HostTensor, bias: [Double]?, by: HostTensor?, attributes a: Attributes) -> Routing {
        let tokens = scores.shape[0], e = scores.shape[1]
        let k = a.int("k")!
        let groups = a.int("groups") ?? 1
        let keep = a.int("keep_groups") ?? groups
        let groupTop = a.int("group_top") ?? 2
        let masked = a.float("masked") ?? -.infinity
        var force: [Int] = []
        for f in a.ints("force") ?? [] where !force.contains(f) { force.append(f) }
        let disable = Set(a.ints("disable") ?? [])
        let s = scores.floats
        let sel = by?.floats ?? s
        var r = Routing(tokens: tokens, slots: k, experts: e,
                        expert: [Int](repeating: -1, count: tokens * k), weight: [Double](repeating: 0, count: tokens * k))
        for t in 0..<tokens {
            let raw = (0..<e).map { Double(s[t * e + $0]) }
            var choice = (0..<e).map { Double(sel[t * e + $0]) + (bias?[$0] ?? 0) }
            if groups > 1 {
                let size = e / groups
                let groupScore = (0..<groups).map { g -> Double in
                    let members = (0..<size).map { choice[g * size + $0] }.sorted(by: >)
                    return members.prefix(groupTop).reduce(0, +)
                }
                let kept = Set(bestIndices(groupScore, keep))
                for g in 0..<groups where !kept.contains(g) {
                    for j in 0..<size { choice[g * size + j] = masked }
                }
            }
            let candidates = (0..<e).filter { !disable.contains($0) && !force.contains($0) }
            let best = bestIndices(candidates.map { choice[$0] }, k - force.count).map { candidates[$0] }
            for (slot, idx) in (force + best).enumerated() {
                r.expert[t * k + slot] = idx
                r.weight[t * k + slot] = raw[idx]
            }
        }
        return r
    }

    /// Variable-k selections; chosen experts are listed best first (ties to the lower index),
    /// at most `max_k` of them, each with its score as weight.
    /// - threshold: every score ≥ tau.
    /// - top_p: the fewest best experts whose scores sum to at least p.
    /// - stat_topk: every score ≥ mean + std·Φ⁻¹(1 − k/E) (population std of the row).
    /// - dense_route: every expert, in index order.
    /// - nonzero: every expert with a non-zero score.
    static func select(_ op: Op, scores: HostTensor, attributes a: Attributes) -> Routing {
        let tokens = scores.shape[0], e = scores.shape[1]
        let slots = a.int("max_k") ?? e
        let f = scores.floats.map(Double.init)
        var r = Routing(tokens: tokens, slots: slots, experts: e, expert: [Int](repeating: -1, count: tokens * slots),
                        weight: [Double](repeating: 0, count: tokens * slots))
        for t in 0..<tokens {
            let row = Array(f[(t * e)..<((t + 1) * e)])
            let order = bestIndices(row, e)
            var chosen: [Int]
            switch op {
            case .threshold:
                chosen = order.filter { row[$0] >= a.float("tau")! }
            case .top_p:
                chosen = []
                var sum = 0.0
                for i in order where sum < a.float("p")! {
                    chosen.append(i)
                    sum += row[i]
                }
            case .stat_topk:
                let mean = row.reduce(0, +) / Double(e)
                let std = (row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(e)).squareRoot()
                let cut = mean + std * RoutingMath.normalQuantile(1 - Double(a.int("k")!) / Double(e))
                chosen = order.filter { row[$0] >= cut }
            case .dense_route:
                chosen = Array(0..<e)
            default:
                chosen = order.filter { row[$0] != 0 }
            }
            for (slot, i) in chosen.prefix(slots).enumerated() {
                r.expert[t * slots + slot] = i
                r.weight[t * slots + slot] = row[i]
            }
        }
        return r
    }

    /// Indices of the `k` largest values, largest first, ties to the lower index.
    static func bestIndices(_ v: [Double], _ k: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }.prefix(k))
    }
}
