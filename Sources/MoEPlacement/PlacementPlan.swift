import MoEBasics

/// Predicted load of one layer under one placement.
public struct LoadSummary: Sendable, Equatable {
    /// Tokens each worker processes (the even-split load model of `PlacementMetrics`).
    public var workerLoads: [Double]
    /// Expected tokens crossing nodes (the traffic model of `PlacementMetrics`); 0 with one node.
    public var crossNodeTokens: Double

    public init(workerLoads: [Double], crossNodeTokens: Double) {
        self.workerLoads = workerLoads
        self.crossNodeTokens = crossNodeTokens
    }

    public var maxLoad: Double { workerLoads.max() ?? 0 }
    public var meanLoad: Double { workerLoads.isEmpty ? 0 : workerLoads.reduce(0, +) / Double(workerLoads.count) }
    /// `max / mean`; 1 when nothing is loaded.
    public var imbalance: Double { PlacementMetrics.imbalance(workerLoads) }

    /// `(max − bound) / mean`: how far from the lower bound, in units of the mean load.
    public func distance(toBound bound: Double) -> Double {
        meanLoad > 0 ? (maxLoad - bound) / meanLoad : 0
    }

    var json: JSON {
        var o = JSONObject()
        o["worker_load"] = .array(workerLoads.map { JSON(Self.round($0)) })
        o["max"] = JSON(Self.round(maxLoad))
        o["mean"] = JSON(Self.round(meanLoad))
        o["imbalance"] = JSON(Self.round(imbalance))
        o["cross_node_tokens"] = JSON(Self.round(crossNodeTokens))
        return o.json
    }

    /// Six significant decimals keep files readable and stable.
    static func round(_ x: Double) -> Double { (x * 1e6).rounded() / 1e6 }
}

extension JSONObject { var json: JSON { .object(self) } }

/// How a layer's placement was made.
public enum PlacementStrategy: String, Sendable, Equatable {
    /// moec's planner over all workers.
    case moecGlobal = "moec-global"
    /// moec's planner over all workers, then replicas spread over nodes to cut cross-node traffic.
    case moecGlobalSpread = "moec-global-spread"
    /// Groups packed onto nodes, then moec's planner within each node.
    case moecHierarchical = "moec-hierarchical"
    /// EPLB's own result (kept when nothing moec found was better).
    case eplbGlobal = "eplb-global"
    case eplbHierarchical = "eplb-hierarchical"
    /// The `--previous` placement, kept unchanged because it was already as good.
    case previous
}

/// One layer of a plan: what was chosen and what it is predicted to do, next to the naive static
/// placement and EPLB on the same loads.
public struct LayerReport: Sendable, Equatable {
    public var strategy: PlacementStrategy
    /// Expert `e` alone on worker `e·W/E`, no replicas.
    public var before: LoadSummary
    /// EPLB's placement.
    public var eplb: LoadSummary
    /// The chosen placement.
    public var after: LoadSummary
    /// `max(total / W, min over replica counts of max_e load_e / replicas_e)`; no placement does better.
    public var lowerBound: Double
    /// Expert weights copied onto workers, when a previous placement was given.
    public var movedExperts: Int?
}

/// The result of `PlacementPlanner.plan`: the placement plus a report per layer.
public struct PlacementPlan: Sendable, Equatable {
    public var placement: ExpertPlacement
    public var layers: [LayerReport]
    public var policy: PlacementOptions.Policy
    /// Bytes of one expert's weights, when known (from the options or the load file).
    public var expertBytes: Int?

    /// Total expert weights copied, when a previous placement was given.
    public var movedExperts: Int? {
        layers.allSatisfy { $0.movedExperts != nil } ? layers.reduce(0) { $0 + $1.movedExperts! } : nil
    }
    public var movedBytes: Int? {
        guard let m = movedExperts, let b = expertBytes else { return nil }
        return m * b
    }

    /// The placement file: the keys `ExpertPlacement` reads, then `"strategy"`, `"predicted"` and
    /// (with a previous placement) `"moved"`.
    public var json: JSON {
        var o = JSONObject([("format", JSON("moec-placement/1")), ("policy", JSON(policy.rawValue))])
        for (k, v) in placement.jsonObject { o[k] = v }
        if let b = expertBytes { o["expert_bytes"] = JSON(b) }
        o["strategy"] = .array(layers.map { JSON($0.strategy.rawValue) })
        var predicted = JSONObject()
        predicted["before"] = summaries(\.before)
        predicted["eplb"] = summaries(\.eplb)
        predicted["after"] = summaries(\.after)
        predicted["lower_bound"] = .array(layers.map { JSON(LoadSummary.round($0.lowerBound)) })
        o["predicted"] = .object(predicted)
        if let m = movedExperts {
            var moved = JSONObject()
            moved["experts"] = JSON(m)
            moved["bytes"] = movedBytes.map(JSON.init) ?? .null
            moved["per_layer"] = .array(layers.map { JSON($0.movedExperts ?? 0) })
            o["moved"] = .object(moved)
        }
        return .object(o)
    }

    /// Per-layer summaries as parallel arrays (one entry per layer under each key).
    private func summaries(_ key: KeyPath<LayerReport, LoadSummary>) -> JSON {
        let all = layers.map { $0[keyPath: key].json }
        var o = JSONObject()
        for k in ["worker_load", "max", "mean", "imbalance", "cross_node_tokens"] {
            o[k] = .array(all.map { $0[k]! })
        }
        return .object(o)
    }
}
