import Foundation
import MoEBasics

/// A cluster running one MoE step, as `moec place --simulate CLUSTER.json` reads it.
///
/// ```
/// { "devices": 2048, "nodes": 256,             // D devices in N nodes of D/N
///   "flops_per_second": 4e14,                  // per device, sustained on expert matmuls
///   "memory_bytes": 8e10,                      // per device, available for expert weights
///   "intra_node_bandwidth": 4.5e11,            // bytes/s per device inside a node (NVLink)
///   "inter_node_bandwidth": 5e10,              // bytes/s per device across nodes (RDMA)
///   "tokens_per_device": 8192, "top_k": 8,     // each token goes to top_k experts
///   "experts": 256, "layers": 4,
///   "physical_slots": 4096,                    // optional, default: experts rounded up to a multiple of D
///   "groups": 8,                               // optional, for EPLB's hierarchical policy
///   "expert_flops_per_token": 1.3e8, "expert_bytes": 4.4e7,
///   "token_bytes": 14336,                      // one token's activation, each way
///   "zipf": 1.0, "seed": 1 }                   // synthetic loads when no load file is given
/// ```
public struct ClusterSpec: Sendable, Equatable {
    public var devices: Int
    public var nodes: Int = 1
    public var flopsPerSecond: Double
    public var memoryBytes: Double = .infinity
    public var intraNodeBandwidth: Double
    public var interNodeBandwidth: Double
    public var tokensPerDevice: Double
    public var topK: Int = 1
    public var experts: Int
    public var layers: Int = 1
    public var physicalSlots: Int?
    public var groups: Int = 1
    public var expertFlopsPerToken: Double
    public var expertBytes: Double
    public var tokenBytes: Double
    public var zipf: Double = 1
    public var seed: UInt64 = 1

    public init(
        devices: Int, nodes: Int = 1, flopsPerSecond: Double, intraNodeBandwidth: Double, interNodeBandwidth: Double,
        tokensPerDevice: Double, topK: Int = 1, experts: Int, layers: Int = 1, physicalSlots: Int? = nil,
        expertFlopsPerToken: Double, expertBytes: Double, tokenBytes: Double, zipf: Double = 1, seed: UInt64 = 1
    ) {
        self.devices = devices
        self.nodes = nodes
        self.flopsPerSecond = flopsPerSecond
        self.intraNodeBandwidth = intraNodeBandwidth
        self.interNodeBandwidth = interNodeBandwidth
        self.tokensPerDevice = tokensPerDevice
        self.topK = topK
        self.experts = experts
        self.layers = layers
        self.physicalSlots = physicalSlots
        self.expertFlopsPerToken = expertFlopsPerToken
        self.expertBytes = expertBytes
        self.tokenBytes = tokenBytes
        self.zipf = zipf
        self.seed = seed
    }

    public var slots: Int { physicalSlots ?? (experts + devices - 1) / devices * devices }

