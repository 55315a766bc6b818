import Foundation
import MoETestSupport
import Testing

/// `--weights f32|bf16` on the command line: what it accepts, what `--emit plan`, the plan file
/// and `moec bench` show, and that a plan keeps its formats.
@Suite struct WeightFormatTests {
    @Test func badValuesAreUsageErrors() throws {
        let dir = TemporaryDirectory()
        let message = "--weights expects f32, bf16, f16, int8, int4[:32|64|128] or int4z[:32|64|128] (how feed-forward matrices are stored), got 'int3'"
        let x = "x=\(Files.example)/x.npy"
        for args in [
            ["compile", Files.mixtralGraph, "--model", Files.example, "--weights", "int3", "-o", "p.json"],
            ["compile", Files.mixtralGraph, "--weights", "int3", "--emit", "plan"],
            ["run", Files.mixtralGraph, "--model", Files.example, "--weights", "int3", "--input", x, "--output", "y=y.npy"],
            ["bench", Files.mixtralGraph, "--model", Files.example, "--weights", "int3", "--tokens", "1"]
        ] {
            let r = try Moec.run(args, in: dir.path)
            expectFailure(r, status: 2, [message])
            #expect(r.stdout.isEmpty, "\(r)")
        }
        expectFailure(try Moec.run(["compile", Files.mixtralGraph, "--weights", "BF16", "--emit", "plan"], in: dir.path), status: 2, ["got 'BF16'"])
        expectFailure(try Moec.run(["compile", Files.mixtralGraph, "--weights", "int4:48", "--emit", "plan"], in: dir.path), status: 2, ["got 'int4:48'"])
        expectFailure(try Moec.run(["compile", Files.mixtralGraph, "--weights"], in: dir.path), status: 2, ["--weights"])
        expectFolder(dir.path, holds: [])
        // A plan has its formats already.
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        expectFailure(
            try Moec.run(["run", "p.json", "--weights", "bf16", "--input", x, "--output", "y=y.npy"], in: dir.path),
            status: 2, ["--model, --set and --weights apply to a .moe graph"])
        expectFolder(dir.path, holds: ["p.json"])
    }

    @Test func emitPlanShowsFormatsAndBytes() throws {
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--weights", "bf16", "--emit", "plan"], in: RepoPaths.root)
        expectSuccess(r)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func line(_ prefix: String) -> String { lines.first { $0.hasPrefix(prefix) } ?? "" }
        // mixtral-tiny: 8 experts, hidden 32, ffn 64; three [8, 64, 32]-sized expert weights.
        #expect(line("weights (") == "weights (99.3 kB: 1.0 kB as f32, 98.3 kB as bf16)", "\(r)")
        #expect(line("  @w1 ").hasPrefix("  @w1             bf16[8, 64, 32]       32.8 kB    "), "\(r)")
        #expect(line("  @w2 ").hasPrefix("  @w2             bf16[8, 32, 64]       32.8 kB    "), "\(r)")
        #expect(line("  @gate ").hasPrefix("  @gate           f32[8, 32]            1.0 kB     "), "\(r)")
        #expect(line("    format") == "    format    gate, up, down: bf16 (half the bytes; widened to f32 in registers, f32 sums)", "\(r)")
        #expect(r.stdout.contains("down [H, F]: 98.3 kB packed once at load time"), "\(r)")
        // The f32 plan: twice the expert bytes, no format but f32.
        let f = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--emit", "plan"], in: RepoPaths.root)
        expectSuccess(f)
        #expect(f.stdout.contains("weights (197.6 kB as f32)"), "\(f)")
        #expect(f.stdout.contains("    format    gate, up, down: f32\n"), "\(f)")
        #expect(!f.stdout.contains("bf16[") && !f.stdout.contains("as bf16") && !f.stdout.contains(": bf16"), "\(f)")
        // The IR shows the format as the weight's element type.
        let ir = try Moec.run(["compile", Files.mixtralGraph, "--weights", "bf16", "--emit", "ir-opt"], in: RepoPaths.root)
        expectSuccess(ir)
        #expect(ir.stdout.contains("weight @w1: bf16[8, 14336, 4096]"), "\(ir)")
        #expect(ir.stdout.contains("weight @gate: f32[8, 4096]"), "\(ir)")
    }

