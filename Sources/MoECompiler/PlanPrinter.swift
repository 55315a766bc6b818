import Foundation
import MoEBackend
import MoEBasics
import MoEIO
import MoEIR

/// `--emit plan`: what `moec run` will execute, for a person: the weights and where they come
/// from, the flat schedule of steps (the backend's `Schedule.stepDescriptions`: the steps a run
/// executes), and the arena the steps share at a few token counts.
public struct PlanPrinter {
    public static let sampleTokens = [1, 16, 128, 512]

    /// Threads the regime predictions assume (`moec run`'s default: all cores).
    public var threads: Int

    public init(threads: Int = ExecutionOptions.defaultThreads) { self.threads = threads }

    static func describe(_ b: ExpertBlockPlan, threads: Int) -> String {
        var out = "  \(b.name): \(b.experts) experts (\(b.kind), hidden \(b.hidden), ffn \(b.ffn)), \(b.slots) per token\n"
        func line(_ label: String, _ text: String) { out += "    " + label.padded(to: 10) + text + "\n" }
        line("router", b.router + (b.router.hasPrefix("fused_router") ? ": one pass over the tokens" : ""))
        if b.permuted {
            line("dispatch", "counting sort of the (token, slot) pairs by expert: one contiguous GEMM per expert (token-permutation)")
        } else {
            line("dispatch", "pair by pair: each (token, slot) pair runs its expert on its one row (no token-permutation)")
        }
        switch b.kind {
        case "swiglu" where b.gateUpFused && b.packedKernel, "swiglu_fused" where b.packedKernel:
            line("weights", "gate and up as one [2F, H] matrix per expert, interleaved by panel (expert-gate-up-fusion),")
            line("", "the SwiGLU in the GEMM's epilogue, 16 features at a time while they are in cache;")
        case "swiglu_fused":
            line("weights", "gate and up as stored, one [2F, H] matrix per expert, SwiGLU on its output;")
        case "swiglu":
            line("weights", "gate and up as two [F, H] matrices per expert, SwiGLU on their outputs;")
        default:
            line("weights", b.packedKernel ? "up [F, H] per expert, the activation in the GEMM's epilogue;" : "up [F, H] per expert, the activation on its output;")
        }
        if b.prepacked {
            line(
                "",
                "down [H, F]: " + TextLayout.bytes(b.packedBytes) + " packed once at load time, in panels of 16 columns (expert-weight-prepacking)")
            line("format", b.formatDescription)
        } else {
            line("", "down [H, F]: kept as stored; moec's kernels pack each matrix per call (no expert-weight-prepacking)")
        }
        if b.weightOnInput {
            line("combine", "the routing weight scales each row as it is gathered (weighting: input); each token sums its rows")
        } else if b.combineInDown && b.packedKernel {
            line("combine", "the routing weight is folded into the down GEMM's operand; each token sums its rows (combine-fusion)")
        } else {
            line(
                "combine",
                "each token adds its rows times their routing weights after the down projection"
                    + (b.combineInDown ? " (combine-fusion needs the packed kernel)" : " (no combine-fusion)"))
        }
        if b.kind == "program" {
            line("expert", "an expression the packed kernel's shapes do not cover, on the general path: per expert, one GEMM")
            line("", "per linear over all its rows and element-wise kernels between: " + (b.program ?? ""))
        } else if b.program != nil || !b.biases.isEmpty {
            let where_ = b.packedKernel && (b.kind != "swiglu" || b.gateUpFused) ? "in the GEMM's epilogue" : "after the first layer"
            line(
                "expert",
                "an expression on the " + (b.packedKernel ? "packed kernel" : "unfused path")
                    + (b.biases.isEmpty ? "" : ", with biases on " + b.biases.joined(separator: ", ")))
            line("", "between the projections, " + where_ + ": " + (b.program ?? (b.kind == "mlp" ? "the activation" : "SwiGLU")))
        }
        if b.kind == "program" {
            line("kernel", "general expression path (ExpertProgramKernel)")
        } else if b.packedKernel {
            line("kernel", "packed experts kernel: rows gathered straight into the packed operand, phases cut between threads")
        } else {
            line("kernel", "unfused: one matrix product per expert and projection (the packed kernel needs permuted, pre-packed weights)")
        }
        let m = MachineModel.forPlanning
        line(
            "regime",
            String(
                format: "predicted for uniform routing on %d thread%@ at %.0f GFLOP/s and %.1f GB/s per thread (%@)",
                threads, threads == 1 ? "" : "s", m.flopsPerThread / 1e9, m.bytesPerSecondPerThread / 1e9, m.source))
        out += "      tokens   experts hit   weights read   stream ms   compute ms   bound by\n"
        for r in b.regimes {
            out += String(format: "      %6d   %11.1f   ", r.tokens, r.expertsTouched) + TextLayout.rightColumn(TextLayout.bytes(r.weightBytes), 12)
            out += String(format: "   %9.2f   %10.2f   ", r.bandwidthSeconds * 1e3, r.computeSeconds * 1e3)
            out += r.bandwidthBound ? "bandwidth (threads share the experts' weight panels)\n" : "compute (threads share GEMM panels by FLOPs)\n"
        }
        return out
    }