    public init(json: JSON, file: String = "<cluster>") throws(PlacementError) {
        func fail(_ m: String) -> PlacementError { .invalidCluster(file: file, message: m) }
        guard case .object(let o) = json else { throw fail("expected a JSON object, found \(json.typeName)") }
        let known: Set<String> = [
            "devices", "nodes", "flops_per_second", "memory_bytes", "intra_node_bandwidth", "inter_node_bandwidth",
            "tokens_per_device", "top_k", "experts", "layers", "physical_slots", "groups",
            "expert_flops_per_token", "expert_bytes", "token_bytes", "zipf", "seed"
        ]
        if let unknown = o.keys.first(where: { !known.contains($0) }) { throw fail("unknown key \"\(unknown)\"") }
        func int(_ k: String, _ d: Int? = nil) throws(PlacementError) -> Int {
            guard let v = o[k] else {
                if let d { return d }
                throw fail("missing \"\(k)\"")
            }
            guard let i = v.int, i > 0 else { throw fail("\"\(k)\" must be a positive integer") }
            return i
        }
        func number(_ k: String, _ d: Double? = nil, allowZero: Bool = false) throws(PlacementError) -> Double {
            guard let v = o[k] else {
                if let d { return d }
                throw fail("missing \"\(k)\"")
            }
            guard let x = v.double, x.isFinite, x > 0 || (allowZero && x == 0) else { throw fail("\"\(k)\" must be a positive number") }
            return x
        }
        self.init(
            devices: try int("devices"), nodes: try int("nodes", 1), flopsPerSecond: try number("flops_per_second"),
            intraNodeBandwidth: try number("intra_node_bandwidth"), interNodeBandwidth: try number("inter_node_bandwidth"),
            tokensPerDevice: try number("tokens_per_device"), topK: try int("top_k", 1), experts: try int("experts"),
            layers: try int("layers", 1), physicalSlots: o["physical_slots"] == nil ? nil : try int("physical_slots"),
            expertFlopsPerToken: try number("expert_flops_per_token"), expertBytes: try number("expert_bytes"),
            tokenBytes: try number("token_bytes"), zipf: try number("zipf", 1, allowZero: true),
            seed: UInt64(try int("seed", 1)))
        memoryBytes = try number("memory_bytes", .infinity)
        groups = try int("groups", 1)
        try validate(file: file)
    }

    public static func read(from path: String) throws(PlacementError) -> ClusterSpec {
        try ClusterSpec(json: PlacementError.readJSON(path), file: path)
    }

    func validate(file: String) throws(PlacementError) {
        func fail(_ m: String) -> PlacementError { .invalidCluster(file: file, message: m) }
        if devices % nodes != 0 { throw fail("\"nodes\" (\(nodes)) does not divide \"devices\" (\(devices))") }
        if slots < experts { throw fail("\"physical_slots\" (\(slots)) is less than \"experts\" (\(experts))") }
        if slots % devices != 0 { throw fail("\"physical_slots\" (\(slots)) is not a multiple of \"devices\" (\(devices))") }
        if experts % groups != 0 { throw fail("\"groups\" (\(groups)) does not divide \"experts\" (\(experts))") }
        if topK > experts { throw fail("\"top_k\" (\(topK)) exceeds \"experts\" (\(experts))") }
    }
}

/// What one placement policy achieves on the simulated cluster (sums and maxima over layers).
public struct SimulatedPolicy: Sendable, Equatable {
    public var name: String
    /// Σ over layers of max over devices of (compute + all-to-all) time, seconds.
    public var stepTime: Double
    /// Σ over layers of the largest device compute time, seconds.
    public var computeTime: Double
    /// Σ over layers of the largest device all-to-all time, seconds.
    public var allToAllTime: Double
    /// Mean over layers of max/mean device load.
    public var imbalance: Double
    /// Bytes sent over intra-node and inter-node links (dispatch and combine, all layers).
    public var intraNodeBytes: Double
    public var interNodeBytes: Double
    /// Whether each device's expert slots fit its memory.
    public var fitsMemory: Bool
    /// Wall-clock seconds spent planning this policy's placement (all layers).
    public var planSeconds: Double
}

public struct SimulationReport: Sendable, Equatable {
    public var cluster: ClusterSpec
    public var policies: [SimulatedPolicy]

    public var json: JSON {
        .array(
            policies.map { p in
                JSON([
                    "policy": JSON(p.name), "step_time_s": JSON(p.stepTime), "compute_time_s": JSON(p.computeTime),
                    "all_to_all_time_s": JSON(p.allToAllTime), "imbalance": JSON(LoadSummary.round(p.imbalance)),
                    "intra_node_bytes": JSON(p.intraNodeBytes), "inter_node_bytes": JSON(p.interNodeBytes),
                    "fits_memory": JSON(p.fitsMemory), "plan_seconds": JSON(LoadSummary.round(p.planSeconds))
                ])
            })
    }

