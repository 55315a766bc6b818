import Foundation
import MoEBasics

/// Where every expert of every MoE layer lives: the runtime-facing half of a placement plan.
///
/// Each layer has `P = workers · slotsPerWorker` physical slots; slot `s` is on worker
/// `s / slotsPerWorker` and holds the weights of logical expert `phy2log[s]`. Every expert has at
/// least one slot (replica). A replicated expert's tokens are split evenly over its replicas, in
/// ascending slot order (see `ExpertPlacement+Dispatch.swift`).
///
/// JSON form (written by `json`, read by `init(json:)`; extra keys, such as a plan's `"predicted"`,
/// are ignored):
/// ```
/// { "workers": W, "nodes": N, "slots_per_worker": K, "experts": E,
///   "phy2log":  [[e, …P], …layers],          // logical expert of each physical slot
///   "log2phy":  [[[s, …], …E], …layers],     // slots of each expert, ascending   (optional)
///   "replicas": [[r, …E], …layers] }         // replica count of each expert      (optional)
/// ```
public struct ExpertPlacement: Sendable, Equatable {
    /// One layer's slots. `log2phy[e]` lists expert `e`'s slots in ascending order.
    public struct Layer: Sendable, Equatable {
        public let phy2log: [Int]
        public let log2phy: [[Int]]
        public let slotsPerWorker: Int

        /// Builds the inverse map; `phy2log` entries must be in `0..<experts` (checked by the callers).
        init(phy2log: [Int], experts: Int, slotsPerWorker: Int) {
            self.phy2log = phy2log
            self.slotsPerWorker = slotsPerWorker
            var inverse = Array(repeating: [Int](), count: experts)
            for (s, e) in phy2log.enumerated() { inverse[e].append(s) }
            self.log2phy = inverse
        }

        public var replicas: [Int] { log2phy.map(\.count) }
        public var slotCount: Int { phy2log.count }
        public var workerCount: Int { phy2log.count / slotsPerWorker }
        public func worker(ofSlot s: Int) -> Int { s / slotsPerWorker }
        public func slots(ofWorker w: Int) -> Range<Int> { w * slotsPerWorker..<(w + 1) * slotsPerWorker }
        /// The experts held by worker `w`, one entry per slot, in slot order.
        public func experts(onWorker w: Int) -> ArraySlice<Int> { phy2log[slots(ofWorker: w)] }
        /// The workers holding expert `e`, one per replica, ascending.
        public func workers(ofExpert e: Int) -> [Int] { log2phy[e].map { $0 / slotsPerWorker } }
    }

    public let workers: Int
    public let nodes: Int
    public let experts: Int
    public let slotsPerWorker: Int
    public let layers: [Layer]

    public var physicalSlots: Int { workers * slotsPerWorker }
    public var workersPerNode: Int { workers / nodes }
    public func node(ofWorker w: Int) -> Int { w / workersPerNode }

    /// Checks and builds a placement from each layer's slot → expert map.
    public init(workers: Int, nodes: Int = 1, experts: Int, phy2log: [[Int]], file: String = "<placement>") throws(PlacementError) {
        var issues: [PlacementError.Issue] = []
        if workers <= 0 { issues.append(.init("\"workers\" must be positive, found \(workers)")) }
        if experts <= 0 { issues.append(.init("\"experts\" must be positive, found \(experts)")) }
        if nodes <= 0 || (workers > 0 && workers % max(nodes, 1) != 0) {
            issues.append(.init("\"nodes\" (\(nodes)) must be positive and divide \"workers\" (\(workers))"))
        }
        if phy2log.isEmpty { issues.append(.init("\"phy2log\" has no layers")) }
        let slots = phy2log.first?.count ?? 0
        if workers > 0, slots % workers != 0 || slots == 0 {
            issues.append(.init("\(slots) physical slots cannot be shared equally by \(workers) workers"))
        }
        // Every expert needs a slot, so no more experts than slots (checked before anything is
        // sized by the expert count: a file may claim billions).
        if experts > slots, slots > 0 {
            issues.append(.init("\(experts) experts cannot each have one of \(slots) physical slots"))
        }
        if !issues.isEmpty { throw .invalidPlacement(file: file, issues: issues) }
        for (l, row) in phy2log.enumerated() {
            if row.count != slots {
                issues.append(.init(layer: l, "has \(row.count) slots but layer 0 has \(slots)"))
                continue
            }
            var seen = Array(repeating: false, count: experts)
            for (s, e) in row.enumerated() {
                if e < 0 || e >= experts {
                    issues.append(.init(layer: l, "slot \(s) holds expert \(e), outside 0..<\(experts)"))
                } else {
                    seen[e] = true
                }
            }
            for e in 0..<experts where !seen[e] { issues.append(.init(layer: l, expert: e, "has no slot (every expert needs at least one replica)")) }
        }
        if !issues.isEmpty { throw .invalidPlacement(file: file, issues: issues) }
        self.workers = workers
        self.nodes = nodes
        self.experts = experts
        self.slotsPerWorker = slots / workers
        self.layers = phy2log.map { Layer(phy2log: $0, experts: experts, slotsPerWorker: slots / workers) }
    }

