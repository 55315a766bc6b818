import Foundation
import MoEBackend
import MoEBasics
import MoEIO
import MoEIR
import MoEPasses

extension CompilerSession {
    /// The checkpoint of `--model`, opened once and checked shard by shard.
    public func checkpoint() throws -> Checkpoint {
        if let c = cachedCheckpoint { return c }
        guard let dir = options.modelDirectory else {
            throw DiagnosticError(.error("this needs weights: pass --model DIR (a folder with config.json and model.safetensors) or --model FILE.gguf"))
        }
        do {
            let c = try Checkpoint(path: dir)
            try c.validate()
            cachedCheckpoint = c
            return c
        } catch {
            throw DiagnosticError(.error("\(error)"))
        }
    }

    /// The optimised graph with its weights checked against the checkpoint: every tensor
    /// present with the declared shape. Errors point at the weight declarations.
    public func boundGraph() throws -> Graph { try boundGraph(enabling: []) }

    func boundGraph(enabling extra: Set<String>) throws -> Graph {
        let g = try optimize(enabling: extra)
        let problems = WeightBinding.check(g, try checkpoint())
        if !problems.isEmpty { throw DiagnosticError(problems) }
        return g
    }

    /// A plan for `moec run`: the bound graph and fingerprints of its weight files.
    public func makePlan() throws -> Plan { try makePlan(enabling: []) }

    /// The plan with the optional passes `extra` enabled as well.
    func makePlan(enabling extra: Set<String>) throws -> Plan {
        let g = try boundGraph(enabling: extra)
        let ckpt = try checkpoint()
        let prints: [WeightFileFingerprint]
        do { prints = try ckpt.fingerprints() } catch { throw DiagnosticError(.error("\(error)")) }
        let absolute = { (p: String) in URL(fileURLWithPath: p).standardizedFileURL.path }
        var notes = JSONObject()
        notes["moec"] = .string(MoECompilerVersion.string)
        notes["compiled"] = .string(ISO8601DateFormatter().string(from: Date()))
        return Plan(
            graph: g, modelPath: absolute(ckpt.path), fingerprints: prints,
            sourcePath: absolute(options.graphPath), notes: notes)
    }

    /// Where `writePlan(to: path)` writes: `path`, or `NAME.plan.json` in the current folder.
    public func planPath(_ path: String?) -> String {
        let base = ((options.graphPath as NSString).lastPathComponent as NSString).deletingPathExtension
        return path ?? "\(base).plan.json"
    }

    /// Writes the plan to `planPath(path)`. Returns that path.
    public func writePlan(to path: String?) throws -> String {
        let plan = try makePlan()
        let out = planPath(path)
        do { try plan.write(to: out) } catch { throw DiagnosticError(.error("\(error)")) }
        return out
    }
}

/// A loaded model ready to run: a plan with its weights in memory and an executable.
public final class ModelRunner: @unchecked Sendable {
    /// The plan that runs: with `recordRouting`, its graph has the router scores as outputs too.
    public let plan: Plan
    /// The graph as its source declares it: the plan's, without the router-score outputs.
    public let graph: Graph
    public let executable: Executable
    /// Seconds spent loading (and packing) weights.
    public let loadSeconds: Double
    /// One probe per MoE layer (moe block of the source), in source order.
    public let routerProbes: [RouterProbe]
    /// Whether runs also return each block's router scores (loaded with `recordRouting`), as
    /// `run(_:recordingInto:)` needs.
    public let recordsRouting: Bool

