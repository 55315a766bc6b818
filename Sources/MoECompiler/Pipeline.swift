import MoEBasics
import MoEIR
import MoEPasses

/// The optimisation pipeline: the one list of passes, in order. Read top to bottom, this is
/// everything that happens between `--emit ir` and `--emit ir-opt`.
public enum Pipeline {
    public static let passes: [any Pass] = [
        ExpertUpcycling(),
        RouterFusion(),
        DeadCodeElimination(),
        ExpertGateUpFusion(),
        TokenPermutation(),
        ExpertWeightPrepacking(),
        CombineFusion(),
        MemoryPlanning(),
    ]

    #if DEBUG
    public static let verifyByDefault = true
    #else
    public static let verifyByDefault = false
    #endif

    /// Runs every pass; with `verifyEachPass`, the verifier checks the graph after each one and
    /// a failure names the pass that broke it.
    /// The passes' names, in order.
    public static var names: [String] { passes.map { type(of: $0).name } }

    public static func run(_ graph: Graph, verifyEachPass: Bool, disabled: Set<String> = []) throws -> Graph {
        var g = graph
        for pass in passes where !disabled.contains(type(of: pass).name) {
            g = try pass.run(g)
            if verifyEachPass {
                let problems = Verifier.verify(g)
                if !problems.isEmpty {
                    throw DiagnosticError(problems.map { d in
                        var d = d
                        d.message = "after pass \(type(of: pass).name): " + d.message
                        return d
                    })
                }
            }
        }
        return g
    }
}
