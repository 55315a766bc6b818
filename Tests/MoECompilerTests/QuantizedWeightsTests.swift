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
}
