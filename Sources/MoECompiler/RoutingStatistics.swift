import Foundation
import MoEBackend
import MoEBasics
import MoEIR

/// Expert loads and router statistics of every MoE block, summed over runs: what
/// `moec run --stats` and `moec profile` write, and what `moec place --load` reads.
///
/// A layer is one moe block of the source (`MoELayer`), in source order. A multi-hop block is
/// one layer however many hops it runs: its hops are `moe_experts` nodes that share the expert
/// weights, so they are the same experts and a placement places them once.
///
/// Per layer, over all tokens of all runs:
/// - `load[e]`: (token, slot) pairs expert `e` computed, as the executor counted them (after
///   capacity drops and halting), summed over the hops; `imbalance = max(load) / mean(load)`.
///   A multi-hop layer also has `hop_load[h][e]`, the same per hop (`load` is their sum). With
///   halting, a hop counts only the tokens still active at that hop.
/// - `entropy`: the mean over tokens of `−Σ_e p_e ln p_e` (nats), where `p` is the token's
///   router probability distribution (see `RouterProbe` for how scores become one);
///   `entropy_normalized` divides it by `ln E` (1 = uniform, 0 = one expert certain).
/// - `top1_top2_margin`: the mean over tokens of `p_(1) − p_(2)`, the two largest probabilities.
/// - `tokens_without_expert`: tokens the router sent to no expert (threshold, stat_topk,
///   expert choice, capacity drops of every slot, …), summed over hops (a halted token is not
///   counted); their block output is 0. `non_finite_tokens`: tokens whose input or router
///   scores were not finite; their block output is NaN and they took nothing from the others.
/// - `aux_loss`: Switch Transformers' balance loss `E · Σ_e f_e · P_e`, with `f_e` the fraction of
///   assignments expert `e` got and `P_e` its mean probability (1 when both are uniform).
///
/// In a multi-hop layer the router statistics cover every hop's scoring of every token (the
/// router scores halted tokens too): the means are over (token, hop) pairs, and
/// `measured_tokens` counts those pairs, up to hops × `tokens`. `tokens` counts each token once.
///
/// The JSON document:
/// ```
/// { "format": "moec-load-statistics", "version": 1, "graph": "mixtral", "tokens": 16, "batches": 1,
///   "expert_load": [[n_0, …, n_{E−1}], …],     // one array per layer, the key `moec place --load` reads
///   "expert_bytes": 24576,                     // one expert's f32 weights (the largest over layers)
///   "imbalance": [1.5, …], "entropy": [1.83, …], "entropy_normalized": [0.88, …],
///   "top1_top2_margin": [0.12, …], "aux_loss": [1.03, …],   // one number per layer (null: not measured)
///   "layers": [{ "name": "y", "experts": 8, "slots": 2, "tokens": 16, "assignments": 32,
///                "measured_tokens": 16, "tokens_without_expert": 0, "non_finite_tokens": 0,
///                "probabilities": "scores / sum", "scores_from": "softmax",
///                "hottest": [3, 5, 1], "mean_probability": [p_0, …],
///                "hop_load": [[…], […], […]] }, …] }   // hop_load: multi-hop blocks only
/// ```
public struct RoutingStatistics: Sendable {
    public struct Layer: Sendable {
        public var probe: RouterProbe
        /// The op that made the router scores (`softmax`, `sigmoid`, `linear`, …), for reports.
        public var scoresFrom: String?
        /// The block's fixed experts (zero, copy, constant: `ExpertsNode.fixedExperts`), by index:
        /// counted in the loads, but without weights to place.
        public var fixedExperts: [Int] = []
        /// Tokens that went through the block (each once, however many hops it ran).
        public var tokens = 0
        /// Per hop, (token, slot) pairs each expert computed at that hop.
        public var hopLoad: [[Int]]
        /// Tokens routed to no expert (summed over hops), and tokens with non-finite input or
        /// router scores (NaN output rows).
        public var tokensWithoutExpert = 0, nonFiniteTokens = 0
        /// Tokens whose router probabilities were measured, once per hop that scored them (all
        /// of them, unless the block has no scores or a token's scores were not a distribution:
        /// NaN, or all zero).
        public var measuredTokens = 0
        var entropySum = 0.0
        var marginSum = 0.0
        var probabilitySum: [Double]

