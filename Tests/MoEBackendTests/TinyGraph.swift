import Foundation
import MoEBasics
import MoEIR
import Testing

@testable import MoEBackend

/// A graph built op by op with `GraphBuilder`, with its weight values alongside, for op-level
/// tests of the executor against the reference interpreter.
struct TinyGraph {
    private(set) var builder: GraphBuilder
    /// Weight values in weight-table order.
    private(set) var weights: [HostTensor] = []
    var rng: SeededRandom

    init(_ name: String = "tiny", seed: UInt64 = 1) {
        builder = GraphBuilder(name: name)
        rng = SeededRandom(seed: seed)
    }

    var graph: Graph { builder.graph }

    mutating func input(_ name: String, _ shape: [Dim]) -> ValueID {
        builder.addInput(name: name, type: TensorType(.f32, shape))
    }

    mutating func weight(_ name: String, _ shape: [Int], _ values: [Float]) -> ValueID {
        precondition(values.count == shape.reduce(1, *))
        let before = builder.graph.weights.count
        let id = builder.addWeight(WeightInfo(name: name, pattern: "tiny.\(name)", shape: shape))
        if builder.graph.weights.count > before { weights.append(HostTensor(shape: shape, floats: values)) }
        return id
    }

    /// A weight with seeded normal values; scale 1/√(last dimension) unless given.
    mutating func randomWeight(_ name: String, _ shape: [Int], scale: Double? = nil) -> ValueID {
        let s = scale ?? 1 / Double(max(shape.last ?? 1, 1)).squareRoot()
        let values = rng.normals(shape.reduce(1, *), scale: s)
        return weight(name, shape, values)
    }

    mutating func constant(_ value: Double) -> ValueID { builder.addConstant(value) }

    @discardableResult
    mutating func op(_ op: Op, _ operands: [ValueID], _ attrs: Attributes = [:]) throws -> ValueID {
        try builder.add(op, operands, attrs)
    }

    mutating func output(_ name: String, _ value: ValueID) { builder.addOutput(name: name, value: value) }

    /// The weights as aligned buffers, for `Executable`.
    func buffers() -> [AlignedBuffer] {
        weights.map { w in
            let b = AlignedBuffer(floats: w.count)
            w.floats.withUnsafeBufferPointer { b.floats.update(from: $0.baseAddress!, count: w.count) }
            return b
        }
    }
}

/// Runs `tiny` through the reference interpreter and through the executor with every backend
/// and thread count, for each token count; every output must match within `tolerance`
/// (max |Δ| / max |ref|). Returns the worst error seen.
@discardableResult
func expectMatchesReference(
    _ tiny: TinyGraph, tokens: [Int] = [1, 7, 64, 300], tolerance: Double = 1e-5,
    inputs makeInputs: ((Int) -> [String: HostTensor])? = nil,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) throws -> Double {
    let g = tiny.graph
    let problems = Verifier.verify(g)
    try #require(problems.isEmpty, "the test graph does not verify: \(problems)", sourceLocation: sourceLocation)
    let reference = ReferenceInterpreter(graph: g, weights: tiny.weights)
    let buffers = tiny.buffers()
    let executables = Backends.configurations.map { ($0.label, Executable(graph: g, weights: buffers, options: $0.options)) }
    var worst = 0.0
    for t in tokens {
        let inputs = makeInputs?(t) ?? randomInputs(g, tokens: t, seed: 99)
        let expected = try reference.run(inputs)
        for (label, exe) in executables {
            let out = try exe.run(inputs)
            for (name, r) in expected {
                guard let o = out[name] else {
                    Issue.record("\(label): output \(name) is missing", sourceLocation: sourceLocation)
                    continue
                }
                let err = relativeError(o, r)
                worst = max(worst, err)
                #expect(
                    err <= tolerance, "\(label) tokens=\(t) output \(name): max |Δ| / max |ref| = \(err)",
                    sourceLocation: sourceLocation)
            }
        }
    }
    return worst
}

/// Runs `tiny` with one fixed input set through the reference interpreter and every executor
/// configuration and returns the reference output `y` (after checking the executors match).
func runEverywhere(
    _ tiny: TinyGraph, _ inputs: [String: HostTensor], output: String = "y", tolerance: Double = 1e-5,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) throws -> [Float] {
    try expectMatchesReference(
        tiny, tokens: [try tiny.graph.tokenCount(for: inputs)], tolerance: tolerance,
        inputs: { _ in inputs }, sourceLocation: sourceLocation)
    return try ReferenceInterpreter(graph: tiny.graph, weights: tiny.weights).run(inputs)[output]!.floats
}
