import MoEIR
import MoEKernels

/// The weights of one MoE block's experts, packed once at load time for the native kernel.
///
/// Per expert: the first layer as one or two packed matrices writing side by side into a
/// `[rows, firstWidth]` buffer (gate columns, then up columns, for SwiGLU), and the down
/// projection. With `fuse_gate_up` (set by the `ExpertGateUpFusion` pass) gate and up are packed
/// as one `[2F, H]` matrix, so the first layer is one GEMM streaming one weight.
struct ExpertMatrices: @unchecked Sendable {
    /// Per expert: (matrix, first output column) pairs of the first layer.
    let first: [[(matrix: PackedWeight, column: Int)]]
    /// Per expert: the down projection `[H, F]`.
    let down: [PackedWeight]
    /// Output columns of the first layer (2F for SwiGLU, F for an MLP).
    let firstWidth: Int

    /// Whether the node's expert matrices are all weights (computed ones run through `MatMulBackend.linear`).
    static func expertsAreWeights(_ n: Node, _ g: Graph) -> Bool {
        let withActive = n.attributes.bool("with_active") ?? false
        return (2..<(n.operands.count - (withActive ? 1 : 0))).allSatisfy { g[n.operands[$0]].op == .weight }
    }

    /// `releasable`: weight indices no one else reads, whose unpacked pages are given back as soon
    /// as each expert is packed (so peak memory stays near one copy of the weights).
    init(node n: Node, graph g: Graph, weights: [AlignedBuffer], threads: Int, releasable: Set<Int> = []) {
        let kind = ExpertKind(rawValue: n.attributes.string("kind")!)!
        let withActive = n.attributes.bool("with_active") ?? false
        let operandWeights = (2..<(n.operands.count - (withActive ? 1 : 0))).map { i -> (buffer: AlignedBuffer, shape: [Int], release: Bool) in
            let w = g[n.operands[i]]
            let index = w.attributes.int("index")!
            return (weights[index], g.weights[index].shape, releasable.contains(index))
        }
        func matrix(_ w: (buffer: AlignedBuffer, shape: [Int], release: Bool), expert e: Int) -> PackedWeight {
            let rows = w.shape[1], k = w.shape[2]
            let packed = PackedWeight(weight: UnsafePointer(w.buffer.floats + e * rows * k), n: rows, k: k, threads: threads)
            if w.release { w.buffer.releasePages(floats: e * rows * k ..< (e + 1) * rows * k) }
            return packed
        }
        let experts = operandWeights[0].shape[0]
        var first: [[(PackedWeight, Int)]] = []
        var down: [PackedWeight] = []
        switch kind {
        case .swiglu:
            let gate = operandWeights[0], up = operandWeights[1]
            let f = gate.shape[1], h = gate.shape[2]
            let fuse = n.attributes.bool("fuse_gate_up") ?? false
            let joined = fuse ? AlignedBuffer(floats: 2 * f * h, zeroed: false) : nil
            for e in 0..<experts {
                if let joined {
                    joined.floats.update(from: gate.buffer.floats + e * f * h, count: f * h)
                    (joined.floats + f * h).update(from: up.buffer.floats + e * f * h, count: f * h)
                    if gate.release { gate.buffer.releasePages(floats: e * f * h ..< (e + 1) * f * h) }
                    if up.release { up.buffer.releasePages(floats: e * f * h ..< (e + 1) * f * h) }
                    first.append([(PackedWeight(weight: UnsafePointer(joined.floats), n: 2 * f, k: h, threads: threads), 0)])
                } else {
                    first.append([(matrix(gate, expert: e), 0), (matrix(up, expert: e), f)])
                }
                down.append(matrix(operandWeights[2], expert: e))
            }
            firstWidth = 2 * f
        case .swiglu_fused:
            for e in 0..<experts {
                first.append([(matrix(operandWeights[0], expert: e), 0)])
                down.append(matrix(operandWeights[1], expert: e))
            }
            firstWidth = operandWeights[0].shape[1]
        case .mlp:
            for e in 0..<experts {
                first.append([(matrix(operandWeights[0], expert: e), 0)])
                down.append(matrix(operandWeights[1], expert: e))
            }
            firstWidth = operandWeights[0].shape[1]
        }
        self.first = first.map { $0.map { (matrix: $0.0, column: $0.1) } }
        self.down = down
    }

    var byteCount: Int {
        first.reduce(0) { $0 + $1.reduce(0) { $0 + $1.matrix.byteCount } } + down.reduce(0) { $0 + $1.byteCount }
    }
}
