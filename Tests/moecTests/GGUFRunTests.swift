import Foundation
import MoEIO
import MoETestSupport
import Testing

/// `--model FILE.gguf`: one-layer files of llama.cpp's qwen3moe (Q8_0, Q4_K, Q5_K and Q6_K experts), llama
/// (Mixtral), qwen2moe and deepseek2 (V3) architectures compiled and run through the binary
/// against transformers' blocks on gguf-py's dequantized weights; params from the file's
/// metadata; a broken GGUF file is a precise error that leaves nothing behind.
@Suite struct GGUFRunTests {
    static let folder = RepoPaths.fixtures + "/gguf"
    static let graph = RepoPaths.graphs + "/gguf/qwen3moe.moe"

    /// Each fixture with its graph (graphs/gguf/ARCH.moe, ARCH the file's name up to '-').
    /// Without `--weights`, expert and shared-expert tensors of Q8_0, Q4_K, Q5_K and Q6_K keep their type (repacked exactly):
    /// the path that widens them to f32 (`MOEC_INT8_ROWS=0`) matches
    /// transformers on gguf-py's dequantized weights within 1e-5, and equals the plan compiled
    /// `--weights f32` (the same values widened at load) bit for bit; the integer products on
    /// int8 activations stay within 3e-2.
    @Test(arguments: ["qwen3moe-q8_0", "qwen3moe-q4_k", "qwen3moe-q5_k", "qwen3moe-q6_k", "llama-q8_0", "qwen2moe-q8_0", "deepseek2-q8_0"])
    func compileThenRunMatchesTransformers(_ name: String) throws {
        let dir = TemporaryDirectory()
        let model = Self.folder + "/\(name).gguf"
        let graph = RepoPaths.graphs + "/gguf/\(name.split(separator: "-")[0]).moe"
        let c = try Moec.run(["compile", graph, "--model", model, "--set", "layer=0", "-o", "plan.json"], in: dir.path)
        expectSuccess(c)
        let type = String(name.split(separator: "-")[1])
        let plan = try String(contentsOfFile: dir.file("plan.json"), encoding: .utf8)
        #expect(plan.contains("\"format\": \"\(type)\""), "\(name): expert tensors keep \(type)")
        // The shared expert's three tensors (qwen2moe, deepseek2) keep their type as well.
        let kept = plan.components(separatedBy: "\"format\": \"\(type)\"").count - 1
        #expect(kept == (["qwen2moe", "deepseek2"].contains { name.hasPrefix($0) } ? 6 : 3), "\(name): \(kept) tensors keep \(type)")
        expectSuccess(try Moec.run(["compile", graph, "--model", model, "--set", "layer=0", "--weights", "f32", "-o", "f32.json"], in: dir.path))
        #expect(!(try String(contentsOfFile: dir.file("f32.json"), encoding: .utf8)).contains("\"format\": \"\(type)\""))
        let reference = try NpyArray(path: Self.folder + "/\(name).y.npy")
        let x = "x=\(Self.folder)/\(name).x.npy"
        for threads in ["1", "2"] {
            let r = try Moec.run(
                ["run", "plan.json", "--input", x, "--output", "y=y.npy", "--threads", threads], in: dir.path,
                environment: ["MOEC_ISA": "avx2", "MOEC_INT8_ROWS": "0"])
            expectSuccess(r)
            let y = try NpyArray(path: dir.file("y.npy"))
            #expect(y.shape == reference.shape)
            let error = relativeError(y.floats(), reference.floats())
            #expect(error <= 1e-5, "\(name), \(threads) threads: max |Δ| / max |y| = \(error)")
            expectSuccess(
                try Moec.run(
                    ["run", "f32.json", "--input", x, "--output", "y=f.npy", "--threads", threads, "--check", "y=y.npy", "--tolerance", "0"], in: dir.path,
                    environment: ["MOEC_ISA": "avx2", "MOEC_INT8_ROWS": "0"]))
            let q = try Moec.run(["run", "plan.json", "--input", x, "--output", "y=q.npy", "--threads", threads], in: dir.path)
            expectSuccess(q)
            let eq = relativeError(try NpyArray(path: dir.file("q.npy")).floats(), reference.floats())
            #expect(eq <= 3e-2, "\(name), \(threads) threads, default kernels: max |Δ| / max |y| = \(eq)")
        }
    }

