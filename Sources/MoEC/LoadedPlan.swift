import CMoEC
import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIR

/// One plan of the C API: the loaded runner, its inputs' and outputs' types, and the routing
/// statistics of its runs.
final class LoadedPlan: @unchecked Sendable {
    let runner: ModelRunner
    /// Where `moec_save` gets the plan file from: the compile session (its plan without the
    /// router-score outputs that recording adds), or the plan file that was loaded.
    private let source: Source
    enum Source {
        case compiled(CompilerSession)
        case file(String)
    }

    let inputs: [(name: String, type: TensorType)]
    let outputs: [(name: String, type: TensorType)]
    /// Whether the graph reads its tokens as one sequence (an op of the sequence family).
    let isSequence: Bool

    /// Guards `statistics`, `checkedTokenCounts` and `source`'s session.
    private let lock = NSLock()
    private var statistics: RoutingStatistics?
    /// Token counts whose buffers `MemoryCheck.arena` accepted (checked once per count).
    private var checkedTokenCounts: Set<Int> = []

    init(runner: ModelRunner, source: Source) {
        self.runner = runner
        self.source = source
        let g = runner.graph
        inputs = g.inputs.map { ($0.name, $0.type) }
        outputs = g.outputs.map { ($0.name, g[$0.value].tensorType!) }
        isSequence = g.nodes.contains { if case .sequence = $0.op { return true } else { return false } }
        if runner.recordsRouting {
            var s = runner.emptyRoutingStatistics()
            s.source = "runs through the C API"
            statistics = s
        }
    }

    /// The tensor type of input or output `index`.
    func type(output: Bool, index: Int32) throws(CAPIError) -> (name: String, type: TensorType) {
        let list = output ? outputs : inputs
        guard index >= 0, Int(index) < list.count else {
            throw CAPIError(
                "\(output ? "output" : "input") index \(index) is out of range: the graph has \(list.count) \(output ? "output" : "input")\(list.count == 1 ? "" : "s")")
        }
        return list[Int(index)]
    }

    /// Checks the caller's tensors against the graph (count, element type, rank, dimensions, the
    /// outputs' shapes at the token count the inputs imply, no NULL data) and runs, as the next
    /// tokens of `sequence` when given.
    func run(inputs given: [moec_tensor], outputs wanted: [moec_tensor], sequence: SequenceState? = nil) throws {
        guard given.count == inputs.count else {
            throw CAPIError("the graph has \(inputs.count) input\(inputs.count == 1 ? "" : "s") (\(inputs.map(\.name).joined(separator: ", "))), got \(given.count) tensors")
        }
        guard wanted.count == outputs.count else {
            throw CAPIError("the graph has \(outputs.count) output\(outputs.count == 1 ? "" : "s") (\(outputs.map(\.name).joined(separator: ", "))), got \(wanted.count) tensors")
        }
        var shapes: [String: (shape: [Int], dtype: DType)] = [:]
        for (t, (name, _)) in zip(given, inputs) { shapes[name] = try Self.shape(of: t, what: "input '\(name)'") }
        let tokens: Int
        do { tokens = try runner.graph.tokenCount(shapes: shapes) } catch { throw CAPIError(error.message) }
        for (t, (name, type)) in zip(wanted, outputs) {
            let got = try Self.shape(of: t, what: "output '\(name)'")
            let expected = type.shape.map { $0.resolve(tokens: tokens) }
            guard got.shape == expected, got.dtype == type.dtype else {
                throw CAPIError(
                    "output '\(name)' must be \(type.dtype) \(expected) for \(tokens) \(runner.graph.tokensName) (the inputs' count), got \(got.dtype) \(got.shape)")
            }
        }
        try checkMemory(tokens: tokens)
        let inputPointers = given.map { UnsafeRawPointer($0.data!) }
        let outputPointers = wanted.map { $0.data! }
        if statistics != nil {
            try runner.run(tokens: tokens, inputs: inputPointers, outputs: outputPointers, sequence: sequence) { [self] run in
                lock.lock()
                statistics?.add(tokens: tokens, run: run)
                lock.unlock()
            }
        } else {
            try runner.run(tokens: tokens, inputs: inputPointers, outputs: outputPointers, sequence: sequence)
        }
    }

