import MoEKernelsAVX2

// Element-wise and row kernels. `y` may be the same buffer as `x` (in-place) unless a kernel
// says otherwise; partial overlap is not allowed. `count`, `rows`, `cols` may be 0.

extension Kernels {
    /// y = eˣ (+inf above ~88.7, gradual underflow to 0 below ~-87.3, NaN stays NaN).
    public static func exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Exp(x, y, count) } else { portableMap(x, y, count) { Foundation_exp($0) } }
    }

    /// y = 1 / (1 + e⁻ˣ).
    public static func sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Sigmoid(x, y, count) } else { portableMap(x, y, count) { 1 / (1 + Foundation_exp(-$0)) } }
    }

    /// y = x · sigmoid(x) (SiLU / swish, PyTorch `F.silu`).
    public static func silu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2SiLU(x, y, count) } else { portableMap(x, y, count) { $0 * (1 / (1 + Foundation_exp(-$0))) } }
    }

    /// y = x · Φ(x) = ½x(1 + erf(x/√2)) (exact GELU, PyTorch `F.gelu` default).
    public static func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 {
            avx2GELU(x, y, count)
        } else {
            portableMap(x, y, count) { x in
                let d = Double(x)
                return Float(0.5 * d * Foundation_erfc(-d * 0.5.squareRoot()))
            }
        }
    }

    /// y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (PyTorch `F.gelu(approximate="tanh")`).
    public static func geluTanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 {
            avx2GELUTanh(x, y, count)
        } else {
            portableMap(x, y, count) { x in
                // In Double: u's rounding is amplified ~2u times in the negative tail.
                let d = Double(x)
                let u = 0.797_884_560_802_865_4 * (d + 0.044_715 * d * d * d)
                return Float(d / (1 + Foundation_exp(-2 * u)))
            }
        }
    }

    /// y = erf(x).
    public static func erf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Erf(x, y, count) } else { portableMap(x, y, count) { Foundation_erf($0) } }
    }

    /// y = max(x, 0) (NaN stays NaN).
    public static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 {
            avx2ReLU(x, y, count)
        } else {
            for i in 0..<count { let v = x[i]; y[i] = v < 0 ? 0 : v }
        }
    }

    /// y = a + b.
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Add(a, b, y, count) } else { for i in 0..<count { y[i] = a[i] + b[i] } }
    }

    /// y = a · b.
    public static func mul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Mul(a, b, y, count) } else { for i in 0..<count { y[i] = a[i] * b[i] } }
    }

    /// y += alpha · x: the weighted combine of expert outputs (`y[row] += w · v`).
    public static func axpy(alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Axpy(alpha, x, y, count) } else { for i in 0..<count { y[i] += alpha * x[i] } }
    }

    /// y = alpha · x.
    public static func scale(alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, isa: ISA = .best) {
        if isa.runsAVX2 { avx2Scale(alpha, x, y, count) } else { for i in 0..<count { y[i] = alpha * x[i] } }
    }

    /// SwiGLU epilogue: `out[r, i] = silu(gateUp[r, i]) · gateUp[r, f + i]` for `rows` rows of
    /// `gateUp` `[rows, 2f]` (gate half first, then up half) into `out` `[rows, f]`.
    /// Row strides default to 2f and f. `out` may alias the gate half (same row stride), not the up half.
    public static func swiglu(
        _ gateUp: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, f: Int,
        ldIn: Int? = nil, ldOut: Int? = nil, isa: ISA = .best
    ) {
        let ldIn = ldIn ?? 2 * f, ldOut = ldOut ?? f
        if isa.runsAVX2 { avx2SwiGLU(gateUp, ldIn: ldIn, out, ldOut: ldOut, rows: rows, f: f); return }
        for r in 0..<rows {
            let g = gateUp + r * ldIn, o = out + r * ldOut
            for i in 0..<f {
                let gv = g[i]
                o[i] = (gv * (1 / (1 + Foundation_exp(-gv)))) * g[f + i]
            }
        }
    }

    /// Numerically stable softmax over each row of `[rows, cols]` (row stride `ld`, default
    /// `cols`, for x and y). A row that is entirely −∞ (masked out) gives zeros, not NaN
    /// (see `ReferenceInterpreter.softmax`). In-place allowed.
    public static func softmaxRows(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
        ld: Int? = nil, isa: ISA = .best
    ) {
        let ld = ld ?? cols
        if isa.runsAVX2 { avx2SoftmaxRows(x, y, rows: rows, cols: cols, ld: ld); return }
        for r in 0..<rows {
            let xr = x + r * ld, yr = y + r * ld
            var m = -Float.infinity
            for i in 0..<cols where xr[i] > m { m = xr[i] }
            if m == -.infinity && cols > 0 && !(0..<cols).contains(where: { xr[$0].isNaN }) {
                for i in 0..<cols { yr[i] = 0 }
                continue
            }
            if cols > 0 && m.isNaN == false {
                for i in 0..<cols where xr[i].isNaN { m = .nan }
            }
            var sum: Float = 0
            for i in 0..<cols { let e = Foundation_exp(xr[i] - m); yr[i] = e; sum += e }
            let inv = 1 / sum
            for i in 0..<cols { yr[i] *= inv }
        }
    }

    /// RMSNorm over each row: y = x / √(mean(x²) + eps) · weight (Llama/Mixtral). Row stride `ld`
    /// (default `cols`) for x and y; `weight` has `cols` values. In-place allowed.
    public static func rmsNormRows(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
        rows: Int, cols: Int, eps: Float, ld: Int? = nil, isa: ISA = .best
    ) {
        let ld = ld ?? cols
        if isa.runsAVX2 { avx2RMSNormRows(x, weight, y, rows: rows, cols: cols, ld: ld, eps: eps); return }
        guard cols > 0 else { return }
        for r in 0..<rows {
            let xr = x + r * ld, yr = y + r * ld
            var ss: Float = 0
            for i in 0..<cols { ss += xr[i] * xr[i] }
            let s = 1 / (ss / Float(cols) + eps).squareRoot()
            for i in 0..<cols { yr[i] = (xr[i] * s) * weight[i] }
        }
    }

    /// LayerNorm over each row: y = (x − mean) / √(var + eps) · weight (+ bias), biased variance
    /// (PyTorch `F.layer_norm`). Row stride `ld` (default `cols`). In-place allowed.
    public static func layerNormRows(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, eps: Float,
        ld: Int? = nil, isa: ISA = .best
    ) {
        let ld = ld ?? cols
        if isa.runsAVX2 { avx2LayerNormRows(x, weight, bias, y, rows: rows, cols: cols, ld: ld, eps: eps); return }
        guard cols > 0 else { return }
        for r in 0..<rows {
            let xr = x + r * ld, yr = y + r * ld
            var s: Float = 0
            for i in 0..<cols { s += xr[i] }
            let mean = s / Float(cols)
            var sq: Float = 0
            for i in 0..<cols { let d = xr[i] - mean; sq += d * d }
            let rstd = 1 / (sq / Float(cols) + eps).squareRoot()
            for i in 0..<cols {
                let v = ((xr[i] - mean) * rstd) * weight[i]
                yr[i] = bias.map { v + $0[i] } ?? v
            }
        }
    }
}

