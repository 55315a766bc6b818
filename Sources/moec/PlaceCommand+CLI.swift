import Foundation
import MoEBasics
import MoECompiler
import MoEPlacement

/// `moec place`: the command-line face of `MoEPlacement.PlaceCommand`, which does the work.
///
/// The arguments are read twice on purpose: first by moec's own parser against `spec`, so that
/// help, unknown options ("did you mean"), missing values and repeated options behave exactly
/// as in the other commands (exit 2); then by `PlaceCommand.parse`, which turns them into
/// placement options. `spec` lists exactly the flags `PlaceCommand.parse` knows.
extension PlaceCommand {
    static let spec = CommandSpec(
        name: "place",
        summary: "moec place: plan which worker holds which experts (and how many replicas), from measured expert loads.",
        usage: [
            "moec place --load STATS.json --workers W [--replicas P] [--nodes N] [--groups G]",
            "           [--memory-per-worker BYTES] [--expert-bytes BYTES] [--previous PLACEMENT.json]",
            "           [--move-tolerance T] [--link-cost C] [--policy moec|eplb] [--explain] [-o PLACEMENT.json]",
            "moec place --simulate CLUSTER.json [--load STATS.json] [-o REPORT.json]"
        ],
        positionals: [],
        options: [
            OptionSpec(
                names: ["--load"], valueName: "STATS.json",
                help: "Expert loads: the file 'moec profile -o' or 'moec run --stats' writes\n(key \"expert_load\": one array of per-expert loads per MoE layer)."),
            OptionSpec(names: ["--workers"], valueName: "W", help: "Workers (devices) sharing each layer's experts."),
            OptionSpec(
                names: ["--replicas"], valueName: "P",
                help: "Physical expert slots per layer: at least the number of experts, and a\nmultiple of W (default: the number of experts, no replicas)."),
            OptionSpec(names: ["--nodes"], valueName: "N", help: "The workers form N nodes; cross-node traffic is reported and reduced\n(default 1)."),
            OptionSpec(names: ["--groups"], valueName: "G", help: "The experts form G groups, for group-limited routing (default 1)."),
            OptionSpec(
                names: ["--memory-per-worker"], valueName: "BYTES",
                help: "Memory for expert weights per worker, over all layers: 80G, 512Mi, …\n(needs the size of one expert)."),
            OptionSpec(names: ["--expert-bytes"], valueName: "BYTES", help: "Bytes of one expert's weights (default: \"expert_bytes\" in the load file)."),
            OptionSpec(names: ["--previous"], valueName: "PLACEMENT.json", help: "The placement in use now: move as few expert weights as possible."),
            OptionSpec(
                names: ["--move-tolerance"], valueName: "T",
                help: "With --previous: accept a largest load up to T × mean above the best\nto move fewer experts (default 0.001)."),
            OptionSpec(names: ["--link-cost"], valueName: "C", help: "Weight of the cross-node token fraction against max/mean (default 1)."),
            OptionSpec(names: ["--policy"], valueName: "moec|eplb", help: "The planner: moec (default) or DeepSeek's EPLB, as a baseline."),
            OptionSpec(names: ["--explain"], valueName: nil, help: "Print a table and bar chart of worker loads per layer."),
            OptionSpec(
                names: ["-o", "--output"], valueName: "FILE",
                help: "Write the placement (or the --simulate report) as JSON, atomically.\nWithout -o the placement JSON goes to stdout."),
            OptionSpec(
                names: ["--simulate"], valueName: "CLUSTER.json",
                help: "Predict the step time of static, EPLB and moec placements on a cluster.")
        ],
        details: """
            Each MoE layer is planned on its own: experts get replica slots by load, and slots are
            packed onto workers so that the busiest worker carries as little as possible. The
            result is compared with the static placement (expert e on worker e·W/E) and with
            EPLB's. A placement's quality is max worker load / mean worker load (1.00 is perfect).
            Byte counts take K M G T (powers of 1000) or Ki Mi Gi Ti (powers of 1024).
            """,
        examples: [
            "moec profile graphs/mixtral.moe --model ckpt/ --input x=x.npy -o stats.json",
            "moec place --load stats.json --workers 4 --replicas 12 --explain -o placement.json",
            "moec place --load stats.json --workers 4 --replicas 12 --previous placement.json -o new.json"
        ])

    /// Runs `moec place ARGUMENTS`; returns the exit status.
    static func main(_ arguments: [String]) throws -> Int32 {
        let a = try spec.parse(arguments)
        if a.helpRequested { Console.out(spec.help()); return 0 }
        func usage(_ m: String) -> UsageError { UsageError(message: m, command: "place") }
        if let p = a.positionals.first { throw usage("unexpected argument '\(p)' (moec place takes only options)") }
        let command: PlaceCommand
        do {
            command = try PlaceCommand.parse(arguments)
        } catch {
            throw usage("\(error)")
        }
        for (option, name) in [("--workers", "workers"), ("--replicas", "replicas"), ("--nodes", "nodes"), ("--groups", "groups")] {
            if let v = a.value(option), let n = Int(v), n < 1 { throw usage("\(option) expects a positive number of \(name), got '\(v)'") }
        }
        if let out = command.outputPath {
            try PathCheck.writable(out)
            for input in [command.loadPath, command.previousPath, command.simulatePath].compactMap({ $0 })
            where URL(fileURLWithPath: input).standardizedFileURL == URL(fileURLWithPath: out).standardizedFileURL {
                throw usage("-o \(out) would overwrite the input file \(input)")
            }
        }
        do {
            Console.out(try command.run())
        } catch {
            Console.error("\(error)")
            return 1
        }
        if let out = command.outputPath { Console.err("wrote \(out)\n") }
        return 0
    }
}