    /// Q5_K and Q6_K experts (2 of them, [256, 256] each) keep their values: Q5_K's in int5
    /// panels, groups of 32 with offsets (0.875 bytes a weight, scales and offsets included),
    /// Q6_K's in int6 panels, groups of 16 (1.0 bytes a weight), shown by `--emit plan`, on every
    /// CPU; the executable holds those bytes and the router's packed panel, no f32 copy (`moec
    /// bench`'s weights, 4.5× and 4× fewer than the `--weights f32` plan's); the integer products
    /// on int8 activations stay within 3e-2 relative L2 of transformers on gguf-py's values, with
    /// the best kernels (AVX-512's where the CPU has them) and the AVX2 ones (5 tokens: each of
    /// the 2 experts has 5 rows, for which the AVX-512 kernel expands its panels to bytes).
    @Test(arguments: [
        ("q5_k", "5-bit values in groups of 32 with fp32 scales and offsets;", "114.7 kB", "346.1 kB: 2.0 kB as f32, 344.1 kB", "360.4 kB"),
        ("q6_k", "6-bit values in groups of 16 with fp32 scales;", "131.1 kB", "395.3 kB: 2.0 kB as f32, 393.2 kB", "409.6 kB")
    ])
    func kQuantsKeptInPanelsOfTheirValues(_ type: String, values: String, tensor: String, weights: String, held: String) throws {
        let dir = TemporaryDirectory()
        let name = "qwen3moe-\(type)", model = Self.folder + "/\(name).gguf"
        let e = try Moec.run(["compile", Self.graph, "--model", model, "--emit", "plan"], in: dir.path)
        expectSuccess(e)
        // 2 · 256 · 256 weights · 0.875 (1.0) bytes = 114.7 (131.1) kB a tensor.
        #expect(e.stdout.contains("weights (\(weights) as \(type))"), "\(e)")
        #expect(e.stdout.contains("  @w2             \(type)[2, 256, 256]     \(tensor)   blk.0.ffn_down_exps.weight [\(type.uppercased())]"), "\(e)")
        #expect(e.stdout.contains("format    gate, up, down: \(type) (the GGUF file's values, repacked: \(values)"), "\(e)")
        expectSuccess(try Moec.run(["compile", Self.graph, "--model", model, "-o", "k.json"], in: dir.path))
        expectSuccess(try Moec.run(["compile", Self.graph, "--model", model, "--weights", "f32", "-o", "f.json"], in: dir.path))
        // Held: the experts' panels and the router's one packed panel (16 · 256 floats), by
        // moec's kernels (an empty MOEC_BLAS is the default, also in CI's pass that names a BLAS,
        // under which the experts would read f32 copies).
        let native = ["MOEC_BLAS": ""]
        let k = try Moec.run(["bench", "k.json", "--tokens", "1", "--repeat", "2", "--warmup", "0"], in: dir.path, environment: native)
        expectSuccess(k)
        #expect(k.stdout.contains("· weights \(held) (expert matrices \(type), other weights f32)"), "\(k)")
        let f = try Moec.run(["bench", "f.json", "--tokens", "1", "--repeat", "2", "--warmup", "0"], in: dir.path)
        expectSuccess(f)
        #expect(f.stdout.contains("· weights 1.6 MB (all f32)"), "\(f)")
        for isa in ["best", "avx2"] {
            let q = try Moec.run(
                ["run", "k.json", "--input", "x=\(Self.folder)/\(name).x.npy", "--output", "y=q.npy"], in: dir.path,
                environment: native.merging(["MOEC_ISA": isa]) { $1 })
            expectSuccess(q)
            let y = try NpyArray(path: dir.file("q.npy")).floats(), reference = try NpyArray(path: Self.folder + "/\(name).y.npy").floats()
            #expect(y.count == reference.count)
            let l2 = relativeL2(y, reference)
            #expect(l2 <= 3e-2, "\(name), \(isa) kernels: relative L2 \(l2)")
        }
    }

    /// Under `mpirun` each rank repacks only its experts' stored blocks (the others' pages given
    /// back): the widened path matches transformers as in one process, the integer one within 3e-2.
    /// Q4_K in int4 panels with offsets, Q5_K and Q6_K in int5 and int6 ones.
    @Test(
        .enabled(if: MPIRun.mpirun != nil, "skipped: no mpirun on PATH"), .disabled(if: ProcessInfo.processInfo.environment["MOEC_SKIP_MPI_TESTS"] == "1"),
        arguments: ["q4_k", "q5_k", "q6_k"])
    func keptTypesUnderMPI(_ type: String) throws {
        let dir = TemporaryDirectory()
        let name = "qwen3moe-\(type)"
        let x = "x=\(Self.folder)/\(name).x.npy", check = "y=\(Self.folder)/\(name).y.npy"
        let base = ["run", Self.graph, "--model", Self.folder + "/\(name).gguf", "--placement", "static", "--input", x, "--check", check]
        let widened = try MPIRun.moec(base + ["--output", "y=w.npy", "--tolerance", "1e-5"], ranks: 2, in: dir.path, environment: ["MOEC_ISA": "avx2", "MOEC_INT8_ROWS": "0"])
        expectSuccess(widened)
        // (Q5_K and Q6_K take int5/int6 panels on a CPU named `avx2`; AVX-512 CPUs keep int8 ones.)
        let isa: [String: String] = type == "q4_k" ? [:] : ["MOEC_ISA": "avx2"]
        expectSuccess(try MPIRun.moec(base + ["--output", "y=i.npy", "--tolerance", "3e-2"], ranks: 2, in: dir.path, environment: isa))
    }