    /// `plan`'s graph must have been through `router-score-exposure` when `recordRouting` is set.
    init(plan: Plan, checkpoint: Checkpoint, options: ExecutionOptions, progress: ((Int, Int) -> Void)?, recordRouting: Bool) throws {
        let t0 = Date()
        switch options.placement?.layout {
        case .placement(let p)?:
            if let problem = PlacementBinding.mismatch(p, plan.graph) { throw DiagnosticError(.error("--placement: \(problem)")) }
        case .staticSplit(let workers)?:
            for b in plan.graph.moeLayers where b.experts % workers != 0 {
                throw DiagnosticError(.error("--placement static: moe block '\(b.name)' has \(b.experts) experts, which \(workers) workers cannot share equally"))
            }
        case nil: break
        }
        if options.placement != nil,
            let n = plan.graph.nodes.first(where: { $0.op == .moe_experts && !Executable.runsPackedKernel($0, plan.graph) })
        {
            throw DiagnosticError(
                .error(
                    "--placement runs the experts on moec's packed experts kernel, which moe block '\(n.name ?? "moe")' does not use (it needs the token-permutation and expert-weight-prepacking passes, and expert matrices that are weights)"
                ))
        }
        if options.placement != nil && !options.backend.isNative {
            throw DiagnosticError(
                .error("--placement runs the experts on moec's own kernels; it cannot be combined with MOEC_BLAS=\(ProcessInfo.processInfo.environment["MOEC_BLAS"] ?? "")"))
        }
        // Under mpirun a rank reads only its experts' weights (and every other weight).
        // GGUF-typed expert matrices, and GPTQ/AWQ linears in int4 formats of their group, are
        // read as stored and repacked exactly.
        let int4Rows = WeightBinding.int4Rows(plan.graph, checkpoint)
        let stored = Executable.weightsReadAsStored(plan.graph, options: options, int4Rows: int4Rows)
        // Narrow formats from wider files are read expert by expert while packed (peak memory
        // near the packed bytes, not the f32 ones).
        // (Int4 rows read as stored are read that way too.)
        let deferred = Executable.weightsReadByExpert(plan.graph, options: options) { WeightBinding.readsBySlice($0, checkpoint) }
        let buffers = try WeightBinding.load(
            plan.graph, checkpoint, slices: Executable.expertSlicesToLoad(plan.graph, options: options), stored: stored, deferred: deferred,
            progress: progress)
        var readError: Error?
        let planGraph = plan.graph
        let fill: (Int, Range<Int>) -> Void = { index, slices in
            guard readError == nil, deferred.contains(index) else { return }
            do {
                try WeightBinding.loadSlices(planGraph.weights[index], checkpoint, slices, into: buffers[index], asStored: stored.contains(index))
            } catch {
                readError = error
            }
        }
        self.plan = plan
        var declared = plan.graph
        declared.outputs.removeAll { RouterProbe.isScoresOutput($0.name) }
        graph = declared
        routerProbes = RouterProbe.find(in: plan.graph)
        recordsRouting = recordRouting
        executable = Executable(graph: plan.graph, weights: buffers, options: options, consumeWeights: true, stored: stored, exact: int4Rows, fill: fill)
        if let readError { throw readError }
        loadSeconds = Date().timeIntervalSince(t0)
    }

    /// Loads a plan file, checks its weight files are unchanged, and loads the weights.
    /// `recordRouting` makes runs return what `run(_:recordingInto:)` needs.
    public static func load(
        planPath: String, options: ExecutionOptions, progress: ((Int, Int) -> Void)? = nil,
        recordRouting: Bool = false
    ) throws -> ModelRunner {
        var plan: Plan
        let ckpt: Checkpoint
        do {
            plan = try Plan.read(planPath)
            ckpt = try plan.openCheckpoint()
        } catch {
            throw DiagnosticError(.error("\(error)"))
        }
        if recordRouting { plan.graph = try Pipeline.exposingRouterScores(plan.graph) }
        return try ModelRunner(plan: plan, checkpoint: ckpt, options: options, progress: progress, recordRouting: recordRouting)
    }

    /// Compiles a graph in memory and loads its weights.
    public static func compile(
        _ session: CompilerSession, options: ExecutionOptions, progress: ((Int, Int) -> Void)? = nil,
        recordRouting: Bool = false
    ) throws -> ModelRunner {
        let plan = try session.makePlan(enabling: recordRouting ? [RouterScoreExposure.name] : [])
        return try ModelRunner(
            plan: plan, checkpoint: try session.checkpoint(), options: options, progress: progress,
            recordRouting: recordRouting)
    }

    /// Runs the graph; returns the graph's outputs.
    /// The weights' storage formats for a report: "all f32", or "expert matrices bf16, other
    /// weights f32", "expert matrices int8, shared/dense matrices int8, other weights f32" and
    /// the like.
    public var weightFormatSummary: String {
        let formats = Set(graph.weights.map(\.format))
        guard formats.count > 1 else { return formats.first.map { "all \($0.rawValue)" } ?? "none" }
        let experts = Set(FeedForwardWeightFormat.expertMatrixWeights(graph))
        let dense = Set(FeedForwardWeightFormat.denseFeedForwardWeights(graph))
        let others = graph.weights.indices.filter { !experts.contains($0) && !dense.contains($0) }
        let list = { (s: Set<Int>) in Set(s.map { self.graph.weights[$0].format.rawValue }).sorted().joined(separator: "/") }
        return [("expert matrices", experts), ("shared/dense matrices", dense), ("other weights", Set(others))]
            .filter { !$0.1.isEmpty }.map { "\($0.0) \(list($0.1))" }.joined(separator: ", ")
    }

    public func run(_ inputs: [String: HostTensor]) throws -> [String: HostTensor] {
        try runWithProbes(inputs).filter { name, _ in graph.outputs.contains { $0.name == name } }
    }

    /// A sequence of at most `capacity` tokens for `run(_:sequence:)`: runs that continue one
    /// another, each attention keeping the keys and values of the tokens so far (see
    /// `SequenceState`).
    public func makeSequence(capacity: Int) throws -> SequenceState {
        do { return try executable.makeSequence(capacity: capacity) } catch { throw DiagnosticError(.error(error.message)) }
    }

