// Causal self-attention for four query rows of one head at a time (AVX2 + FMA). Each key and
// value row is loaded once for the four queries, where a query at a time reads them four times
// and pays a GEMV call per row. The arithmetic per query row is the one-row kernel's: fp32 dot
// products, a softmax, a weighted sum of value rows.

/// Attention of the query rows at positions `row0 ..< row0 + rows` (rows ≤ 4) of one head. `q`
/// points at the first of them's head (rows `ldq` apart), `k` and `v` at key/value row 0 (the
/// sequence's first position) of the head's group (rows `ldk`, `ldv` apart), `out` at the first
/// row's head output (rows `ldo` apart). Row t sees keys
/// `first(t) ... t` with first(t) = max(0, t − window + 1) when `window` > 0, else 0. `sinks`
/// (gpt-oss), one per row, are one more logit in each row's softmax, with no value row. `scores` holds
/// 4 × (row0 + 5) floats.
///
/// With `rowStep` 0 the rows are not consecutive positions but query heads of one position that
/// share the key/value head (a decode step's grouped-query heads, `ldq` = `headDim` apart): all
/// see the keys up to `row0`.
@inline(never)
public func avx2AttentionRows4(
    q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int,
    out: UnsafeMutablePointer<Float>, ldo: Int, row0: Int, rows: Int, headDim d: Int, valueDim dv: Int,
    scale: Float, window: Int, sinks: SIMD4<Float>?, scores: UnsafeMutablePointer<Float>, rowStep: Int = 1
) {
    let last = row0 + rowStep * (rows - 1)
    let first = window > 0 ? max(0, row0 - window + 1) : 0
    let count = last - first + 1
    // Missing rows (fewer than 4 at the end) repeat the last one; their results are not stored.
    let q0 = q, q1 = q + min(1, rows - 1) * ldq, q2 = q + min(2, rows - 1) * ldq, q3 = q + min(3, rows - 1) * ldq
    // Each row's scores, then its sink's logit when there is one.
    let width = sinks == nil ? count : count + 1
    let s0 = scores, s1 = scores + width, s2 = scores + 2 * width, s3 = scores + 3 * width
    if let sinks { s0[count] = sinks[0]; s1[count] = sinks[1]; s2[count] = sinks[2]; s3[count] = sinks[3] }
    let d8 = d & ~7
    // Scores: two keys against the four rows per pass, eight accumulators.
    var j = 0
    while j < count {
        let twoKeys = j + 1 < count
        let ka = k + (first + j) * ldk, kb = twoKeys ? ka + ldk : ka
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var b0 = SIMD8<Float>(), b1 = SIMD8<Float>(), b2 = SIMD8<Float>(), b3 = SIMD8<Float>()
        var c = 0
        while c < d8 {
            let x = load8(ka + c), y = load8(kb + c)
            let r0 = load8(q0 + c), r1 = load8(q1 + c), r2 = load8(q2 + c), r3 = load8(q3 + c)
            a0 = a0.addingProduct(r0, x); a1 = a1.addingProduct(r1, x); a2 = a2.addingProduct(r2, x); a3 = a3.addingProduct(r3, x)
            b0 = b0.addingProduct(r0, y); b1 = b1.addingProduct(r1, y); b2 = b2.addingProduct(r2, y); b3 = b3.addingProduct(r3, y)
            c += 8
        }
        var da = SIMD4<Float>(hsum(a0), hsum(a1), hsum(a2), hsum(a3))
        var db = SIMD4<Float>(hsum(b0), hsum(b1), hsum(b2), hsum(b3))
        while c < d {
            let column = SIMD4<Float>(q0[c], q1[c], q2[c], q3[c])
            da = da.addingProduct(column, ka[c])
            db = db.addingProduct(column, kb[c])
            c += 1
        }
        // Row row0 + r sees a key not later than itself and within the window; the others get −∞.
        @inline(__always) func put(_ s: UnsafeMutablePointer<Float>, _ r: Int, _ key: Int, _ dot: Float) {
            let t = row0 + rowStep * min(r, rows - 1)
            s[key - first] = key <= t && (window <= 0 || t - key < window) ? dot * scale : -.infinity
        }
        put(s0, 0, first + j, da[0]); put(s1, 1, first + j, da[1]); put(s2, 2, first + j, da[2]); put(s3, 3, first + j, da[3])
        if twoKeys {
            put(s0, 0, first + j + 1, db[0]); put(s1, 1, first + j + 1, db[1]); put(s2, 2, first + j + 1, db[2]); put(s3, 3, first + j + 1, db[3])
        }
        j += 2
    }
    avx2SoftmaxRows(scores, scores, rows: 4, cols: width, ld: width)
    // Weighted sums: 8 output columns of the four rows per pass over the value rows.
    var c = 0
    while c + 8 <= dv {
        var o0 = SIMD8<Float>(), o1 = SIMD8<Float>(), o2 = SIMD8<Float>(), o3 = SIMD8<Float>()
        for j in 0..<count {
            let x = load8(v + (first + j) * ldv + c)
            o0 = o0.addingProduct(SIMD8(repeating: s0[j]), x)
            o1 = o1.addingProduct(SIMD8(repeating: s1[j]), x)
            o2 = o2.addingProduct(SIMD8(repeating: s2[j]), x)
            o3 = o3.addingProduct(SIMD8(repeating: s3[j]), x)
        }
        store8(o0, out + c)
        if rows > 1 { store8(o1, out + ldo + c) }
        if rows > 2 { store8(o2, out + 2 * ldo + c) }
        if rows > 3 { store8(o3, out + 3 * ldo + c) }
        c += 8
    }
    while c < dv {
        var o = SIMD4<Float>()
        for j in 0..<count { o = o.addingProduct(SIMD4<Float>(s0[j], s1[j], s2[j], s3[j]), v[(first + j) * ldv + c]) }
        for r in 0..<rows { out[r * ldo + c] = o[r] }
        c += 1
    }
}
