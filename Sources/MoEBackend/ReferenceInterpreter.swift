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
            let x = tensor(0)
            let t = a.float("temperature") ?? 1
            let d = x.shape.last!
            var out = x.floats
            for row in 0..<(x.count / max(d, 1)) {
                let r = (0..<d).map { Double(out[row * d + $0]) / t }
                for (j, p) in Self.softmax(r).enumerated() { out[row * d + j] = Float(p) }
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
            let bias = n.operands.count == 2 ? tensor(1).floats.map(Double.init) : nil
            return .routing(Self.topk(scores: s, bias: bias, attributes: a))

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
            let ws = (2..<n.operands.count).map { tensor($0) }
            let h = x.shape[1]
            let xs = x.floats
            var out = [Double](repeating: 0, count: x.count)
            for t in 0..<r.tokens {
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

    static func softmax(_ v: [Double]) -> [Double] {
        guard let m = v.max() else { return [] }
        if m == -.infinity { return v.map { _ in 1 / Double(v.count) } }
        let e = v.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    static func silu(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    static func unary(_ op: Op) -> (Double) -> Double {
        switch op {
        case .silu: return silu
        case .gelu: return { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
        case .gelu_tanh: return { 0.5 * $0 * (1 + tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
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

    /// Top-k selection, optionally limited to the best groups of experts.
    ///
    /// 1. Choice score = score + bias (bias affects selection only).
    /// 2. With groups: group score = sum of the `group_top` best choice scores in the group;
    ///    keep the `keep_groups` best groups; choice scores outside them become `masked`
    ///    (−∞ unless the graph says otherwise).
    /// 3. Take the k best choice scores, ties to the lower expert index; each chosen slot
    ///    carries the unbiased score as its weight.
    static func topk(scores: HostTensor, bias: [Double]?, attributes a: Attributes) -> Routing {
        let tokens = scores.shape[0], e = scores.shape[1]
        let k = a.int("k")!
        let groups = a.int("groups") ?? 1
        let keep = a.int("keep_groups") ?? groups
        let groupTop = a.int("group_top") ?? 2
        let masked = a.float("masked") ?? -.infinity
        let s = scores.floats
        var r = Routing(tokens: tokens, slots: k, experts: e,
                        expert: [Int](repeating: -1, count: tokens * k), weight: [Double](repeating: 0, count: tokens * k))
        for t in 0..<tokens {
            let raw = (0..<e).map { Double(s[t * e + $0]) }
            var choice = (0..<e).map { raw[$0] + (bias?[$0] ?? 0) }
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
            for (slot, idx) in bestIndices(choice, k).enumerated() {
                r.expert[t * k + slot] = idx
                r.weight[t * k + slot] = raw[idx]
            }
        }
        return r
    }

    /// Indices of the `k` largest values, largest first, ties to the lower index.
    static func bestIndices(_ v: [Double], _ k: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }.prefix(k))
    }
}