    /// Runs the graph on `inputs` as the next tokens of `sequence` (from `makeSequence`);
    /// returns the graph's outputs.
    public func run(_ inputs: [String: HostTensor], sequence: SequenceState) throws -> [String: HostTensor] {
        let all: [String: HostTensor]
        do { all = try executable.run(inputs, sequence: sequence) } catch let e as InputError {
            throw DiagnosticError(.error(e.message))
        } catch let e as Schedule.ArenaTooLarge {
            throw DiagnosticError(.error("\(e)"))
        }
        return all.filter { name, _ in graph.outputs.contains { $0.name == name } }
    }

    /// Runs the graph and adds the run's expert loads and router statistics to `statistics`
    /// (made with this runner's `routerProbes`, so load with `recordRouting: true`). Returns the
    /// graph's outputs.
    public func run(_ inputs: [String: HostTensor], recordingInto statistics: inout RoutingStatistics) throws -> [String: HostTensor] {
        precondition(recordsRouting, "load the runner with recordRouting: true")
        precondition(statistics.layers.map(\.probe) == routerProbes, "statistics made for another runner's probes")
        let all = try runWithProbes(inputs)
        let tokens = try graph.tokenCount(for: inputs)
        statistics.add(
            tokens: tokens, loads: lastExpertLoads(tokens: tokens), outputs: all,
            tokenCounts: executable.lastTokenCounts(tokens: tokens))
        return all.filter { name, _ in graph.outputs.contains { $0.name == name } }
    }

    /// Runs the graph on buffers a caller owns: `inputs` for `graph`'s inputs and `outputs` for
    /// its outputs, in order, sized for `tokens` tokens (check the inputs' shapes with
    /// `graph.tokenCount(shapes:)`, and a new token count's buffers with `MemoryCheck.arena`,
    /// first). With `statistics` (a runner loaded with
    /// `recordRouting`), adds the run's expert loads and router statistics to it. Safe to call
    /// concurrently (`statistics`, when shared, is the caller's to guard).
    public func run(
        tokens: Int, inputs: [UnsafeRawPointer], outputs: [UnsafeMutableRawPointer], sequence: SequenceState? = nil,
        recordingInto statistics: ((Executable.BufferRun) -> Void)? = nil
    ) throws {
        precondition(statistics == nil || recordsRouting, "load the runner with recordRouting: true")
        let buffers = plan.graph.outputs.map { o in graph.outputs.firstIndex { $0.name == o.name }.map { outputs[$0] } }
        let result: Executable.BufferRun
        do { result = try executable.run(tokens: tokens, inputs: inputs, outputs: buffers, sequence: sequence) } catch let e as Schedule.ArenaTooLarge {
            throw DiagnosticError(.error("\(e)"))
        } catch let e as InputError {
            throw DiagnosticError(.error(e.message))
        }
        statistics?(result)
    }

    /// Empty statistics for this runner's MoE blocks.
    public func emptyRoutingStatistics() -> RoutingStatistics {
        RoutingStatistics(graph: graph, probes: routerProbes)
    }

    private func runWithProbes(_ inputs: [String: HostTensor]) throws -> [String: HostTensor] {
        do { return try executable.run(inputs) } catch let e as InputError {
            throw DiagnosticError(.error(e.message))
        } catch let e as Schedule.ArenaTooLarge {
            throw DiagnosticError(.error("\(e)"))
        }
    }
}

/// For graphs with multi-hop blocks that halt: how much expert work each hop did and the
/// fraction of expert FLOPs halting saved against running every token through every hop.
public struct HaltingReport: Sendable {
    /// (token, expert) pairs computed at each hop, summed over the halting blocks.
    public var pairsPerHop: [Int]
    public var savedFraction: Double

    /// Nil when the graph has no halting blocks. `expertLoads`: per `moe_experts` node, as
    /// `Schedule.lastExpertLoads()` returns them.
    public init?(graph g: MoEIR.Graph, expertLoads: [[Int]]) {
        let halting = g.moeLayers.filter { l in l.hops > 1 && l.nodes.contains { g[$0].expertsView?.active != nil } }
        guard let hops = halting.map(\.hops).max() else { return nil }
        var pairs = [Int](repeating: 0, count: hops)
        var everyHop = 0 // pairs had no token halted: each hop as many as the first
        for l in halting {
            let perHop = l.nodePositions.map { $0 < expertLoads.count ? expertLoads[$0].reduce(0, +) : 0 }
            for (h, n) in perHop.enumerated() { pairs[h] += n }
            everyHop += perHop[0] * l.hops
        }
        guard everyHop > 0 else { return nil }
        pairsPerHop = pairs
        savedFraction = 1 - Double(pairs.reduce(0, +)) / Double(everyHop)
    }
}

extension ModelRunner {
    /// Expert loads of the last run at `tokens` tokens, per `moe_experts` node (a multi-hop
    /// block has one per hop; `Graph.moeLayers` groups them). Summed over the ranks when they
    /// shard the tokens: a collective call then (`Executable.lastExpertLoads`).
    public func lastExpertLoads(tokens: Int) -> [[Int]] {
        executable.lastExpertLoads(tokens: tokens)
    }
}
