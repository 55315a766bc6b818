import Foundation
import MoEIO
import MoETestSupport
import Testing

/// `--model` a GPTQ or AWQ folder (Tests/Fixtures/gptq, scripts/make_gptq_fixtures.py): tiny
/// Mixtral layers whose expert linears are 4-bit, packed as AutoGPTQ and AutoAWQ pack them,
/// compiled and run through the binary against transformers' MixtralSparseMoeBlock on the
/// dequantized weights.
@Suite struct GPTQRunTests {
    static let folder = RepoPaths.fixtures + "/gptq"

    /// Without `--weights` the expert matrices (and a Qwen2-MoE layer's shared expert) become int4
    /// with zero points of the config's group (the router, stored fp16, stays f32): the paths that widen them to f32
    /// (`MOEC_INT8_ROWS=0` with `MOEC_ISA=avx2` or `portable`, and BLAS) match transformers within 1e-5 of max |y| and equal the plan compiled
    /// `--weights f32` (the dequantized values, exactly) bit for bit; the default kernels (integer
    /// products on int8 activations where the CPU has AVX2) stay within 3e-2 relative L2.
    @Test(arguments: [
        ("mixtral-gptq-g32", "int4z"), ("mixtral-gptq-g128-sym", "int4zg128"), ("mixtral-awq-g64", "int4zg64"), ("qwen2_moe-gptq-g32", "int4z")
    ])
    func compileThenRunMatchesTransformers(_ name: String, _ format: String) throws {
        let dir = TemporaryDirectory()
        let model = Self.folder + "/" + name
        let family = String(name.prefix { $0 != "-" })
        let graph = RepoPaths.graphs + "/\(family).moe"
        expectSuccess(try Moec.run(["compile", graph, "--model", model, "-o", "plan.json"], in: dir.path))
        let plan = try String(contentsOfFile: dir.file("plan.json"), encoding: .utf8)
        // Mixtral's w1, w3 and w2; Qwen2-MoE's three expert and three shared-expert matrices.
        let matrices = family == "qwen2_moe" ? 6 : 3
        #expect(plan.components(separatedBy: "\"format\": \"\(format)\"").count - 1 == matrices, "\(name): the matrices are \(format)")
        // The plan's own "format" and the matrices': f32, the default, is not written, so the router
        // (and the shared expert's gate) has none.
        #expect(plan.components(separatedBy: "\"format\": ").count - 1 == matrices + 1, "\(name): the router stays f32")
        expectSuccess(try Moec.run(["compile", graph, "--model", model, "--weights", "f32", "-o", "f32.json"], in: dir.path))
        #expect(!(try String(contentsOfFile: dir.file("f32.json"), encoding: .utf8)).contains("\"format\": \"\(format)\""))
        let reference = try NpyArray(path: model + "/y.npy")
        let x = "x=\(model)/x.npy"
        // MOEC_ISA=portable runs BLAS where one is found (the weights' dequantized values, not
        // rounded again), with MOEC_BLAS=none the portable kernels on the int4 panels.
        for (isa, blas, threads) in [("portable", "", "2"), ("portable", "none", "2"), ("avx2", "", "1"), ("avx2", "", "2")] {
            let r = try Moec.run(
                ["run", "plan.json", "--input", x, "--output", "y=y.npy", "--threads", threads], in: dir.path,
                environment: ["MOEC_ISA": isa, "MOEC_INT8_ROWS": "0", "MOEC_BLAS": blas])
            expectSuccess(r)
            let y = try NpyArray(path: dir.file("y.npy"))
            #expect(y.shape == reference.shape)
            let error = relativeError(y.floats(), reference.floats())
            #expect(error <= 1e-5, "\(name), \(threads) threads, widened (\(isa), MOEC_BLAS=\(blas)): max |Δ| / max |y| = \(error)")
            guard isa == "avx2" else { continue }
            expectSuccess(
                try Moec.run(
                    ["run", "f32.json", "--input", x, "--output", "y=f.npy", "--threads", threads, "--check", "y=y.npy", "--tolerance", "0"], in: dir.path,
                    environment: ["MOEC_ISA": "avx2", "MOEC_INT8_ROWS": "0", "MOEC_BLAS": blas]))
            // (An empty MOEC_BLAS is the default: moec's kernels, also in CI's pass that names a BLAS.)
            let q = try Moec.run(
                ["run", "plan.json", "--input", x, "--output", "y=q.npy", "--threads", threads], in: dir.path, environment: ["MOEC_BLAS": ""])
            expectSuccess(q)
            let l2 = relativeL2(try NpyArray(path: dir.file("q.npy")).floats(), reference.floats())
            #expect(l2 <= 3e-2, "\(name), \(threads) threads, default kernels: relative L2 = \(l2)")
        }
    }

    /// Under `mpirun` each rank repacks only its experts' int4 rows (and every rank the shared
    /// expert's): the widened path matches transformers as in one process, the default kernels
    /// within 3e-2.
    @Test(
        .enabled(if: MPIRun.mpirun != nil, "skipped: no mpirun on PATH"),
        .disabled(if: ProcessInfo.processInfo.environment["MOEC_SKIP_MPI_TESTS"] == "1"), arguments: ["mixtral-awq-g64", "qwen2_moe-gptq-g32"])
    func keptInt4UnderMPI(_ name: String) throws {
        let dir = TemporaryDirectory()
        let model = Self.folder + "/" + name
        let base = [
            "run", RepoPaths.graphs + "/\(name.prefix { $0 != "-" }).moe", "--model", model, "--placement", "static", "--input", "x=\(model)/x.npy", "--check",
            "y=\(model)/y.npy"
        ]
        expectSuccess(try MPIRun.moec(base + ["--output", "y=w.npy", "--tolerance", "1e-5"], ranks: 2, in: dir.path, environment: ["MOEC_ISA": "avx2", "MOEC_INT8_ROWS": "0"]))
        expectSuccess(try MPIRun.moec(base + ["--output", "y=i.npy", "--tolerance", "3e-2"], ranks: 2, in: dir.path))
    }

