// Int8 dot-product GEMM for AVX2: weights in blocks of 32 int8 values with one Float scale (the
// Q8_0 scheme of llama.cpp), activations quantized per row the same way.
//
// Weights are stored in panels of 4 rows: for each block of 32 along k, the 4 rows' 32 bytes
// (128 bytes) then their 4 scales (16 bytes), so a panel streams front to back as one sequence.
// For one block, `_mm256_sign_epi8` moves the weight's sign onto the activation so that
// `_mm256_maddubs_epi16` (unsigned × signed bytes, pairs summed to int16) and
// `_mm256_madd_epi16` by ones give 8 exact int32 lane sums, lane l covering bytes 4l..4l+3; each
// lane is converted to Float and accumulated with one FMA by (weight scale × activation scale).
// The portable kernel in MoEKernels does the same lane by lane, so both give the same bits.
// (|q| ≤ 127 for activations; a weight of −128 becomes 128 unsigned, and a pair of products
// stays within int16: no saturation.)

import _Builtin_intrinsics.intel

/// Bytes of one block of a 4-row panel: 4 × 32 int8, then 4 Float scales.
private let panelBlockBytes = 144

@inline(__always)
private func load32(_ p: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(p.assumingMemoryBound(to: __m256i.self))
}

/// The sum of a vector's 8 lanes, in a fixed order (halves, then halves, then the pair).
@inline(__always)
private func reduce(_ v: __m256) -> Float {
    let s: SIMD8<Float> = v // __m256 is imported as SIMD8<Float>
    let s4 = s.lowHalf + s.highHalf
    let s2 = s4.lowHalf + s4.highHalf
    return s2[0] + s2[1]
}

/// `rows` (1 or 2, a literal at each call) activation rows against one 4-row weight panel.
@inline(__always)
private func panelQ8(
    rows: Int, xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, kp: Int, panel: UnsafeRawPointer,
    y: UnsafeMutablePointer<Float>, ldy: Int, columns: Int, accumulate: Bool
) {
    let ones = _mm256_set1_epi16(1)
    let blocks = kp / 32
    var a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a02 = _mm256_setzero_ps(), a03 = _mm256_setzero_ps()
    var a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps(), a12 = _mm256_setzero_ps(), a13 = _mm256_setzero_ps()
    for b in 0..<blocks {
        let block = panel + b * panelBlockBytes
        let scales = (block + 128).assumingMemoryBound(to: Float.self)
        let x0 = load32(UnsafeRawPointer(xq + 32 * b))
        let d0 = xs[b]
        let x1 = rows > 1 ? load32(UnsafeRawPointer(xq + kp + 32 * b)) : x0
        let d1 = rows > 1 ? xs[blocks + b] : 0
        @inline(__always)
        func lanes(_ w: __m256i, _ x: __m256i) -> __m256 {
            _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones))
        }
        let w0 = load32(block), w1 = load32(block + 32), w2 = load32(block + 64), w3 = load32(block + 96)
        a00 = _mm256_fmadd_ps(lanes(w0, x0), _mm256_set1_ps(scales[0] * d0), a00)
        a01 = _mm256_fmadd_ps(lanes(w1, x0), _mm256_set1_ps(scales[1] * d0), a01)
        a02 = _mm256_fmadd_ps(lanes(w2, x0), _mm256_set1_ps(scales[2] * d0), a02)
        a03 = _mm256_fmadd_ps(lanes(w3, x0), _mm256_set1_ps(scales[3] * d0), a03)
        if rows > 1 {
            a10 = _mm256_fmadd_ps(lanes(w0, x1), _mm256_set1_ps(scales[0] * d1), a10)
            a11 = _mm256_fmadd_ps(lanes(w1, x1), _mm256_set1_ps(scales[1] * d1), a11)
            a12 = _mm256_fmadd_ps(lanes(w2, x1), _mm256_set1_ps(scales[2] * d1), a12)
            a13 = _mm256_fmadd_ps(lanes(w3, x1), _mm256_set1_ps(scales[3] * d1), a13)
        }
    }
    @inline(__always)
    func put(_ row: Int, _ j: Int, _ v: __m256) {
        guard j < columns else { return }
        let out = y + row * ldy + j
        out.pointee = accumulate ? out.pointee + reduce(v) : reduce(v)
    }
    put(0, 0, a00)
    put(0, 1, a01)
    put(0, 2, a02)
    put(0, 3, a03)
    if rows > 1 {
        put(1, 0, a10)
        put(1, 1, a11)
        put(1, 2, a12)
        put(1, 3, a13)
    }
}

/// `y[m, n] (+)= Σ_k x[m, k] · w[n, k]` for the panels `panelBegin..<panelEnd` (columns 4p..4p+3
/// of y, those below `n`): x as int8 rows of `kp` values (a multiple of 32) with `kp / 32` Float
/// scales per row (`xs`), w as 4-row panels (see the file's header).
@inline(never)
public func avx2Q8Gemm(
    xq: UnsafePointer<Int8>, xs: UnsafePointer<Float>, m: Int, kp: Int,
    w: UnsafeRawPointer, n: Int, panelBegin: Int, panelEnd: Int,
    y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
) {
    let blocks = kp / 32
    let panelBytes = blocks * panelBlockBytes
    for p in panelBegin..<panelEnd {
        let panel = w + p * panelBytes
        let columns = min(4, n - 4 * p)
        var r = 0
        while r + 1 < m {
            panelQ8(
                rows: 2, xq: xq + r * kp, xs: xs + r * blocks, kp: kp, panel: panel, y: y + r * ldy + 4 * p, ldy: ldy,
                columns: columns, accumulate: accumulate)
            r += 2
        }
        if r < m {
            panelQ8(
                rows: 1, xq: xq + r * kp, xs: xs + r * blocks, kp: kp, panel: panel, y: y + r * ldy + 4 * p, ldy: ldy,
                columns: columns, accumulate: accumulate)
        }
    }
}
