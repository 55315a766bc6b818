import Foundation
import MoEIR
import MoEKernels

/// How the executor runs one MoE block, for `--emit plan`: the router step, the token permutation,
/// the packed weights, the combine, and, per batch size, which resource bounds the experts (the
/// machine model's regime) and so how the threads share them.
///
/// The regime is predicted with uniform routing (each expert receives `T·k/E` pairs and is touched
/// with probability `1 − (1 − k/E)^T`); at run time the executor prices the real groups the same
/// way (`MachineModel.gemmSeconds`) to cut the work between threads.
public struct ExpertBlockPlan: Sendable {
    public struct Regime: Sendable {
        public var tokens: Int
        /// Expected experts touched, and the weight bytes they stream.
        public var expertsTouched: Double
        public var weightBytes: Double
        public var flops: Double
        /// Predicted seconds on `threads` threads: streaming the touched weights, and the FLOPs.
        public var bandwidthSeconds: Double
        public var computeSeconds: Double
        public var bandwidthBound: Bool { bandwidthSeconds >= computeSeconds }
    }

    public var name: String
    public var experts: Int
    public var slots: Int
    public var hidden: Int
    public var ffn: Int
    public var kind: String
    /// The router's steps, as the schedule runs them (one fused step after `router-fusion`).
    public var router: String
    public var gateUpFused: Bool
    /// The passes' marks: `token-permutation`, `expert-weight-prepacking`, `combine-fusion`.
    public var permuted: Bool
    public var prepacked: Bool
    public var combineInDown: Bool
    /// The routing weight scales each expert's input rows, not its output (`weighting: "input"`).
    public var weightOnInput: Bool
    /// Runs as the packed experts kernel on moec's own kernels (permuted, pre-packed weights).
    public var packedKernel: Bool
    /// For experts written as an expression: the roles with biases, and the element-wise program
    /// between the projections (an epilogue) or the whole body (a `program` expert).
    public var biases: [String]
    public var program: String?
    /// Bytes of all experts' weights as packed at load time (panels of 16 columns, in each
    /// matrix's format); a Double, as it may exceed what an Int holds when the weights are
    /// merely addressable one by one.
    public var packedBytes: Double
    /// The storage format of each expert matrix, by role (`gate`, `up`, `down`, …), in order.
    public var formats: [(role: String, format: WeightFormat)]
    public var regimes: [Regime]

    /// One plan per `moe_experts` node, in graph order.
    public static func plans(_ g: Graph, tokens: [Int], threads: Int, model: MachineModel) -> [ExpertBlockPlan] {
        g.ids.compactMap { id -> ExpertBlockPlan? in
            let n = g[id]
            guard let experts = n.expertsView, let routing = g[experts.routing].type.routing,
                let h = g[experts.input].tensorType?.last?.fixedValue
            else { return nil }
            let kind = experts.kind.rawValue
            let weights = experts.expertWeights.compactMap { g[$0].tensorType?.fixedShape }.filter { $0.count == 3 }
            let ffn = weights.last.map { $0[2] } ?? 0
            // Packed rows of each matrix, rounded up to whole panels of 16.
            let panel = PackedWeight.panelWidth
            // A stored gate_up [2F, H] is packed as gate and up each rounded up (interleaved).
            let fusedStored = experts.kind == .swiglu_fused
            // Each 3-D expert weight's storage bytes per element (the matrices', for the formats).
            let elementBytes = experts.expertWeights.filter { g[$0].tensorType?.fixedShape?.count == 3 }.map { Self.format(g, $0).bytesPerWeight }
            let perExpertBytes = weights.enumerated().reduce(0.0) { sum, w in
                let rows =
                    fusedStored && w.offset == 0
                    ? 2 * ((w.element[1] / 2 + panel - 1) / panel * panel)
                    : (w.element[1] + panel - 1) / panel * panel
                return sum + Double(rows) * Double(w.element[2]) * elementBytes[w.offset]
            }
            let e = routing.experts, k = routing.slots
            let bytesPerExpert = zip(weights, elementBytes).reduce(0.0) { $0 + Double($1.0[1]) * Double($1.0[2]) * $1.1 }
            let flopsPerExpert = weights.reduce(0.0) { $0 + Double($1[1]) * Double($1[2]) } * 2
            let regimes = tokens.map { t -> Regime in
                let touched = Double(e) * (1 - pow(1 - Double(k) / Double(e), Double(t)))
                let bytes = touched * bytesPerExpert
                let flops = Double(t * k) * flopsPerExpert
                return Regime(
                    tokens: t, expertsTouched: touched, weightBytes: bytes, flops: flops,
                    bandwidthSeconds: bytes / (model.bytesPerSecondPerThread * Double(threads)),
                    computeSeconds: flops / (model.flopsPerThread * Double(threads)))
            }
            return ExpertBlockPlan(
                name: n.name ?? id.description, experts: e, slots: k, hidden: h, ffn: ffn, kind: kind,
                router: routerSteps(g, experts.routing), gateUpFused: experts.has(.fuseGateUp),
                permuted: experts.has(.permute),
                prepacked: experts.has(.prepacked),
                combineInDown: experts.has(.combineInDown),
                weightOnInput: experts.weightOnInput,
                packedKernel: Executable.runsPackedKernel(n, g),
                biases: experts.biasRoles, program: n.attributes.string(experts.kind == .program ? "body" : "epilogue"),
                packedBytes: perExpertBytes * Double(e),
                formats: zip(experts.kind.matrixRoles, experts.matrices).map { ($0, Self.format(g, $1)) }, regimes: regimes)
        }
    }

