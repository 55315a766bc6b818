import Foundation
import MoEBasics

/// Per-expert load of every MoE layer, as `moec run --stats` writes it.
///
/// File format (other top-level keys, such as `"imbalance"` or `"entropy"`, are ignored):
/// ```
/// { "expert_load": [[n_0, n_1, …, n_{E-1}],   // layer 0: tokens routed to each expert
///                   […], …],                   // one array per MoE layer, all of length E
///   "expert_bytes": 44040192,                  // optional: bytes of one expert's weights
///   "fixed_experts": [[6, 7], …] }             // optional: per layer, experts without weights
/// ```
/// Fixed experts (zero, copy and constant experts: `moec run --stats` lists them) hold no
/// weights and run wherever their tokens are, so they are planned with a load of 0: they take a
/// slot, and no worker's share of the work.
/// Loads are non-negative finite numbers (token counts; fractions are allowed so averaged
/// statistics can be used). Every layer has the same number of experts, at least one.
public struct LoadStatistics: Sendable, Equatable {
    /// `layers[l][e]`: the load of expert `e` in MoE layer `l`.
    public private(set) var layers: [[Double]]
    /// Bytes of one expert's weights, when the file says.
    public var expertBytes: Int?
    /// Per layer, the fixed experts (`"fixed_experts"`), whose loads were read as 0.
    public var fixedExperts: [[Int]] = []

    public var layerCount: Int { layers.count }
    public var expertCount: Int { layers.first?.count ?? 0 }

    /// Checks the loads and keeps them; throws every problem found, naming layer and expert.
    public init(layers: [[Double]], expertBytes: Int? = nil, file: String = "<loads>") throws(PlacementError) {
        var issues = Self.shapeIssues(layers)
        for (l, row) in layers.enumerated() {
            for (e, v) in row.enumerated() where !(v.isFinite && v >= 0) {
                issues.append(.init(layer: l, expert: e, v.isNaN ? "load is NaN" : v.isFinite ? "load \(JSON.format(v)) is negative" : "load is infinite"))
            }
        }
        if let b = expertBytes, b <= 0 { issues.append(.init("\"expert_bytes\" must be positive, found \(b)")) }
        if !issues.isEmpty { throw .invalidLoads(file: file, issues: Self.sorted(issues)) }
        self.layers = layers
        self.expertBytes = expertBytes
    }

    /// No layers, empty layers, and layers whose expert count differs from layer 0's.
    /// Rows that are nil (not arrays in the file) are skipped; the first non-nil row sets the count.
    static func shapeIssues(_ layers: [[Double]?]) -> [PlacementError.Issue] {
        var issues: [PlacementError.Issue] = []
        if layers.isEmpty { issues.append(.init("\"expert_load\" has no layers")) }
        guard let first = layers.firstIndex(where: { $0 != nil }) else { return issues }
        let expected = layers[first]!.count
        for (l, row) in layers.enumerated() {
            guard let row else { continue }
            if row.isEmpty {
                issues.append(.init(layer: l, "has no experts"))
            } else if row.count != expected, expected > 0 {
                issues.append(.init(layer: l, "has \(row.count) experts but layer \(first) has \(expected)"))
            }
        }
        return issues
    }

    static func sorted(_ issues: [PlacementError.Issue]) -> [PlacementError.Issue] {
        issues.enumerated().sorted {
            ($0.element.layer ?? -1, $0.element.expert ?? -1, $0.offset) < ($1.element.layer ?? -1, $1.element.expert ?? -1, $1.offset)
        }.map(\.element)
    }

    /// Reads the `"expert_load"` (and optional `"expert_bytes"`) keys of a load statistics document.
    public init(json: JSON, file: String = "<loads>") throws(PlacementError) {
        guard case .object(let top) = json else {
            throw .invalidLoads(file: file, issues: [.init("expected a JSON object with key \"expert_load\", found \(json.typeName)")])
        }
        guard let loadJSON = top["expert_load"] else {
            throw .invalidLoads(file: file, issues: [.init("missing key \"expert_load\" (an array with one array of per-expert loads per MoE layer)")])
        }
        guard case .array(let rows) = loadJSON else {
            throw .invalidLoads(file: file, issues: [.init("\"expert_load\" must be an array of arrays, found \(loadJSON.typeName)")])
        }
        var issues: [PlacementError.Issue] = []
        var layers: [[Double]] = []
        for (l, rowJSON) in rows.enumerated() {
            guard case .array(let items) = rowJSON else {
                issues.append(.init(layer: l, "expected an array of per-expert loads, found \(rowJSON.typeName)"))
                layers.append([])
                continue
            }
            var row: [Double] = []
            row.reserveCapacity(items.count)
            for (e, item) in items.enumerated() {
                if let d = item.double {
                    if d < 0 { issues.append(.init(layer: l, expert: e, "load \(JSON.format(d)) is negative")) }
                    row.append(d)
                } else {
                    issues.append(.init(layer: l, expert: e, "expected a non-negative number, found \(item.typeName)"))
                    row.append(0)
                }
            }
            layers.append(row)
        }
        var bytes: Int?
        if let b = top["expert_bytes"] {
            if let i = b.int, i > 0 {
                bytes = i
            } else {
                issues.append(.init("\"expert_bytes\" must be a positive integer, found \(b.typeName == "a number" ? JSON.format(b.double!) : b.typeName)"))
            }
        }
        issues += Self.shapeIssues(layers.enumerated().map { rows[$0.offset].array == nil ? nil : $0.element })
        var fixed: [[Int]] = []
        if let f = top["fixed_experts"] {
            if let perLayer = f.array, perLayer.count == layers.count {
                for (l, list) in perLayer.enumerated() {
                    let indices = list.array?.compactMap(\.int) ?? []
                    guard list.array?.count == indices.count, indices.allSatisfy({ $0 >= 0 && $0 < layers[l].count }) else {
                        issues.append(.init(layer: l, "\"fixed_experts\" must list expert indices of the layer"))
                        continue
                    }
                    for e in indices { layers[l][e] = 0 }
                    fixed.append(indices)
                }
            } else {
                issues.append(.init("\"fixed_experts\" must be an array with one array of expert indices per layer"))
            }
        }
        if !issues.isEmpty { throw .invalidLoads(file: file, issues: Self.sorted(issues)) }
        try self.init(layers: layers, expertBytes: bytes, file: file)
        fixedExperts = fixed
    }

    /// Reads a load statistics file.
    public static func read(from path: String) throws(PlacementError) -> LoadStatistics {
        try LoadStatistics(json: PlacementError.readJSON(path), file: path)
    }

    /// The document `read(from:)` accepts.
    public var json: JSON {
        var o = JSONObject()
        o["expert_load"] = .array(layers.map { .array($0.map(JSON.init)) })
        if let b = expertBytes { o["expert_bytes"] = JSON(b) }
        if !fixedExperts.isEmpty { o["fixed_experts"] = .array(fixedExperts.map { .array($0.map(JSON.init)) }) }
        return .object(o)
    }
}
