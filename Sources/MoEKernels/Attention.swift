import Foundation
import MoEKernelsAVX2

extension Kernels {
    /// YaRN's settings (transformers' `_compute_yarn_parameters`, gpt-oss's rope): `factor` the
    /// context extension, `betaFast`/`betaSlow` the rotations bounding the ramp between
    /// extrapolated and interpolated frequencies, `originalMax` the trained context,
    /// `truncate` whether the ramp's bounds are rounded out to whole dimensions,
    /// `attentionFactor` the factor on cos and sin (nil: 0.1·ln(factor) + 1).
    public struct YaRN: Sendable {
        public var factor: Double, betaFast: Double, betaSlow: Double, originalMax: Int, truncate: Bool
        public var attentionFactor: Double?
        public init(factor: Double, betaFast: Double, betaSlow: Double, originalMax: Int, truncate: Bool, attentionFactor: Double?) {
            self.factor = factor
            self.betaFast = betaFast
            self.betaSlow = betaSlow
            self.originalMax = originalMax
            self.truncate = truncate
            self.attentionFactor = attentionFactor
        }

        /// The factor on cos and sin.
        public var scale: Double { attentionFactor ?? (factor <= 1 ? 1 : 0.1 * Foundation.log(factor) + 1) }

        /// The ramp's bounds in dimensions: from `betaFast` rotations (extrapolated below) to
        /// `betaSlow` (interpolated above) over the trained context.
        public func correctionRange(headDim d: Int, theta: Double) -> (low: Double, high: Double) {
            func dimension(_ rotations: Double) -> Double {
                Double(d) * Foundation.log(Double(originalMax) / (rotations * 2 * Double.pi)) / (2 * Foundation.log(theta))
            }
            var low = dimension(betaFast), high = dimension(betaSlow)
            if truncate { low = low.rounded(.down); high = high.rounded(.up) }
            return (max(low, 0), min(high, Double(d - 1)))
        }
    }

    /// The rotary embedding's angles for positions `0..<rows` as transformers computes them:
    /// `inv_freq[i] = 1 / θ^(2i/D)` (with YaRN, blended with `inv_freq[i] / factor` along a
    /// linear ramp over i) and `angle = position · inv_freq[i]`, each rounded to float32 where
    /// transformers computes in float32, then cos and sin of the rounded angle (times YaRN's
    /// attention factor). `cos` and `sin` get `[rows, D/2]`.
    public static func ropeTables(
        rows: Int, headDim: Int, theta: Double, yarn: YaRN? = nil, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>
    ) {
        let half = headDim / 2
        let range = yarn?.correctionRange(headDim: headDim, theta: theta)
        let scale = Float(yarn?.scale ?? 1)
        for i in 0..<half {
            let exponent = Float(2 * i) / Float(headDim)
            let power = Float(Foundation.pow(Double(Float(theta)), Double(exponent)))
            var inverse = 1 / power
            if let yarn, let range {
                let interpolated = 1 / (Float(yarn.factor) * power)
                let width = range.high == range.low ? 0.001 : Float(range.high - range.low)
                let ramp = min(max((Float(i) - Float(range.low)) / width, 0), 1)
                let extrapolation = 1 - ramp
                inverse = interpolated * (1 - extrapolation) + inverse * extrapolation
            }
            for t in 0..<rows {
                let angle = Double(Float(t) * inverse)
                cos[t * half + i] = Float(Foundation.cos(angle)) * scale
                sin[t * half + i] = Float(Foundation.sin(angle)) * scale
            }
        }
    }

    /// Rotary position embedding of rows `rows` of `x` `[·, width]` (heads of `headDim` side by
    /// side) into `y` (may be `x`): in each head, the pair (j, j + D/2) of row t is rotated by the
    /// angle of (t, j) in the tables of `ropeTables`, as transformers' `rotate_half` does:
    /// `y₁ = x₁·cos − x₂·sin`, `y₂ = x₂·cos + x₁·sin`.
    public static func rope(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>, width: Int, headDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = headDim / 2
        for t in rows {
            let c = cos + t * half, s = sin + t * half
            var head = 0
            while head < width {
                let a = x + t * width + head, b = y + t * width + head
                for j in 0..<half {
                    let x1 = a[j], x2 = a[j + half]
                    b[j] = x1 * c[j] + (-x2) * s[j]
                    b[j + half] = x2 * c[j] + x1 * s[j]
                }
                head += headDim
            }
        }
    }

    /// Floats of `scores` that `attention` needs per caller for `tokens` rows.
    public static func attentionScoresFloats(tokens: Int) -> Int { 4 * (tokens + 5) }

    /// The work items of `attention` for `heads` heads (`kvHeads` key/value heads) of `tokens`
    /// rows: blocks of up to 4 rows of a head; for one row (a decode step), blocks of up to 4 of
    /// the query heads that share a key/value head.
    public static func attentionItems(tokens: Int, heads: Int, kvHeads: Int) -> Int {
        tokens == 1 ? kvHeads * ((heads / kvHeads + 3) / 4) : heads * ((tokens + 3) / 4)
    }

