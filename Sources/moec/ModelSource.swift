import Foundation
import MoEBackend
import MoEBasics
import MoECompiler

/// Options shared by the commands that execute a model: where it comes from and how it runs.
enum ModelSource {
    static let options: [OptionSpec] = [
        OptionSpec(
            names: ["--model", "-m"], valueName: "DIR",
            help: "Checkpoint folder (config.json + safetensors) or GGUF file, when running a\n.moe graph."),
        OptionSpec(names: ["--set"], valueName: "NAME=VALUE", help: "Set a param of a .moe graph. Repeatable.", repeated: true),
        weightsOption,
        OptionSpec(names: ["--threads", "-t"], valueName: "N", help: "Threads to use (default: all cores)."),
        OptionSpec(
            names: ["--placement"], valueName: "FILE.json|static",
            help:
                "Run the experts by an expert placement from 'moec place' (one thread per\nworker, or one rank under mpirun), or 'static' for the naive split (E/W\nconsecutive experts per worker)."
        ),
        OptionSpec(
            names: ["--llep"], valueName: "T",
            help: "With --placement: spill a worker's tokens above T × the mean load to the\nleast-loaded workers, per batch (LLEP; e.g. 1.1).")
    ]

    /// `--weights`, shared by `compile` and the commands that compile a `.moe` graph first.
    static let weightsOption = OptionSpec(
        names: ["--weights"], valueName: "f32|bf16|f16|int8|int4[:G]|int4z[:G]",
        help:
            "How feed-forward matrices are stored (the experts', and the shared experts' and\ndense layers' swiglu/mlp matrices; the router and other weights stay f32): f32\n(the default); bf16 (half the bytes;\nf32 checkpoint values rounded to nearest even, bf16 ones kept exactly); f16 (IEEE\nhalf: 11 significant bits, range 65504); int8\n(groups of 32 values along each row with an fp32 scale, llama.cpp's Q8_0\nrounding: 1.125 bytes a weight); int4 (groups of 32, Q4_0 rounding: 0.625\nbytes), int4:64 or int4:128 (fewer scales); int4z[:G] with\nzero points (Q4_1 rounding: a scale and an offset per group, 0.75 bytes). A group must divide the rows.\nOn CPUs with AVX2 the int formats multiply integers (activations quantized to\nint8 per group; on AVX2 without AVX-512 VNNI, int8 widens to f32 beyond 16 rows\nper expert); elsewhere they widen to f32. A weight's own format can be written\nin the source ('w: [...] = \"...\" as int8'), the router's too. Without --weights,\na .gguf model's Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, BF16 and F16 expert tensors keep\ntheir type (the file's values, repacked), and a GPTQ or AWQ folder's int4\nlinears become int4z of its group size (the same values); --weights f32 widens them."
    )

    /// Sets the compile options' weight format from `--weights`, if given.
    static func setWeightFormat(_ options: inout CompileOptions, _ a: ParsedArguments, command: String) throws {
        guard let name = a.value("--weights") else { return }
        guard options.setWeightFormat(name) else { throw UsageError(message: CompileOptions.unknownWeightFormat(name), command: command) }
    }

    /// The compiler session for a `.moe` graph, or nil for a plan. Made before any work, so
    /// that errors found later are printed with the graph's source lines.
    static func session(_ a: ParsedArguments, command: String) throws -> CompilerSession? {
        guard a.positionals.count == 1 else {
            throw UsageError(
                message: a.positionals.isEmpty ? "missing PLAN or GRAPH.moe" : "expected one PLAN or GRAPH.moe, got: \(a.positionals.joined(separator: " "))", command: command)
        }
        let target = a.positionals[0]
        if target.hasSuffix(".moe") {
            var options = CompileOptions(
                graphPath: target, modelDirectory: a.value("--model"),
                overrides: try parseAssignments(a.all("--set"), option: "--set", command: command))
            try setWeightFormat(&options, a, command: command)
            return CompilerSession(options)
        }
        if a.value("--model") != nil || !a.all("--set").isEmpty || a.value("--weights") != nil {
            throw UsageError(
                message: "--model, --set and --weights apply to a .moe graph; a plan already has its weights, params and weight formats (compile again to change them)",
                command: command)
        }
        return nil
    }

    static func executionOptions(_ a: ParsedArguments, command: String) throws -> ExecutionOptions {
        var options = ExecutionOptions()
        if let t = a.value("--threads") {
            guard let n = Int(t), n >= 1, n <= 1024 else { throw UsageError(message: "--threads expects a positive integer, got '\(t)'", command: command) }
            options.threads = n
        }
        if let p = a.value("--placement") {
            var threshold: Double?
            if let t = a.value("--llep") {
                guard let v = Double(t), v >= 1, v.isFinite else { throw UsageError(message: "--llep expects a threshold ≥ 1 (e.g. 1.1), got '\(t)'", command: command) }
                threshold = v
            }
            if p == "static" {
                guard let w = MPIJob.staticWorkers ?? a.value("--threads").flatMap(Int.init) else {
                    throw UsageError(message: "--placement static needs --threads W (the number of workers)", command: command)
                }
                options.runExperts(by: PlacementExecution(.staticSplit(workers: w), dynamicThreshold: threshold))
            } else {
                options.runExperts(by: PlacementExecution(.placement(try PlacementBinding.read(p)), dynamicThreshold: threshold))
            }
        } else if a.value("--llep") != nil {
            throw UsageError(message: "--llep applies to --placement", command: command)
        }
        try MPIJob.distribute(&options, threads: a.value("--threads").flatMap(Int.init), command: command)
        return options
    }

    /// Loads a runner from a plan file, or compiles the session's `.moe` graph, with a progress
    /// line while weights load when stderr is a terminal.
    static func runner(
        _ a: ParsedArguments, session: CompilerSession?, options: ExecutionOptions,
        recordRouting: Bool = false
    ) throws -> ModelRunner {
        let target = a.positionals[0]
        let progress = Progress(label: "loading weights")
        defer { progress.finish() }
        if let session {
            try PathCheck.readable(target, what: "a .moe graph")
            if let model = a.value("--model") { try PathCheck.modelFolder(model) }
            return try ModelRunner.compile(session, options: options, progress: progress.update, recordRouting: recordRouting)
        }
        try PathCheck.readable(target, what: "a plan")
        return try ModelRunner.load(planPath: target, options: options, progress: progress.update, recordRouting: recordRouting)
    }
}

/// A one-line progress bar on stderr, shown only on a terminal and only for long work.
final class Progress: @unchecked Sendable {
    let label: String
    let start = Date()
    var shown = false
    var lastDraw = Date.distantPast

    init(label: String) { self.label = label }

    func update(_ done: Int, _ total: Int) {
        guard Console.stderrIsTerminal, total > 0 else { return }
        let now = Date()
        guard now.timeIntervalSince(start) > 0.5, now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
        lastDraw = now
        shown = true
        let frac = Double(done) / Double(total)
        let bar = TextLayout.progressBar(done, of: total, width: 30)
        Console.err(String(format: "\r%@ %@ %5.1f%%  %.0f / %.0f MB", label, bar, frac * 100, Double(done) / 1e6, Double(total) / 1e6))
    }

    func finish() {
        if shown { Console.err("\r\u{1B}[K") }
    }
}
