import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoETestSupport
import Testing

/// bfloat16 rounding written independently of moec's (`Kernels.roundToBfloat16`): of the two
/// bf16 values around `f` (truncated, and one unit up), the nearer in Double arithmetic; on a
/// tie the one with an even last bit. (Finite inputs only.)
private func roundedToBF16(_ f: Float) -> Float {
    let down = Float(bitPattern: f.bitPattern & 0xFFFF_0000)
    if down == f { return f }
    let up = Float(bitPattern: (f.bitPattern & 0xFFFF_0000) &+ 0x1_0000)
    let dDown = abs(Double(f) - Double(down)), dUp = abs(Double(up) - Double(f))
    if dDown != dUp { return dDown < dUp ? down : up }
    return (down.bitPattern >> 16) & 1 == 0 ? down : up
}

/// `moec compile --weights bf16`: every expert matrix of a packed MoE block, and every matrix of a
/// dense `swiglu`/`mlp` layer (shared experts), is stored as bf16 (`FeedForwardWeightFormat`),
/// the plan records it, and the kernels run the bf16 panels. On every parity fixture (the families and the routing mechanisms) the reference is
/// the f32 plan run on the same checkpoint with those weights rounded to bf16 here, and the
/// reference interpreter on them: both must agree within 1e-5 of max |y|. (On the five
/// `fixtureNames` and moec's kernels the f32 plan agrees bit for bit, as bf16 widens exactly
/// and the sums run in f32 in the same order; the interpreter differs by at most 2.3e-7.) Under
/// `MOEC_BLAS` both plans run BLAS on the rounded values.
/// Against the fixture's f32 output (transformers on the unrounded weights) the bf16 plan is
/// within `bf16Tolerance`: bf16 keeps 8 significant bits, so each weight moves by up to 2⁻⁹
/// of itself and a layer output by a few 1e-3 of max |y| (1.8e-3 to 3.9e-3 on `fixtureNames`).
@Suite struct BF16WeightsTests {
    static let tolerance = 1e-5
    static let bf16Tolerance = 1e-2

    /// Families with gate/up interleaved (mixtral, olmoe), stored stacked, a shared expert (a
    /// dense SwiGLU, bf16 as well: qwen2_moe), and gate_up stored fused with biases and an
    /// epilogue (gpt_oss).
    static let fixtureNames = [
        "mixtral-h16-f24-e16-k4-t33-s11", "mixtral-h16-f20-e8-k2-t13-s31-stacked", "olmoe-h20-f12-e8-k2-t7-s52-norm",
        "qwen2_moe-h16-f12-e8-k2-t9-s41", "gpt_oss-tiny"
    ]
    static var fixtures: [ParityTests.Fixture] {
        fixtureNames.compactMap { ParityTests.loadFixture(RepoPaths.fixtures + "/" + $0, name: $0) }
    }

    static func session(_ f: ParityTests.Fixture, _ format: WeightFormat) -> CompilerSession {
        CompilerSession(CompileOptions(graphPath: f.graph, modelDirectory: f.path, overrides: f.overrides, verifyEachPass: true, weightFormat: format))
    }

    /// The f32 plan's graph and its weights, with the weights `bf16Graph` stores as bf16
    /// rounded here.
    static func roundedReference(_ f: ParityTests.Fixture, bf16Graph: Graph) throws -> (Graph, [AlignedBuffer]) {
        let s = session(f, .f32)
        let g = try s.boundGraph()
        try #require(g.weights.map(\.name) == bf16Graph.weights.map(\.name))
        let buffers = try WeightBinding.load(g, try s.checkpoint())
        for (i, w) in bf16Graph.weights.enumerated() where w.format == .bf16 {
            for j in 0..<w.elementCount { buffers[i].floats[j] = roundedToBF16(buffers[i].floats[j]) }
        }
        return (g, buffers)
    }

    @Test func fixturesExist() {
        #expect(Self.fixtures.count == Self.fixtureNames.count)
    }

