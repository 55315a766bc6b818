import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEKernels

enum BenchCommand {
    static let spec = CommandSpec(
        name: "bench",
        summary: "moec bench: time a plan or graph at several token counts (medians over repeated runs).",
        usage: [
            "moec bench (PLAN | GRAPH.moe [--model DIR] [--set NAME=VALUE]... [--weights F]) --tokens N[,N...]",
            "           [--context C] [--repeat R] [--threads N] [--placement FILE.json|static [--llep T]] [--json]"
        ],
        positionals: [("PLAN | GRAPH.moe", "A plan from 'moec compile', or a graph to compile first.")],
        options: ModelSource.options + [
            OptionSpec(names: ["--tokens", "-n"], valueName: "N[,N...]", help: "Token counts to time, e.g. 1,16,128,512."),
            OptionSpec(
                names: ["--context", "-c"], valueName: "C",
                help:
                    "Time decode steps: each run is the next N tokens of a sequence holding C (its KV cache), for a graph with rope and attention (graphs/decoder)."
            ),
            OptionSpec(names: ["--repeat", "-r"], valueName: "R", help: "Timed runs per token count (default: at least 10 and 1 s)."),
            OptionSpec(names: ["--warmup"], valueName: "W", help: "Untimed runs first (default 3)."),
            OptionSpec(names: ["--seed"], valueName: "S", help: "Seed of the random inputs (default 0)."),
            OptionSpec(names: ["--json"], valueName: nil, help: "Print one JSON object a line, one per token count.")
        ],
        details: """
            Inputs are seeded random normals; each token count gets its own schedule (buffers
            allocated once, then reused). GFLOP/s counts the matrix products of the experts that
            received tokens ("active" FLOPs); 'weights' is the bytes of weights those products read.
            'GB/s' is those bytes over the median time; the header gives the formats the expert
            weights are stored in (--weights). JSON fields: tokens, median_ms, min_ms, max_ms,
            runs, tokens_per_s, gflops, weight_mb_touched, weight_gb_per_s, experts_hit,
            experts_total, arena_bytes, threads, backend, weight_formats (and context, with
            --context). With --context C a sequence first holds C tokens of random keys and
            values (nothing runs for them); each timed run then appends N more and is taken back
            (rewound to C) after it, so every run attends to C + N keys; attention's FLOPs count
            them.
            """ + "\n\n" + MPIJob.helpDetails + "\n"
                + "Each rank makes the same number of runs (--repeat, default 10 under mpirun): every run\n"
                + "exchanges rows between the ranks. Times are rank 0's.",
        examples: [
            "moec bench graphs/mixtral.moe --model ckpt/ --tokens 1,16,128,512",
            "moec bench mixtral.plan.json --tokens 512 --repeat 20 --threads 2 --json",
            "moec bench graphs/decoder/mixtral.moe --model ckpt/ --tokens 1 --context 2048",
            "moec bench graphs/bench/skewed_mixtral.moe --model skewed/ --tokens 512 --placement placement.json --llep 1.1"
        ])