    /// A text table, one row per policy, columns right-aligned to their widest entry.
    public var table: String {
        var rows = [["policy", "step ms", "compute ms", "all-to-all ms", "max/mean", "intra GB", "inter GB", "memory", "plan s"]]
        for p in policies {
            rows.append([
                p.name, String(format: "%.3f", p.stepTime * 1e3), String(format: "%.3f", p.computeTime * 1e3),
                String(format: "%.3f", p.allToAllTime * 1e3), String(format: "%.3f", p.imbalance),
                String(format: "%.2f", p.intraNodeBytes / 1e9), String(format: "%.2f", p.interNodeBytes / 1e9),
                p.fitsMemory ? "fits" : "OVER", String(format: "%.3f", p.planSeconds)
            ])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
        var s =
            "cluster: \(cluster.devices) devices in \(cluster.nodes) nodes, \(cluster.experts) experts × \(cluster.layers) layers, \(cluster.slots) slots, top-\(cluster.topK)\n"
        for r in rows {
            s += PlacementPlan.pad(r[0], widths[0] + 1)
            s += (1..<r.count).map { PlacementPlan.padLeft(r[$0], widths[$0]) }.joined(separator: "  ") + "\n"
        }
        return s
    }
}

/// Predicts one MoE step for static, EPLB and moec placements.
///
/// Model, per layer:
/// - `T = D · tokens_per_device · top_k` token–expert pairs; expert `e` receives `n_e` of them (the
///   load file's loads scaled to `T`, or Zipf(`zipf`) loads with seed `seed` + layer).
/// - Tokens originate uniformly over devices, and an expert's pairs are split evenly over its
///   replicas (the planner's load model). So device `d` sends `n_e / (D · r_e)` pairs to each replica
///   of `e`: nothing for replicas on `d`, intra-node traffic for replicas elsewhere on its node,
///   inter-node traffic for the rest. A device receives its load `L_d`, of which a fraction
///   `(D/N − 1)/D` comes from its own node and `(D − D/N)/D` from other nodes.
/// - Device time = compute `L_d · expert_flops_per_token / flops_per_second` plus all-to-all
///   `2 · token_bytes · (max(sent, received) intra / intra bandwidth + max(sent, received) inter /
///   inter bandwidth)` (dispatch and combine; the two link kinds are not overlapped).
/// - Layer time = the slowest device; step time = Σ over layers.
/// - Memory: `slots / D · layers · expert_bytes` must fit `memory_bytes` (static needs `⌈E/D⌉` slots).
/// Static puts expert `e` alone on device `e·D/E`. Per layer the model costs O(E + P + D) after planning.
public enum ClusterSimulator {
    public static func simulate(_ cluster: ClusterSpec, loads: LoadStatistics? = nil, searchEvaluations: Int? = nil) throws(PlacementError) -> SimulationReport {
        try cluster.validate(file: "<cluster>")
        let d = cluster.devices, e = cluster.experts
        let pairs = Double(d) * cluster.tokensPerDevice * Double(cluster.topK)
        var layerLoads: [[Double]] = []
        if let stats = loads {
            guard stats.expertCount == e else {
                throw .invalidCluster(file: "<cluster>", message: "the load statistics have \(stats.expertCount) experts but the cluster has \(e)")
            }
            layerLoads = stats.layers.map { row in
                let s = row.reduce(0, +)
                return row.map { s > 0 ? $0 / s * pairs : pairs / Double(e) }
            }
        } else {
            for l in 0..<cluster.layers {
                var rng = SeededRandom(seed: cluster.seed &+ UInt64(l))
                layerLoads.append(SyntheticLoads.zipf(experts: e, exponent: cluster.zipf, tokens: pairs, random: &rng))
            }
        }
        let layers = layerLoads.count
        let slots = cluster.slots
        let evaluations = searchEvaluations ?? max(10, min(300, 400_000 / slots))
        let slotBytes = Double(slots / d) * Double(layers) * cluster.expertBytes
        let staticBytes = Double((e + d - 1) / d) * Double(layers) * cluster.expertBytes

        var results: [SimulatedPolicy] = []
        // Static: expert e alone on device e·D/E (with more devices than experts, some stay idle).
        let staticDevices = (0..<e).map { [$0 * d / e] }
        results.append(
            evaluate(
                name: "static", cluster, layerLoads, replicaDevices: { _ in staticDevices },
                fits: staticBytes <= cluster.memoryBytes, planSeconds: 0))

        let stats = try LoadStatistics(layers: layerLoads)
        let k = slots / d
        for policy in [PlacementOptions.Policy.eplb, .moec] {
            let problem = LayerProblem(
                slots: slots, workers: d, nodes: cluster.nodes, groups: cluster.groups, linkCost: 1,
                policy: policy, evaluations: evaluations)
            let start = DispatchTime.now().uptimeNanoseconds
            let maps = parallelMap(layers) { l in problem.choose(stats.layers[l]).chosen.phy2log }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            results.append(
                evaluate(
                    name: policy.rawValue, cluster, layerLoads,
                    replicaDevices: { l in
                        var out = Array(repeating: [Int](), count: e)
                        for (s, x) in maps[l].enumerated() { out[x].append(s / k) }
                        return out
                    }, fits: slotBytes <= cluster.memoryBytes, planSeconds: seconds))
        }
        return SimulationReport(cluster: cluster, policies: results)
    }