    /// Causal self-attention for the work items `items` (`attentionItems`: item w is query head
    /// `w / blocks`, rows `4·(w % blocks) ..< +4` with blocks = ⌈tokens / 4⌉; for one row, item w
    /// is the query heads `4·(w % blocks) ..< +4` of key/value head `w / blocks` with blocks =
    /// ⌈group / 4⌉, which go through the kernel together, reading the shared keys and values
    /// once): `out[t, head h] = Σ_s p_s · v[s, g]`
    /// over the key rows s ≤ P + t (and P + t − s < `window` when `window` > 0), with
    /// `p = softmax(scale · q[t, h] · k[s, g])` and kv head g = h / (heads / kvHeads), the query
    /// heads sharing each key and value head in order, as transformers' `repeat_kv` lays them out.
    /// `sinks` (gpt-oss), one logit per query head, join each row's softmax with no value row.
    /// With AVX2 four rows of a head go through `avx2AttentionRows4` together; otherwise one row
    /// at a time (a GEMV over the keys, a softmax, AXPYs of the value rows).
    ///
    /// The query rows are at positions P = `position` onwards of the sequence: `q` and `out` hold
    /// the `tokens` rows of this run, `k` and `v` every row of the sequence from position 0 up
    /// to P + tokens (a KV cache followed by this run's rows). `scores` holds
    /// `attentionScoresFloats(tokens: position + tokens)` floats for this caller.
    public static func attention(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        tokens: Int, position: Int = 0, heads: Int, kvHeads: Int, headDim: Int, valueDim: Int, scale: Float, window: Int,
        sinks: UnsafePointer<Float>? = nil, items: Range<Int>, scores: UnsafeMutablePointer<Float>, isa: ISA = .best
    ) {
        let ldq = heads * headDim, ldk = kvHeads * headDim, ldv = kvHeads * valueDim, ldo = heads * valueDim
        let group = heads / kvHeads, blocks = (tokens + 3) / 4
        if tokens == 1 {
            let perGroup = (group + 3) / 4
            for w in items {
                let g = w / perGroup, h0 = g * group + 4 * (w % perGroup), n = min(4, (g + 1) * group - h0)
                if isa.runsAVX2 {
                    let sinkRows = sinks.map { s in SIMD4<Float>(s[h0], s[h0 + min(1, n - 1)], s[h0 + min(2, n - 1)], s[h0 + min(3, n - 1)]) }
                    avx2AttentionRows4(
                        q: q + h0 * headDim, ldq: headDim, k: k + g * headDim, ldk: ldk, v: v + g * valueDim, ldv: ldv,
                        out: out + h0 * valueDim, ldo: valueDim, row0: position, rows: n, headDim: headDim, valueDim: valueDim,
                        scale: scale, window: window, sinks: sinkRows, scores: scores, rowStep: 0)
                } else {
                    for h in h0..<(h0 + n) {
                        attentionRow(
                            q: q + h * headDim, k: k + g * headDim, ldk: ldk, v: v + g * valueDim, ldv: ldv, out: out + h * valueDim,
                            position: position, headDim: headDim, valueDim: valueDim, scale: scale, window: window, sink: sinks?[h],
                            scores: scores, isa: isa)
                    }
                }
            }
            return
        }
        for w in items {
            let h = w / blocks, row0 = 4 * (w % blocks), g = h / group
            let rows = min(4, tokens - row0)
            if isa.runsAVX2 {
                avx2AttentionRows4(
                    q: q + row0 * ldq + h * headDim, ldq: ldq, k: k + g * headDim, ldk: ldk, v: v + g * valueDim, ldv: ldv,
                    out: out + row0 * ldo + h * valueDim, ldo: ldo, row0: position + row0, rows: rows, headDim: headDim, valueDim: valueDim,
                    scale: scale, window: window, sinks: sinks.map { SIMD4(repeating: $0[h]) }, scores: scores)
                continue
            }
            for t in row0..<(row0 + rows) {
                attentionRow(
                    q: q + t * ldq + h * headDim, k: k + g * headDim, ldk: ldk, v: v + g * valueDim, ldv: ldv, out: out + t * ldo + h * valueDim,
                    position: position + t, headDim: headDim, valueDim: valueDim, scale: scale, window: window, sink: sinks?[h],
                    scores: scores, isa: isa)
            }
        }
    }

    /// One query row of one head at `position` (portable): a GEMV over the keys it sees, a
    /// softmax (with the `sink` logit), AXPYs of the value rows. `k` and `v` point at position
    /// 0's row of the head's key/value head.
    static func attentionRow(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int, out: UnsafeMutablePointer<Float>,
        position: Int, headDim: Int, valueDim: Int, scale: Float, window: Int, sink: Float?, scores: UnsafeMutablePointer<Float>, isa: ISA
    ) {
        let first = window > 0 ? max(0, position - window + 1) : 0
        let count = position - first + 1
        gemv(k + first * ldk, q, scores, n: count, k: headDim, ldw: ldk, isa: isa)
        Kernels.scale(alpha: scale, scores, scores, count: count, isa: isa)
        if let sink { scores[count] = sink }
        softmaxRows(scores, scores, rows: 1, cols: sink == nil ? count : count + 1, isa: isa)
        out.update(repeating: 0, count: valueDim)
        for s in 0..<count {
            axpy(alpha: scores[s], v + (first + s) * ldv, out, count: valueDim, isa: isa)
        }
    }
}
