import Foundation
import MoEBasics
import MoECompiler

enum CompileCommand {
    static let spec = CommandSpec(
        name: "compile",
        summary: "moec compile: parse, check and optimise a .moe graph, and write a plan that 'moec run' executes.",
        usage: ["moec compile GRAPH.moe [--model DIR] [--set NAME=VALUE]... [--weights f32|bf16|f16|int8|int4[:G]|int4z[:G]] [-o PLAN] [--emit STAGE]"],
        positionals: [("GRAPH.moe", "The graph to compile.")],
        options: [
            OptionSpec(
                names: ["--model", "-m"], valueName: "DIR",
                help:
                    "A Hugging Face style checkpoint folder: config.json plus model.safetensors\n(or shards with model.safetensors.index.json), or a GGUF file. Params read\ntheir values from config.json (or the GGUF metadata, e.g.\n\"qwen3moe.expert_count\"); weights are bound and checked by name and shape\n(GGUF tensors are read by their GGUF names and dequantized to f32 at load)."
            ),
            OptionSpec(names: ["--set"], valueName: "NAME=VALUE", help: "Set a param, overriding config.json and the default. Repeatable.", repeated: true),
            ModelSource.weightsOption,
            OptionSpec(names: ["-o", "--output"], valueName: "PLAN", help: "Where to write the plan (default: GRAPH.plan.json in the current\nfolder). Needs --model."),
            OptionSpec(
                names: ["--emit"], valueName: "STAGE",
                help: "Print a stage instead of writing a plan: ast, ir, ir-opt or plan."),
            OptionSpec(names: ["--verify-each-pass"], valueName: nil, help: "Run the IR verifier after every pass."),
            OptionSpec(
                names: ["--disable-pass"], valueName: "NAME",
                help: "Leave one optimisation pass out (repeatable), to see or measure what it does:\n" + Pipeline.names.joined(separator: ", ") + ".", repeated: true),
            OptionSpec(
                names: ["--enable-pass"], valueName: "NAME",
                help: "Run an optional pass (repeatable): " + Pipeline.optionalNames.joined(separator: ", ")
                    + " (the\nrouter scores that 'moec run --stats' and 'moec profile' measure become outputs).", repeated: true)
        ],
        details: """
            Stages: 'ast' is the parsed source, printed back in canonical form; 'ir' the typed,
            shape-inferred graph; 'ir-opt' the graph after the optimisation passes; 'plan' the
            execution plan (schedule, buffers, weights). Errors print as file:line:col with the
            source line, and the exit status is 1.
            """,
        examples: [
            "moec compile graphs/mixtral.moe --emit ir",
            "moec compile graphs/mixtral.moe --model ckpt/ --set layer=3 -o mixtral-l3.plan.json",
            "moec compile graphs/mixtral.moe --model ckpt/ --weights bf16 -o mixtral-bf16.plan.json"
        ])

    static func run(_ args: [String]) throws -> Int32 {
        let a = try spec.parse(args)
        if a.helpRequested { Console.out(spec.help()); return 0 }
        guard a.positionals.count == 1 else {
            throw UsageError(
                message: a.positionals.isEmpty ? "missing GRAPH.moe" : "expected one graph, got \(a.positionals.count): \(a.positionals.joined(separator: " "))", command: "compile"
            )
        }
        let disabled = a.all("--disable-pass")
        for name in disabled where !Pipeline.names.contains(name) {
            throw UsageError(message: "unknown pass '\(name)' for --disable-pass (passes: \(Pipeline.names.joined(separator: ", ")))", command: "compile")
        }
        let enabled = a.all("--enable-pass")
        for name in enabled where !Pipeline.optionalNames.contains(name) {
            throw UsageError(message: "unknown optional pass '\(name)' for --enable-pass (optional passes: \(Pipeline.optionalNames.joined(separator: ", ")))", command: "compile")
        }
        var options = CompileOptions(
            graphPath: a.positionals[0], modelDirectory: a.value("--model"),
            overrides: try parseAssignments(a.all("--set"), option: "--set", command: "compile"),
            verifyEachPass: a.flag("--verify-each-pass"), disabledPasses: Set(disabled),
            enabledPasses: Set(enabled))
        try ModelSource.setWeightFormat(&options, a, command: "compile")
        var stage: Stage?
        if let name = a.value("--emit") {
            guard let s = Stage(rawValue: name) else {
                throw UsageError(message: "unknown stage '\(name)' for --emit (choose ast, ir, ir-opt or plan)", command: "compile")
            }
            stage = s
        }
        let session = CompilerSession(options)
        return withDiagnostics(session) {
            try PathCheck.readable(options.graphPath, what: "a .moe graph")
            if let model = options.modelDirectory { try PathCheck.modelFolder(model) }
            if let stage {
                Console.out(try session.emit(stage))
            } else {
                let out = session.planPath(a.value("-o"))
                try PathCheck.writable(out)
                _ = try session.writePlan(to: out)
                Console.err("wrote \(out)\n")
            }
        }
    }
}

/// Runs a command's work, printing warnings, and errors with the session's source lines.
/// Returns the exit status: 0, or 1 after errors.
func withDiagnostics(_ session: CompilerSession?, _ body: () throws -> Void) -> Int32 {
    var status: Int32 = 0
    var errors: [Diagnostic] = []
    do {
        try body()
    } catch let e as DiagnosticError {
        errors = e.diagnostics
        status = 1
    } catch {
        errors = [.error("\(error)")]
        status = 1
    }
    let engine = session?.diagnostics ?? DiagnosticEngine()
    let warnings = engine.diagnostics.filter { $0.severity != .error && !errors.contains($0) }
    Console.err(engine.render(warnings + errors, color: Console.useColor))
    return status
}
