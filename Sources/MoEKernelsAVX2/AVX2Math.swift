// Vectorised exp, sigmoid, normal CDF and erf on SIMD8<Float> (AVX2 + FMA). Internal: only the
// `avx2…` entry points in this module call them.
//
// Accuracy (checked by MoEKernelsTests against Double references): a few ulp, under 1e-6
// relative wherever the result is a normal float; results that are subnormal are correct to
// within a subnormal ulp or so.

typealias V8 = SIMD8<Float>
typealias I8 = SIMD8<Int32>

@inline(__always) func splat(_ x: Float) -> V8 { V8(repeating: x) }

@inline(__always) func bits(_ v: V8) -> I8 { unsafeBitCast(v, to: I8.self) }
@inline(__always) func float(_ v: I8) -> V8 { unsafeBitCast(v, to: V8.self) }

/// |x| by clearing the sign bit.
@inline(__always) func vabs(_ x: V8) -> V8 { float(bits(x) & I8(repeating: 0x7fff_ffff)) }

/// `c + v·r` for a polynomial step (Horner with FMA).
@inline(__always) func step(_ r: V8, _ v: V8, _ c: Float) -> V8 { splat(c).addingProduct(r, v) }

/// eˣ. Range reduction x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite with FMA), degree-7 polynomial
/// (Cephes `expf` coefficients), then scaling by 2ⁿ in two halves so that results in the subnormal
/// range come out gradually instead of flushing to zero. x > 88.8 gives +inf, x < -104 gives 0,
/// NaN gives NaN.
@inline(__always)
func vexp(_ x: V8) -> V8 {
    var xc = x.replacing(with: 88.8, where: x .> 88.8)
    xc = xc.replacing(with: -104, where: xc .< -104)
    // Round x·log2(e) to the nearest integer with the 1.5·2²³ trick (exact for |n| < 2²²).
    let magic: Float = 12_582_912
    let t = splat(magic).addingProduct(xc, splat(1.442_695_04))
    let n = t - splat(magic)
    var r = xc.addingProduct(n, splat(-0.693_359_375))
    r = r.addingProduct(n, splat(2.121_944_4e-4))
    var p = splat(1.987_569_15e-4)
    p = step(p, r, 1.398_199_950_7e-3)
    p = step(p, r, 8.333_451_907_3e-3)
    p = step(p, r, 4.166_579_589_4e-2)
    p = step(p, r, 1.666_666_545_9e-1)
    p = step(p, r, 5.000_000_120_1e-1)
    let r2 = r * r
    p = (r + splat(1)).addingProduct(p, r2)
    // n = bits(t) - bits(magic) lies in [-150, 128]; 2ⁿ = 2^(n>>1) · 2^(n - n>>1), both normal.
    let ni = bits(t) &- I8(repeating: 0x4B40_0000)
    let n1 = ni &>> 1
    let n2 = ni &- n1
    let s1 = float((n1 &+ 127) &<< 23)
    let s2 = float((n2 &+ 127) &<< 23)
    return (p * s1) * s2
}

/// 1 / (1 + e⁻ˣ), the PyTorch formula.
@inline(__always)
func vsigmoid(_ x: V8) -> V8 { splat(1) / (splat(1) + vexp(-x)) }

/// Φ(x) − ½ = x·P(x²) for |x| < 1 (P fitted to Φ in Double, max relative error 7e-10).
@inline(__always)
func vphiCentral(_ x: V8) -> V8 {
    let s = x * x
    var p = splat(-7.657_710_634e-06)
    p = step(p, s, 1.134_960_523e-04)
    p = step(p, s, -1.186_339_682e-03)
    p = step(p, s, 9.973_327_704e-03)
    p = step(p, s, -6.649_036_070e-02)
    p = step(p, s, 3.989_422_802e-01)
    return x * p
}

/// Φ(−t) for t ≥ 1 (t = |x|): e^(−t²/2)·G(t). t² is split into hi + lo with an FMA so that the
/// exponent is exact to Float precision even for t ≈ 14 (where rounding t² alone would cost 1e-5).
/// G is fitted in two pieces: a polynomial in t−2 on [1, 3], and H(1/t²)/t on [3, 14.5].
/// Inputs above 15 are clamped (Φ(−15) ≈ 4e-51 is 0 in Float); NaN stays NaN.
@inline(__always)
func vphiTail(_ tIn: V8) -> V8 {
    let t = tIn.replacing(with: 15, where: tIn .> 15)
    let t2 = t * t
    let lo = (-t2).addingProduct(t, t) // t·t = t2 + lo exactly
    let e = vexp(splat(-0.5) * t2) * (splat(1) - splat(0.5) * lo)
    // [1, 3]: G(t) as a polynomial in v = t − 2.
    let v = t - splat(2)
    var g = splat(-2.346_358_718e-06)
    g = step(g, v, 1.027_620_351e-05)
    g = step(g, v, -3.680_507_315e-05)
    g = step(g, v, 1.447_175_063e-04)
    g = step(g, v, -5.504_571_657e-04)
    g = step(g, v, 1.976_451_189e-03)
    g = step(g, v, -6.704_286_013e-03)
    g = step(g, v, 2.131_267_183e-02)
    g = step(g, v, -6.273_827_672e-02)
    g = step(g, v, 1.681_020_022e-01)
    // [3, 15]: G(t) = H(w)/t with w = 1/t².
    let w = splat(1) / t2
    var h = splat(-1.169_342_378e+03)
    h = step(h, w, 6.697_149_701e+02)
    h = step(h, w, -1.814_949_995e+02)
    h = step(h, w, 3.387_629_734e+01)
    h = step(h, w, -5.771_374_455e+00)
    h = step(h, w, 1.193_557_182e+00)
    h = step(h, w, -3.989_174_718e-01)
    h = step(h, w, 3.989_422_133e-01)
    let gh = g.replacing(with: h / t, where: t .>= 3)
    return e * gh
}

/// Φ(x), the standard normal CDF = ½·erfc(−x/√2), accurate in both tails.
@inline(__always)
func vphi(_ x: V8) -> V8 {
    let t = vabs(x)
    let tail = vphiTail(t)
    let outer = (splat(1) - tail).replacing(with: tail, where: x .< 0)
    return outer.replacing(with: splat(0.5) + vphiCentral(x), where: t .< 1)
}

/// erf(z) = 2·Φ(√2·z) − 1, evaluated without cancellation: 2·x·P(x²) near 0, ±(1 − 2·Φ(−|x|))
/// outside.
@inline(__always)
func verf(_ z: V8) -> V8 {
    let x = z * splat(1.414_213_56)
    let t = vabs(x)
    let central = splat(2) * vphiCentral(x)
    let outer = splat(1) - splat(2) * vphiTail(t)
    let signed = outer.replacing(with: -outer, where: z .< 0)
    return signed.replacing(with: central, where: t .< 1)
}
