// Element-wise and row kernels for AVX2 + FMA. Entry points are `@inline(never)`, non-generic,
// and take raw pointers and Ints (see AVX2GEMM.swift for why). Unless a kernel says otherwise,
// `y` may be the same buffer as `x` (in-place), but must not partially overlap it.

/// Applies `f` to 8 floats at a time; the tail goes through a zero-padded vector.
@inline(__always)
private func map(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ f: (V8) -> V8) {
    var i = 0
    while i + 16 <= n {
        let a = f(load8(x + i)), b = f(load8(x + i + 8))
        store8(a, y + i); store8(b, y + i + 8)
        i += 16
    }
    while i + 8 <= n { store8(f(load8(x + i)), y + i); i += 8 }
    if i < n {
        var v = V8()
        for j in 0..<(n - i) { v[j] = x[i + j] }
        let r = f(v)
        for j in 0..<(n - i) { y[i + j] = r[j] }
    }
}

/// Applies `f` to pairs of 8 floats from `a` and `b`.
@inline(__always)
private func map2(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
    _ f: (V8, V8) -> V8
) {
    var i = 0
    while i + 8 <= n { store8(f(load8(a + i), load8(b + i)), y + i); i += 8 }
    if i < n {
        var u = V8(), v = V8()
        for j in 0..<(n - i) { u[j] = a[i + j]; v[j] = b[i + j] }
        let r = f(u, v)
        for j in 0..<(n - i) { y[i + j] = r[j] }
    }
}

/// y = eˣ.
@inline(never) public func avx2Exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { vexp($0) }
}

/// y = 1 / (1 + e⁻ˣ).
@inline(never) public func avx2Sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { vsigmoid($0) }
}

/// y = x · sigmoid(x).
@inline(never) public func avx2SiLU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { $0 * vsigmoid($0) }
}

/// y = x · Φ(x) (exact GELU, PyTorch `F.gelu` default).
@inline(never) public func avx2GELU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { $0 * vphi($0) }
}

/// y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))), computed as x · sigmoid(2u) (same function,
/// no cancellation for negative x).
@inline(never) public func avx2GELUTanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { x in
        let x3 = x * x * x
        let u2 = splat(2 * 0.797_884_560_802_865_4) * x.addingProduct(splat(0.044_715), x3)
        return x * vsigmoid(u2)
    }
}

/// y = erf(x).
@inline(never) public func avx2Erf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { verf($0) }
}

/// y = max(x, 0) (NaN stays NaN, like PyTorch).
@inline(never) public func avx2ReLU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map(x, y, n) { $0.replacing(with: 0, where: $0 .< 0) }
}

/// y = a + b.
@inline(never) public func avx2Add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map2(a, b, y, n) { $0 + $1 }
}

/// y = a · b.
@inline(never) public func avx2Mul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    map2(a, b, y, n) { $0 * $1 }
}

/// y += alpha · x (one FMA per element).
@inline(never) public func avx2Axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let a = splat(alpha)
    map2(x, UnsafePointer(y), y, n) { x, y in y.addingProduct(a, x) }
}

/// y = alpha · x.
@inline(never) public func avx2Scale(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let a = splat(alpha)
    map(x, y, n) { $0 * a }
}

/// SwiGLU epilogue: for each of `rows` rows, `out[r, i] = silu(gu[r, i]) · gu[r, f + i]`, where a
/// row of `gu` is `[gate (f) | up (f)]` starting at `gu + r*ldIn`, and a row of `out` starts at
/// `out + r*ldOut`. `out` may alias the gate half (ldOut = ldIn), not the up half.
@inline(never) public func avx2SwiGLU(
    _ gu: UnsafePointer<Float>, ldIn: Int, _ out: UnsafeMutablePointer<Float>, ldOut: Int,
    rows: Int, f: Int
) {
    for r in 0..<rows {
        let g = gu + r * ldIn
        map2(g, g + f, out + r * ldOut, f) { g, u in (g * vsigmoid(g)) * u }
    }
}

