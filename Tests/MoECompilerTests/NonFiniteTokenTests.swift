import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoETestSupport
import Testing

/// The one rule for non-finite values, on every mechanism fixture (every router family): a token
/// whose input is not finite gets a NaN output row and changes nothing for the other tokens (it
/// takes no expert-choice capacity and no part in Sinkhorn balancing), in the compiled plan and
/// in the reference interpreter. Non-finite router scores from finite input are covered by the
/// `+∞` steering case and `RoutingSemanticsTests`.
@Suite struct NonFiniteTokenTests {
    static var mechanisms: [ParityTests.Fixture] { ParityTests.fixtures.filter { $0.name.hasPrefix("mechanisms/") } }

    /// A non-finite input row: NaN, one +∞, one −∞ (an input, unlike a score, is never a mask).
    enum Bad: String, CaseIterable, CustomStringConvertible, Sendable {
        case nanRow, infinityInOneColumn, negativeInfinity
        var description: String { rawValue }
        func row(_ width: Int) -> [Float] {
            switch self {
            case .nanRow: return [Float](repeating: .nan, count: width)
            case .infinityInOneColumn: return (0..<width).map { $0 == 1 ? .infinity : 0.5 }
            case .negativeInfinity: return (0..<width).map { $0 == 0 ? -.infinity : -0.25 }
            }
        }
    }

    /// The fixture's inputs with a bad token inserted at row `at` of every input that has a
    /// token dimension (ids get id 7).
    static func inputs(_ f: ParityTests.Fixture, bad: Bad, at: Int) throws -> (inputs: [String: HostTensor], tokens: Int) {
        var out: [String: HostTensor] = [:]
        var tokens = 0
        for (name, file) in f.inputs {
            let a = try NpyArray(path: f.path + "/" + file)
            if name == "x" { tokens = a.shape[0] }
            switch a.storage {
            case .int32, .int64:
                var v = try a.int32s()
                if a.shape.count == 1 { v.insert(7, at: at) }
                out[name] = HostTensor(shape: a.shape.count == 1 ? [v.count] : a.shape, ints: v)
            default:
                var v = a.floats()
                guard name == "x" else {
                    out[name] = HostTensor(shape: a.shape, floats: v)
                    continue
                }
                let width = a.shape[1]
                v.insert(contentsOf: bad.row(width), at: at * width)
                out[name] = HostTensor(shape: [a.shape[0] + 1, width], floats: v)
            }
        }
        return (out, tokens)
    }

    /// Row `at` all NaN; the other rows the fixture's reference output.
    static func check(_ f: ParityTests.Fixture, _ result: [String: HostTensor], at: Int, via: String) throws {
        for (name, file) in f.outputs {
            let reference = try NpyArray(path: f.path + "/" + file)
            let got = try #require(result[name])
            let width = reference.shape.dropFirst().reduce(1, *)
            var rest = got.floats
            let bad = Array(rest[(at * width)..<((at + 1) * width)])
            rest.removeSubrange((at * width)..<((at + 1) * width))
            #expect(bad.allSatisfy { $0.isNaN }, "\(f.name) via \(via): the bad token's row of \(name) is \(bad.prefix(4))…")
            let err = relativeError(rest, reference.floats())
            #expect(err <= ParityTests.tolerance, "\(f.name) via \(via): the other tokens' \(name) moved by \(err)")
        }
    }

    @Test(arguments: mechanisms, Bad.allCases)
    func badTokenGetsNaNAndLeavesTheOthers(_ f: ParityTests.Fixture, _ bad: Bad) throws {
        let session = CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides, verifyEachPass: true))
        let tokens = try NpyArray(path: f.path + "/x.npy").shape[0]
        let at = tokens / 2
        let (x, _) = try Self.inputs(f, bad: bad, at: at)
        let runner = try ModelRunner.compile(session, options: ExecutionOptions(threads: 2))
        try Self.check(f, try runner.run(x), at: at, via: "plan")
        let graph = try session.boundGraph()
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try session.checkpoint()))
        try Self.check(f, try interpreter.run(x), at: at, via: "interpreter")
        let outputs = Array(try runner.run(x).values)
        #expect(RunReport.countNonFiniteTokens(outputs, tokens: tokens + 1) == 1)
    }

    /// A `+∞` in the steering mask makes every token's scores NaN (∞ − ∞ in the softmax): every
    /// row NaN, none silently routed. (−∞ masks an expert: the fixtures' steer vectors use −30.)
    @Test func infiniteSteeringMakesEveryTokenInvalid() throws {
        let f = try #require(Self.mechanisms.first { $0.name.hasPrefix("mechanisms/steering_") })
        var x = try ParityTests().inputs(f)
        var steer = x["steer"]!.floats
        steer[3] = .infinity
        x["steer"] = HostTensor(shape: x["steer"]!.shape, floats: steer)
        let session = CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides))
        let y = try ModelRunner.compile(session, options: ExecutionOptions(threads: 1)).run(x)["y"]!
        #expect(y.floats.allSatisfy { $0.isNaN })
    }

    /// A zero token is finite input: in the subspace router it scores 0 everywhere, stat_topk
    /// keeps every expert with weight 0, and renormalizing leaves the zeros (no 0/0).
    @Test func zeroTokenIsNotNaN() throws {
        let f = try #require(Self.mechanisms.first { $0.name.hasPrefix("mechanisms/subspace_router_") })
        var x = try ParityTests().inputs(f)
        var v = x["x"]!.floats
        let width = x["x"]!.shape[1]
        for j in 0..<width { v[j] = 0 }
        x["x"] = HostTensor(shape: x["x"]!.shape, floats: v)
        let session = CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides))
        let y = try ModelRunner.compile(session, options: ExecutionOptions(threads: 1)).run(x)["y"]!
        #expect(y.floats.allSatisfy { $0.isFinite })
        #expect(y.floats.prefix(width).allSatisfy { $0 == 0 })
    }

    /// `--stats` counts the tokens a router sent nowhere (threshold τ = 0.3 leaves some without
    /// an expert) and the non-finite ones.
    @Test func statisticsCountTokensWithoutExpert() throws {
        let f = try #require(Self.mechanisms.first { $0.name.hasPrefix("mechanisms/threshold_router_h12") })
        let meta = try JSON.parse(bytes: try #require(FileManager.default.contents(atPath: f.path + "/meta.json")))
        let perToken = try #require(meta["routing"]?["experts_per_token"]?.array)
        let zeros = perToken.filter { $0.int == 0 }.count
        #expect(zeros > 0)
        let session = CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides))
        let runner = try ModelRunner.compile(session, options: ExecutionOptions(threads: 1), recordRouting: true)
        var stats = runner.emptyRoutingStatistics()
        let (x, _) = try Self.inputs(f, bad: .nanRow, at: 0)
        _ = try runner.run(x, recordingInto: &stats)
        #expect(stats.layers[0].tokensWithoutExpert == zeros)
        #expect(stats.layers[0].nonFiniteTokens == 1)
        #expect(stats.json.pretty.contains("\"tokens_without_expert\""))
    }
}
