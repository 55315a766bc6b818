// Activation rows quantized to int8 for the integer products, with AVX-512: the contract of
// `avx2QuantizeRows` (MoEKernelsAVX2), bit for bit, on whole row panels.
//
// This module is compiled for AVX-512 F/BW/VL/DQ/VNNI. It must only be entered after the caller
// has checked at run time that the CPU has them (MoEKernels does).

import _Builtin_intrinsics.intel

/// Index vectors of the transposition and of the reductions, made once.
private struct QuantizeIndices {
    /// Per output vector o (rows 2o and 2o + 1, 8 steps each): lane i takes element
    /// 6·(i % 8) + 2o + i / 8 of the 48 floats of 8 steps of a panel, from the first two source
    /// vectors (`low`, elements 0–31) or, where `fromThird` has the lane's bit, from the third
    /// (`high`, element − 32).
    var low: [__m512i] = []
    var high: [__m512i] = []
    var fromThird: [__mmask16] = []
    /// Lane i ↔ lane i ^ 4, ^ 2, ^ 1: the steps of a butterfly over each 8-lane half.
    var swaps: [__m512i] = []

    init() {
        for o in 0..<3 {
            var lo = [Int32](repeating: 0, count: 16), hi = [Int32](repeating: 0, count: 16)
            var mask: UInt16 = 0
            for i in 0..<16 {
                let p = 6 * (i % 8) + 2 * o + i / 8
                if p < 32 { lo[i] = Int32(p) } else { hi[i] = Int32(p - 32); mask |= 1 << i }
            }
            low.append(Self.vector(lo))
            high.append(Self.vector(hi))
            fromThird.append(mask)
        }
        for bit in [4, 2, 1] { swaps.append(Self.vector((0..<16).map { Int32($0 ^ bit) })) }
    }

    static func vector(_ lanes: [Int32]) -> __m512i {
        lanes.withUnsafeBytes { _mm512_loadu_si512($0.baseAddress!) }
    }
}

private let indices = QuantizeIndices()

