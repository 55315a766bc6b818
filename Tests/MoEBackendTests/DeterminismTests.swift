import Foundation
import MoEIR
import MoETestSupport
import Testing

@testable import MoEBackend

/// Determinism on every graph in `graphs/`, `graphs/mechanisms/` and `graphs/gguf/` (random
/// checkpoint, small params), for each matrix-multiply backend: with the same input and thread count, two runs of
/// one executable and a run of a second executable give the same bits; 2 and 3 threads agree
/// with 1 thread within 1e-6 of max |ref|. 3 threads is an odd split of every partitioned loop,
/// which 1 and 2 do not exercise.
@Suite struct DeterminismTests {
    static let threadCounts = [1, 2, 3]
    /// Odd, and large enough that Switch's capacity drops tokens and the experts get uneven loads.
    static let tokens = 67
    static let tolerance = 1e-6

    static var graphs: [String] {
        let mechanisms = ((try? FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs + "/mechanisms")) ?? [])
            .filter { $0.hasSuffix(".moe") }.sorted().map { "mechanisms/" + $0 }
        let gguf = ((try? FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs + "/gguf")) ?? [])
            .filter { $0.hasSuffix(".moe") }.sorted().map { "gguf/" + $0 }
        return SmallParams.graphFiles + mechanisms + gguf
    }

    /// Small params for the GGUF graphs (their defaults are a real model's sizes).
    static func ggufParams(_ file: String) -> [(name: String, value: String)] {
        let common: [(name: String, value: String)] = [("hidden", "16"), ("ffn", "8"), ("num_experts", "8"), ("top_k", "2")]
        switch file {
        case "gguf/qwen2moe.moe": return common + [("shared_ffn", "12")]
        case "gguf/deepseek2.moe": return common + [("n_group", "4"), ("topk_group", "2")]
        default: return common
        }
    }

    @Test func coversTheMechanisms() {
        #expect(Self.graphs.contains("mechanisms/multihop.moe"), "graphs/mechanisms not found under \(RepoPaths.graphs)")
        #expect(Self.graphs.contains("gguf/qwen3moe.moe"), "graphs/gguf not found under \(RepoPaths.graphs)")
    }

    @Test(arguments: graphs)
    func sameInputSameBits(_ file: String) throws {
        let model =
            file.hasPrefix("mechanisms/") || file.hasPrefix("gguf/")
            ? try RandomCheckpoint.make(graphPath: RepoPaths.graphs + "/" + file, overrides: file.hasPrefix("gguf/") ? Self.ggufParams(file) : [], seed: 21)
            : try RandomCheckpoint.make(graphFile: file, seed: 21)
        var inputs = model.inputs(tokens: Self.tokens, seed: 9)
        // A scalar input is a knob such as expert choice's capacity factor: a random normal one
        // may be negative and route nothing.
        for (name, t) in inputs where t.shape.isEmpty && !t.floats.isEmpty { inputs[name] = HostTensor(shape: [], floats: [1.25]) }
        for (backendName, backend) in Backends.all {
            var oneThread: [String: HostTensor] = [:]
            for threads in Self.threadCounts {
                let options = ExecutionOptions(threads: threads, backend: backend)
                let label = "graphs/\(file) \(backendName)/\(threads)t"
                let first = model.executable(options), second = model.executable(options)
                let a = try first.run(inputs)
                let again = try first.run(inputs)
                let other = try second.run(inputs)
                #expect(Set(a.keys) == Set(other.keys), "\(label)")
                for (name, x) in a {
                    #expect(x.floats.contains { $0 != 0 }, "\(label) output \(name) is all zeros: the test compares nothing")
                    #expect(bitwiseEqual(x, again[name]!), "\(label) output \(name): a second run differs")
                    if let y = other[name] {
                        #expect(bitwiseEqual(x, y), "\(label) output \(name): a second executable differs")
                    }
                    if threads == 1 {
                        oneThread[name] = x
                    } else if let ref = oneThread[name] {
                        let err = relativeError(x, ref)
                        #expect(err <= Self.tolerance, "\(label) output \(name): max |Δ| / max |ref| = \(err) against 1 thread")
                    }
                }
            }
        }
    }
}
