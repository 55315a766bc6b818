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
        public var expert: [Int] // [tokens × slots]
        public var weight: [Double] // [tokens × slots]

        /// Token `t` routed nowhere because its scores were not finite: every slot
        /// `RoutingMath.invalidToken`, weight 0; its block output row is NaN.
        mutating func markInvalid(_ t: Int) {
            for s in 0..<slots {
                expert[t * slots + s] = Int(RoutingMath.invalidToken)
                weight[t * slots + s] = 0
            }
        }
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
        try n.op.reference.evaluate(ReferenceContext(node: n, values: values, inputs: inputs, tokens: tokens, interpreter: self))
    }

    // MARK: Math shared by the families, written out

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

    /// Indices of the `k` largest values, largest first, ties to the lower index.
    static func bestIndices(_ v: [Double], _ k: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }.prefix(k))
    }
}

typealias R = ReferenceInterpreter

/// What the reference of every op family implements: the value of one node, by definition.
protocol ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value
}

/// One node being evaluated: its operands' values, the run's inputs and token count.
struct ReferenceContext {
    let node: Node
    let values: [ReferenceInterpreter.Value?]
    let inputs: [String: HostTensor]
    let tokens: Int
    let interpreter: ReferenceInterpreter

    func tensor(_ i: Int) -> HostTensor {
        guard case .tensor(let t)? = values[node.operands[i].index] else { preconditionFailure("operand \(i) is a tensor") }
        return t
    }

    func routing(_ i: Int) -> ReferenceInterpreter.Routing {
        guard case .routing(let r)? = values[node.operands[i].index] else { preconditionFailure("operand \(i) is a routing") }
        return r
    }

    /// The value of `op` on `operands` with `attributes`, typed as this node: for a fused node
    /// defined as the chain of ops it replaced.
    func evaluate(_ op: Op, _ operands: [ReferenceInterpreter.Value], _ attributes: Attributes = [:]) throws -> ReferenceInterpreter.Value {
        let part = Node(op: op, operands: operands.indices.map(ValueID.init), attributes: attributes, type: node.type)
        return try op.reference.evaluate(ReferenceContext(node: part, values: operands, inputs: inputs, tokens: tokens, interpreter: interpreter))
    }
}

extension Op {
    /// The family's reference implementation.
    var reference: any ReferenceFamily {
        switch self {
        case .leaf(let o): return o
        case .dense(let o): return o
        case .elementwise(let o): return o
        case .scoring(let o): return o
        case .selection(let o): return o
        case .routingStage(let o): return o
        case .experts(let o): return o
        case .sequence(let o): return o
        }
    }
}