    static func run(_ args: [String]) throws -> Int32 {
        let a = try spec.parse(args)
        if a.helpRequested { Console.out(spec.help()); return 0 }
        guard let list = a.value("--tokens") else { throw UsageError(message: "missing --tokens N[,N...]", command: "bench") }
        var tokens: [Int] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            guard let n = Int(part.trimmingCharacters(in: .whitespaces)), n >= 1, n <= 1 << 24 else {
                throw UsageError(message: "--tokens expects positive integers separated by commas, got '\(list)'", command: "bench")
            }
            tokens.append(n)
        }
        func positive(_ name: String) throws -> Int? {
            guard let v = a.value(name) else { return nil }
            guard let n = Int(v), n >= (name == "--warmup" ? 0 : 1) else { throw UsageError(message: "\(name) expects a positive integer, got '\(v)'", command: "bench") }
            return n
        }
        let context = try positive("--context") ?? 0
        guard context <= 1 << 24 else { throw UsageError(message: "--context expects at most \(1 << 24) tokens, got \(context)", command: "bench") }
        var repeatCount = try positive("--repeat")
        let warmup = try positive("--warmup") ?? 3
        let seed = UInt64(try positive("--seed") ?? 0)
        let options = try ModelSource.executionOptions(a, command: "bench")
        if options.world != nil, repeatCount == nil { repeatCount = 10 }
        // Output goes through `say`: under mpirun only rank 0 prints.
        func say(_ s: String) { if MPIJob.isPrincipal { Console.out(s) } }
        let session = try ModelSource.session(a, command: "bench")
        return withDiagnostics(session) {
            let runner = try ModelSource.runner(a, session: session, options: options)
            let threads = runner.executable.options.threads
            var backend = "\(runner.executable.options.backend)"
            if let p = runner.executable.options.placement {
                switch p.layout {
                case .placement: backend += ", experts by placement (\(p.workers) workers)"
                case .staticSplit(let w): backend += ", experts by static split (\(w) workers)"
                }
                if let t = p.dynamicThreshold { backend += String(format: ", LLEP %.2f", t) }
                if let world = runner.executable.options.world {
                    backend += ", one worker per rank (\(world.size) MPI ranks), \(MPIJob.tokenMode(runner.executable))"
                }
            }
            let name = runner.graph.name
            for t in tokens { try MemoryCheck.arena(runner.graph, tokens: t, option: "--tokens") }
            if context > 0, runner.executable.shardsTokens {
                throw DiagnosticError(.error("--context: the ranks share the tokens of a run; a sequence needs every rank to run them all"))
            }
            let formats = runner.weightFormatSummary
            let integerPanels = runner.graph.weights.contains { PackedWeight.Format($0.format).isQuantized }
            let products = integerPanels && runner.executable.options.backend.isNative ? Kernels.quantizedProductsDescription : nil
            if !a.flag("--json") {
                say(
                    "moec bench: \(name) · \(backend) · \(threads) thread\(threads == 1 ? "" : "s") · weights \(TextLayout.bytes(Double(runner.executable.weightBytes))) (\(formats))\n"
                )
                if let products { say("int8/int4 weights: \(products)\n") }
                if context > 0 { say("each run: the next tokens of a sequence holding \(context) (its KV cache)\n") }
                say("tokens   median ms     min ms     max ms   runs    tokens/s   GFLOP/s     GB/s   weights read (experts hit)\n")
            }
            for t in tokens {
                let r = try Benchmark.measure(runner, tokens: t, repeat: repeatCount, warmup: warmup, seed: seed, context: context)
                if a.flag("--json") {
                    var o = r.toJSON(graph: name, threads: threads, backend: backend).object!
                    o["weight_formats"] = .string(formats)
                    if let products { o["quantized_products"] = .string(products) }
                    say(JSON.object(o).compact + "\n")
                } else {
                    let hit = r.work.expertsTotal > 0 ? " (\(r.work.expertsHit)/\(r.work.expertsTotal))" : ""
                    say(
                        String(
                            format: "%6d %11.3f %10.3f %10.3f %6d %11.1f %9.1f %8.1f   %@%@\n",
                            t, r.median * 1e3, r.min * 1e3, r.max * 1e3, r.times.count,
                            Double(t) / r.median, r.work.flops / r.median / 1e9, r.work.weightBytes / r.median / 1e9,
                            TextLayout.bytes(r.work.weightBytes), hit))
                    for (rank, p) in r.ranks.enumerated() {
                        say(
                            String(
                                format: "         rank %d: route %.3f ms, dispatch %.3f ms, experts %.3f ms, combine %.3f ms; routed %d token%@, computed %d pairs, sent %@\n",
                                rank, p.route * 1e3, p.dispatch * 1e3, p.experts * 1e3, p.combine * 1e3, p.tokens, p.tokens == 1 ? "" : "s", p.pairs,
                                TextLayout.bytes(Double(p.bytesSent))))
                    }
                }
            }
        }
    }
}