    @Test func bf16PlanFileRunsAndBenches() throws {
        let dir = TemporaryDirectory()
        let x = "x=\(Files.example)/x.npy"
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--weights", "bf16", "-o", "p.json"], in: dir.path))
        let plan = try String(contentsOfFile: dir.file("p.json"), encoding: .utf8)
        #expect(plan.contains("\"version\": 4"))
        #expect(plan.components(separatedBy: "\"format\": \"bf16\"").count - 1 == 3, "w1, w3 and w2")
        // The plan runs the same numbers as the graph compiled with --weights bf16 (under
        // MOEC_BLAS, BLAS on the rounded values: within 1e-5) ...
        let native = ["MOEC_BLAS": "none"]
        expectSuccess(
            try Moec.run(
                ["run", Files.mixtralGraph, "--model", Files.example, "--weights", "bf16", "--input", x, "--output", "y=g.npy"], in: dir.path,
                environment: native))
        expectSuccess(try Moec.run(["run", "p.json", "--input", x, "--output", "y=p.npy", "--check", "y=g.npy", "--tolerance", "1e-5"], in: dir.path))
        // ... and by a placement (always moec's kernels: the same bits); near transformers' f32
        // output, but not within the f32 tolerance.
        expectSuccess(
            try Moec.run(
                ["run", "p.json", "--threads", "2", "--placement", "static", "--input", x, "--output", "y=s.npy", "--check", "y=g.npy", "--tolerance", "0"],
                in: dir.path, environment: native))
        let check = "y=\(Files.example)/y_transformers.npy"
        expectSuccess(try Moec.run(["run", "p.json", "--input", x, "--output", "y=t.npy", "--check", check, "--tolerance", "2e-2"], in: dir.path))
        expectFailure(try Moec.run(["run", "p.json", "--input", x, "--output", "y=u.npy", "--check", check], in: dir.path), ["FAILED (tolerance 1e-04)"])
        let b = try Moec.run(["bench", "p.json", "--tokens", "1,16", "--repeat", "2", "--warmup", "0"], in: dir.path)
        expectSuccess(b)
        #expect(b.stdout.contains("(expert matrices bf16, other weights f32)"), "\(b)")
        #expect(!b.stdout.contains("int8/int4 weights:"), "no integer panels: no line on their products")
        #expect(b.stdout.contains("GFLOP/s     GB/s   weights read (experts hit)"), "\(b)")
        // One token reads its two experts' three bf16 matrices: 2 × 3 × 64·32 × 2 bytes, plus the router.
        #expect(b.stdout.contains("   25.6 kB (2/8)"), "\(b)")
        let j = try Moec.run(["bench", "p.json", "--tokens", "1", "--repeat", "2", "--warmup", "0", "--json"], in: dir.path)
        expectSuccess(j)
        #expect(j.stdout.contains("\"weight_formats\":\"expert matrices bf16, other weights f32\""), "\(j)")
        #expect(j.stdout.contains("\"weight_gb_per_s\":"), "\(j)")
        #expect(j.stdout.contains("\"weight_mb_touched\":0.03"), "\(j)")
    }

