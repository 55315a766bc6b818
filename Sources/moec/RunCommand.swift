import Foundation
import MoEBackend
import MoEBasics
import MoECompiler

enum RunCommand {
    static let spec = CommandSpec(
        name: "run",
        summary: "moec run: execute a compiled plan (or a .moe graph with its weights) on .npy inputs.",
        usage: [
            "moec run (PLAN | GRAPH.moe [--model DIR] [--set NAME=VALUE]... [--weights F]) --input NAME=FILE.npy...",
            "         --output NAME=FILE.npy... [--check NAME=REF.npy]... [--stats STATS.json] [--threads N]"
        ],
        positionals: [("PLAN | GRAPH.moe", "A plan from 'moec compile', or a graph to compile first.")],
        options: ModelSource.options + [
            OptionSpec(
                names: ["--input", "-i"], valueName: "NAME=FILE.npy", help: "An input tensor: f32 (f16 and f64 are converted), or integers for\ni32 inputs. Repeatable.",
                repeated: true),
            OptionSpec(names: ["--output", "-o"], valueName: "NAME=FILE.npy", help: "Where to write an output (f32 .npy). Repeatable.", repeated: true),
            OptionSpec(
                names: ["--check"], valueName: "NAME=FILE.npy",
                help: "Compare an output with a reference .npy: prints max |Δ| / max |ref|\nand exits 1 when it exceeds --tolerance. Repeatable.", repeated: true),
            OptionSpec(names: ["--tolerance"], valueName: "T", help: "Relative tolerance for --check (default 1e-4)."),
            OptionSpec(
                names: ["--stats"], valueName: "STATS.json",
                help: "Write expert loads and router statistics per MoE layer as JSON: the\nfile 'moec place --load' reads (see 'moec profile --help').")
        ],
        details: """
            Inputs are C-order little-endian .npy arrays whose shapes fit the graph's inputs (the
            token dimension may be any size). Outputs (and --stats) are written atomically: a failed
            run never leaves a partial file.
            """ + "\n\n" + MPIJob.helpDetails,
        examples: [
            "moec run mixtral.plan.json --input x=x.npy --output y=y.npy",
            "moec run graphs/mixtral.moe --model ckpt/ --input x=x.npy --output y=y.npy --threads 2",
            "moec run mixtral.plan.json --input x=x.npy --stats stats.json",
            "mpirun -n 2 moec run mixtral.plan.json --placement placement.json --input x=x.npy --output y=y.npy"
        ])

    static func run(_ args: [String]) throws -> Int32 {
        let a = try spec.parse(args)
        if a.helpRequested { Console.out(spec.help()); return 0 }
        let inputs = try parseAssignments(a.all("--input"), option: "--input", command: "run")
        let outputs = try parseAssignments(a.all("--output"), option: "--output", command: "run")
        let checks = try parseAssignments(a.all("--check"), option: "--check", command: "run")
        let statsPath = a.value("--stats")
        guard !outputs.isEmpty || !checks.isEmpty || statsPath != nil else {
            throw UsageError(message: "give at least one --output NAME=FILE.npy (or --check NAME=FILE.npy, or --stats FILE.json)", command: "run")
        }
        for (i, input) in inputs.enumerated() where inputs[..<i].contains(where: { $0.name == input.name }) {
            throw UsageError(message: "--input \(input.name) is given twice", command: "run")
        }
        for (i, output) in outputs.enumerated() {
            if let other = outputs[..<i].first(where: { URL(fileURLWithPath: $0.value).standardizedFileURL == URL(fileURLWithPath: output.value).standardizedFileURL }) {
                throw UsageError(message: "--output \(other.name)=\(other.value) and \(output.name)=\(output.value) write the same file", command: "run")
            }
            if let statsPath, URL(fileURLWithPath: statsPath).standardizedFileURL == URL(fileURLWithPath: output.value).standardizedFileURL {
                throw UsageError(message: "--output \(output.name)=\(output.value) and --stats \(statsPath) write the same file", command: "run")
            }
        }
        var tolerance = OutputCheck.defaultTolerance
        if let t = a.value("--tolerance") {
            guard let v = Float(t), v >= 0 else { throw UsageError(message: "--tolerance expects a non-negative number, got '\(t)'", command: "run") }
            tolerance = v
        }
        let options = try ModelSource.executionOptions(a, command: "run")
        // Under mpirun every rank runs the graph; rank 0 alone writes, checks and prints.
        let principal = MPIJob.isPrincipal
        let request = RunRequest(
            inputs: inputs.map { ($0.name, $0.value) }, outputs: principal ? outputs.map { ($0.name, $0.value) } : [],
            checks: principal ? checks.map { ($0.name, $0.value) } : [], statisticsPath: principal ? statsPath : nil,
            tolerance: tolerance)
        let session = try ModelSource.session(a, command: "run")
        var checkFailed = false
        let status = withDiagnostics(session) {
            // Where the outputs go, before any work.
            try request.checkWritable()
            // Under mpirun every rank records (the same graph, the same collective calls); rank 0 writes.
            let runner = try ModelSource.runner(a, session: session, options: options, recordRouting: statsPath != nil)
            let report = try runner.run(request)
            guard principal else { return }
            for o in report.written { Console.err("wrote \(o.name) \(o.shape) to \(o.path)\n") }
            if let statsPath, let n = report.statisticsLayers {
                Console.err("wrote statistics of \(n) MoE layer\(n == 1 ? "" : "s") to \(statsPath)\n")
            }
            Console.err(
                String(
                    format: "ran %@ on %d token%@ in %.3f ms (%@)\n", runner.graph.name, report.tokens, report.tokens == 1 ? "" : "s",
                    report.seconds * 1e3, Self.how(runner.executable)))
            if let warning = report.nonFiniteWarning { Console.err(warning + "\n") }
            if let halting = report.halting {
                Console.err(
                    String(
                        format: "multi-hop halting: (token, expert) pairs per hop %@; %.1f%% of expert FLOPs saved\n",
                        halting.pairsPerHop.map(String.init).joined(separator: ", "), halting.savedFraction * 100))
            }
            for c in report.checks {
                Console.err(
                    String(
                        format: "check %@: max |Δ| / max |ref| = %.2e  %@ (tolerance %.0e)\n", c.name, c.relativeError,
                        c.passed ? "ok" : "FAILED", c.tolerance))
                if !c.passed { checkFailed = true }
            }
        }
        return checkFailed ? 1 : status
    }

    /// "native, 2 threads", and the ranks under mpirun and how they share the tokens.
    static func how(_ executable: Executable) -> String {
        let options = executable.options
        var s = "\(options.backend), \(options.threads) thread\(options.threads == 1 ? "" : "s")"
        if let world = options.world {
            s += " per rank, \(world.size) rank\(world.size == 1 ? "" : "s"); \(MPIJob.tokenMode(executable))"
        }
        return s
    }
}
