import Foundation
import MoEBasics
import MoECompiler

enum ProfileCommand {
    static let spec = CommandSpec(
        name: "profile",
        summary: "moec profile: run many batches and measure expert loads and router statistics per MoE layer.",
        usage: [
            "moec profile (PLAN | GRAPH.moe [--model DIR] [--set NAME=VALUE]... [--weights F]) [--input NAME=FILE.npy]...",
            "             [--batch-tokens N] [--batches K|all] [--seed S] [-o STATS.json] [--threads N]"
        ],
        positionals: [("PLAN | GRAPH.moe", "A plan from 'moec compile', or a graph to compile first.")],
        options: ModelSource.options + [
            OptionSpec(
                names: ["--input", "-i"], valueName: "NAME=FILE.npy",
                help: "An input, cut into batches along its first (token) dimension.\nRepeatable. Without --input, batches are seeded random normals.", repeated: true),
            OptionSpec(names: ["--batch-tokens", "-n"], valueName: "N", help: "Tokens per batch (default 256)."),
            OptionSpec(
                names: ["--batches", "-b"], valueName: "K|all",
                help: "How many batches: the first K of the input, or all of them (the\ndefault with --input); K random batches without it (default 16)."),
            OptionSpec(names: ["--seed"], valueName: "S", help: "Seed of the random batches (default 0); batch i uses seed S + i."),
            OptionSpec(
                names: ["-o", "--output"], valueName: "STATS.json",
                help: "Write the statistics as JSON (atomically): the file 'moec place --load'\nreads, the same as 'moec run --stats' writes.")
        ],
        details: """
            Per MoE layer (one moe block; the hops of a multi-hop block are one layer), summed over
            all batches: the tokens each expert computed; max/mean of those loads (1.00 is
            perfectly even); router entropy, the mean over tokens of -Σ p·ln p over the router's
            probabilities (nats, and divided by ln E: 1 = uniform); the mean top1−top2 margin
            between a token's two largest probabilities; and the Switch balance loss E·Σ f·P.
            Router probabilities are the scores the selection (topk, …) reads: divided by their
            sum when they are non-negative (softmax, sigmoid), else softmaxed.

            The JSON has "expert_load" (one array of per-expert loads per layer), per-layer arrays
            "imbalance", "entropy", "entropy_normalized", "top1_top2_margin", "aux_loss", and
            "layers" with each layer's name, experts, k and hottest experts ("hop_load": each
            hop's loads, for a multi-hop block). A table goes to stdout; progress to stderr: a bar
            on a terminal, else a line every 5 s and a summary at the end.
            Random batches do not route like real activations: profile real hidden states to plan.
            """,
        examples: [
            "moec profile graphs/mixtral.moe --model ckpt/ --input x=hidden.npy --batch-tokens 512 -o stats.json",
            "moec profile mixtral.plan.json --batch-tokens 128 --batches 50 --seed 1",
            "moec place --load stats.json --workers 4 --replicas 12 --explain"
        ])

    static func run(_ args: [String]) throws -> Int32 {
        let a = try spec.parse(args)
        if a.helpRequested { Console.out(spec.help()); return 0 }
        func usage(_ m: String) -> UsageError { UsageError(message: m, command: "profile") }
        let inputs = try parseAssignments(a.all("--input"), option: "--input", command: "profile")
        for (i, input) in inputs.enumerated() where inputs[..<i].contains(where: { $0.name == input.name }) {
            throw usage("--input \(input.name) is given twice")
        }
        var batchTokens = 256
        if let v = a.value("--batch-tokens") {
            guard let n = Int(v), n >= 1, n <= 1 << 24 else { throw usage("--batch-tokens expects a positive integer, got '\(v)'") }
            batchTokens = n
        }
        var batches: Int? // nil: all of the input
        if let v = a.value("--batches"), v != "all" {
            guard let n = Int(v), n >= 1 else { throw usage("--batches expects a positive integer or 'all', got '\(v)'") }
            batches = n
        } else if a.value("--batches") == "all", inputs.isEmpty {
            throw usage("--batches all needs --input (random batches never run out: give a number)")
        }
        var seed: UInt64 = 0
        if let v = a.value("--seed") {
            guard let s = UInt64(v) else { throw usage("--seed expects a non-negative integer, got '\(v)'") }
            seed = s
            if !inputs.isEmpty { throw usage("--seed applies to random batches; with --input the batches are the input's") }
        }
        let output = a.value("-o")
        if let output, let clash = inputs.first(where: { URL(fileURLWithPath: $0.value).standardizedFileURL == URL(fileURLWithPath: output).standardizedFileURL }) {
            throw usage("-o \(output) would overwrite --input \(clash.name)=\(clash.value)")
        }
        let options = try ModelSource.executionOptions(a, command: "profile")
        let session = try ModelSource.session(a, command: "profile")
        return withDiagnostics(session) {
            if let output { try PathCheck.writable(output) }
            let runner = try ModelSource.runner(a, session: session, options: options, recordRouting: true)
            let graph = runner.graph
            guard !runner.routerProbes.isEmpty else {
                throw DiagnosticError(.error("graph '\(graph.name)' has no moe blocks: there are no expert loads to profile"))
            }
            let plan: ProfileBatches
            if inputs.isEmpty {
                plan = ProfileBatches.random(graph: graph, batchTokens: batchTokens, count: batches ?? 16, seed: seed)
                Console.err(
                    "note: no --input, so the batches are seeded random normals (seed \(seed)); they do not route like real activations: profile real hidden states to plan a placement\n"
                )
            } else {
                plan = try ProfileBatches.split(
                    try RunInputs.read(inputs.map { ($0.name, $0.value) }, for: graph), graph: graph,
                    batchTokens: batchTokens, limit: batches)
                if let k = batches, let available = plan.available, k > available {
                    Console.err("note: the input holds \(available) batch\(available == 1 ? "" : "es") of up to \(batchTokens) tokens; running all \(available), not \(k)\n")
                }
            }
            try MemoryCheck.arena(graph, tokens: min(batchTokens, plan.tokens), option: "--batch-tokens")
            let progress = BatchProgress(label: "profile", isTerminal: Console.stderrIsTerminal, write: Console.err)
            let t0 = Date()
            var statistics: RoutingStatistics
            do {
                defer { progress.finish() }
                statistics = try Profiler.run(runner, plan, progress: progress.update)
            }
            let seconds = Date().timeIntervalSince(t0)
            statistics.source = inputs.isEmpty ? "seeded random normals (seed \(seed))" : inputs.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
            if let output {
                try PathCheck.writeAll([(output, Data((statistics.json.pretty + "\n").utf8))])
            }
            Console.err(
                String(
                    format: "profiled %d tokens in %d batch%@ of up to %d in %.2f s (%@, %d thread%@)\n",
                    plan.tokens, plan.count, plan.count == 1 ? "" : "es", batchTokens, seconds,
                    "\(runner.executable.options.backend)", runner.executable.options.threads,
                    runner.executable.options.threads == 1 ? "" : "s"))
            Console.out("moec profile: \(graph.name) · \(plan.tokens) tokens · \(statistics.source!)\n")
            Console.out(statistics.table())
            if let output { Console.err("wrote \(output); next: moec place --load \(output) --workers W\n") }
        }
    }
}
