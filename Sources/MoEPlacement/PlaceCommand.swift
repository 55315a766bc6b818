import Foundation
import MoEBasics

/// `moec place`: the arguments, parsed, and running them. The CLI only has to do
/// `print(try PlaceCommand.parse(args).run(), terminator: "")` and print errors as `error: \(e)`.
///
/// ```
/// moec place --load STATS.json --workers W [--replicas P] [--nodes N] [--groups G]
///            [--memory-per-worker BYTES] [--expert-bytes BYTES] [--previous PLACEMENT.json]
///            [--move-tolerance T] [--link-cost C] [--policy moec|eplb] [--explain] [-o PLACEMENT.json]
/// moec place --simulate CLUSTER.json [--load STATS.json]
/// ```
/// Byte counts take an optional suffix: `K M G T` (powers of 1000) or `Ki Mi Gi Ti` (powers of 1024).
public struct PlaceCommand: Sendable, Equatable {
    public var loadPath: String?
    public var outputPath: String?
    public var previousPath: String?
    public var simulatePath: String?
    public var explain = false
    public var help = false
    /// Options from the flags; `previous` is filled by `run()` from `previousPath`.
    public var options = PlacementOptions(workers: 0)
    var workersGiven = false

    public static let usage = """
        usage: moec place --load STATS.json --workers W [--replicas P] [--nodes N] [--groups G]
                          [--memory-per-worker BYTES] [--expert-bytes BYTES] [--previous PLACEMENT.json]
                          [--move-tolerance T] [--link-cost C] [--policy moec|eplb] [--explain] [-o PLACEMENT.json]
               moec place --simulate CLUSTER.json [--load STATS.json]

          --load FILE               load statistics ("expert_load": one array of per-expert loads per layer)
          --workers W               workers (devices) sharing each layer's experts
          --replicas P              physical expert slots per layer, P ≥ experts, a multiple of W (default: experts)
          --nodes N                 workers form N nodes; reports cross-node traffic (default 1)
          --groups G                experts form G groups, for the hierarchical policy (default 1)
          --memory-per-worker BYTES memory for expert weights per worker, all layers (needs the expert size)
          --expert-bytes BYTES      bytes of one expert (default: "expert_bytes" in the load file)
          --previous FILE           current placement: move as few expert weights as possible
          --move-tolerance T        with --previous: max load may exceed the best by T × mean to move fewer experts (default 0.001)
          --link-cost C             weight of the cross-node token fraction against max/mean (default 1)
          --policy moec|eplb        planner (default moec; eplb is DeepSeek's EPLB)
          --explain                 print a table and bar chart per layer
          -o, --output FILE         write the placement JSON here (default: print it)
          --simulate FILE           predict step time for static, EPLB and moec placements on a cluster

        """

    public static func parse(_ arguments: [String]) throws(PlacementError) -> PlaceCommand {
        var c = PlaceCommand()
        var i = 0
        func value(_ flag: String, _ inline: String?) throws(PlacementError) -> String {
            if let inline { return inline }
            i += 1
            guard i < arguments.count else { throw .invalidOption(name: flag, message: "needs a value") }
            return arguments[i]
        }
        func integer(_ flag: String, _ text: String) throws(PlacementError) -> Int {
            guard let n = Int(text) else { throw .invalidOption(name: flag, message: "expected an integer, found '\(text)'") }
            return n
        }
        while i < arguments.count {
            var flag = arguments[i]
            var inline: String? = nil
            if flag.hasPrefix("--"), let eq = flag.firstIndex(of: "=") {
                inline = String(flag[flag.index(after: eq)...])
                flag = String(flag[..<eq])
            }
            switch flag {
            case "--load": c.loadPath = try value(flag, inline)
            case "--workers":
                c.options.workers = try integer(flag, try value(flag, inline))
                c.workersGiven = true
            case "--replicas": c.options.physicalSlots = try integer(flag, try value(flag, inline))
            case "--nodes": c.options.nodes = try integer(flag, try value(flag, inline))
            case "--groups": c.options.groups = try integer(flag, try value(flag, inline))
            case "--memory-per-worker": c.options.memoryPerWorker = try parseBytes(flag, try value(flag, inline))
            case "--expert-bytes": c.options.expertBytes = try parseBytes(flag, try value(flag, inline))
            case "--previous": c.previousPath = try value(flag, inline)
            case "--move-tolerance":
                let t = try value(flag, inline)
                guard let x = Double(t), x.isFinite, x >= 0 else { throw .invalidOption(name: flag, message: "expected a non-negative number, found '\(t)'") }
                c.options.moveTolerance = x
            case "--link-cost":
                let t = try value(flag, inline)
                guard let x = Double(t), x.isFinite, x >= 0 else { throw .invalidOption(name: flag, message: "expected a non-negative number, found '\(t)'") }
                c.options.linkCost = x
            case "--policy":
                let t = try value(flag, inline)
                guard let p = PlacementOptions.Policy(rawValue: t) else {
                    throw .invalidOption(name: flag, message: "expected one of \(PlacementOptions.Policy.allCases.map(\.rawValue).joined(separator: ", ")), found '\(t)'")
                }
                c.options.policy = p
            case "--explain": c.explain = true
            case "-o", "--output": c.outputPath = try value(flag, inline)
            case "--simulate": c.simulatePath = try value(flag, inline)
            case "-h", "--help": c.help = true
            default: throw .invalidOption(name: flag, message: "unknown option (see moec place --help)")
            }
            i += 1
        }
        if c.help { return c }
        if c.simulatePath == nil {
            if c.loadPath == nil { throw .invalidOption(name: "--load", message: "is required (the load statistics file)") }
            if !c.workersGiven { throw .invalidOption(name: "--workers", message: "is required (the number of workers)") }
        }
        return c
    }