        init(probe: RouterProbe, scoresFrom: String?) {
            self.probe = probe
            self.scoresFrom = scoresFrom
            hopLoad = Array(repeating: Array(repeating: 0, count: probe.experts), count: probe.hops.count)
            probabilitySum = Array(repeating: 0, count: probe.experts)
        }

        public var experts: Int { probe.experts }
        /// (token, slot) pairs each expert computed, over all hops.
        public var load: [Int] {
            hopLoad.dropFirst().reduce(hopLoad[0]) { sum, hop in zip(sum, hop).map { $0 + $1 } }
        }
        public var assignments: Int { load.reduce(0, +) }
        /// max / mean of the loads; nil when no expert computed anything.
        public var imbalance: Double? {
            let total = assignments
            guard total > 0 else { return nil }
            return Double(load.max()!) * Double(experts) / Double(total)
        }
        public var entropy: Double? { measuredTokens > 0 ? entropySum / Double(measuredTokens) : nil }
        /// Entropy / ln E; nil with fewer than two experts.
        public var normalizedEntropy: Double? { experts >= 2 ? entropy.map { $0 / log(Double(experts)) } : nil }
        public var margin: Double? { measuredTokens > 0 ? marginSum / Double(measuredTokens) : nil }
        /// Mean router probability of each expert.
        public var meanProbability: [Double]? {
            measuredTokens > 0 ? probabilitySum.map { $0 / Double(measuredTokens) } : nil
        }
        public var auxLoss: Double? {
            guard let p = meanProbability, assignments > 0 else { return nil }
            let total = Double(assignments)
            return Double(experts) * zip(load, p).reduce(0) { $0 + Double($1.0) / total * $1.1 }
        }
        /// Experts by load, heaviest first (ties: lower index first).
        public func hottest(_ n: Int) -> [Int] {
            Array(load.indices.sorted { (load[$0], -$0) > (load[$1], -$1) }.prefix(n))
        }
    }

    public var graph: String
    public var layers: [Layer]
    /// Tokens run, over all runs.
    public var tokens = 0
    public var runs = 0
    /// Where the tokens came from ("x.npy", "seeded random normals"), when the caller says.
    public var source: String?

    public init(graph g: Graph, probes: [RouterProbe]) {
        graph = g.name
        layers = probes.map { probe in
            var layer = Layer(probe: probe, scoresFrom: probe.scoresFrom(g))
            if let view = probe.hops.first.flatMap({ g[$0.block].expertsView }), !view.fixedExperts.isEmpty {
                layer.fixedExperts = Array(view.computedExperts..<(view.computedExperts + view.fixedExperts.count))
            }
            return layer
        }
    }

    /// Adds one run of `tokens` tokens on caller buffers (`ModelRunner.run(tokens:inputs:outputs:recordingInto:)`).
    public mutating func add(tokens: Int, run: Executable.BufferRun) {
        add(tokens: tokens, loads: run.expertLoads, outputs: run.outputs, tokenCounts: run.tokenCounts)
    }