/// Horizontal sum in a fixed order (also the attention kernel's dot products).
@inline(__always) func hsum(_ v: V8) -> Float {
    let a = v.lowHalf + v.highHalf
    return (a[0] + a[2]) + (a[1] + a[3])
}

@inline(__always) private func vmax(_ a: V8, _ b: V8) -> V8 { a.replacing(with: b, where: b .> a) }

@inline(__always) private func hmax(_ v: V8) -> Float {
    var m = v[0]
    for i in 1..<8 where v[i] > m { m = v[i] }
    return m
}

/// Σ x[i] over a row, 2 vector accumulators, fixed order.
@inline(__always) private func rowSum(_ x: UnsafePointer<Float>, _ n: Int, _ f: (V8) -> V8) -> Float {
    var s0 = V8(), s1 = V8()
    var i = 0
    while i + 16 <= n { s0 += f(load8(x + i)); s1 += f(load8(x + i + 8)); i += 16 }
    if i + 8 <= n { s0 += f(load8(x + i)); i += 8 }
    var total = hsum(s0 + s1)
    while i < n {
        var v = V8()
        v[0] = x[i]
        total += f(v)[0]
        i += 1
    }
    return total
}

/// Softmax over each row of `x` `[rows, cols]` (row stride `ld` for both x and y):
/// y = e^(x − max) / Σ e^(x − max); a row that is entirely −∞ gives zeros. In-place allowed.
@inline(never) public func avx2SoftmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int) {
    guard cols > 0 else { return }
    for r in 0..<rows {
        let xr = x + r * ld, yr = y + r * ld
        var mv = splat(-.infinity)
        var i = 0
        while i + 8 <= cols { mv = vmax(mv, load8(xr + i)); i += 8 }
        var m = hmax(mv)
        while i < cols { m = max(m, xr[i]); i += 1 }
        if m == -.infinity && !(0..<cols).contains(where: { xr[$0].isNaN }) {
            for j in 0..<cols { yr[j] = 0 }
            continue
        }
        let ms = splat(m)
        map(xr, yr, cols) { vexp($0 - ms) }
        let sum = rowSum(UnsafePointer(yr), cols) { $0 }
        let inv = splat(1 / sum)
        map(UnsafePointer(yr), yr, cols) { $0 * inv }
    }
}

/// RMSNorm over each row: y = x / √(mean(x²) + eps) · w. Row stride `ld` for x and y.
@inline(never) public func avx2RMSNormRows(
    _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    rows: Int, cols: Int, ld: Int, eps: Float
) {
    guard cols > 0 else { return }
    for r in 0..<rows {
        let xr = x + r * ld, yr = y + r * ld
        let ss = rowSum(xr, cols) { $0 * $0 }
        let scale = splat(1 / (ss / Float(cols) + eps).squareRoot())
        map2(xr, w, yr, cols) { x, w in (x * scale) * w }
    }
}

/// LayerNorm over each row: y = (x − mean) / √(var + eps) · w (+ b), two-pass variance.
/// `b` may be nil. Row stride `ld` for x and y.
@inline(never) public func avx2LayerNormRows(
    _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>?,
    _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, eps: Float
) {
    guard cols > 0 else { return }
    for r in 0..<rows {
        let xr = x + r * ld, yr = y + r * ld
        let mean = rowSum(xr, cols) { $0 } / Float(cols)
        let mv = splat(mean)
        let sq = rowSum(xr, cols) {
            let d = $0 - mv; return d * d
        }
        let rstd = splat(1 / (sq / Float(cols) + eps).squareRoot())
        map2(xr, w, yr, cols) { x, w in ((x - mv) * rstd) * w }
        if let b { map2(UnsafePointer(yr), b, yr, cols) { $0 + $1 } }
    }
}