    @Test func feedForwardMatricesAndOnlyThemAreBF16() throws {
        let byName = Dictionary(uniqueKeysWithValues: Self.fixtures.map { ($0.name, $0) })
        let mixtral = try Self.session(try #require(byName["mixtral-h16-f24-e16-k4-t33-s11"]), .bf16).boundGraph()
        #expect(mixtral.weights.map { "\($0.name):\($0.format.rawValue)" } == ["w1:bf16", "w3:bf16", "w2:bf16", "gate:f32"])
        // The shared expert's matrices (a dense SwiGLU) are bf16 too; the router and the shared
        // expert's gate (plain `linear`s) stay f32.
        let qwen = try Self.session(try #require(byName["qwen2_moe-h16-f12-e8-k2-t9-s41"]), .bf16).boundGraph()
        let formats = Dictionary(uniqueKeysWithValues: qwen.weights.map { ($0.name, $0.format) })
        #expect(formats["w_gate"] == .bf16 && formats["w_up"] == .bf16 && formats["w_down"] == .bf16, "\(formats)")
        #expect(formats["shared_gate"] == .bf16 && formats["shared_up"] == .bf16 && formats["shared_down"] == .bf16, "\(formats)")
        #expect(formats["gate"] == .f32 && formats["shared_mix"] == .f32, "\(formats)")
        // f32 is the default: no weight changes format.
        let plain = try Self.session(try #require(byName["mixtral-h16-f24-e16-k4-t33-s11"]), .f32).boundGraph()
        #expect(plain.weights.allSatisfy { $0.format == .f32 })
    }

    /// Every parity fixture (families and mechanisms: 1e-5 against the rounded reference), and
    /// on `fixtureNames` also against the f32 fixture within `bf16Tolerance`.
    @Test(arguments: ParityTests.fixtures)
    func bf16PlanMatchesF32PlanOnRoundedWeights(_ f: ParityTests.Fixture) throws {
        let x = try ParityTests().inputs(f)
        let dir = TemporaryDirectory()
        let planPath = try Self.session(f, .bf16).writePlan(to: dir.file("plan.json"))
        let planText = try String(contentsOfFile: planPath, encoding: .utf8)
        #expect(planText.contains("\"format\": \"bf16\""))
        let bf16Graph = try Plan.read(planPath).graph
        #expect(bf16Graph.weights.contains { $0.format == .bf16 })
        let (g, rounded) = try Self.roundedReference(f, bf16Graph: bf16Graph)
        let interpreter = try ReferenceInterpreter(
            graph: g, weights: zip(g.weights, rounded).map { w, b in HostTensor(shape: w.shape, floats: Array(UnsafeBufferPointer(start: b.floats, count: w.elementCount))) }
        ).run(x)
        var runs: [(String, ExecutionOptions)] = [("1 thread", ExecutionOptions(threads: 1)), ("2 threads", ExecutionOptions(threads: 2))]
        // A static split needs experts that 2 workers share equally (as `ModelRunner` checks).
        if ExecutionOptions().backend.isNative && bf16Graph.moeLayers.allSatisfy({ $0.experts % 2 == 0 }) {
            runs.append(("static placement, 2 workers", ExecutionOptions(threads: 2, placement: PlacementExecution(.staticSplit(workers: 2)))))
        }
        for (label, options) in runs {
            let reference = try Executable(graph: g, weights: rounded, options: options).run(x)
            let runner = try ModelRunner.load(planPath: planPath, options: options)
            let got = try runner.run(x)
            for (name, file) in f.outputs {
                let y = try #require(got[name]).floats
                let e = relativeError(y, try #require(reference[name]).floats)
                #expect(e <= Self.tolerance, "\(f.name) \(label): bf16 plan vs f32 plan on rounded weights: \(e)")
                let ei = relativeError(y, try #require(interpreter[name]).floats)
                #expect(ei <= Self.tolerance, "\(f.name) \(label): bf16 plan vs interpreter on rounded weights: \(ei)")
                // The documented bf16 tolerance, on the chosen families (multi-hop mechanisms
                // compound it: 1.3e-2 and 1.5e-2; a bf16 checkpoint loses nothing).
                guard Self.fixtureNames.contains(f.name) else { continue }
                let fixture = try NpyArray(path: f.path + "/" + file).floats()
                let ef = relativeError(y, fixture)
                #expect(ef <= Self.bf16Tolerance, "\(f.name) \(label): bf16 plan vs the f32 fixture: \(ef)")
                // Rounding does change the numbers (the test would pass vacuously otherwise).
                #expect(ef > 1e-5, "\(f.name) \(label): bf16 plan vs the f32 fixture: \(ef)")
            }
        }
    }

    /// A bf16 checkpoint packed as bf16 loses nothing: the bf16 plan's output equals the f32
    /// plan's bit for bit (the same products on the same values) and matches transformers.
    @Test func bf16CheckpointIsKeptExactly() throws {
        let name = "mixtral-h20-f28-e8-k2-t11-s21-bf16"
        let f = try #require(ParityTests.loadFixture(RepoPaths.fixtures + "/" + name, name: name))
        let x = try ParityTests().inputs(f)
        for threads in [1, 2] {
            let options = ExecutionOptions(threads: threads)
            let bf16 = try ModelRunner.compile(Self.session(f, .bf16), options: options).run(x)
            let f32 = try ModelRunner.compile(Self.session(f, .f32), options: options).run(x)
            let y = try #require(bf16["y"]).floats
            #expect(y == (try #require(f32["y"]).floats), "\(threads) threads")
            let e = relativeError(y, try NpyArray(path: f.path + "/y.npy").floats())
            #expect(e <= ParityTests.tolerance, "\(threads) threads: \(e)")
        }
    }

    @Test func bf16PlanHoldsHalfTheExpertBytes() throws {
        let f = try #require(Self.fixtures.first)
        let f32 = try ModelRunner.compile(Self.session(f, .f32), options: ExecutionOptions(threads: 1))
        let bf16 = try ModelRunner.compile(Self.session(f, .bf16), options: ExecutionOptions(threads: 1))
        // mixtral h16 f24 e16: experts 16 × (2·32·16 interleaved + 16·24) floats packed, router 16·16.
        let router = 16 * 16 * 4
        let experts = 16 * (2 * 32 * 16 + 16 * 24)
        if ExecutionOptions().backend.isNative {
            #expect(f32.executable.weightBytes == router + experts * 4)
            #expect(bf16.executable.weightBytes == router + experts * 2)
        } else {
            // BLAS reads the weights as stored, f32 (with rounded values for bf16).
            #expect(bf16.executable.weightBytes == f32.executable.weightBytes)
        }
        #expect(bf16.weightFormatSummary == "expert matrices bf16, other weights f32")
        #expect(f32.weightFormatSummary == "all f32")
    }

    /// Gate bf16 and up f32 (a hand-made plan; `--weights` sets both): their interleaved matrix
    /// is packed as f32 with the gate's values rounded, the same numbers as the f32 kernel on
    /// weights with only the gate rounded.
    @Test func mixedGateAndUpFormats() throws {
        let f = try #require(Self.fixtures.first)
        let x = try ParityTests().inputs(f)
        var mixed = try Self.session(f, .bf16).boundGraph()
        let up = try #require(mixed.weights.firstIndex { $0.name == "w3" })
        mixed.weights[up].format = .f32
        #expect(mixed.weights.map(\.format) == [.bf16, .f32, .bf16, .f32])
        let (g, rounded) = try Self.roundedReference(f, bf16Graph: mixed)
        let s = Self.session(f, .f32)
        for threads in [1, 2] {
            let options = ExecutionOptions(threads: threads)
            let got = try Executable(graph: mixed, weights: try WeightBinding.load(g, try s.checkpoint()), options: options).run(x)
            let reference = try Executable(graph: g, weights: rounded, options: options).run(x)
            let e = relativeError(try #require(got["y"]).floats, try #require(reference["y"]).floats)
            #expect(e <= Self.tolerance, "\(threads) threads: \(e)")
        }
    }
}
