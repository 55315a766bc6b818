import Foundation
import MoEIR
import Testing

@testable import MoEBackend

/// Every plain op the executor supports, on tiny graphs built with `GraphBuilder`, against the
/// reference interpreter (all backends, 1 and 2 threads, 1/7/64/300 tokens).
@Suite(.serialized) struct OpTests {
    // MARK: Linear and norms

    @Test(arguments: [false, true])
    func linear(withBias: Bool) throws {
        var t = TinyGraph(seed: 1)
        let x = t.input("x", [.tokens, .fixed(37)])
        let w = t.randomWeight("w", [29, 37])
        var operands = [x, w]
        if withBias { operands.append(t.randomWeight("b", [29], scale: 0.5)) }
        t.output("y", try t.op(.linear, operands))
        try expectMatchesReference(t)
    }

    /// A rank-3 input: linear works on the last dimension of every row.
    @Test func linearOnRank3Input() throws {
        var t = TinyGraph(seed: 2)
        let x = t.input("x", [.tokens, .fixed(3), .fixed(16)])
        t.output("y", try t.op(.linear, [x, t.randomWeight("w", [9, 16]), t.randomWeight("b", [9])]))
        try expectMatchesReference(t)
    }

    /// A large enough linear that the native GEMM splits it over 2 threads (≥ 2 MFLOP).
    @Test func largeLinearIsThreadDeterministic() throws {
        var t = TinyGraph(seed: 3)
        let x = t.input("x", [.tokens, .fixed(96)])
        t.output("y", try t.op(.linear, [x, t.randomWeight("w", [131, 96])]))
        try expectMatchesReference(t, tokens: [300])
        let g = t.graph, buffers = t.buffers()
        let inputs = randomInputs(g, tokens: 300, seed: 4)
        let one = try Executable(graph: g, weights: buffers, options: ExecutionOptions(threads: 1, backend: .native)).run(inputs)
        let two = try Executable(graph: g, weights: buffers, options: ExecutionOptions(threads: 2, backend: .native)).run(inputs)
        let same = bitwiseEqual(one["y"]!, two["y"]!)
        #expect(same, "1 and 2 threads differ")
    }

    @Test(arguments: [nil, 0.1] as [Double?])
    func rmsnorm(eps: Double?) throws {
        var t = TinyGraph(seed: 4)
        let x = t.input("x", [.tokens, .fixed(35)])
        let w = t.weight("w", [35], t.rng.normals(35, scale: 0.2).map { 1 + $0 })
        var attrs: Attributes = [:]
        if let eps { attrs["eps"] = .float(eps) }
        t.output("y", try t.op(.rmsnorm, [x, w], attrs))
        try expectMatchesReference(t)
    }

    @Test(arguments: [(false, nil), (true, nil), (true, 0.5)] as [(Bool, Double?)])
    func layernorm(withBias: Bool, eps: Double?) throws {
        var t = TinyGraph(seed: 5)
        let x = t.input("x", [.tokens, .fixed(19)])
        var operands = [x, t.weight("w", [19], t.rng.normals(19, scale: 0.2).map { 1 + $0 })]
        if withBias { operands.append(t.randomWeight("b", [19], scale: 0.5)) }
        var attrs: Attributes = [:]
        if let eps { attrs["eps"] = .float(eps) }
        t.output("y", try t.op(.layernorm, operands, attrs))
        // Inputs with a large common offset: the variance must not lose its precision.
        try expectMatchesReference(
            t,
            inputs: { n in
                var rng = SeededRandom(seed: UInt64(n))
                return ["x": HostTensor(shape: [n, 19], floats: rng.normals(n * 19, scale: 2).map { $0 + 3 })]
            })
    }

