import Foundation

/// The acceptance sweep: moec against EPLB on seeded load matrices that the planner was not tuned
/// on. For each case: max/mean worker load of both, and the distance to the lower bound
/// `LB = max(total / W, min over replica counts of max_e load_e / replicas_e)`, measured as
/// `(max worker load − LB) / mean worker load`.
///
/// `LB` ignores that every worker holds exactly `K = P/W` slots. Without redundant slots (`P = E`)
/// the worker holding the heaviest expert also holds `K − 1` others, so
/// `max(total / W, max_e load_e + the K − 1 smallest other loads)` is also a lower bound; when EPLB
/// reaches it on every layer, EPLB is optimal and no planner can shorten its distance to `LB`. Such
/// cases are marked `eplbOptimal` and reported separately.
public enum PlacementBenchmark {
    public struct Case: Sendable, Equatable {
        public var exponent: Double
        public var experts: Int
        public var workers: Int
        public var slots: Int
        public var layers: Int
        public var nodes: Int = 1
        public var groups: Int = 1
        public var seed: UInt64

        /// `uniform`, `zipf 0.7`, …
        public var kind: String { exponent == 0 ? "uniform" : String(format: "zipf %.2f", exponent) }
    }

    public struct Row: Sendable, Equatable {
        public var `case`: Case
        /// Means over the case's layers.
        public var eplbImbalance: Double, moecImbalance: Double
        public var eplbDistance: Double, moecDistance: Double
        /// Layers where moec's largest worker load exceeds EPLB's (must be 0).
        public var worseLayers: Int
        /// EPLB meets the slot-aware bound on every layer (see the type's doc comment).
        public var eplbOptimal: Bool
        /// Problems with the plan's validity (must be empty).
        public var violations: [String]
    }

    /// `count` cases drawn with `seed`: experts in {64, 96, 128, 160, 192, 256}, workers in
    /// {4, 8, 16, 32, 64} (at most the experts), 0–32 redundant slots with `P` rounded to a multiple of
    /// `W` (down when rounding up would pass 32), Zipf exponents uniform in [0, 1.5], `layers` layers.
    public static func cases(count: Int, layers: Int = 3, seed: UInt64 = 20_251_122) -> [Case] {
        var rng = SeededRandom(seed: seed)
        var out: [Case] = []
        let expertChoices = [64, 96, 128, 160, 192, 256], workerChoices = [4, 8, 16, 32, 64]
        while out.count < count {
            let e = expertChoices[rng.below(expertChoices.count)]
            let w = workerChoices[rng.below(workerChoices.count)]
            let redundant = [0, 8, 16, 32][rng.below(4)]
            let exponent = (rng.unit() * 1.5 * 100).rounded() / 100
            var p = (e + redundant + w - 1) / w * w
            if p - e > 32 { p = (e + redundant) / w * w }
            guard w <= e, p >= e, p - e <= 32 else { continue }
            out.append(Case(exponent: exponent, experts: e, workers: w, slots: p, layers: layers, seed: rng.next()))
        }
        return out
    }

    /// The case's load matrix: `layers` Zipf layers of about 100 000 tokens each.
    public static func loads(_ c: Case) -> LoadStatistics {
        var rng = SeededRandom(seed: c.seed)
        let rows = (0..<c.layers).map { _ in SyntheticLoads.zipf(experts: c.experts, exponent: c.exponent, tokens: 100_000, random: &rng) }
        return try! LoadStatistics(layers: rows)
    }

