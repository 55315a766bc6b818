import Foundation
import MoEKernelsAVX2

extension Kernels {
    /// The rotary embedding's angles for positions `0..<rows` as transformers computes them (its
    /// default rope): `inv_freq[i] = 1 / θ^(2i/D)` and `angle = position · inv_freq[i]`, each
    /// rounded to float32, then cos and sin of the rounded angle. `cos` and `sin` get `[rows, D/2]`.
    public static func ropeTables(
        rows: Int, headDim: Int, theta: Double, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>
    ) {
        let half = headDim / 2
        for i in 0..<half {
            let exponent = Float(2 * i) / Float(headDim)
            let inverse = 1 / Float(Foundation.pow(Double(Float(theta)), Double(exponent)))
            for t in 0..<rows {
                let angle = Double(Float(t) * inverse)
                cos[t * half + i] = Float(Foundation.cos(angle))
                sin[t * half + i] = Float(Foundation.sin(angle))
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
    public static func attentionScoresFloats(tokens: Int) -> Int { 4 * (tokens + 4) }

    /// The work items of `attention` for `heads` heads of `tokens` rows: blocks of up to 4 rows.
    public static func attentionItems(tokens: Int, heads: Int) -> Int { heads * ((tokens + 3) / 4) }

    /// Causal self-attention for the work items `items` (item w is query head `w / blocks`, rows
    /// `4·(w % blocks) ..< +4` with blocks = ⌈tokens / 4⌉): `out[t, head h] = Σ_s p_s · v[s, g]`
    /// over the rows s ≤ t (and t − s < `window` when `window` > 0), with
    /// `p = softmax(scale · q[t, h] · k[s, g])` and kv head g = h / (heads / kvHeads), the query
    /// heads sharing each key and value head in order, as transformers' `repeat_kv` lays them out.
    /// With AVX2 four rows of a head go through `avx2AttentionRows4` together; otherwise one row
    /// at a time (a GEMV over the keys, a softmax, AXPYs of the value rows). `scores` holds
    /// `attentionScoresFloats(tokens:)` floats for this caller.
    public static func attention(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        tokens: Int, heads: Int, kvHeads: Int, headDim: Int, valueDim: Int, scale: Float, window: Int,
        items: Range<Int>, scores: UnsafeMutablePointer<Float>, isa: ISA = .best
    ) {
        let ldq = heads * headDim, ldk = kvHeads * headDim, ldv = kvHeads * valueDim, ldo = heads * valueDim
        let group = heads / kvHeads, blocks = (tokens + 3) / 4
        for w in items {
            let h = w / blocks, row0 = 4 * (w % blocks), g = h / group
            let rows = min(4, tokens - row0)
            if isa.runsAVX2 {
                avx2AttentionRows4(
                    q: q + row0 * ldq + h * headDim, ldq: ldq, k: k + g * headDim, ldk: ldk, v: v + g * valueDim, ldv: ldv,
                    out: out + row0 * ldo + h * valueDim, ldo: ldo, row0: row0, rows: rows, headDim: headDim, valueDim: valueDim,
                    scale: scale, window: window, scores: scores)
                continue
            }
            for t in row0..<(row0 + rows) {
                let first = window > 0 ? max(0, t - window + 1) : 0
                let count = t - first + 1
                gemv(k + first * ldk + g * headDim, q + t * ldq + h * headDim, scores, n: count, k: headDim, ldw: ldk, isa: isa)
                Kernels.scale(alpha: scale, scores, scores, count: count, isa: isa)
                softmaxRows(scores, scores, rows: 1, cols: count, isa: isa)
                let o = out + t * ldo + h * valueDim
                o.update(repeating: 0, count: valueDim)
                for s in 0..<count {
                    axpy(alpha: scores[s], v + (first + s) * ldv + g * valueDim, o, count: valueDim, isa: isa)
                }
            }
        }
    }
}