    /// `groups`: each head of a [tokens, heads · d] row normalised alone with one [d] weight
    /// (Qwen3's q_norm), the same as the norm of a [tokens · heads, d] input.
    @Test(arguments: [DenseOp.rmsnorm, .layernorm])
    func normInGroups(_ norm: DenseOp) throws {
        let heads = 5, d = 6
        var t = TinyGraph(seed: 6)
        let x = t.input("x", [.tokens, .fixed(heads * d)])
        let w = t.weight("w", [d], t.rng.normals(d, scale: 0.2).map { 1 + $0 })
        t.output("y", try t.op(.dense(norm), [x, w], ["groups": .int(heads)]))
        try expectMatchesReference(t)

        var rows = TinyGraph(seed: 6)
        let xr = rows.input("x", [.tokens, .fixed(d)])
        let wr = rows.weight("w", [d], t.weights[0].floats)
        rows.output("y", try rows.op(.dense(norm), [xr, wr]))
        var rng = SeededRandom(seed: 7)
        let values = rng.normals(3 * heads * d, scale: 2)
        let grouped = try runEverywhere(t, ["x": HostTensor(shape: [3, heads * d], floats: values)])
        let separate = try runEverywhere(rows, ["x": HostTensor(shape: [3 * heads, d], floats: values)])
        #expect(grouped == separate)
    }

    @Test(arguments: [nil, 0.7, 2.5] as [Double?])
    func softmax(temperature: Double?) throws {
        var t = TinyGraph(seed: 6)
        let x = t.input("x", [.tokens, .fixed(23)])
        var attrs: Attributes = [:]
        if let temperature { attrs["temperature"] = .float(temperature) }
        t.output("y", try t.op(.softmax, [x], attrs))
        try expectMatchesReference(
            t,
            inputs: { n in
                var rng = SeededRandom(seed: UInt64(n) + 1)
                return ["x": HostTensor(shape: [n, 23], floats: rng.normals(n * 23, scale: 4))]
            })
    }

    /// Softmax over the last axis of a rank-3 tensor, and over a single column.
    @Test func softmaxShapes() throws {
        var t = TinyGraph(seed: 7)
        let a = t.input("a", [.tokens, .fixed(3), .fixed(5)])
        let b = t.input("b", [.tokens, .fixed(1)])
        t.output("ya", try t.op(.softmax, [a]))
        t.output("yb", try t.op(.softmax, [b], ["temperature": .float(0.5)]))
        try expectMatchesReference(t)
    }

    // MARK: Element-wise

    static let unaryOps: [Op] = Op.allCases.filter(\.isElementwiseUnary)

    @Test(arguments: unaryOps)
    func unary(_ op: Op) throws {
        var t = TinyGraph(seed: 8)
        let x = t.input("x", [.tokens, .fixed(37)])
        t.output("y", try t.op(op, [x]))
        let worst = try expectMatchesReference(
            t,
            inputs: { n in
                var rng = SeededRandom(seed: UInt64(n) + 2)
                // Wide range (tails of exp, sigmoid, gelu); sqrt gets non-negative values.
                let v = rng.normals(n * 37, scale: 4)
                return ["x": HostTensor(shape: [n, 37], floats: op == .sqrt ? v.map(abs) : v)]
            })
        print("unary \(op): worst \(String(format: "%.2e", worst))")
    }

    @Test func everyUnaryOpIsTested() {
        #expect(Set(Self.unaryOps) == [.silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg])
    }

    /// Shapes of the two operands of a binary op, by how they broadcast against [T, H].
    enum Operand: String, CaseIterable, CustomStringConvertible {
        case full // [T, H] input
        case scalar // constant node, shape []
        case one // [1] input
        case row // [H] weight
        case row2 // [1, H] weight
        case column // [T, 1] input
        var description: String { rawValue }
    }