    /// A file in two splits (as gguf-py and llama.cpp's gguf-split write them): naming either one
    /// opens both; the params come from the first, which holds the model's keys.
    @Test func splitFilesAreOneCheckpoint() throws {
        for part in ["00001", "00002"] {
            let dir = TemporaryDirectory()
            let r = try Moec.run(
                [
                    "run", Self.graph, "--model", Self.folder + "/qwen3moe-q8_0-split-\(part)-of-00002.gguf", "--input",
                    "x=\(Self.folder)/qwen3moe-q8_0.x.npy", "--output", "y=y.npy", "--check", "y=\(Self.folder)/qwen3moe-q8_0.y.npy",
                    "--tolerance", "3e-2"
                ], in: dir.path)
            expectSuccess(r)
        }
        // A missing split, or one copied under another name, is an error naming it.
        let dir = TemporaryDirectory()
        try Files.copy(Self.folder + "/qwen3moe-q8_0-split-00001-of-00002.gguf", to: dir.file("m-00001-of-00002.gguf"))
        let missing = try Moec.run(["compile", Self.graph, "--model", "m-00001-of-00002.gguf", "-o", "p.json"], in: dir.path)
        expectFailure(missing, ["m-00001-of-00002.gguf: split 2 of 2, 'm-00002-of-00002.gguf', does not exist"])
        try Files.copy(Self.folder + "/qwen3moe-q8_0-split-00001-of-00002.gguf", to: dir.file("renamed.gguf"))
        let renamed = try Moec.run(["compile", Self.graph, "--model", "renamed.gguf", "-o", "p.json"], in: dir.path)
        expectFailure(renamed, ["renamed.gguf: split.count is 2, but the file is not named like a split (PREFIX-0000i-of-00002.gguf)"])
        expectFolder(dir.path, holds: ["m-00001-of-00002.gguf", "renamed.gguf"], after: renamed)
    }

    @Test func paramsComeFromTheMetadata() throws {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["compile", Self.graph, "--model", Self.folder + "/qwen3moe-q8_0.gguf", "--emit", "ir"], in: dir.path)
        expectSuccess(r)
        // hidden 64, ffn 96, 4 experts from qwen3moe.* keys, not the graph's defaults.
        for line in [
            "param ffn = 96", "# qwen3moe-q8_0.gguf:qwen3moe.expert_feed_forward_length", "weight @w1: f32[4, 96, 64] = \"blk.0.ffn_gate_exps.weight\"",
            "{k = 2}"
        ] {
            #expect(r.stdout.contains(line), "\(line) in \(r.stdout.prefix(2000))")
        }
    }

    @Test func brokenGGUFFilesAreErrorsWithTheirOffsets() throws {
        let original = try Files.read(Self.folder + "/qwen3moe-q8_0.gguf")
        let cases: [(Data, [String])] = [
            (original.prefix(60_000), ["model.gguf: tensor 'blk.0.ffn_", "end past the end of the file (60000 bytes"]),
            (original.prefix(20), ["model.gguf: the tensor count is 4, more than the 4 bytes left in the file can hold", "(at byte 8)"]),
            (Data("GGUF".utf8) + Data([9, 0, 0, 0]) + original.dropFirst(8), ["GGUF version 9 is not supported"])
        ]
        for (bytes, messages) in cases {
            let dir = TemporaryDirectory()
            try bytes.write(to: URL(fileURLWithPath: dir.file("model.gguf")))
            let before = folderEntries(dir.path)
            let r = try Moec.run(
                ["run", Self.graph, "--model", "model.gguf", "--input", "x=\(Self.folder)/qwen3moe-q8_0.x.npy", "--output", "y=y.npy"],
                in: dir.path)
            expectFailure(r, messages)
            expectFolder(dir.path, holds: before, after: r)
        }
    }

    @Test func aModelPathThatIsNeitherFolderNorGGUF() throws {
        let dir = TemporaryDirectory()
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: dir.file("model.bin")))
        let r = try Moec.run(["compile", Self.graph, "--model", "model.bin", "-o", "p.json"], in: dir.path)
        expectFailure(r, ["--model model.bin: not a folder or a GGUF file"])
    }
}