/// `avx2QuantizeRows` for whole row panels (`m` ≥ 6 · `panels.upperBound`) and groups of a
/// multiple of 8 steps: per row and group of `group` values of the packed operand (k-blocks of
/// `kc` steps, panels of 6 rows, each step one value per row), d = max|x| / 127 and q = x · (1/d)
/// to nearest, ties to even, d = 0 giving q = 0; a group holding a NaN or an infinity gets
/// d = NaN, q = 0 and sum 0. Writes `values` (rows of k), `scales` and `sums` (rows of k/group),
/// whose row 0 is the first panel's.
///
/// How: 8 steps of a panel are 48 consecutive floats (3 vectors, step-major). Three two-source
/// permutes turn them row-major, two rows of 8 steps to a vector, so a row's group maximum and
/// sum are butterflies within 8-lane halves, its scale multiplies both halves' rows at once, and
/// `vpmovdb` leaves each row's 8 bytes side by side, stored whole. The AVX2 version gathers each
/// row's values one by one (stride 6): about 4 instructions a value, here about 1.
@inline(never)
public func avx512QuantizeRows(
    packed a: UnsafePointer<Float>, m: Int, k: Int, group: Int, kc: Int, panels: Range<Int>,
    values: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Float>
) {
    precondition(group % 8 == 0 && m >= 6 * panels.upperBound, "avx512QuantizeRows: whole panels, groups of 8n steps")
    let mr = 6
    let mPanels = (m + mr - 1) / mr
    let groups = k / group
    let units = group / 8
    let values = values - panels.lowerBound * mr * k, scales = scales - panels.lowerBound * mr * groups
    let sums = sums - panels.lowerBound * mr * groups
    let ix = indices
    let low0 = ix.low[0], low1 = ix.low[1], low2 = ix.low[2]
    let high0 = ix.high[0], high1 = ix.high[1], high2 = ix.high[2]
    let third0 = ix.fromThird[0], third1 = ix.fromThird[1], third2 = ix.fromThird[2]
    let swap4 = ix.swaps[0], swap2 = ix.swaps[1], swap1 = ix.swaps[2]

    @inline(__always) func rows(_ v0: __m512, _ v1: __m512, _ v2: __m512, _ low: __m512i, _ high: __m512i, _ third: __mmask16) -> __m512 {
        _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(v0, low, v1), third, high, v2)
    }
    @inline(__always) func halfMax(_ v: __m512) -> __m512 {
        var r = _mm512_max_ps(v, _mm512_permutexvar_ps(swap4, v))
        r = _mm512_max_ps(r, _mm512_permutexvar_ps(swap2, r))
        return _mm512_max_ps(r, _mm512_permutexvar_ps(swap1, r))
    }
    @inline(__always) func halfSum(_ v: __m512i) -> __m512i {
        var r = _mm512_add_epi32(v, _mm512_permutexvar_epi32(swap4, v))
        r = _mm512_add_epi32(r, _mm512_permutexvar_epi32(swap2, r))
        return _mm512_add_epi32(r, _mm512_permutexvar_epi32(swap1, r))
    }

    for panel in panels {
        var k0 = 0
        while k0 < k {
            let width = min(kc, k - k0)
            let block = a + k0 * mPanels * mr + panel * width * mr
            var g0 = 0
            while g0 < width {
                let src = block + g0 * mr
                let gi = (k0 + g0) / group
                var max01 = _mm512_setzero_ps(), max23 = _mm512_setzero_ps(), max45 = _mm512_setzero_ps()
                var bad = _mm512_setzero_ps()
                for u in 0..<units {
                    let p = src + 48 * u
                    let v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16), v2 = _mm512_loadu_ps(p + 32)
                    let r01 = rows(v0, v1, v2, low0, high0, third0)
                    let r23 = rows(v0, v1, v2, low1, high1, third1)
                    let r45 = rows(v0, v1, v2, low2, high2, third2)
                    max01 = _mm512_max_ps(max01, _mm512_abs_ps(r01))
                    max23 = _mm512_max_ps(max23, _mm512_abs_ps(r23))
                    max45 = _mm512_max_ps(max45, _mm512_abs_ps(r45))
                    // NaN in a lane where any value is not finite (x - x).
                    bad = _mm512_add_ps(bad, _mm512_sub_ps(v0, v0))
                    bad = _mm512_add_ps(bad, _mm512_sub_ps(v1, v1))
                    bad = _mm512_add_ps(bad, _mm512_sub_ps(v2, v2))
                }
                if _mm512_reduce_add_ps(bad).isNaN {
                    quantizeGroupScalar(
                        src, rows: 0..<mr, group: group, values: values + panel * mr * k + k0 + g0, k: k,
                        scales: scales + panel * mr * groups + gi, sums: sums + panel * mr * groups + gi, groups: groups)
                    g0 += group
                    continue
                }
                // d and 1/d per row (each 8-lane half one row), as the scalar divisions round.
                let one = SIMD16<Float>(repeating: 1)
                let d01 = halfMax(max01) / 127
                let d23 = halfMax(max23) / 127
                let d45 = halfMax(max45) / 127
                let id01 = (one / d01).replacing(with: 0, where: d01 .== 0)
                let id23 = (one / d23).replacing(with: 0, where: d23 .== 0)
                let id45 = (one / d45).replacing(with: 0, where: d45 .== 0)
                var s01 = _mm512_setzero_si512(), s23 = _mm512_setzero_si512(), s45 = _mm512_setzero_si512()
                let out = values + panel * mr * k + k0 + g0
                for u in 0..<units {
                    // The group again (from L1), row-major again: cheaper than keeping it.
                    let p = src + 48 * u
                    let v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16), v2 = _mm512_loadu_ps(p + 32)
                    let q01 = _mm512_cvtps_epi32(_mm512_mul_ps(rows(v0, v1, v2, low0, high0, third0), id01))
                    let q23 = _mm512_cvtps_epi32(_mm512_mul_ps(rows(v0, v1, v2, low1, high1, third1), id23))
                    let q45 = _mm512_cvtps_epi32(_mm512_mul_ps(rows(v0, v1, v2, low2, high2, third2), id45))
                    s01 = _mm512_add_epi32(s01, q01)
                    s23 = _mm512_add_epi32(s23, q23)
                    s45 = _mm512_add_epi32(s45, q45)
                    // |q| ≤ 127: truncating each lane to a byte keeps it; 8 bytes per row.
                    let b01 = unsafeBitCast(_mm512_cvtepi32_epi8(q01), to: SIMD2<UInt64>.self)
                    let b23 = unsafeBitCast(_mm512_cvtepi32_epi8(q23), to: SIMD2<UInt64>.self)
                    let b45 = unsafeBitCast(_mm512_cvtepi32_epi8(q45), to: SIMD2<UInt64>.self)
                    let o = UnsafeMutableRawPointer(out + 8 * u)
                    o.storeBytes(of: b01[0], as: UInt64.self)
                    (o + k).storeBytes(of: b01[1], as: UInt64.self)
                    (o + 2 * k).storeBytes(of: b23[0], as: UInt64.self)
                    (o + 3 * k).storeBytes(of: b23[1], as: UInt64.self)
                    (o + 4 * k).storeBytes(of: b45[0], as: UInt64.self)
                    (o + 5 * k).storeBytes(of: b45[1], as: UInt64.self)
                }
                let sum01 = unsafeBitCast(halfSum(s01), to: SIMD16<Int32>.self)
                let sum23 = unsafeBitCast(halfSum(s23), to: SIMD16<Int32>.self)
                let sum45 = unsafeBitCast(halfSum(s45), to: SIMD16<Int32>.self)
                let row0 = panel * mr * groups + gi
                scales[row0] = d01[0]
                scales[row0 + groups] = d01[8]
                scales[row0 + 2 * groups] = d23[0]
                scales[row0 + 3 * groups] = d23[8]
                scales[row0 + 4 * groups] = d45[0]
                scales[row0 + 5 * groups] = d45[8]
                sums[row0] = Float(sum01[0])
                sums[row0 + groups] = Float(sum01[8])
                sums[row0 + 2 * groups] = Float(sum23[0])
                sums[row0 + 3 * groups] = Float(sum23[8])
                sums[row0 + 4 * groups] = Float(sum45[0])
                sums[row0 + 5 * groups] = Float(sum45[8])
                g0 += group
            }
            k0 += width
        }
    }
}

/// One group of a panel whose values are not all finite, row by row in scalar code (the same
/// roundings as the vectors): rows with a NaN or an infinity get d = NaN, q = 0, sum 0.
private func quantizeGroupScalar(
    _ src: UnsafePointer<Float>, rows: Range<Int>, group: Int, values: UnsafeMutablePointer<Int8>, k: Int,
    scales: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Float>, groups: Int
) {
    let mr = 6
    for r in rows {
        let out = values + r * k
        var amax: Float = 0, finite = true
        for s in 0..<group {
            let x = src[s * mr + r]
            if !x.isFinite { finite = false }
            amax = max(amax, abs(x))
        }
        guard finite else {
            scales[r * groups] = .nan
            sums[r * groups] = 0
            out.initialize(repeating: 0, count: group)
            continue
        }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        var total: Int32 = 0
        for s in 0..<group {
            let q = Int32((src[s * mr + r] * id).rounded(.toNearestOrEven))
            out[s] = Int8(q)
            total += q
        }
        scales[r * groups] = d
        sums[r * groups] = Float(total)
    }
}