    static let binaryCases: [(Op, Operand, Operand)] = {
        let pairs: [(Operand, Operand)] = [
            (.full, .full), (.full, .scalar), (.scalar, .full), (.full, .one), (.one, .full),
            (.full, .row), (.row, .full), (.full, .row2), (.full, .column), (.column, .full),
            (.column, .row), (.row, .column)
        ]
        return [Op.add, .sub, .mul, .div].flatMap { op in pairs.map { (op, $0.0, $0.1) } }
    }()

    @Test(arguments: binaryCases)
    func binary(_ op: Op, _ lhs: Operand, _ rhs: Operand) throws {
        let h = 13
        var t = TinyGraph(seed: 9)
        // Values away from zero, so that division is well conditioned.
        func awayFromZero(_ n: Int, _ rng: inout SeededRandom) -> [Float] {
            (0..<n).map { _ in Float((rng.unit() < 0.5 ? -1 : 1) * (0.5 + 1.5 * rng.unit())) }
        }
        func operand(_ o: Operand, _ side: String) -> ValueID {
            switch o {
            case .full: return t.input("full_\(side)", [.tokens, .fixed(h)])
            case .scalar: return t.constant(side == "l" ? -1.75 : 0.625)
            case .one: return t.input("one_\(side)", [.fixed(1)])
            case .row: return t.weight("row_\(side)", [h], awayFromZero(h, &t.rng))
            case .row2: return t.weight("row2_\(side)", [1, h], awayFromZero(h, &t.rng))
            case .column: return t.input("column_\(side)", [.tokens, .fixed(1)])
            }
        }
        let a = operand(lhs, "l"), b = operand(rhs, "r")
        t.output("y", try t.op(op, [a, b]))
        let g = t.graph
        try expectMatchesReference(
            t,
            inputs: { n in
                var rng = SeededRandom(seed: UInt64(n) + 3)
                var out: [String: HostTensor] = [:]
                for (name, _, type) in g.inputs {
                    let shape = type.shape.map { $0.resolve(tokens: n) }
                    out[name] = HostTensor(shape: shape, floats: awayFromZero(shape.reduce(1, *), &rng))
                }
                return out
            })
    }

    /// An op reading the same value twice, and an output that is also read by a later op.
    @Test func sharedOperandsAndIntermediateOutputs() throws {
        var t = TinyGraph(seed: 10)
        let x = t.input("x", [.tokens, .fixed(11)])
        let sq = try t.op(.mul, [x, x])
        let s = try t.op(.sigmoid, [sq])
        t.output("sq", sq)
        t.output("y", try t.op(.add, [s, x]))
        t.output("x_again", x)
        try expectMatchesReference(t)
    }

    // MARK: Dense FFNs

    @Test func denseSwiglu() throws {
        var t = TinyGraph(seed: 11)
        let x = t.input("x", [.tokens, .fixed(21)])
        let y = try t.op(.swiglu, [x, t.randomWeight("g", [34, 21]), t.randomWeight("u", [34, 21]), t.randomWeight("d", [21, 34])])
        t.output("y", y)
        try expectMatchesReference(t)
    }

    @Test(arguments: Activation.allCases)
    func denseMlp(_ act: Activation) throws {
        var t = TinyGraph(seed: 12)
        let x = t.input("x", [.tokens, .fixed(18)])
        let y = try t.op(.mlp, [x, t.randomWeight("u", [27, 18]), t.randomWeight("d", [18, 27])], ["act": .string(act.rawValue)])
        t.output("y", y)
        try expectMatchesReference(t)
    }

    /// A dense SwiGLU big enough for the native GEMM to use 2 threads, on a rank-3 input.
    @Test func largeDenseSwigluOnRank3Input() throws {
        var t = TinyGraph(seed: 13)
        let x = t.input("x", [.tokens, .fixed(2), .fixed(64)])
        let y = try t.op(.swiglu, [x, t.randomWeight("g", [80, 64]), t.randomWeight("u", [80, 64]), t.randomWeight("d", [64, 80])])
        t.output("y", y)
        try expectMatchesReference(t, tokens: [1, 300])
    }
}