    /// `--weights f16`, `int8` and `int4`: the plan records the format; the path that widens the values
    /// to f32 (`MOEC_INT8_ROWS=0`) computes what f32 kernels
    /// compute on the dequantized weights (BLAS or the portable kernels on the rounded values:
    /// within 1e-5); the integer products on int8 activations (the default on AVX2 and AVX-512 CPUs; the AVX2
    /// ones also forced with `MOEC_ISA=avx2`) stay
    /// within 3e-2 of it; against transformers on the unrounded weights each format's own
    /// error shows (f16 5.7e-4, int8 1.8e-2, int4 0.19 on this tiny random layer; not gated
    /// beyond that). f16 only widens (no integer path): its default run is the widened one.
    /// `moec bench` on an int plan says which products run: the ISA's integer products by
    /// default, the widened path with `MOEC_INT8_ROWS=0` or the portable kernels.
    static func benchSaysHowProductsRun(_ plan: String, in dir: String) throws {
        func bench(_ environment: [String: String], json: Bool = false) throws -> String {
            let r = try Moec.run(
                ["bench", plan, "--tokens", "1", "--repeat", "2", "--warmup", "0"] + (json ? ["--json"] : []), in: dir,
                environment: ["MOEC_BLAS": ""].merging(environment) { $1 })
            expectSuccess(r)
            return r.stdout
        }
        let byDefault = try bench([:])
        if byDefault.contains("moec kernels (avx512)") {
            #expect(byDefault.contains("int8/int4 weights: integer products on int8 activations (AVX-512 VNNI)\n"), "\(byDefault)")
        } else if byDefault.contains("moec kernels (avx2)") {
            #expect(
                byDefault.contains("int8/int4 weights: integer products on int8 activations (AVX2; int8 widened to f32 beyond 16 rows per expert)\n"),
                "\(byDefault)")
        }
        if !byDefault.contains("moec kernels (portable)") {
            let widened = try bench(["MOEC_INT8_ROWS": "0"])
            #expect(widened.contains("int8/int4 weights: widened to f32 (MOEC_INT8_ROWS=0)\n"), "\(widened)")
            #expect(try bench([:], json: true).contains("\"quantized_products\":\"integer products on int8 activations"))
        }
        let portable = try bench(["MOEC_ISA": "portable", "MOEC_BLAS": "none"])
        #expect(portable.contains("int8/int4 weights: widened to f32 (portable kernels)\n"), "\(portable)")
    }

    @Test func quantizedPlansRunOnEveryPath() throws {
        let dir = TemporaryDirectory()
        let x = "x=\(Files.example)/x.npy"
        for (w, ownError, changed) in [("f16", "2e-3", "1e-5"), ("int8", "3e-2", "1e-3"), ("int4", "0.25", "1e-3"), ("int4z", "0.25", "1e-3")] {
            expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--weights", w, "-o", "\(w).json"], in: dir.path))
            let plan = try String(contentsOfFile: dir.file("\(w).json"), encoding: .utf8)
            #expect(plan.components(separatedBy: "\"format\": \"\(w)\"").count - 1 == 3, "w1, w3 and w2")
            expectSuccess(try Moec.run(["run", "\(w).json", "--input", x, "--output", "y=\(w)-f.npy"], in: dir.path, environment: ["MOEC_ISA": "avx2", "MOEC_INT8_ROWS": "0"]))
            expectSuccess(
                try Moec.run(
                    ["run", "\(w).json", "--input", x, "--output", "y=\(w)-p.npy", "--check", "y=\(w)-f.npy", "--tolerance", "1e-5"], in: dir.path,
                    environment: ["MOEC_ISA": "portable"]))
            expectSuccess(
                try Moec.run(["run", "\(w).json", "--input", x, "--output", "y=\(w).npy", "--check", "y=\(w)-f.npy", "--tolerance", "3e-2"], in: dir.path))
            expectSuccess(
                try Moec.run(
                    ["run", "\(w).json", "--input", x, "--output", "y=\(w)-a.npy", "--check", "y=\(w)-f.npy", "--tolerance", "3e-2"], in: dir.path,
                    environment: ["MOEC_ISA": "avx2"]))
            let check = "y=\(Files.example)/y_transformers.npy"
            expectSuccess(try Moec.run(["run", "\(w).json", "--input", x, "--output", "y=\(w)-t.npy", "--check", check, "--tolerance", ownError], in: dir.path))
            if w != "f16" { try Self.benchSaysHowProductsRun("\(w).json", in: dir.path) }
            // Rounding changes the numbers (else the checks above would be vacuous).
            expectFailure(try Moec.run(["run", "\(w).json", "--input", x, "--output", "y=\(w)-u.npy", "--check", check, "--tolerance", changed], in: dir.path), ["FAILED"])
        }
        // One token reads its two experts' three int8 matrices: 2 × 3 × 64·32 × 1.125 bytes, plus the router.
        let b = try Moec.run(["bench", "int8.json", "--tokens", "1,16", "--repeat", "2", "--warmup", "0"], in: dir.path)
        expectSuccess(b)
        #expect(b.stdout.contains("(expert matrices int8, other weights f32)"), "\(b)")
        #expect(b.stdout.contains("   14.8 kB (2/8)"), "\(b)")
        // --emit plan: format, bytes and the path.
        let e = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--weights", "int4", "--emit", "plan"], in: dir.path)
        expectSuccess(e)
        #expect(e.stdout.contains("weights (31.7 kB: 1.0 kB as f32, 30.7 kB as int4)"), "\(e)")
        #expect(e.stdout.contains("  @w2             int4[8, 32, 64]       10.2 kB"), "\(e)")
        #expect(e.stdout.contains("    format    gate, up, down: int4 (4-bit values in groups of 32 with fp32 scales; "), "\(e)")
        // A group that does not divide a matrix's rows is an error at the weight's declaration.
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--weights", "int4:64", "-o", "bad.json"], in: dir.path)
        expectFailure(
            r, ["graphs/mixtral.moe:21:3: error: --weights int4:64: weight 'w1' has rows of 32 values, which groups of 64 do not divide (try a smaller group)"])
        #expect(!FileManager.default.fileExists(atPath: dir.file("bad.json")))
    }

    /// A format written on a weight in the source (`… as int8`) is that weight's; `--weights`
    /// sets the other expert matrices; an unknown format or a group that does not divide the
    /// rows is an error at the format's name.
    @Test func formatsWrittenInTheSource() throws {
        let dir = TemporaryDirectory()
        let source = try String(contentsOfFile: Files.mixtralGraph, encoding: .utf8)
        let tensor = "= \"experts.{e}.w1.weight\""
        #expect(source.contains(tensor))
        try source.replacingOccurrences(of: tensor, with: tensor + " as int8").write(toFile: dir.file("as.moe"), atomically: true, encoding: .utf8)
        let plain = try Moec.run(["compile", "as.moe", "--model", Files.example, "--emit", "plan"], in: dir.path)
        expectSuccess(plain)
        #expect(plain.stdout.contains("  @w1             int8[8, 64, 32]"), "\(plain)")
        #expect(plain.stdout.contains("  @w3             f32[8, 64, 32]"), "\(plain)")
        let both = try Moec.run(["compile", "as.moe", "--model", Files.example, "--weights", "int4", "--emit", "plan"], in: dir.path)
        expectSuccess(both)
        #expect(both.stdout.contains("  @w1             int8[8, 64, 32]"), "\(both)")
        #expect(both.stdout.contains("  @w3             int4[8, 64, 32]") && both.stdout.contains("  @w2             int4[8, 32, 64]"), "\(both)")
        // A plan of a source with a written format runs (the gate rounded to int8, up f32: packed together as f32).
        expectSuccess(
            try Moec.run(
                [
                    "run", "as.moe", "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy", "--check",
                    "y=\(Files.example)/y_transformers.npy", "--tolerance", "3e-2"
                ], in: dir.path))
        for (format, message) in [
            ("int5", "as.moe:21:66: error: unknown weight format 'int5'; a weight is stored as f32, bf16, f16, int8, int4, int4g64, int4g128, int4z, int4zg64 or int4zg128"),
            ("int4g64", "as.moe:21:66: error: weight 'w1' as int4g64: its rows of 32 values are not whole groups of 64")
        ] {
            try source.replacingOccurrences(of: tensor, with: tensor + " as \(format)").write(toFile: dir.file("as.moe"), atomically: true, encoding: .utf8)
            let r = try Moec.run(["compile", "as.moe", "--model", Files.example, "-o", "p.json"], in: dir.path)
            expectFailure(r, [message])
            #expect(!FileManager.default.fileExists(atPath: dir.file("p.json")))
        }
    }

    /// A shared expert's matrices take `--weights` as the experts' do (transformers'
    /// `Qwen2MoeSparseMoeBlock` fixture with rows of 32 and 64 values): `--emit plan` shows them
    /// in the format and the router f32; the int8 plan runs the same numbers by its widened
    /// path and by the portable kernels, stays
    /// within its own error of transformers, and `moec bench` counts the shared expert's bytes
    /// in the format. Without the shared expert's rounding the plan would compute other numbers.
    @Test func sharedExpertTakesTheFormat() throws {
        let dir = TemporaryDirectory()
        let model = RepoPaths.fixtures + "/qwen2_moe-h32-f32-e8-k2-t9-s44-s64"
        let graph = RepoPaths.path("graphs/qwen2_moe.moe")
        let x = "x=\(model)/x.npy"
        let e = try Moec.run(["compile", graph, "--model", model, "--weights", "int8", "--emit", "plan"], in: dir.path)
        expectSuccess(e)
        for line in [
            "  @shared_gate    int8[64, 32]          2.3 kB", "  @shared_down    int8[32, 64]          2.3 kB", "  @gate           f32[8, 32]            1.0 kB",
            "  @shared_mix     f32[1, 32]            128 B"
        ] {
            #expect(e.stdout.contains(line), "\(line)\n\(e)")
        }
        expectSuccess(try Moec.run(["compile", graph, "--model", model, "--weights", "int8", "-o", "int8.json"], in: dir.path))
        let plan = try String(contentsOfFile: dir.file("int8.json"), encoding: .utf8)
        #expect(plan.components(separatedBy: "\"format\": \"int8\"").count - 1 == 6, "three expert and three shared matrices")
        // The widened path is the reference (under `MOEC_BLAS`: BLAS on f32 copies rounded at
        // load); the portable kernels agree.
        expectSuccess(try Moec.run(["run", "int8.json", "--input", x, "--output", "y=w.npy"], in: dir.path, environment: ["MOEC_INT8_ROWS": "0"]))
        expectSuccess(
            try Moec.run(
                ["run", "int8.json", "--input", x, "--output", "y=p.npy", "--check", "y=w.npy", "--tolerance", "1e-5"], in: dir.path,
                environment: ["MOEC_ISA": "portable", "MOEC_BLAS": "none"]))
        // The integer products, and each path against transformers on the unrounded weights.
        let reference = "y=\(model)/y.npy"
        expectSuccess(try Moec.run(["run", "int8.json", "--input", x, "--output", "y=i.npy", "--check", "y=w.npy", "--tolerance", "3e-2"], in: dir.path))
        expectSuccess(try Moec.run(["run", "int8.json", "--input", x, "--output", "y=t.npy", "--check", reference, "--tolerance", "3e-2"], in: dir.path))
        // Only the experts int8 (written in the source; the shared expert f32): other numbers.
        var source = try String(contentsOfFile: graph, encoding: .utf8)
        for tensor in ["gate_proj", "up_proj", "down_proj"] {
            let binding = "= \"experts.{e}.\(tensor).weight\""
            #expect(source.contains(binding))
            source = source.replacingOccurrences(of: binding, with: binding + " as int8")
        }
        try source.write(toFile: dir.file("experts.moe"), atomically: true, encoding: .utf8)
        expectSuccess(try Moec.run(["run", "experts.moe", "--model", model, "--input", x, "--output", "y=e.npy"], in: dir.path, environment: ["MOEC_INT8_ROWS": "0"]))
        expectFailure(
            try Moec.run(
                ["run", "int8.json", "--input", x, "--output", "y=u.npy", "--check", "y=e.npy", "--tolerance", "1e-4"], in: dir.path,
                environment: ["MOEC_INT8_ROWS": "0"]), ["FAILED"])
        // One token: two experts' and the shared expert's three int8 matrices (6.9 kB each), the f32 router and gate.
        let b = try Moec.run(["bench", "int8.json", "--tokens", "1", "--repeat", "2", "--warmup", "0"], in: dir.path)
        expectSuccess(b)
        #expect(b.stdout.contains("(expert matrices int8, shared/dense matrices int8, other weights f32)"), "\(b)")
        #expect(b.stdout.contains("   15.0 kB (2/8)"), "\(b)")
    }

    /// Plans of format version 3 (before weight formats) still load, every weight f32.
    @Test func version3PlansStillLoad() throws {
        let dir = TemporaryDirectory()
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path))
        var plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("p.json")))) as! [String: Any]
        #expect(plan["version"] as? Int == 4)
        plan["version"] = 3
        try JSONSerialization.data(withJSONObject: plan).write(to: URL(fileURLWithPath: dir.file("old.json")))
        expectSuccess(
            try Moec.run(
                ["run", "old.json", "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy", "--check", "y=\(Files.example)/y_transformers.npy"],
                in: dir.path))
        // An unknown format is refused, naming the weight.
        let text = try String(contentsOfFile: dir.file("p.json"), encoding: .utf8)
        let w2 = try #require(text.range(of: "\"name\": \"w2\","))
        let bad = text.replacingCharacters(in: w2, with: "\"name\": \"w2\", \"format\": \"int3\",")
        try bad.write(toFile: dir.file("bad.json"), atomically: true, encoding: .utf8)
        let r = try Moec.run(["run", "bad.json", "--input", "x=\(Files.example)/x.npy", "--output", "y=z.npy"], in: dir.path)
        expectFailure(
            r,
            [
                "bad.json: malformed graph: weight w2 format \"int3\" (expected one of \"f32\", \"bf16\", \"f16\", \"int8\", \"int4\", \"int4g64\", \"int4g128\", \"int4z\", \"int4zg64\", \"int4zg128\", \"q8_0\", \"q4_0\", \"q4_k\", \"q5_k\", \"q6_k\")"
            ])
        #expect(!FileManager.default.fileExists(atPath: dir.file("z.npy")))
    }

    /// `--weights bf16` with nothing pre-packed stores nothing as bf16, and says so.
    @Test func warnsWhenNoWeightCanBeBF16() throws {
        let r = try Moec.run(
            ["compile", Files.mixtralGraph, "--weights", "bf16", "--disable-pass", "expert-weight-prepacking", "--emit", "ir-opt"], in: RepoPaths.root)
        expectSuccess(r)
        #expect(r.stderr.contains("warning: --weights bf16: no weight is stored as bf16"), "\(r)")
        #expect(!r.stdout.contains("bf16["), "\(r)")
    }

    /// Under `mpirun` each rank packs its experts as bf16: the same bits as one process.
    @Test(.enabled(if: MPIRun.mpirun != nil, "skipped: no mpirun on PATH"), .disabled(if: ProcessInfo.processInfo.environment["MOEC_SKIP_MPI_TESTS"] == "1"))
    func bf16UnderMPIMatchesOneProcess() throws {
        let dir = TemporaryDirectory()
        let x = "x=\(Files.example)/x.npy"
        expectSuccess(try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "--weights", "bf16", "-o", "p.json"], in: dir.path))
        expectSuccess(try Moec.run(["run", "p.json", "--input", x, "--output", "y=one.npy"], in: dir.path))
        let r = try MPIRun.moec(
            ["run", "p.json", "--placement", "static", "--input", x, "--output", "y=two.npy", "--check", "y=one.npy", "--tolerance", "0"], ranks: 2, in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("max |Δ| / max |ref| = 0.00e+00  ok"), "\(r)")
    }
}
