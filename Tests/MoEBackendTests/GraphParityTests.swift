import Foundation
import MoEIR
import MoETestSupport
import Testing

@testable import MoEBackend

/// The acceptance property: on every graph in `graphs/` (with a random checkpoint of small
/// sizes), for 1, 7, 64 and 300 tokens, the optimised executor's outputs equal the reference
/// interpreter's within 1e-5 of max |ref|, for BLAS (when one loads) and the native kernels,
/// with 1 and 2 threads.
@Suite(.serialized) struct GraphParityTests {
    static let tolerance = 1e-5
    static let tokenCounts = [1, 7, 64, 300]

    @Test func everyGraphHasSmallParams() {
        #expect(!SmallParams.graphFiles.isEmpty, "no graphs found in \(RepoPaths.graphs)")
        for file in SmallParams.graphFiles where SmallParams.table[file] == nil {
            Issue.record("add small params for graphs/\(file)")
        }
        for file in SmallParams.table.keys where !SmallParams.graphFiles.contains(file) {
            Issue.record("SmallParams has an entry for graphs/\(file), which does not exist")
        }
    }

    @Test(arguments: SmallParams.graphFiles)
    func executorMatchesReference(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 11)
        // Small params must really make the graph small (a forgotten param keeps its real size).
        let weightFloats = model.graph.weights.reduce(0) { $0 + $1.elementCount }
        try #require(weightFloats < 500_000, "graphs/\(file) has \(weightFloats) weight values with its small params; override more params")

        let reference = model.reference
        var expected: [Int: (inputs: [String: HostTensor], outputs: [String: HostTensor])] = [:]
        for t in Self.tokenCounts {
            let inputs = model.inputs(tokens: t, seed: 7)
            let (outputs, routings) = try reference.runAll(inputs)
            expected[t] = (inputs, outputs)
            if file == "switch.moe" && t >= 64 {
                // The capacity must actually drop tokens, or the test does not cover it.
                let dropped = routings.values.reduce(0) { $0 + $1.expert.filter { $0 < 0 }.count }
                #expect(dropped > 0, "graphs/\(file) tokens=\(t): capacity dropped no token")
            }
        }
        var report: [String] = []
        for (label, options) in Backends.configurations {
            let exe = model.executable(options)
            var worst = 0.0
            for t in Self.tokenCounts {
                let (inputs, ref) = expected[t]!
                let out = try exe.run(inputs)
                #expect(Set(out.keys) == Set(ref.keys))
                for (name, r) in ref {
                    guard let o = out[name] else { continue }
                    let err = relativeError(o, r)
                    worst = max(worst, err)
                    #expect(
                        err <= Self.tolerance,
                        "graphs/\(file) \(label) tokens=\(t) output \(name): max |Δ| / max |ref| = \(err)")
                    #expect(r.floats.contains { $0 != 0 }, "graphs/\(file) tokens=\(t): the reference output is all zeros")
                }
            }
            report.append("\(label) \(String(format: "%.2e", worst))")
        }
        print("parity \(model.name): " + report.joined(separator: ", "))
    }

    /// The native kernels split GEMM columns over threads, so each output element is the same
    /// chain of operations whatever the thread count: outputs must be bitwise equal.
    @Test(arguments: SmallParams.graphFiles)
    func nativeIsDeterministicAcrossThreads(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 12)
        let one = model.executable(ExecutionOptions(threads: 1, backend: .native))
        let two = model.executable(ExecutionOptions(threads: 2, backend: .native))
        for t in Self.tokenCounts {
            let inputs = model.inputs(tokens: t, seed: 3)
            let a = try one.run(inputs), b = try two.run(inputs)
            for (name, x) in a {
                let same = bitwiseEqual(x, b[name]!)
                #expect(same, "graphs/\(file) tokens=\(t) output \(name) differs between 1 and 2 threads")
            }
        }
    }

    /// Schedules are built once per token count and reused: running again, or after another
    /// token count, or on a fresh executable, gives the same bits, for BLAS too: each run sets
    /// BLAS's process-wide thread count to its own (see `RegressionTests`).
    @Test(arguments: SmallParams.graphFiles)
    func schedulesAreReusable(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 13)
        for (label, options) in Backends.configurations {
            let same: (HostTensor, HostTensor) -> Bool = { bitwiseEqual($0, $1) }
            let exe = model.executable(options)
            let small = model.inputs(tokens: 7, seed: 1), large = model.inputs(tokens: 300, seed: 2)
            let first = try exe.run(small)
            let again = try exe.run(small)
            #expect(exe.schedule(tokens: 7) === exe.schedule(tokens: 7), "\(label): the schedule for 7 tokens was rebuilt")
            let big = try exe.run(large)
            let afterBig = try exe.run(small)
            let bigAgain = try exe.run(large)
            // A fresh executable that never ran anything else.
            let fresh = try model.executable(options).run(small)
            for (name, x) in first {
                let checks = [
                    (same(x, again[name]!), "second run of 7 tokens differs"),
                    (same(x, afterBig[name]!), "7 tokens after 300 differs"),
                    (same(x, fresh[name]!), "7 tokens differs from a fresh executable"),
                    (
                        same(big[name]!, bigAgain[name]!),
                        "second run of 300 tokens differs (max rel. \(relativeError(bigAgain[name]!, big[name]!)))"
                    )
                ]
                for (ok, what) in checks where !ok {
                    Issue.record("graphs/\(file) \(label) output \(name): \(what)")
                }
            }
        }
    }

    /// Each token's output depends only on its own row (no op mixes tokens except capacity):
    /// the first 7 rows of a 300-token run equal a 7-token run on those rows. With the native
    /// kernels bitwise (a GEMM row's result does not depend on M); with BLAS within 1e-6.
    @Test(arguments: SmallParams.graphFiles.filter { $0 != "switch.moe" })
    func tokensAreIndependent(_ file: String) throws {
        let model = try RandomCheckpoint.make(graphFile: file, seed: 14)
        let large = model.inputs(tokens: 300, seed: 5)
        var small: [String: HostTensor] = [:]
        for (name, t) in large {
            let row = t.count / t.shape[0]
            small[name] = HostTensor(shape: [7] + t.shape.dropFirst(), floats: Array(t.floats.prefix(7 * row)))
        }
        for (label, options) in Backends.configurations {
            let exe = model.executable(options)
            let a = try exe.run(small), b = try exe.run(large)
            for (name, x) in a {
                let head = Array(b[name]!.floats.prefix(x.count))
                if options.backend.isNative {
                    let same = x.floats.map(\.bitPattern) == head.map(\.bitPattern)
                    #expect(same, "graphs/\(file) \(label) output \(name): rows differ between 7 and 300 tokens")
                } else {
                    #expect(relativeError(x.floats, head) <= 1e-6, "graphs/\(file) \(label) output \(name)")
                }
            }
        }
    }
}
