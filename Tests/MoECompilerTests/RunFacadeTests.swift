import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoETestSupport
import Testing

/// `moec run --check`'s arithmetic: max |Δ| / max |ref|, with NaNs and zero references failing.
@Suite struct OutputCheckTests {
    @Test func relativeErrorIsTheLargestDifferenceOverTheLargestReference() {
        #expect(OutputCheck.relativeError([1, 2, 3], reference: [1, 2, 3]) == 0)
        // max |Δ| = 0.5 (second element), max |ref| = 4 (third, negative).
        #expect(OutputCheck.relativeError([1, 2.5, -4], reference: [1, 2, -4]) == 0.125)
        #expect(OutputCheck.relativeError([0, 0], reference: [-2, 1]) == 1)
    }

    @Test func aNaNOrAnyDifferenceFromAZeroReferenceFails() {
        #expect(OutputCheck.relativeError([1, .nan], reference: [1, 2]) == .infinity)
        #expect(OutputCheck.relativeError([0, 0], reference: [0, 0]) == 0)
        let zero = OutputCheck.relativeError([0, 1e-30], reference: [0, 0])
        #expect(zero > 1e6 && zero <= .infinity)
    }

    @Test func comparesAnOutputWithItsReferenceFile() throws {
        let dir = TemporaryDirectory()
        try NpyArray(shape: [2, 2], storage: .float32([1, 2, 3, 4])).write(to: dir.file("ref.npy"))
        let check = try OutputCheck(output: "y", referencePath: dir.file("ref.npy"))
        let close = check.compare(HostTensor(shape: [2, 2], floats: [1, 2, 3, 4.0002]), tolerance: 1e-4)
        #expect(close.name == "y" && close.tolerance == 1e-4 && abs(close.relativeError - 5e-5) < 1e-7 && close.passed)
        let far = check.compare(HostTensor(shape: [2, 2], floats: [1, 2, 3, 5]), tolerance: 1e-4)
        #expect(far.relativeError == 0.25 && !far.passed)
        #expect(throws: DiagnosticError.self) { try check.checkShape(of: HostTensor(shape: [4], floats: [1, 2, 3, 4])) }
        try check.checkShape(of: HostTensor(shape: [2, 2], floats: [0, 0, 0, 0]))
    }

    @Test func anUnreadableReferenceIsAnErrorNamingIt() throws {
        let dir = TemporaryDirectory()
        try "not npy".write(toFile: dir.file("bad.npy"), atomically: true, encoding: .utf8)
        do {
            _ = try OutputCheck(output: "y", referencePath: dir.file("bad.npy"))
            Issue.record("a bad reference was read")
        } catch let e as DiagnosticError {
            #expect(e.diagnostics.first?.message.contains("bad.npy") == true, "\(e.diagnostics)")
        }
    }
}

/// `ModelRunner.run(_: RunRequest)`: the work of `moec run` behind the façade.
@Suite struct RunRequestTests {
    static let example = RepoPaths.path("examples/mixtral-tiny")

    static func runner(recordRouting: Bool) throws -> ModelRunner {
        let session = CompilerSession(CompileOptions(graphPath: RepoPaths.path("graphs/mixtral.moe"), modelDirectory: example))
        return try ModelRunner.compile(session, options: ExecutionOptions(threads: 1), recordRouting: recordRouting)
    }

    @Test func writesOutputsAndStatisticsAndChecksAgainstAReference() throws {
        let dir = TemporaryDirectory()
        let runner = try Self.runner(recordRouting: true)
        #expect(runner.graph.outputs.map(\.name) == ["y"], "the router scores are not the graph's outputs")
        let x = try NpyArray(path: Self.example + "/x.npy")
        let y = try runner.run(["x": HostTensor(shape: x.shape, floats: x.floats())])["y"]!
        try NpyArray(shape: y.shape, storage: .float32(y.floats.map { $0 * 1.5 })).write(to: dir.file("far.npy"))
        let request = RunRequest(
            inputs: [("x", Self.example + "/x.npy")], outputs: [("y", dir.file("y.npy"))],
            checks: [("y", dir.file("far.npy"))], statisticsPath: dir.file("stats.json"))
        let report = try runner.run(request)
        #expect(report.written.map(\.name) == ["y"] && report.written[0].shape == y.shape)
        #expect(report.tokens == x.shape[0] && report.statisticsLayers == 1 && report.halting == nil)
        // |1.5 y − y| / |1.5 y| at its largest: 1/3.
        #expect(abs(report.checks[0].relativeError - 1.0 / 3) < 1e-6 && !report.checks[0].passed)
        #expect(try NpyArray(path: dir.file("y.npy")).floats() == y.floats)
        let stats = try JSON.parse(bytes: Data(contentsOf: URL(fileURLWithPath: dir.file("stats.json"))))
        #expect(stats.object?["expert_load"] != nil)
    }

    /// Every name and file is checked before the run, and nothing is written on an error.
    @Test func aBadNameOrReferenceWritesNothing() throws {
        let dir = TemporaryDirectory()
        let runner = try Self.runner(recordRouting: false)
        let input = [("x", Self.example + "/x.npy")]
        for request in [
            RunRequest(inputs: input, outputs: [("y", dir.file("y.npy")), ("z", dir.file("z.npy"))]),
            RunRequest(inputs: input, outputs: [("y", dir.file("y.npy"))], checks: [("y", dir.file("missing.npy"))]),
            RunRequest(inputs: [("q", Self.example + "/x.npy")], outputs: [("y", dir.file("y.npy"))])
        ] {
            #expect(throws: DiagnosticError.self) { try runner.run(request) }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
        // Statistics need a runner that records routing.
        #expect(throws: DiagnosticError.self) {
            try runner.run(RunRequest(inputs: input, outputs: [("y", dir.file("y.npy"))], statisticsPath: dir.file("s.json")))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
