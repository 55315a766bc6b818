import MoEIR

/// Router-score exposure: makes the scores each MoE block's router saw graph outputs, so that a
/// run returns them and load statistics (`moec run --stats`, `moec profile`) can turn them into
/// router probabilities. Off unless statistics are asked for (`Pipeline.optionalPasses`).
///
/// 1. Find each MoE layer's router probe (`RouterProbe.find`): per hop, the `[tokens, E]` scores
///    its selection op read, when the router has usable scores.
/// 2. Append each of those values as an output named `RouterProbe.outputName(layer:hop:)`, layer
///    by layer and hop by hop; a layer without scores (hash or `within` routing) adds none, and
///    an output already there (the graph went through this pass before) is not added again.
/// 3. When outputs were added, drop the graph's memory plan, if any (a plan's graph has one): it
///    would free the scores before the end of the run. `memory-planning` makes it again.
///
/// Runs before `memory-planning`, which then keeps the scores alive to the end of the run like any
/// output (else the arena would reuse their bytes before they are copied out). No node changes, so
/// the probes found on the result are the ones found here.
public struct RouterScoreExposure: Pass {
    public static let name = "router-score-exposure"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        let before = g.outputs.count
        for (l, probe) in RouterProbe.find(in: graph).enumerated() {
            for (h, hop) in probe.hops.enumerated() {
                let name = RouterProbe.outputName(layer: l, hop: h)
                if let scores = hop.scores, !g.outputs.contains(where: { $0.name == name }) { g.outputs.append((name, scores)) }
            }
        }
        if g.outputs.count != before { g.lastReaders = nil }
        return g
    }
}