    /// A caller tensor's shape and element type, checked: known type, rank ≥ 0 with a shape
    /// array, dimensions ≥ 0 whose product is addressable, data present.
    private static func shape(of t: moec_tensor, what: String) throws(CAPIError) -> (shape: [Int], dtype: DType) {
        let dtype: DType
        switch t.dtype {
        case Int32(MOEC_F32): dtype = .f32
        case Int32(MOEC_I32): dtype = .i32
        default: throw CAPIError("\(what): dtype \(t.dtype) is neither MOEC_F32 (0) nor MOEC_I32 (1)")
        }
        guard t.rank >= 0, t.rank <= 64 else { throw CAPIError("\(what): rank \(t.rank) is not between 0 and 64") }
        guard t.rank == 0 || t.shape != nil else { throw CAPIError("\(what): shape is NULL for rank \(t.rank)") }
        let dims = (0..<Int(t.rank)).map { Int(t.shape![$0]) }
        if let bad = dims.first(where: { $0 < 0 }) { throw CAPIError("\(what): dimension \(bad) is negative (shape \(dims))") }
        guard Addressable.elementCount(dims) != nil else { throw CAPIError("\(what): shape \(dims) has too many elements") }
        guard t.data != nil else { throw CAPIError("\(what): data is NULL") }
        return (dims, dtype)
    }

    private func checkMemory(tokens: Int) throws {
        lock.lock()
        let checked = checkedTokenCounts.contains(tokens)
        lock.unlock()
        if checked { return }
        try MemoryCheck.arena(runner.graph, tokens: tokens, option: "the inputs")
        lock.lock()
        checkedTokenCounts.insert(tokens)
        lock.unlock()
    }

    /// The statistics of every run since loading or the last reset, as `moec profile` writes them.
    func statisticsJSON() throws(CAPIError) -> String {
        lock.lock()
        defer { lock.unlock() }
        guard let statistics else {
            throw CAPIError("the plan records no routing statistics: compile or load it with record_routing set in moec_options")
        }
        guard !statistics.layers.isEmpty else {
            throw CAPIError("graph '\(runner.graph.name)' has no moe blocks, so there are no expert loads to measure")
        }
        return statistics.json.pretty + "\n"
    }

    func resetStatistics() throws(CAPIError) {
        lock.lock()
        defer { lock.unlock() }
        guard statistics != nil else {
            throw CAPIError("the plan records no routing statistics: compile or load it with record_routing set in moec_options")
        }
        var s = runner.emptyRoutingStatistics()
        s.source = "runs through the C API"
        statistics = s
    }

    /// Writes the plan file: the compiled plan (without recording's extra outputs), or a copy of
    /// the plan file loaded.
    func save(to path: String) throws {
        let plan: Plan
        switch source {
        case .compiled(let session):
            lock.lock()
            defer { lock.unlock() }
            plan = try session.makePlan()
        case .file(let original):
            do { plan = try Plan.read(original) } catch { throw DiagnosticError(.error("\(error)")) }
        }
        do { try plan.write(to: path) } catch { throw DiagnosticError(.error("\(error)")) }
    }
}

/// One sequence of the C API: a plan's runs that continue one another (`SequenceState`).
final class LoadedSequence: @unchecked Sendable {
    let plan: LoadedPlan
    let state: SequenceState

    init(plan: LoadedPlan, capacity: Int64) throws {
        self.plan = plan
        guard capacity >= 1 else { throw CAPIError("capacity must be at least 1 token, got \(capacity)") }
        state = try plan.runner.makeSequence(capacity: Int(capacity))
    }
}
