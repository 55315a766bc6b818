import Foundation
import MoEBasics
import MoECompiler
import MoEPlacement

/// moec's entry point: picks the command, runs it, and turns every error into a message on
/// stderr and a non-zero exit status.
nonisolated(unsafe) let commands: [(name: String, summary: String, run: ([String]) throws -> Int32)] = [
    ("compile", "Check and optimise a .moe graph; print a stage or write a plan.", CompileCommand.run),
    ("run", "Execute a plan or graph on .npy inputs and write .npy outputs.", RunCommand.run),
    ("bench", "Time a plan or graph at several token counts.", BenchCommand.run),
    ("profile", "Run many batches; measure expert loads and router statistics.", ProfileCommand.run),
    ("place", "Plan where experts live (workers, replicas) from measured expert loads.", PlaceCommand.main),
    ("lsp", "Serve editors .moe diagnostics, hovers and definitions (Language Server Protocol).", LSPCommand.run)
]

func topLevelHelp() -> String {
    var s = """
        moec: a compiler for Mixture-of-Experts graphs. Say a routing topology in a .moe file;
        run it fast on a CPU.

        USAGE:
          moec COMMAND [ARGUMENTS] [--help]

        COMMANDS:

        """
    for c in commands { s += "  \(c.name.padding(toLength: 10, withPad: " ", startingAt: 0))\(c.summary)\n" }
    s += """

        EXAMPLES:
          moec compile graphs/mixtral.moe --emit ir
          moec compile graphs/mixtral.moe --model ckpt/ --set layer=3 -o mixtral-l3.plan.json
          moec run mixtral-l3.plan.json --input x=x.npy --output y=y.npy
          moec bench mixtral-l3.plan.json --tokens 1,16,128,512
          moec profile mixtral-l3.plan.json --input x=hidden.npy -o stats.json
          moec place --load stats.json --workers 4 --replicas 12 --explain -o placement.json

        Run 'moec COMMAND --help' for a command's options and examples.

        """
    return s
}

var args = Array(CommandLine.arguments.dropFirst())
guard let first = args.first else {
    Console.err(topLevelHelp())
    exit(2)
}
if first == "--help" || first == "-h" || first == "help" {
    if args.count > 1, let c = commands.first(where: { $0.name == args[1] }) {
        exit(try c.run(["--help"]))
    }
    Console.out(topLevelHelp())
    exit(0)
}
if first == "--version" {
    Console.out("moec \(MoECompilerVersion.string)\n")
    exit(0)
}
guard let command = commands.first(where: { $0.name == first }) else {
    var m = "unknown command '\(first)'"
    if let s = NameSuggestions.best(for: first, in: commands.map(\.name)) {
        m += " (did you mean '\(s)'?)"
    }
    Console.error(m + "; run 'moec --help' for the list")
    exit(2)
}
do {
    let status = try command.run(Array(args.dropFirst()))
    MPIJob.exit(status)
} catch let e as DiagnosticError {
    Console.err(DiagnosticEngine().render(e.diagnostics, color: Console.useColor))
    MPIJob.exit(1)
} catch let e as UsageError {
    Console.error("\(e.message)\nrun 'moec \(e.command) --help' for usage")
    MPIJob.exit(2)
} catch {
    Console.error("\(error)")
    MPIJob.exit(1)
}
