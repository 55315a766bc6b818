import Foundation
import MoEBackend
import MoEBasics
import MoEIO
import MoEIR

/// What `moec run` asks of a loaded model: `.npy` inputs by graph input name, where outputs go,
/// references to check outputs against, and where the routing statistics go.
public struct RunRequest: Sendable {
    public var inputs: [(name: String, path: String)]
    public var outputs: [(name: String, path: String)]
    public var checks: [(name: String, path: String)]
    public var statisticsPath: String?
    public var tolerance: Float

    public init(
        inputs: [(name: String, path: String)], outputs: [(name: String, path: String)],
        checks: [(name: String, path: String)] = [], statisticsPath: String? = nil,
        tolerance: Float = OutputCheck.defaultTolerance
    ) {
        self.inputs = inputs
        self.outputs = outputs
        self.checks = checks
        self.statisticsPath = statisticsPath
        self.tolerance = tolerance
    }

    /// Whether the run records routing statistics (load the runner with `recordRouting`).
    public var recordsRouting: Bool { statisticsPath != nil }

    /// Checks that every file the run writes can be written: before any work, so that a
    /// mistake costs nothing (not even loading the weights).
    public func checkWritable() throws {
        for o in outputs { try PathCheck.writable(o.path) }
        if let statisticsPath { try PathCheck.writable(statisticsPath) }
    }
}

/// What a run did, for the command to print.
public struct RunReport: Sendable {
    /// Each output written: its name, shape and file.
    public var written: [(name: String, shape: [Int], path: String)]
    /// MoE layers whose statistics were written to the request's `statisticsPath`.
    public var statisticsLayers: Int?
    public var tokens: Int
    /// Seconds of the run itself (not loading, reading or writing).
    public var seconds: Double
    public var halting: HaltingReport?
    /// One per `--check`, in order.
    public var checks: [OutputCheck.Result]
    /// Tokens with a non-finite value in some output row: under the one rule for non-finite
    /// values, the tokens whose input or router scores were not finite (their rows are NaN),
    /// and those that met a non-finite weight or overflowed.
    public var nonFiniteTokens = 0
    /// Of those, the tokens whose input rows hold a non-finite value.
    public var nonFiniteInputTokens = 0

    /// The warning `moec run` prints when some output rows are not finite, saying where they
    /// can have come from (non-finite input is the only cause the tokens alone show).
    public var nonFiniteWarning: String? {
        guard nonFiniteTokens > 0 else { return nil }
        let of = "\(nonFiniteTokens) of \(tokens) token\(tokens == 1 ? "" : "s")"
        if nonFiniteInputTokens >= nonFiniteTokens {
            return "warning: \(of) had non-finite input; their output rows are NaN (the other tokens are unaffected)"
        }
        let inputs = nonFiniteInputTokens > 0 ? "\(nonFiniteInputTokens) had non-finite input, the others " : ""
        return "warning: \(of) have non-finite output rows: \(inputs)met non-finite router scores or weights, "
            + "or values that overflowed (the other tokens are unaffected)"
    }

    /// The tokens (rows of the tensors whose first dimension is the token count) with a
    /// non-finite value in any of `outputs` (a run's outputs, or its inputs).
    public static func countNonFiniteTokens(_ outputs: [HostTensor], tokens: Int) -> Int {
        guard tokens > 0 else { return 0 }
        var bad = [Bool](repeating: false, count: tokens)
        for o in outputs where o.shape.first == tokens {
            guard case .f32(let f) = o.storage else { continue }
            let width = f.count / tokens
            for t in 0..<tokens where !bad[t] {
                for j in 0..<width where !f[t * width + j].isFinite {
                    bad[t] = true
                    break
                }
            }
        }
        return bad.filter { $0 }.count
    }
}

extension ModelRunner {
    /// Runs `request`. Names, input files and references are all read and checked before the
    /// run, and the buffers checked against the machine's memory; after it, every output (and
    /// the statistics) is written or none is; then the checked outputs are compared with their
    /// references.
    public func run(_ request: RunRequest) throws -> RunReport {
        if request.recordsRouting, !recordsRouting {
            throw DiagnosticError(.error("--stats: the model was loaded without recording routing (load it with recordRouting: true)"))
        }
        if request.recordsRouting, routerProbes.isEmpty {
            throw DiagnosticError(.error("--stats: graph '\(graph.name)' has no moe blocks, so there are no expert loads to measure"))
        }
        for (option, o) in request.outputs.map({ ("--output", $0) }) + request.checks.map({ ("--check", $0) })
        where !graph.outputs.contains(where: { $0.name == o.name }) {
            throw DiagnosticError(.error("\(option) \(o.name)=…: the graph has no output '\(o.name)' (outputs: \(graph.outputs.map(\.name).joined(separator: ", ")))"))
        }
        let tensors = try RunInputs.read(request.inputs, for: graph)
        // References too, so that a bad one fails before anything is written.
        let references = try request.checks.map { try OutputCheck(output: $0.name, referencePath: $0.path) }
        if let tokens = try? graph.tokenCount(for: tensors) { try MemoryCheck.arena(graph, tokens: tokens, option: "--input") }
        let t0 = Date()
        var statistics = emptyRoutingStatistics()
        statistics.source = request.inputs.map { "\($0.name)=\($0.path)" }.joined(separator: " ")
        // A rank of a sharded mpirun job that does not write the statistics records them all the
        // same: recording gathers every rank's expert loads, a collective call.
        let records = request.recordsRouting || (recordsRouting && executable.shardsTokens)
        let result = records ? try run(tensors, recordingInto: &statistics) : try run(tensors)
        let seconds = Date().timeIntervalSince(t0)
        for c in references { try c.checkShape(of: result[c.name]!) }
        var files: [(path: String, data: Data)] = []
        for o in request.outputs { files.append((o.path, try Self.npyData(result[o.name]!))) }
        if let path = request.statisticsPath { files.append((path, Data((statistics.json.pretty + "\n").utf8))) }
        try PathCheck.writeAll(files)
        let tokens = (try? graph.tokenCount(for: tensors)) ?? 0
        var report = RunReport(
            written: request.outputs.map { ($0.name, result[$0.name]!.shape, $0.path) },
            statisticsLayers: request.recordsRouting ? statistics.layers.count : nil,
            tokens: tokens, seconds: seconds,
            halting: HaltingReport(graph: graph, expertLoads: lastExpertLoads(tokens: tokens)),
            checks: references.map { $0.compare(result[$0.name]!, tolerance: request.tolerance) })
        report.nonFiniteTokens = RunReport.countNonFiniteTokens(graph.outputs.compactMap { result[$0.name] }, tokens: tokens)
        if report.nonFiniteTokens > 0 {
            report.nonFiniteInputTokens = RunReport.countNonFiniteTokens(graph.inputs.compactMap { tensors[$0.name] }, tokens: tokens)
        }
        return report
    }

    /// An output as the bytes of a `.npy` file: f32, or i32 for integer outputs.
    static func npyData(_ t: HostTensor) throws -> Data {
        switch t.storage {
        case .f32(let f): return try NpyArray(shape: t.shape, storage: .float32(f)).encoded()
        case .i32(let v): return try NpyArray(shape: t.shape, storage: .int32(v)).encoded()
        }
    }
}
