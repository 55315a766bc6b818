import MoEBasics
import MoEIR
import MoEPasses

/// The optimisation pipeline: the one list of passes, in order. Read top to bottom, this is
/// everything that happens between `--emit ir` and `--emit ir-opt`.
public enum Pipeline {
    public static let passes: [any Pass] = [
        ExpertUpcycling(),
        CommonSubexpressionElimination(),
        RouterFusion(),
        DeadCodeElimination(),
        ExpertGateUpFusion(),
        TokenPermutation(),
        ExpertWeightPrepacking(),
        CombineFusion(),
        RouterScoreExposure(), // optional: only when statistics are asked for
        MemoryPlanning()
    ]

    /// Passes that run only when enabled (`CompileOptions.enabledPasses`): they serve a use of the
    /// graph (statistics), not its speed.
    public static let optionalNames: [String] = [RouterScoreExposure.name]

    #if DEBUG
        public static let verifyByDefault = true
    #else
        public static let verifyByDefault = false
    #endif

    /// The names of the passes that run by default, in order (what `--disable-pass` takes).
    public static var names: [String] { passes.map { type(of: $0).name }.filter { !optionalNames.contains($0) } }

    /// Runs every default pass and the `enabled` optional ones, except the `disabled`, starting
    /// at the pass named `first` (nil: the first pass), then, for `weights` other than f32, the
    /// `FeedForwardWeightFormat` pass; with `verifyEachPass`, the verifier checks the graph after each
    /// one and a failure names the pass that broke it.
    public static func run(
        _ graph: Graph, verifyEachPass: Bool, disabled: Set<String> = [], enabled: Set<String> = [],
        from first: String? = nil, weights: WeightFormat = .f32
    ) throws -> Graph {
        var g = graph
        let start = first.flatMap { f in passes.firstIndex { type(of: $0).name == f } } ?? 0
        let chosen: [any Pass] = passes[start...].filter { pass in
            let name = type(of: pass).name
            return !(disabled.contains(name) || optionalNames.contains(name) && !enabled.contains(name))
        }
        for pass in chosen + (weights == .f32 ? [] : [FeedForwardWeightFormat(weights)]) {
            let name = type(of: pass).name
            g = try pass.run(g)
            if verifyEachPass {
                let problems = Verifier.verify(g)
                if !problems.isEmpty {
                    throw DiagnosticError(
                        problems.map { d in
                            var d = d
                            d.message = "after pass \(name): " + d.message
                            return d
                        })
                }
            }
        }
        return g
    }

    /// A graph that went through the pipeline without `router-score-exposure` (a plan's), with
    /// the passes from `router-score-exposure` on run now: its router scores become outputs and
    /// the memory plan, when it has one, is made again so that they live to the end of the run.
    public static func exposingRouterScores(_ compiled: Graph) throws -> Graph {
        try run(
            compiled, verifyEachPass: verifyByDefault, disabled: compiled.lastReaders == nil ? [MemoryPlanning.name] : [],
            enabled: [RouterScoreExposure.name], from: RouterScoreExposure.name)
    }
}