    /// Reads a placement (or a whole plan) and checks it: shapes, expert indices, every expert
    /// present, and `log2phy` / `replicas` agreeing with `phy2log` when they are given.
    public init(json: JSON, file: String = "<placement>") throws(PlacementError) {
        func fail(_ m: String) -> PlacementError { .invalidPlacement(file: file, issues: [.init(m)]) }
        guard case .object(let o) = json else { throw fail("expected a JSON object, found \(json.typeName)") }
        guard let w = o["workers"]?.int else { throw fail("missing or non-integer \"workers\"") }
        let nodes = o["nodes"].map { $0.int ?? -1 } ?? 1
        guard let rows = o["phy2log"]?.array else { throw fail("missing \"phy2log\" (an array per layer of the logical expert in each slot)") }
        var issues: [PlacementError.Issue] = []
        var phy2log: [[Int]] = []
        for (l, r) in rows.enumerated() {
            guard let items = r.array else { issues.append(.init(layer: l, "expected an array of expert indices, found \(r.typeName)")); phy2log.append([]); continue }
            phy2log.append(
                items.enumerated().map { s, v in
                    if let i = v.int { return i }
                    issues.append(.init(layer: l, "slot \(s): expected an integer expert index, found \(v.typeName)"))
                    return 0
                })
        }
        if !issues.isEmpty { throw .invalidPlacement(file: file, issues: issues) }
        let experts: Int
        if let e = o["experts"] {
            guard let n = e.int else { throw fail("\"experts\" must be an integer") }
            experts = n
        } else if let c = o["replicas"]?[0]?.array?.count {
            experts = c
        } else if let c = o["log2phy"]?[0]?.array?.count {
            experts = c
        } else {
            experts = (phy2log.flatMap { $0 }.max() ?? -1) + 1
        }
        try self.init(workers: w, nodes: nodes, experts: experts, phy2log: phy2log, file: file)
        if let k = o["slots_per_worker"], k.int != slotsPerWorker {
            throw fail("\"slots_per_worker\" is \(k.compact) but \(physicalSlots) slots on \(workers) workers give \(slotsPerWorker)")
        }
        for (l, layer) in layers.enumerated() {
            if let r = o["replicas"] {
                let got = r[l]?.array?.map { $0.int ?? -1 }
                if got != layer.replicas { issues.append(.init(layer: l, "\"replicas\" does not match \"phy2log\" (expected \(layer.replicas))")) }
            }
            if let m = o["log2phy"] {
                let got = m[l]?.array?.map { ($0.array ?? []).map { $0.int ?? -1 }.sorted() }
                if got != layer.log2phy { issues.append(.init(layer: l, "\"log2phy\" does not match \"phy2log\"")) }
            }
        }
        if !issues.isEmpty { throw .invalidPlacement(file: file, issues: issues) }
    }

    public static func read(from path: String) throws(PlacementError) -> ExpertPlacement {
        try ExpertPlacement(json: PlacementError.readJSON(path), file: path)
    }

    /// The placement keys of the JSON form, in order; a plan appends its predictions after them.
    public var jsonObject: JSONObject {
        var o = JSONObject()
        o["workers"] = JSON(workers)
        o["nodes"] = JSON(nodes)
        o["slots_per_worker"] = JSON(slotsPerWorker)
        o["experts"] = JSON(experts)
        o["phy2log"] = .array(layers.map { .array($0.phy2log.map(JSON.init)) })
        o["log2phy"] = .array(layers.map { .array($0.log2phy.map { .array($0.map(JSON.init)) }) })
        o["replicas"] = .array(layers.map { .array($0.replicas.map(JSON.init)) })
        return o
    }

    public var json: JSON { .object(jsonObject) }
}
