import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoEKernels
import MoETestSupport
import Testing

/// `moec compile --weights int8|int4[:G]` on the model families' graphs (dimensions that whole
/// groups divide: hidden 64, ffn 96, or 128 for groups of 64/128), with seeded random weights in
/// a temporary checkpoint. The reference is the f32 plan on the same checkpoint with the expert
/// matrices rounded here to the format's values (`Kernels.roundTo`: quantized and dequantized
/// group by group). On CPUs with AVX2 the int plans multiply integers on activations quantized
/// to int8 (within 3e-2 relative L2 of the reference); elsewhere, or with `MOEC_INT8_ROWS=0`, they
/// widen the same values to f32 (within 1e-5 of max |y|). Against the unrounded f32 plan each format's own
/// error is printed, not gated (it is the format's, not moec's).
@Suite struct QuantizedWeightsTests {
    static let families = ["mixtral", "olmoe", "qwen2_moe", "gpt_oss", "deepseek_v3"]

    /// A checkpoint of seeded random weights for `graph` with `overrides`, in `dir`.
    static func randomCheckpoint(graph: String, overrides: [(name: String, value: String)], in dir: String) throws {
        let unbound = try CompilerSession(CompileOptions(graphPath: graph, overrides: overrides)).optimize()
        var rng = SplitMix64(state: 0x5EED)
        var tensors: [SafetensorsWriter.Tensor] = []
        var written = Set<String>()
        for w in unbound.weights {
            for (name, declared) in w.tensors where written.insert(name).inserted {
                let shape = (try? w.layout.source(of: declared).get()).flatMap { $0 } ?? declared
                let scale = 1 / Float(max(shape.last ?? 1, 1)).squareRoot()
                tensors.append(.init(name: name, shape: shape, values: (0..<shape.reduce(1, *)).map { _ in (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * scale }))
            }
        }
        try SafetensorsWriter.write(tensors: tensors, to: dir + "/model.safetensors")
        try "{}\n".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    }

    @Test(arguments: families, [WeightFormat.int8, .int4, .int4g64, .int4z])
    func quantizedPlanMatchesF32PlanOnRoundedWeights(_ family: String, _ format: WeightFormat) throws {
        let dir = TemporaryDirectory()
        let graph = RepoPaths.graphs + "/\(family).moe"
        let ffn = format.group! > 32 ? "128" : "96"
        let overrides = [(name: "hidden", value: "64"), (name: "ffn", value: ffn)]
        try Self.randomCheckpoint(graph: graph, overrides: overrides, in: dir.path)
        func session(_ f: WeightFormat) -> CompilerSession {
            CompilerSession(CompileOptions(graphPath: graph, modelDirectory: dir.path, overrides: overrides, verifyEachPass: true, weightFormat: f))
        }
        let quantized = try session(format).boundGraph()
        let expertWeights = quantized.weights.indices.filter { quantized.weights[$0].format == format }
        #expect(!expertWeights.isEmpty, "\(family): no weight is \(format)")
        let s = session(.f32)
        let g = try s.boundGraph()
        let original = try WeightBinding.load(g, try s.checkpoint())
        let rounded = try WeightBinding.load(g, try s.checkpoint())
        for i in expertWeights {
            let k = g.weights[i].shape.last!
            Kernels.roundTo(PackedWeight.Format(format), rounded[i].floats, rows: g.weights[i].elementCount / k, k: k)
        }
        var rng = SplitMix64(state: 7)
        let tokens = 19
        let hidden = 64
        let x = HostTensor(shape: [tokens, hidden], floats: (0..<(tokens * hidden)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 })
        let inputName = try #require(g.inputs.first?.name)
        for threads in [1, 2] {
            let options = ExecutionOptions(threads: threads)
            let got = try ModelRunner.compile(session(format), options: options).run([inputName: x])
            let reference = try Executable(graph: g, weights: rounded, options: options).run([inputName: x])
            let unrounded = try Executable(graph: g, weights: original, options: options).run([inputName: x])
            for (name, value) in got {
                let y = value.floats, r = try #require(reference[name]).floats
                if Kernels.integerProductsByDefault {
                    let e = relativeL2(y, r)
                    #expect(e <= 3e-2, "\(family) \(format) \(threads) threads \(name): integer products vs f32 on rounded weights, relative L2 \(e)")
                } else {
                    let e = relativeError(y, r)
                    #expect(e <= 1e-5, "\(family) \(format) \(threads) threads \(name): vs f32 on rounded weights \(e)")
                }
                let own = relativeL2(y, try #require(unrounded[name]).floats)
                print("\(family) \(format) \(threads) threads \(name): relative L2 against the unrounded f32 plan \(own)")
                #expect(own > 0, "rounding changes the numbers")
            }
        }
    }

    /// A shared expert's matrices (a dense `swiglu`) take `--weights` too, and are held only in
    /// their panels (no f32 copy); the router and the shared expert's gate stay f32 unless the
    /// source gives them a format (`as int8`), and then they are held as int8 as well. Every
    /// variant matches the f32 plan on the weights it quantizes rounded here.
    @Test(arguments: [WeightFormat.int8, .int4, .bf16])
    func sharedExpertAndRouterFormats(_ format: WeightFormat) throws {
        let dir = TemporaryDirectory()
        let source = try String(contentsOfFile: RepoPaths.graphs + "/qwen2_moe.moe", encoding: .utf8)
        let router = "= \"gate.weight\""
        #expect(source.contains(router))
        try source.write(toFile: dir.file("plain.moe"), atomically: true, encoding: .utf8)
        try source.replacingOccurrences(of: router, with: router + " as \(format.rawValue)").write(
            toFile: dir.file("router.moe"), atomically: true, encoding: .utf8)
        let (hidden, ffn, shared, experts) = (64, 96, 160, 8)
        let overrides = [
            (name: "hidden", value: "\(hidden)"), (name: "ffn", value: "\(ffn)"), (name: "shared_ffn", value: "\(shared)"),
            (name: "num_experts", value: "\(experts)"), (name: "top_k", value: "2")
        ]
        try Self.randomCheckpoint(graph: dir.file("plain.moe"), overrides: overrides, in: dir.path)
        func session(_ graph: String, _ f: WeightFormat) -> CompilerSession {
            CompilerSession(CompileOptions(graphPath: dir.file(graph), modelDirectory: dir.path, overrides: overrides, verifyEachPass: true, weightFormat: f))
        }
        let s = session("plain.moe", .f32)
        let g = try s.boundGraph()
        var rng = SplitMix64(state: 11)
        let tokens = 13
        let x = HostTensor(shape: [tokens, hidden], floats: (0..<(tokens * hidden)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 })
        for (graph, narrow) in [
            ("plain.moe", ["w_gate", "w_up", "w_down", "shared_gate", "shared_up", "shared_down"]),
            ("router.moe", ["w_gate", "w_up", "w_down", "shared_gate", "shared_up", "shared_down", "gate"])
        ] {
            let quantized = try session(graph, format).boundGraph()
            #expect(Set(quantized.weights.filter { $0.format == format }.map(\.name)) == Set(narrow), "\(graph)")
            #expect(Set(quantized.weights.filter { $0.format == .f32 }.map(\.name)) == Set(["gate", "shared_mix"]).subtracting(narrow), "\(graph)")
            let rounded = try WeightBinding.load(g, try s.checkpoint())
            for (i, w) in g.weights.enumerated() where narrow.contains(w.name) {
                Kernels.roundTo(PackedWeight.Format(format), rounded[i].floats, rows: w.elementCount / w.shape.last!, k: w.shape.last!)
            }
            for threads in [1, 2] {
                let options = ExecutionOptions(threads: threads)
                let runner = try ModelRunner.compile(session(graph, format), options: options)
                let y = try #require(runner.run(["x": x])["y"]).floats
                let r = try #require(Executable(graph: g, weights: rounded, options: options).run(["x": x])["y"]).floats
                if format == .bf16 || !Kernels.integerProductsByDefault {
                    let e = relativeError(y, r)
                    #expect(e <= 1e-5, "\(graph) \(format) \(threads) threads: vs f32 on rounded weights \(e)")
                } else {
                    let e = relativeL2(y, r)
                    #expect(e <= 3e-2, "\(graph) \(format) \(threads) threads: integer products vs f32 on rounded weights, relative L2 \(e)")
                }
                guard options.backend.isNative, threads == 1 else { continue }
                // Held: every narrow matrix in its panels alone (16-row panels; the f32 ones too).
                func panelRows(_ n: Int) -> Int { (n + 15) / 16 * 16 }
                let bytes = { (n: Int, k: Int, f: WeightFormat) in Double(panelRows(n) * k) * f.bytesPerWeight }
                let fused = Double(experts) * (bytes(2 * ffn, hidden, format) + bytes(hidden, ffn, format))
                let dense = bytes(shared, hidden, format) * 2 + bytes(hidden, shared, format)
                let gate = bytes(experts, hidden, narrow.contains("gate") ? format : .f32), mix = bytes(1, hidden, .f32)
                #expect(Double(runner.executable.weightBytes) == fused + dense + gate + mix, "\(graph) \(format)")
            }
        }
    }
}
