import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// Load statistics on every graph in graphs/ (and graphs/mechanisms/), random weights: the
/// executor's expert loads are the reference interpreter's routing choices counted, and the
/// router scores read back after a run are the reference interpreter's.
@Suite struct RoutingStatisticsBackendTests {
    static var graphs: [String] {
        let mechanisms = ((try? FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs + "/mechanisms")) ?? [])
            .filter { $0.hasSuffix(".moe") }.sorted().map { "mechanisms/" + $0 }
        return SmallParams.graphFiles + mechanisms
    }

    static func model(_ file: String) throws -> RandomModel {
        if file.hasPrefix("mechanisms/") {
            return try RandomCheckpoint.make(graphPath: RepoPaths.graphs + "/" + file, overrides: [], seed: 7)
        }
        return try RandomCheckpoint.make(graphFile: file, seed: 7)
    }

    @Test(arguments: graphs)
    func loadsAndScoresMatchTheReference(_ file: String) throws {
        let m = try Self.model(file)
        let probes = RouterProbe.find(in: m.graph)
        let moeNodes = m.graph.ids.filter { m.graph[$0].op == .moe_experts }
        // One probe per block; every moe_experts node is one hop of one of them, in graph order.
        #expect(probes.flatMap(\.hops).map(\.block).sorted() == moeNodes, "\(file)")
        #expect(probes.flatMap(\.hops).map(\.loadIndex).sorted() == Array(moeNodes.indices), "\(file)")
        let exposed = try Pipeline.exposingRouterScores(m.graph)
        let executable = Executable(graph: exposed, weights: m.buffers, options: ExecutionOptions(threads: 2))
        let reference = ReferenceInterpreter(graph: exposed, weights: m.host)
        // 64 tokens: Switch's capacity of 5 drops tokens.
        let tokens = 64
        let inputs = m.inputs(tokens: tokens, seed: 3)
        let out = try executable.run(inputs)
        let (refOut, routings) = try reference.runAll(inputs)
        var stats = RoutingStatistics(graph: m.graph, probes: probes)
        stats.add(tokens: tokens, loads: executable.schedule(tokens: tokens).lastExpertLoads(), outputs: out)
        var fromReference = RoutingStatistics(graph: m.graph, probes: probes)
        fromReference.add(tokens: tokens, loads: moeNodes.map { _ in [] }, outputs: refOut)

        for (i, p) in probes.enumerated() {
            #expect(stats.layers[i].hopLoad.count == p.hops.count, "\(file) block \(p.name)")
            var summed = [Int](repeating: 0, count: p.experts)
            for (h, hop) in p.hops.enumerated() {
                let block = m.graph[hop.block]
                let routing = try #require(routings[block.operands[1].index])
                var counted = [Int](repeating: 0, count: p.experts)
                for e in routing.expert where e >= 0 { counted[e] += 1 }
                let load = stats.layers[i].hopLoad[h]
                if block.attributes.bool("with_active") == true {
                    // Halted tokens skip the experts: never more than routed.
                    #expect(zip(load, counted).allSatisfy { $0 <= $1 }, "\(file) block \(p.name) hop \(h)")
                } else {
                    #expect(load == counted, "\(file) block \(p.name) hop \(h)")
                }
                for e in summed.indices { summed[e] += load[e] }
            }
            #expect(stats.layers[i].load == summed, "\(file) block \(p.name)")
            guard p.distribution != nil else {
                #expect(stats.layers[i].entropy == nil && p.hops.allSatisfy { $0.scores == nil })
                continue
            }
            let (a, b) = (stats.layers[i], fromReference.layers[i])
            // Every hop scores every token, halted or not.
            #expect(a.measuredTokens == tokens * p.hops.count && b.measuredTokens == tokens * p.hops.count, "\(file) block \(p.name)")
            #expect(
                abs(a.entropy! - b.entropy!) < 1e-4 && abs(a.margin! - b.margin!) < 1e-4,
                "\(file) block \(p.name): entropy \(a.entropy!) vs \(b.entropy!), margin \(a.margin!) vs \(b.margin!)")
            #expect(a.normalizedEntropy! >= 0 && a.normalizedEntropy! <= 1 + 1e-9 && a.margin! >= 0 && a.margin! <= 1)
        }
    }

    /// How each router's scores become probabilities.
    @Test func probesFindTheRouterScores() throws {
        func probe(_ file: String) throws -> (RouterProbe, String?) {
            let m = try Self.model(file)
            let p = try #require(RouterProbe.find(in: m.graph).first)
            return (p, p.scoresFrom(m.graph))
        }
        // Routers are fused (see `RouterFusion`): the probe reads the logits and applies the score function.
        let mixtral = try probe("mixtral.moe")
        #expect(mixtral.0.distribution == .softmaxOfScores && mixtral.1 == "softmax" && mixtral.0.slots == 2)
        // DeepSeek: sigmoid gates, normalised to sum 1; the selection bias is not part of them.
        let deepseek = try probe("deepseek_v3.moe")
        #expect(deepseek.0.distribution == .sigmoidOverSum && deepseek.1 == "sigmoid")
        // top-k on raw logits, softmax after: the probabilities are softmax(logits).
        let topkSoftmax = try probe("mechanisms/topk_softmax.moe")
        #expect(topkSoftmax.0.distribution == .softmaxOfScores && topkSoftmax.1 == "linear")
        let hash = try probe("mechanisms/hash_router.moe")
        #expect(hash.0.hops[0].scores == nil && hash.0.unavailable == "hash routing has no router scores")
        let hierarchical = try probe("mechanisms/hierarchical.moe")
        #expect(hierarchical.0.hops[0].scores == nil && hierarchical.0.unavailable?.contains("within") == true)
    }
}