    /// Adds one run of `tokens` tokens: `loads` as `Schedule.lastExpertLoads()` returns them (one
    /// array per `moe_experts` node), and the run's outputs, which hold the scores of each
    /// probe's hops under `RouterProbe.outputName(layer:hop:)`.
    /// `tokenCounts`, when given, as `Schedule.lastTokenCounts()` returns them.
    public mutating func add(tokens: Int, loads: [[Int]], outputs: [String: HostTensor], tokenCounts: [(unrouted: Int, invalid: Int)] = []) {
        precondition(loads.count == layers.reduce(0) { $0 + $1.probe.hops.count }, "one load array per moe_experts node")
        self.tokens += tokens
        runs += 1
        for i in layers.indices {
            layers[i].tokens += tokens
            for (h, hop) in layers[i].probe.hops.enumerated() {
                for (e, n) in loads[hop.loadIndex].enumerated() { layers[i].hopLoad[h][e] += n }
                if hop.loadIndex < tokenCounts.count {
                    layers[i].tokensWithoutExpert += tokenCounts[hop.loadIndex].unrouted
                    // A token invalid at one hop is invalid at every later one: count it once.
                    if h == 0 { layers[i].nonFiniteTokens += tokenCounts[hop.loadIndex].invalid }
                }
                if let scores = outputs[RouterProbe.outputName(layer: i, hop: h)], let d = layers[i].probe.distribution {
                    layers[i].measure(scores.floats, tokens: tokens, distribution: d)
                }
            }
        }
    }

    /// The document `moec run --stats` and `moec profile -o` write.
    public var json: JSON {
        func number(_ x: Double?) -> JSON { x.map { JSON(($0 * 1e6).rounded() / 1e6) } ?? .null }
        var o = JSONObject()
        o["format"] = .string("moec-load-statistics")
        o["version"] = JSON(1)
        o["graph"] = .string(graph)
        if let source { o["source"] = .string(source) }
        o["tokens"] = JSON(tokens)
        o["batches"] = JSON(runs)
        o["expert_load"] = .array(layers.map { .array($0.load.map(JSON.init)) })
        if let bytes = layers.map(\.probe.expertBytes).max(), bytes > 0 { o["expert_bytes"] = JSON(bytes) }
        if layers.contains(where: { !$0.fixedExperts.isEmpty }) {
            o["fixed_experts"] = .array(layers.map { .array($0.fixedExperts.map(JSON.init)) })
        }
        o["imbalance"] = .array(layers.map { number($0.imbalance) })
        o["entropy"] = .array(layers.map { number($0.entropy) })
        o["entropy_normalized"] = .array(layers.map { number($0.normalizedEntropy) })
        o["top1_top2_margin"] = .array(layers.map { number($0.margin) })
        o["aux_loss"] = .array(layers.map { number($0.auxLoss) })
        o["layers"] = .array(
            layers.map { l in
                var d = JSONObject()
                d["name"] = .string(l.probe.name)
                d["experts"] = JSON(l.experts)
                d["slots"] = JSON(l.probe.slots)
                d["tokens"] = JSON(l.tokens)
                d["assignments"] = JSON(l.assignments)
                d["measured_tokens"] = JSON(l.measuredTokens)
                d["tokens_without_expert"] = JSON(l.tokensWithoutExpert)
                d["non_finite_tokens"] = JSON(l.nonFiniteTokens)
                if let p = l.probe.distribution { d["probabilities"] = .string(p.rawValue) }
                if let s = l.scoresFrom { d["scores_from"] = .string(s) }
                if let why = l.probe.unavailable { d["note"] = .string(why) }
                d["hottest"] = .array(l.hottest(min(3, l.experts)).map(JSON.init))
                if let p = l.meanProbability { d["mean_probability"] = .array(p.map { number($0) }) }
                if l.hopLoad.count > 1 { d["hop_load"] = .array(l.hopLoad.map { .array($0.map(JSON.init)) }) }
                return .object(d)
            })
        return .object(o)
    }