    public func print(graph g: Graph, checkpoint: Checkpoint?, sourcePath: String) -> String {
        var out = "plan \(g.name)\n"
        out += "  source   \(sourcePath)\n"
        if let c = checkpoint {
            out += "  model    \(c.path) (\(c.shardPaths.count) weight file\(c.shardPaths.count == 1 ? "" : "s"))\n"
        } else {
            out += "  model    not bound (pass --model DIR to bind and check weights)\n"
        }
        let names = IRPrinter(showLocations: false).valueNames(g)

        // Summed as Doubles: each weight's bytes fit in an Int (`Addressable`), their sum need not.
        let byFormat = WeightFormat.allCases.map { f in
            (f, g.weights.filter { $0.format == f }.reduce(0.0) { $0 + Double($1.elementCount) * f.bytesPerWeight })
        }.filter { $0.1 > 0 }
        if byFormat.count <= 1 {
            out += "\nweights (\(TextLayout.bytes(byFormat.first?.1 ?? 0)) as \(byFormat.first?.0.rawValue ?? "f32"))\n"
        } else {
            let total = byFormat.reduce(0.0) { $0 + $1.1 }
            out += "\nweights (\(TextLayout.bytes(total)): " + byFormat.map { "\(TextLayout.bytes($0.1)) as \($0.0.rawValue)" }.joined(separator: ", ") + ")\n"
        }
        for w in g.weights {
            var line = "  @\(w.name)".padded(to: 18) + "\(w.format.rawValue)\(w.shape)".padded(to: 22)
            line += TextLayout.bytes(Double(w.elementCount) * w.format.bytesPerWeight).padded(to: 11)
            let count = w.perExpert ? " (×\(w.shape[0]) tensors)" : ""
            var dtype = ""
            if let c = checkpoint, let first = w.tensors.first, let info = try? c.info(first.name) {
                let int4 = info.int4Group.map { "\(c.int4Quantization?.method.rawValue.uppercased() ?? "") int4, groups of \($0)" }
                dtype = " [\(info.ggmlType.map { "\($0)" } ?? int4 ?? info.dtype.rawValue)]"
            }
            let layout = w.layout.isEmpty ? "" : " |> " + w.layout.text
            out += line + w.pattern + layout + count + dtype + "\n"
        }

        out += "\nschedule (one shape-specialised closure per step)\n"
        for (step, s) in Schedule.stepDescriptions(g).enumerated() {
            let n = g[s.node]
            let operands = n.operands.map { names[$0.index] }.joined(separator: ", ")
            let type = IRPrinter().format(n.type, g)
            out += String(format: "  %3d  ", step) + "\(names[s.node.index]) = \(s.name) \(operands)".padded(to: 58) + type + "\n"
        }

        let blocks = ExpertBlockPlan.plans(g, tokens: Self.sampleTokens, threads: threads, model: .forPlanning)
        if !blocks.isEmpty {
            out += "\nexperts (moec's kernels, the default on AVX2 CPUs; with MOEC_BLAS the expert GEMMs go through BLAS)\n"
            for b in blocks { out += Self.describe(b, threads: threads) }
        }

        out +=
            g.lastReaders == nil
            ? "\nmemory (one arena; no memory-planning pass: every value keeps its own bytes, only scratch is shared)\n"
            : "\nmemory (one arena; by the memory-planning pass's liveness, buffers share space when their lifetimes do not overlap)\n"
        out += "  tokens        arena   without reuse   peak live\n"
        for t in Self.sampleTokens {
            guard let m = try? Schedule.memoryPlan(g, tokens: t) else {
                out += String(format: "  %6d ", t) + "  more bytes than moec can address\n"
                continue
            }
            out +=
                String(format: "  %6d ", t) + TextLayout.rightColumn(TextLayout.bytes(m.layout.totalBytes), 12)
                + TextLayout.rightColumn(TextLayout.bytes(m.unsharedBytes), 16) + TextLayout.rightColumn(TextLayout.bytes(m.layout.peakLiveBytes), 12) + "\n"
        }
        out += "\noutputs: " + g.outputs.map { "\($0.name) \(IRPrinter().format(g[$0.value].type, g))" }.joined(separator: ", ") + "\n"
        return out
    }
}
