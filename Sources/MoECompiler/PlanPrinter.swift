import Foundation
import MoEBackend
import MoEBasics
import MoEIO
import MoEIR

/// `--emit plan`: what `moec run` will execute, for a person: the weights and where they come
/// from, the flat schedule of steps, and the arena the steps share at a few token counts.
public struct PlanPrinter {
    public static let sampleTokens = [1, 16, 128, 512]

    public init() {}

    public func print(graph g: Graph, checkpoint: Checkpoint?, sourcePath: String) -> String {
        var out = "plan \(g.name)\n"
        out += "  source   \(sourcePath)\n"
        if let c = checkpoint {
            out += "  model    \(c.path) (\(c.shardPaths.count) weight file\(c.shardPaths.count == 1 ? "" : "s"))\n"
        } else {
            out += "  model    not bound (pass --model DIR to bind and check weights)\n"
        }
        let names = IRPrinter(showLocations: false).valueNames(g)

        out += "\nweights (\(formatBytes(g.weights.reduce(0) { $0 + $1.elementCount * 4 })) as f32)\n"
        for w in g.weights {
            var line = "  @\(w.name)".padded(to: 18) + "f32\(w.shape)".padded(to: 22)
            line += formatBytes(w.elementCount * 4).padded(to: 11)
            let count = w.perExpert ? " (×\(w.shape[0]) tensors)" : ""
            var dtype = ""
            if let c = checkpoint, let first = w.tensors.first, let info = try? c.info(first.name) {
                dtype = " [\(info.dtype.rawValue)]"
            }
            out += line + w.pattern + count + dtype + "\n"
        }

        out += "\nschedule (one shape-specialised closure per step)\n"
        var step = 0
        for (i, n) in g.nodes.enumerated() where ![.input, .weight, .constant].contains(n.op) {
            let operands = n.operands.map { names[$0.index] }.joined(separator: ", ")
            let type = IRPrinter().format(n.type, g)
            out += String(format: "  %3d  ", step) + "\(names[i]) = \(n.op.rawValue) \(operands)".padded(to: 58) + type + "\n"
            step += 1
        }

        out += "\nmemory (one arena; buffers share space when their lifetimes do not overlap)\n"
        out += "  tokens        arena   without reuse   peak live\n"
        for t in Self.sampleTokens {
            let m = Schedule.memoryPlan(g, tokens: t)
            out += String(format: "  %6d ", t) + formatBytes(m.layout.totalBytes).leftPadded(to: 12)
                + formatBytes(m.unsharedBytes).leftPadded(to: 16) + formatBytes(m.layout.peakLiveBytes).leftPadded(to: 12) + "\n"
        }
        out += "\noutputs: " + g.outputs.map { "\($0.name) \(IRPrinter().format(g[$0.value].type, g))" }.joined(separator: ", ") + "\n"
        return out
    }
}

func formatBytes(_ b: Int) -> String {
    let d = Double(b)
    if d >= 1e9 { return String(format: "%.2f GB", d / 1e9) }
    if d >= 1e6 { return String(format: "%.1f MB", d / 1e6) }
    if d >= 1e3 { return String(format: "%.1f kB", d / 1e3) }
    return "\(b) B"
}

extension String {
    func padded(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
