import Foundation

extension PlacementPlan {
    /// `moec place --explain`: per layer, a table of workers (experts held, load, bar) and a bar
    /// chart of worker loads before (naive static placement) and after, bars scaled to the largest.
    ///
    /// ```
    /// layer 0 (moec-global): max/mean 2.31 before → 1.00 after (EPLB 1.08, lower bound 1.00)
    ///   worker  experts held          load
    ///   w0      0 5 9×2             1250.0  ████████████████████▌
    /// ```
    public func explanation(barWidth: Int = 40) -> String {
        var out = ""
        for (l, r) in layers.enumerated() {
            let layer = placement.layers[l]
            let mean = r.after.meanLoad
            out += "layer \(l) (\(r.strategy.rawValue)): max/mean \(Self.fixed(r.before.imbalance)) before → \(Self.fixed(r.after.imbalance)) after"
            out += " (EPLB \(Self.fixed(r.eplb.imbalance)), lower bound \(Self.fixed(mean > 0 ? r.lowerBound / mean : 1)))\n"
            if placement.nodes > 1 {
                out +=
                    "  cross-node tokens: \(Self.count(r.before.crossNodeTokens)) before, \(Self.count(r.eplb.crossNodeTokens)) EPLB, \(Self.count(r.after.crossNodeTokens)) after\n"
            }
            if let m = r.movedExperts {
                out += "  moved: \(m) expert weights" + (expertBytes.map { " (\(Self.bytes($0 * m)))" } ?? "") + "\n"
            }
            let held = (0..<placement.workers).map { Self.held(Array(layer.experts(onWorker: $0))) }
            let heldWidth = min(36, max(12, held.map(\.count).max() ?? 0))
            let loadText = r.after.workerLoads.map(Self.count)
            let loadWidth = max(4, loadText.map(\.count).max() ?? 0)
            let scale = max(r.after.maxLoad, r.before.maxLoad)
            out += "  " + Self.pad("worker", 7) + Self.pad("experts held", heldWidth + 2) + Self.padLeft("load", loadWidth) + "\n"
            for w in 0..<placement.workers {
                var h = held[w]
                if h.count > heldWidth { h = String(h.prefix(heldWidth - 1)) + "…" }
                out += "  " + Self.pad(Self.workerName(w, placement), 7) + Self.pad(h, heldWidth + 2)
                out += Self.padLeft(loadText[w], loadWidth) + "  " + Self.bar(r.after.workerLoads[w], scale, barWidth) + "\n"
            }
            out += "  worker loads, before (static: expert e on worker e·W/E) and after:\n"
            let beforeText = r.before.workerLoads.map(Self.count)
            for w in 0..<placement.workers {
                out += "  " + Self.pad(Self.workerName(w, placement), 7) + "before " + Self.bar(r.before.workerLoads[w], scale, barWidth) + " " + beforeText[w] + "\n"
                out += "  " + Self.pad("", 7) + "after  " + Self.bar(r.after.workerLoads[w], scale, barWidth) + " " + loadText[w] + "\n"
            }
            out += "\n"
        }
        let n = Double(max(layers.count, 1))
        out += "all \(layers.count) layers: mean max/mean \(Self.fixed(layers.reduce(0) { $0 + $1.before.imbalance } / n)) before, "
        out += "\(Self.fixed(layers.reduce(0) { $0 + $1.eplb.imbalance } / n)) EPLB, \(Self.fixed(layers.reduce(0) { $0 + $1.after.imbalance } / n)) after"
        if let m = movedExperts { out += "; \(m) expert weights moved" + (movedBytes.map { " (\(Self.bytes($0)))" } ?? "") }
        return out + "\n"
    }

    /// `w3` or, with several nodes, `n1/w3`.
    static func workerName(_ w: Int, _ p: ExpertPlacement) -> String {
        p.nodes > 1 ? "n\(p.node(ofWorker: w))/w\(w)" : "w\(w)"
    }

    /// Experts of one worker, repeated replicas shown as `9×2`.
    static func held(_ experts: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        let sorted = experts.sorted()
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[i] { j += 1 }
            parts.append(j > i ? "\(sorted[i])×\(j - i + 1)" : "\(sorted[i])")
            i = j + 1
        }
        return parts.joined(separator: " ")
    }

    /// A bar of `█` scaled so that `scale` fills `width` cells, with eighth blocks for the remainder.
    static func bar(_ value: Double, _ scale: Double, _ width: Int) -> String {
        guard scale > 0, value > 0 else { return "" }
        let eighths = Int((value / scale * Double(width) * 8).rounded())
        let partial = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"]
        return String(repeating: "█", count: eighths / 8) + partial[eighths % 8]
    }

    static func fixed(_ x: Double) -> String { String(format: "%.2f", x) }
    static func count(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(format: "%.1f", x) }
    static func bytes(_ b: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b), u = 0
        while v >= 1024 && u + 1 < units.count { v /= 1024; u += 1 }
        return u == 0 ? "\(b) bytes" : String(format: "%.1f", v) + " " + units[u]
    }
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
    static func padLeft(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
}