    /// The model of the type's doc comment for one policy; `replicaDevices(l)[e]` lists the device
    /// of each replica of expert `e` in layer `l`.
    static func evaluate(
        name: String, _ c: ClusterSpec, _ layerLoads: [[Double]], replicaDevices: (Int) -> [[Int]],
        fits: Bool, planSeconds: Double
    ) -> SimulatedPolicy {
        let d = c.devices, perNode = c.devices / c.nodes
        let dd = Double(d)
        var result = SimulatedPolicy(
            name: name, stepTime: 0, computeTime: 0, allToAllTime: 0, imbalance: 0,
            intraNodeBytes: 0, interNodeBytes: 0, fitsMemory: fits, planSeconds: planSeconds)
        var load = Array(repeating: 0.0, count: d)
        var localDevice = Array(repeating: 0.0, count: d) // pairs a device sends to itself
        var localNode = Array(repeating: 0.0, count: c.nodes) // pairs a device sends within its node (incl. itself)
        for (l, loads) in layerLoads.enumerated() {
            let placement = replicaDevices(l)
            for i in 0..<d { load[i] = 0; localDevice[i] = 0 }
            for n in 0..<c.nodes { localNode[n] = 0 }
            let total = loads.reduce(0, +)
            for (e, devices) in placement.enumerated() {
                let share = loads[e] / Double(devices.count)
                for dev in devices {
                    load[dev] += share
                    localDevice[dev] += share / dd
                    localNode[dev / perNode] += share / dd
                }
            }
            var worst = 0.0, worstCompute = 0.0, worstComm = 0.0
            let fromOwnNode = Double(perNode - 1) / dd, fromOtherNodes = (dd - Double(perNode)) / dd
            for i in 0..<d {
                let sendInter = total / dd - localNode[i / perNode]
                let sendIntra = localNode[i / perNode] - localDevice[i]
                let recvIntra = load[i] * fromOwnNode, recvInter = load[i] * fromOtherNodes
                let comm = 2 * c.tokenBytes * (max(sendIntra, recvIntra) / c.intraNodeBandwidth + max(sendInter, recvInter) / c.interNodeBandwidth)
                let compute = load[i] * c.expertFlopsPerToken / c.flopsPerSecond
                worst = max(worst, compute + comm)
                worstCompute = max(worstCompute, compute)
                worstComm = max(worstComm, comm)
                result.intraNodeBytes += 2 * c.tokenBytes * sendIntra
                result.interNodeBytes += 2 * c.tokenBytes * sendInter
            }
            result.stepTime += worst
            result.computeTime += worstCompute
            result.allToAllTime += worstComm
            result.imbalance += PlacementMetrics.imbalance(load) / Double(layerLoads.count)
        }
        return result
    }
}