    /// A table for people: one row per layer.
    public func table() -> String {
        func fixed(_ x: Double?, _ digits: Int) -> String { x.map { String(format: "%.\(digits)f", $0) } ?? "–" }
        func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
            // Exactly n wide when it fits (no extra space: the format strings space the columns).
            right ? TextLayout.rightColumn(s, n) : s.count >= n ? s : TextLayout.column(s, n)
        }
        let names = layers.map(\.probe.name)
        let nameWidth = max(5, names.map(\.count).max() ?? 0)
        var s = pad("layer", nameWidth) + "  experts  k    tokens  max/mean  entropy (/ln E)  top1−top2  hottest experts (share of load)\n"
        for l in layers {
            var row = pad(l.probe.name, nameWidth)
            row += pad(String(l.experts), 9, right: true) + pad(String(l.probe.slots), 3, right: true)
            row += pad(String(l.tokens), 10, right: true) + pad(fixed(l.imbalance, 2), 10, right: true)
            row += pad(fixed(l.entropy, 3), 9, right: true) + " " + pad(l.normalizedEntropy.map { "(\(fixed($0, 2)))" } ?? "", 7)
            row += pad(fixed(l.margin, 3), 11, right: true) + "  "
            let total = Double(max(l.assignments, 1))
            row += l.hottest(min(3, l.experts)).map { String(format: "e%d %.1f%%", $0, Double(l.load[$0]) / total * 100) }
                .joined(separator: ", ")
            s += row + "\n"
        }
        for l in layers where l.hopLoad.count > 1 {
            s +=
                "\(l.probe.name): \(l.hopLoad.count) hops sharing the experts; (token, slot) pairs per hop "
                + l.hopLoad.map { String($0.reduce(0, +)) }.joined(separator: ", ") + "\n"
        }
        for l in layers where l.tokensWithoutExpert > 0 || l.nonFiniteTokens > 0 {
            s += "\(l.probe.name): \(l.tokensWithoutExpert) token\(l.tokensWithoutExpert == 1 ? "" : "s") with no expert (output 0)"
            s += ", \(l.nonFiniteTokens) with non-finite input or router scores (output NaN)\n"
        }
        for l in layers { if let why = l.probe.unavailable { s += "\(l.probe.name): \(why); only expert loads were measured\n" } }
        return s
    }
}

extension RoutingStatistics.Layer {
    /// Adds the probability statistics of `tokens` rows of `E` scores.
    mutating func measure(_ scores: [Float], tokens: Int, distribution: RouterProbe.Distribution) {
        let e = experts
        precondition(scores.count == tokens * e, "scores are [tokens, experts]")
        var p = [Double](repeating: 0, count: e)
        for t in 0..<tokens {
            let row = scores[(t * e)..<((t + 1) * e)]
            guard Self.probabilities(row, distribution, into: &p) else { continue }
            var entropy = 0.0, first = 0.0, second = 0.0
            for (i, q) in p.enumerated() {
                if q > 0 { entropy -= q * log(q) }
                if q > first { second = first; first = q } else if q > second { second = q }
                probabilitySum[i] += q
            }
            entropySum += entropy
            marginSum += first - second
            measuredTokens += 1
        }
    }

    /// One token's distribution; false when the scores do not make one (NaN, or nothing positive).
    static func probabilities(_ row: ArraySlice<Float>, _ distribution: RouterProbe.Distribution, into p: inout [Double]) -> Bool {
        var sum = 0.0
        switch distribution {
        case .scoresOverSum:
            for (i, s) in zip(p.indices, row) {
                guard !s.isNaN else { return false }
                p[i] = max(Double(s), 0)
                sum += p[i]
            }
        case .sigmoidOverSum:
            for (i, s) in zip(p.indices, row) {
                guard !s.isNaN else { return false }
                p[i] = 1 / (1 + exp(-Double(s)))
                sum += p[i]
            }
        case .softmaxOfScores:
            guard let m = row.max(), m.isFinite, !row.contains(where: \.isNaN) else { return false }
            for (i, s) in zip(p.indices, row) {
                p[i] = exp(Double(s) - Double(m))
                sum += p[i]
            }
        }
        guard sum > 0, sum.isFinite else { return false }
        for i in p.indices { p[i] /= sum }
        return true
    }
}
