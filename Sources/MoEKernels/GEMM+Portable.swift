// The portable packed GEMM: same operand layouts and loop order as `avx2GemmPacked`, with a
// 6×8 tile of `SIMD4<Float>` (12 accumulators fit the 16 SSE registers) run twice per 16-column
// panel, and separate multiply and add (no FMA on the baseline CPU).

@inline(__always)
private func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always)
private func store4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Float>.self)
}

/// `c[r, 0..<8] (+)= Σ_k a[k*6 + r] * b[k*16 + 0..<8]` for r < rows (a literal at call sites).
@inline(__always)
private func tile8(
    rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    var c00 = SIMD4<Float>(), c01 = SIMD4<Float>(), c10 = SIMD4<Float>(), c11 = SIMD4<Float>()
    var c20 = SIMD4<Float>(), c21 = SIMD4<Float>(), c30 = SIMD4<Float>(), c31 = SIMD4<Float>()
    var c40 = SIMD4<Float>(), c41 = SIMD4<Float>(), c50 = SIMD4<Float>(), c51 = SIMD4<Float>()
    if load {
        c00 = load4(c); c01 = load4(c + 4)
        if rows > 1 { c10 = load4(c + ldc); c11 = load4(c + ldc + 4) }
        if rows > 2 { c20 = load4(c + 2 * ldc); c21 = load4(c + 2 * ldc + 4) }
        if rows > 3 { c30 = load4(c + 3 * ldc); c31 = load4(c + 3 * ldc + 4) }
        if rows > 4 { c40 = load4(c + 4 * ldc); c41 = load4(c + 4 * ldc + 4) }
        if rows > 5 { c50 = load4(c + 5 * ldc); c51 = load4(c + 5 * ldc + 4) }
    }
    var pa = a, pb = b
    for _ in 0..<kc {
        let b0 = load4(pb), b1 = load4(pb + 4)
        var s = SIMD4<Float>(repeating: pa[0])
        c00 += s * b0; c01 += s * b1
        if rows > 1 { s = SIMD4(repeating: pa[1]); c10 += s * b0; c11 += s * b1 }
        if rows > 2 { s = SIMD4(repeating: pa[2]); c20 += s * b0; c21 += s * b1 }
        if rows > 3 { s = SIMD4(repeating: pa[3]); c30 += s * b0; c31 += s * b1 }
        if rows > 4 { s = SIMD4(repeating: pa[4]); c40 += s * b0; c41 += s * b1 }
        if rows > 5 { s = SIMD4(repeating: pa[5]); c50 += s * b0; c51 += s * b1 }
        pa += 6; pb += 16
    }
    store4(c00, c); store4(c01, c + 4)
    if rows > 1 { store4(c10, c + ldc); store4(c11, c + ldc + 4) }
    if rows > 2 { store4(c20, c + 2 * ldc); store4(c21, c + 2 * ldc + 4) }
    if rows > 3 { store4(c30, c + 3 * ldc); store4(c31, c + 3 * ldc + 4) }
    if rows > 4 { store4(c40, c + 4 * ldc); store4(c41, c + 4 * ldc + 4) }
    if rows > 5 { store4(c50, c + 5 * ldc); store4(c51, c + 5 * ldc + 4) }
}