    public static func run(_ c: Case) -> Row {
        let stats = loads(c)
        let options = PlacementOptions(workers: c.workers, physicalSlots: c.slots, nodes: c.nodes, groups: c.groups)
        var row = Row(
            case: c, eplbImbalance: 0, moecImbalance: 0, eplbDistance: 0, moecDistance: 0, worseLayers: 0,
            eplbOptimal: c.slots == c.experts, violations: [])
        let plan: PlacementPlan
        do { plan = try PlacementPlanner.plan(stats, options) } catch {
            row.violations.append("planning failed: \(error)")
            return row
        }
        let n = Double(c.layers)
        for (l, r) in plan.layers.enumerated() {
            row.eplbImbalance += r.eplb.imbalance / n
            row.moecImbalance += r.after.imbalance / n
            row.eplbDistance += r.eplb.distance(toBound: r.lowerBound) / n
            row.moecDistance += r.after.distance(toBound: r.lowerBound) / n
            if r.after.maxLoad > r.eplb.maxLoad { row.worseLayers += 1 }
            if c.slots == c.experts, r.eplb.maxLoad > slotAwareBound(stats.layers[l], workers: c.workers) * (1 + 1e-12) {
                row.eplbOptimal = false
            }
            let layer = plan.placement.layers[l]
            if layer.replicas.contains(where: { $0 < 1 }) { row.violations.append("layer \(l): an expert has no replica") }
            if layer.phy2log.count != c.slots { row.violations.append("layer \(l): \(layer.phy2log.count) slots") }
            let recomputed = PlacementMetrics.workerLoads(phy2log: layer.phy2log, loads: stats.layers[l], workers: c.workers)
            if recomputed != r.after.workerLoads { row.violations.append("layer \(l): reported loads differ from the placement's") }
        }
        return row
    }

    /// Without replicas (`P = E`): `max(total / W, max_e load_e + the K − 1 smallest other loads)`.
    public static func slotAwareBound(_ loads: [Double], workers: Int) -> Double {
        let k = loads.count / workers
        let sorted = loads.sorted()
        let top = sorted.last ?? 0
        return max(loads.reduce(0, +) / Double(workers), top + sorted.prefix(k - 1).reduce(0, +))
    }

    /// Mean distances over `rows` and their ratio (moec / EPLB).
    public static func summary(_ rows: [Row]) -> (eplb: Double, moec: Double, ratio: Double) {
        let n = Double(max(rows.count, 1))
        let e = rows.reduce(0) { $0 + $1.eplbDistance } / n, m = rows.reduce(0) { $0 + $1.moecDistance } / n
        return (e, m, e > 0 ? m / e : 0)
    }

    /// The mean over cases of moec's distance divided by EPLB's (cases where EPLB's is 0 are left out).
    public static func meanCaseRatio(_ rows: [Row]) -> Double {
        let ratios = rows.filter { $0.eplbDistance > 1e-9 }.map { $0.moecDistance / $0.eplbDistance }
        return ratios.isEmpty ? 0 : ratios.reduce(0, +) / Double(ratios.count)
    }

    /// A Markdown table, one row per case, then the means.
    public static func table(_ rows: [Row]) -> String {
        var s = "| matrix | E | W | P | EPLB max/mean | moec max/mean | EPLB dist. | moec dist. | moec/EPLB dist. |\n"
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rows {
            let ratio = r.eplbDistance > 1e-9 ? String(format: "%.2f", r.moecDistance / r.eplbDistance) : "–"
            s += "| \(r.case.kind) | \(r.case.experts) | \(r.case.workers) | \(r.case.slots) | "
            s += String(format: "%.4f | %.4f | %.4f | %.4f | ", r.eplbImbalance, r.moecImbalance, r.eplbDistance, r.moecDistance) + ratio + " |\n"
        }
        func meanRow(_ label: String, _ rows: [Row]) -> String {
            let m = summary(rows)
            return "| **\(label)** (\(rows.count)) "
                + String(
                    format: "| | | | %.4f | %.4f | %.4f | %.4f | %.2f |\n",
                    rows.reduce(0) { $0 + $1.eplbImbalance } / Double(max(rows.count, 1)),
                    rows.reduce(0) { $0 + $1.moecImbalance } / Double(max(rows.count, 1)), m.eplb, m.moec, m.ratio)
        }
        s += meanRow("mean, all cases", rows)
        s += meanRow("mean, EPLB not provably optimal", rows.filter { !$0.eplbOptimal })
        s += meanRow("mean, EPLB optimal (P = E)", rows.filter { $0.eplbOptimal })
        s += String(format: "\nmean over cases of moec distance / EPLB distance: %.2f\n", meanCaseRatio(rows))
        return s
    }
}