    /// `--emit plan` names the format each expert matrix got, and what the checkpoint stores.
    @Test func planShowsTheKeptFormat() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["compile", RepoPaths.graphs + "/mixtral.moe", "--model", Self.folder + "/mixtral-awq-g64", "--emit", "plan"], in: dir.path)
        expectSuccess(r)
        #expect(r.stdout.contains("int4zg64[4, 128, 64]"), "\(r.stdout)")
        #expect(r.stdout.contains("experts.{e}.w1.weight (×4 tensors) [AWQ int4, groups of 64]"), "\(r.stdout)")
    }

    /// A quantized linear read by anything but a packed MoE block (here a dense `linear`) is
    /// dequantized to f32 at load: y = x·Wᵀ with W the script's dequantized values (w1.npy).
    @Test func denseLinearIsDequantized() throws {
        let dir = TemporaryDirectory()
        let model = Self.folder + "/mixtral-gptq-g32"
        let source = """
            model dense
            param hidden = 4096 from "hidden_size"
            input x: [tokens, hidden]
            weights "model.layers.0.block_sparse_moe." {
              w: [hidden, hidden] = "experts.0.w1.weight"
            }
            let y = x |> linear(w)
            output y
            """
        try source.write(toFile: dir.file("dense.moe"), atomically: true, encoding: .utf8)
        let c = try Moec.run(["compile", "dense.moe", "--model", model, "--emit", "plan"], in: dir.path)
        expectSuccess(c)
        #expect(c.stdout.contains("f32[64, 64]") && c.stdout.contains("[GPTQ int4, groups of 32]"), "\(c.stdout)")
        expectSuccess(try Moec.run(["run", "dense.moe", "--model", model, "--input", "x=\(model)/x.npy", "--output", "y=y.npy"], in: dir.path))
        let x = try NpyArray(path: model + "/x.npy"), w = try NpyArray(path: model + "/w1.npy")
        let xs = x.floats(), ws = w.floats()
        let (t, h, f) = (x.shape[0], x.shape[1], w.shape[0])
        var want = [Float](repeating: 0, count: t * f)
        for i in 0..<t {
            for o in 0..<f { want[i * f + o] = Float((0..<h).reduce(0.0) { $0 + Double(xs[i * h + $1]) * Double(ws[o * h + $1]) }) }
        }
        let error = relativeError(try NpyArray(path: dir.file("y.npy")).floats(), want)
        #expect(error <= 1e-5, "dense linear on the dequantized GPTQ weight: max |Δ| / max |y| = \(error)")
    }

    /// An act-order checkpoint: `compile` and `run` fail naming the g_idx tensor and the byte of
    /// its first entry out of order, and leave nothing behind.
    @Test func actOrderIsRefused() throws {
        let model = Self.folder + "/mixtral-gptq-actorder"
        let file = try SafetensorsFile(path: model + "/model.safetensors")
        let name = "model.layers.0.block_sparse_moe.experts.0.w1.g_idx"
        let gIdx = try file.floats(name).map { Int($0) }
        let first = try #require(gIdx.indices.first { gIdx[$0] != $0 / 32 })
        let byte = try file.info(name).byteRange.lowerBound + 4 * first
        let dir = TemporaryDirectory()
        let graph = RepoPaths.graphs + "/mixtral.moe"
        let c = try Moec.run(["compile", graph, "--model", model, "-o", "plan.json"], in: dir.path)
        expectFailure(c, ["tensor '\(name)'", "g_idx[\(first)]", "byte \(byte)", "act-order"])
        let x = "x=\(RepoPaths.fixtures)/gptq/mixtral-gptq-g32/x.npy"
        let r = try Moec.run(["run", graph, "--model", model, "--input", x, "--output", "y=y.npy"], in: dir.path)
        expectFailure(r, ["tensor '\(name)'", "byte \(byte)"])
        expectFolder(dir.path, holds: [])
    }

    /// bits 8, or a group of 48: an error naming the config key, no plan, no output.
    @Test(arguments: [("\"bits\": 4", "\"bits\": 8", "quantization_config.bits"), ("\"group_size\": 32", "\"group_size\": 48", "quantization_config.group_size")])
    func unsupportedConfigIsRefused(_ from: String, _ to: String, _ key: String) throws {
        let dir = TemporaryDirectory()
        let model = dir.file("model")
        try Files.copy(Self.folder + "/mixtral-gptq-g32", to: model)
        let text = try String(contentsOfFile: model + "/config.json", encoding: .utf8)
        try text.replacingOccurrences(of: from, with: to).write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
        let graph = RepoPaths.graphs + "/mixtral.moe"
        expectFailure(try Moec.run(["compile", graph, "--model", model, "-o", "plan.json"], in: dir.path), [key, "config.json"])
        expectFailure(try Moec.run(["run", graph, "--model", model, "--input", "x=model/x.npy", "--output", "y=y.npy"], in: dir.path), [key])
        expectFolder(dir.path, holds: ["model"])
    }
}