@inline(__always)
private func portableMap(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ f: (Float) -> Float) {
    for i in 0..<n { y[i] = f(x[i]) }
}

extension Kernels {
    /// The MoE weighted combine: `y[rows[i], :] += weights[i] · v[i, :]` for i in 0..<m, in
    /// increasing i (so repeated rows add up in a fixed order). `v` is `[m, n]` (row stride
    /// `ldv`, default n), `y` has row stride `ldy` (default n). `threads` > 1 splits the n columns,
    /// which keeps every element's order of additions, so results do not depend on `threads`.
    public static func scatterAddRows(
        _ v: UnsafePointer<Float>, weights: UnsafePointer<Float>, rows: UnsafePointer<Int32>,
        into y: UnsafeMutablePointer<Float>, m: Int, n: Int, ldv: Int? = nil, ldy: Int? = nil,
        threads: Int = 1, isa: ISA = .best
    ) {
        let ldv = ldv ?? n, ldy = ldy ?? n
        let vp = SendablePointer(v), wp = SendablePointer(weights), rp = SendablePointer(rows), yp = SendablePointer(y)
        // Column chunks are multiples of 16 floats so vector tails stay the same per element.
        let blocks = (n + 15) / 16
        Parallel.forEachChunk(count: blocks, threads: m * n < 1 << 16 ? 1 : threads) { range in
            let c0 = range.lowerBound * 16, c1 = min(n, range.upperBound * 16)
            for i in 0..<m {
                axpy(
                    alpha: wp.pointer[i], vp.pointer + i * ldv + c0, yp.pointer + Int(rp.pointer[i]) * ldy + c0,
                    count: c1 - c0, isa: isa)
            }
        }
    }
}