    /// `80G`, `512Mi`, `1000`.
    static func parseBytes(_ flag: String, _ text: String) throws(PlacementError) -> Int {
        let units: [(String, Double)] = [
            ("Ki", 1024), ("Mi", 1048576), ("Gi", 1073741824), ("Ti", 1099511627776),
            ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("", 1)
        ]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = String(text.dropLast(suffix.count))
            if let x = Double(number), x.isFinite, x > 0, x * scale < 9e18 { return Int((x * scale).rounded()) }
            break
        }
        throw .invalidOption(name: flag, message: "expected a positive byte count such as 1000, 80G or 512Mi, found '\(text)'")
    }

    /// Reads the input files, plans (or simulates), writes `-o` if given, and returns what to print:
    /// the explanation with `--explain`, else the placement JSON when there is no `-o`, else a
    /// one-line summary.
    public func run() throws(PlacementError) -> String {
        if help { return Self.usage }
        let stats = try loadPath.map { path throws(PlacementError) in try LoadStatistics.read(from: path) }
        if let cluster = simulatePath {
            let report = try ClusterSimulator.simulate(ClusterSpec.read(from: cluster), loads: stats)
            if let out = outputPath { try write(report.json.pretty + "\n", to: out) }
            return report.table
        }
        var options = self.options
        if let p = previousPath { options.previous = try ExpertPlacement.read(from: p) }
        let plan = try PlacementPlanner.plan(stats!, options)
        if let out = outputPath { try write(plan.json.pretty + "\n", to: out) }
        if explain { return plan.explanation() }
        if outputPath == nil { return plan.json.pretty + "\n" }
        return plan.summaryLine + "\n"
    }

    private func write(_ text: String, to path: String) throws(PlacementError) {
        do { try AtomicFile.write(text, to: path) } catch { throw .cannotWrite(file: path, reason: error.reason) }
    }
}

extension PlacementPlan {
    /// `3 layers: max/mean 2.10 → 1.01 (EPLB 1.08), wrote placement` style summary.
    public var summaryLine: String {
        let n = Double(max(layers.count, 1))
        var s = "\(layers.count) layer\(layers.count == 1 ? "" : "s"), \(placement.workers) workers × \(placement.slotsPerWorker) slots: "
        s += "mean max/mean \(Self.fixed(layers.reduce(0) { $0 + $1.before.imbalance } / n)) static → "
        s += "\(Self.fixed(layers.reduce(0) { $0 + $1.after.imbalance } / n)) \(policy.rawValue)"
        s += " (EPLB \(Self.fixed(layers.reduce(0) { $0 + $1.eplb.imbalance } / n)))"
        if let m = movedExperts { s += ", \(m) expert weights moved" + (movedBytes.map { " (\(Self.bytes($0)))" } ?? "") }
        return s
    }
}