    /// The storage format of weight node `id` (f32 for a computed operand).
    static func format(_ g: Graph, _ id: ValueID) -> WeightFormat {
        guard g[id].op == .weight, let i = g[id].attributes.int("index"), g.weights.indices.contains(i) else { return .f32 }
        return g.weights[i].format
    }

    /// "gate, up, down: bf16 (widened to f32 in registers)" and the like, for `--emit plan`.
    public var formatDescription: String {
        var groups: [(WeightFormat, [String])] = []
        for (role, f) in formats {
            if let i = groups.firstIndex(where: { $0.0 == f }) { groups[i].1.append(role) } else { groups.append((f, [role])) }
        }
        return groups.map { f, roles in
            roles.joined(separator: ", ") + ": " + f.rawValue + Self.formatNote(f, packedKernel: packedKernel)
        }.joined(separator: "; ")
    }

    /// How a format's matrices run, for `formatDescription`.
    static func formatNote(_ f: WeightFormat, packedKernel: Bool) -> String {
        switch f {
        case .f32: return ""
        case .bf16, .f16:
            return packedKernel
                ? " (half the bytes; widened to f32 in registers, f32 sums)" : " (values rounded to \(f.rawValue), held as f32 on this path)"
        default:
            let what =
                (f.isGGUFType ? "the GGUF file's values, repacked: " : "")
                + "\(f.bits)-bit values"
                + " in groups of \(f.group!) with fp32 scales"
                + (f.offsets ? " and offsets" : "")
            guard packedKernel else { return " (\(what); values rounded, held as f32 on this path)" }
            // As `moec bench` says it: integer products on CPUs with AVX2 (int8 beyond 16 rows
            // widened there), else or with MOEC_INT8_ROWS=0 widened.
            return Kernels.integerProductsByDefault
                ? " (\(what); \(Kernels.quantizedProductsDescription))" : " (\(what); widened to f32 in registers, f32 sums)"
        }
    }

    /// The routing chain feeding a block, first step first (`fused_router{softmax → top-2 → renormalize}`).
    static func routerSteps(_ g: Graph, _ routing: ValueID) -> String {
        var chain: [String] = []
        var v = routing
        while g[v].op.isRouting {
            let n = g[v]
            if n.op == .fused_router {
                var parts: [String] = []
                if let s = n.attributes.string("score"), s != "identity" { parts.append(s) }
                parts.append("top-\(n.attributes.int("k") ?? 0)" + ((n.attributes.int("groups") ?? 1) > 1 ? " in groups" : ""))
                if let m = n.attributes.string("normalize") { parts.append(m == "sum" ? "renormalize" : "softmax") }
                if let f = n.attributes.float("scale") { parts.append("× \(f)") }
                chain.append("fused_router (" + parts.joined(separator: " → ") + ")")
            } else {
                chain.append(n.op.rawValue)
            }
            guard n.op.isSelection == false, let next = n.operands.first else { break }
            v = next
        }
        return chain.reversed().joined(separator: " → ")
    }
}
