import MoEBackend
import MoEBasics
import MoEIR
import MoEPlacement

/// A placement file read for a graph: layer `l` of the placement places the experts of the
/// graph's `l`-th MoE layer (`Graph.moeLayers`: one per moe block of the source, in source
/// order), the same order as the layers of `"expert_load"` in a statistics file
/// (`RoutingStatistics`). Every hop of a multi-hop block runs by its layer's placement: the
/// hops share the expert weights, so they are the same experts.
///
/// `run`/`bench --placement FILE.json` read it with `PlacementBinding.read(_:)` before the graph
/// is loaded; `ModelRunner` checks it against the graph (`mismatch`), then hands it to the
/// executor. `read(_:for:)` does both at once.
public enum PlacementBinding {
    /// Reads `path` and checks that it fits `graph`: one layer per MoE block, each with the
    /// block's number of experts. Errors name the file and say what differs.
    public static func read(_ path: String, for graph: Graph) throws -> ExpertPlacement {
        let placement = try read(path)
        if let problem = mismatch(placement, graph) { throw DiagnosticError(.error("\(path): \(problem)")) }
        return placement
    }

    /// Reads `path` before the graph is known (`--placement FILE.json`: the runner checks the
    /// placement against the graph with `mismatch` when it loads). Errors name the file.
    public static func read(_ path: String) throws -> ExpertPlacement {
        try PathCheck.readable(path, what: "a placement file")
        do { return try ExpertPlacement.read(from: path) } catch { throw DiagnosticError(.error("\(error)")) }
    }

    /// Why `placement` does not fit `graph`, or nil when it does.
    public static func mismatch(_ placement: ExpertPlacement, _ graph: Graph) -> String? {
        let blocks = graph.moeLayers
        if placement.layers.count != blocks.count {
            return
                "the placement has \(placement.layers.count) layer\(placement.layers.count == 1 ? "" : "s") but graph '\(graph.name)' has \(blocks.count) moe block\(blocks.count == 1 ? "" : "s")"
        }
        for b in blocks where b.experts != placement.experts {
            return "the placement places \(placement.experts) experts per layer but moe block '\(b.name)' has \(b.experts)"
        }
        return nil
    }
}

extension ExecutionOptions {
    /// Runs the experts by `placement`: one thread per worker, on moec's own kernels (the
    /// placed run is theirs; `ModelRunner` checks every block can use them).
    public mutating func runExperts(by placement: PlacementExecution) {
        self.placement = placement
        threads = placement.workers
        backend = .native
    }
}