@inline(never)
private func tile8Dispatch(
    rows: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    switch rows {
    case 6: tile8(rows: 6, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 5: tile8(rows: 5, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 4: tile8(rows: 4, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 3: tile8(rows: 3, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    case 2: tile8(rows: 2, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    default: tile8(rows: 1, kc: kc, a: a, b: b, c: c, ldc: ldc, load: load)
    }
}

/// Portable twin of `avx2GemmPacked` (see there for the operand layouts).
func portableGemmPacked(
    a: UnsafePointer<Float>, m: Int, k: Int, b: UnsafePointer<Float>, n: Int,
    panels: Range<Int>, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    let nr = PackedWeight.panelWidth
    portableGemmLoops(
        a: a, m: m, k: k, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate,
        epilogueEvery: epilogueEvery, epilogue: epilogue
    ) { jp, k0, _ in b + jp * k * nr + k0 * nr }
}

/// Portable twin of `avx2GemmPackedBF16` and `…F16`: each K-block of a 16-bit weight panel (16 × kc) is
/// widened to fp32 into a scratch strip once per chunk of rows, then the fp32 tiles run on it
/// (same products and sums as the fp32 kernel on the widened weight). `strip`: 16 × min(k, kc)
/// floats of this call's own, or nil for a temporary one.
func portableGemmPacked(
    a: UnsafePointer<Float>, m: Int, k: Int, half b: UnsafePointer<UInt16>, f16: Bool = false, n: Int,
    panels: Range<Int>, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    strip: UnsafeMutablePointer<Float>? = nil,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    let nr = PackedWeight.panelWidth
    guard let s = strip else {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: nr * min(k, GemmBlocking.kc)) { strip in
            portableGemmPacked(
                a: a, m: m, k: k, half: b, f16: f16, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate,
                strip: strip.baseAddress!, epilogueEvery: epilogueEvery, epilogue: epilogue)
        }
        return
    }
    portableGemmLoops(
        a: a, m: m, k: k, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate,
        epilogueEvery: epilogueEvery, epilogue: epilogue
    ) { jp, k0, kc in
        let src = b + jp * k * nr + k0 * nr
        if f16 {
            for i in 0..<(kc * nr) { s[i] = floatFromFloat16(src[i]) }
        } else {
            for i in 0..<(kc * nr) { s[i] = floatFromBfloat16(src[i]) }
        }
        return UnsafePointer(s)
    }
}

/// Portable twin of `avx2GemmPackedQuantized`: each K-block of a quantized weight panel is
/// dequantized into the strip (the values `PackedWeight.unpacked()` gives), then the fp32
/// tiles run on it.
func portableGemmPacked(
    a: UnsafePointer<Float>, m: Int, k: Int, quantized b: UnsafeRawPointer, format: PackedWeight.Format, n: Int,
    panels: Range<Int>, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    strip: UnsafeMutablePointer<Float>? = nil,
    epilogueEvery: Int = 0, epilogue: (Int, Int, Int, Int) -> Void = { _, _, _, _ in }
) {
    let nr = PackedWeight.panelWidth
    guard let s = strip else {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: nr * min(k, GemmBlocking.kc)) { strip in
            portableGemmPacked(
                a: a, m: m, k: k, quantized: b, format: format, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate,
                strip: strip.baseAddress!, epilogueEvery: epilogueEvery, epilogue: epilogue)
        }
        return
    }
    let g = format.group!, bytes = format.groupBytes
    portableGemmLoops(
        a: a, m: m, k: k, n: n, panels: panels, c: c, ldc: ldc, accumulate: accumulate,
        epilogueEvery: epilogueEvery, epilogue: epilogue
    ) { jp, k0, kc in
        let panel = b + jp * (k / g) * bytes
        for i in 0..<(kc / g) { dequantizeGroup(panel + (k0 / g + i) * bytes, format: format, into: s + i * g * nr) }
        return UnsafePointer(s)
    }
}

/// The blocked loops of the portable GEMM; `weights(jp, k0, kc)` gives the fp32 K-block `k0`
/// (of length `kc`) of weight panel `jp`: 16 × kc floats, step by step.
@inline(__always)
private func portableGemmLoops(
    a: UnsafePointer<Float>, m: Int, k: Int, n: Int,
    panels: Range<Int>, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    epilogueEvery: Int, epilogue: (Int, Int, Int, Int) -> Void,
    weights: (Int, Int, Int) -> UnsafePointer<Float>
) {
    let mr = GemmBlocking.mr, nr = PackedWeight.panelWidth
    let mPanels = (m + mr - 1) / mr
    withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { edgeBuf in
        let t = edgeBuf.baseAddress!
        var k0 = 0
        while k0 < k {
            let kc = min(GemmBlocking.kc, k - k0)
            let load = accumulate || k0 > 0
            let aBlock = a + k0 * mPanels * mr
            var ic = 0
            let last = k0 + kc >= k
            while ic < mPanels {
                let icEnd = min(mPanels, ic + GemmBlocking.mcPanels)
                var next = panels.lowerBound + epilogueEvery
                for jp in panels {
                    let bp = weights(jp, k0, kc)
                    let cols = min(nr, n - jp * nr)
                    for ip in ic..<icEnd {
                        let rows = min(mr, m - ip * mr)
                        let ap = aBlock + ip * kc * mr
                        let cp = c + ip * mr * ldc + jp * nr
                        if cols == nr {
                            tile8Dispatch(rows: rows, kc: kc, a: ap, b: bp, c: cp, ldc: ldc, load: load)
                            tile8Dispatch(rows: rows, kc: kc, a: ap, b: bp + 8, c: cp + 8, ldc: ldc, load: load)
                        } else {
                            if load {
                                for r in 0..<rows { for j in 0..<cols { t[r * nr + j] = cp[r * ldc + j] } }
                            }
                            tile8Dispatch(rows: rows, kc: kc, a: ap, b: bp, c: t, ldc: nr, load: load)
                            tile8Dispatch(rows: rows, kc: kc, a: ap, b: bp + 8, c: t + 8, ldc: nr, load: load)
                            for r in 0..<rows { for j in 0..<cols { cp[r * ldc + j] = t[r * nr + j] } }
                        }
                    }
                    // After the last K-block, hand each finished group of panels to the epilogue.
                    while last && epilogueEvery > 0 && next <= jp + 1 {
                        epilogue(ic * mr, min(m, icEnd * mr), next - epilogueEvery, next)
                        next += epilogueEvery
                    }
                }
                ic = icEnd
            }
            k0 += kc
        }
    }
}
