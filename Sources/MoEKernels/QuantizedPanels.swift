// Packing fp32 weights into `PackedWeight`'s quantized formats, and reading them back.
//
// Layout (see `PackedWeight.Format` and AVX2GEMM+Quantized.swift): a panel of 16 output columns
// is k/G groups; a group is 16 fp32 scales S, then 16 fp32 offsets M when the format stores
// them, then the values. Values are unsigned: u = q + 128 for int8 (q in -127…127), u = q in
// 0…15 for int4, 0…63 for int6. Int8 comes in quads of 4 steps: 16 little-endian 32-bit words,
// word j = column j's 4 steps (byte i = step i). Int4 comes in octs of 8 steps, also 16 words:
// byte i of word j holds column j's step i in its low nibble and step i + 4 in its high one. So
// one 32-bit lane holds 4 consecutive k of a column (what integer dot-product instructions
// multiply and sum: one mask, or one shift and mask, gives an int4 quad), and a step of 8
// columns is a shift and a mask of 8 lanes. Int5 is int4's octs in pairs, each pair (128 bytes)
// followed by 32 bytes whose bit 4o + f (o the oct, f the vector as below) is the fifth bit of
// the value at that byte of that vector. Int6 is int4's oct (the low 4 bits of each value)
// followed by 32 bytes of high bits: the oct's 64 bytes are four 32-byte vectors of nibbles,
// f = 0…3 (columns 0-7 low nibbles, columns 0-7 high nibbles, columns 8-15 low, 8-15 high),
// and bits 2f, 2f + 1 of high-plane byte p are the top two bits of the value whose nibble is
// at byte p of vector f; one 16-bit shift and one mask per vector put them at bits 4-5. The
// weight is fma(u, S, M); without stored offsets M = -centre·S (centre 128, 8, 32), so
// w = (u - centre)·S rounded once.

/// Byte offset, in a group's values, of the byte holding column `j`'s step `step` (its low
/// nibble for int4/int6 when `(step % 8) < 4`, else its high one), and for int6 the offset of
/// its high bits' byte and their shift.
@inline(__always)
func quantizedPlace(format: PackedWeight.Format, step s: Int, column j: Int) -> (byte: Int, highByte: Int, highShift: Int) {
    switch format.bits {
    case 8: return (s / 4 * 64 + j * 4 + s % 4, 0, 0)
    case 4: return (s / 8 * 64 + j * 4 + s % 4, 0, 0)
    case 5:
        // Pairs of octs (160 bytes): their nibbles, then bit 4o + f of the plane's bytes.
        let pair = s / 16 * 160, o = (s % 16) / 8, f = 2 * (j / 8) + (s % 8) / 4
        return (pair + o * 64 + j * 4 + s % 4, pair + 128 + (j % 8) * 4 + s % 4, 4 * o + f)
    default:
        let oct = s / 8 * 96, f = 2 * (j / 8) + (s % 8) / 4
        return (oct + j * 4 + s % 4, oct + 64 + (j % 8) * 4 + s % 4, 2 * f)
    }
}

/// Stores value `u` of column `j` at `step` into a group's values (other values untouched).
@inline(__always)
func storeQuantizedValue(_ u: UInt8, _ values: UnsafeMutableRawPointer, format: PackedWeight.Format, step: Int, column j: Int) {
    let at = quantizedPlace(format: format, step: step, column: j)
    if format.bits == 8 {
        values.storeBytes(of: u, toByteOffset: at.byte, as: UInt8.self)
        return
    }
    let old = values.load(fromByteOffset: at.byte, as: UInt8.self)
    let low = u & 15
    values.storeBytes(of: step % 8 < 4 ? (old & 0xF0) | low : (old & 0x0F) | (low << 4), toByteOffset: at.byte, as: UInt8.self)
    if format.bits > 4 {
        let mask: UInt8 = format.bits == 6 ? 3 : 1
        let h = values.load(fromByteOffset: at.highByte, as: UInt8.self), shift = UInt8(at.highShift)
        values.storeBytes(of: (h & ~(mask << shift)) | ((u >> 4) & mask) << shift, toByteOffset: at.highByte, as: UInt8.self)
    }
}

/// Quantizes panels `panels` of the strided fp32 matrix (element (n, k) at
/// `source[n*strideN + k*strideK]`) to nearest, group by group, into `dst`.
func quantizePanels(
    _ source: UnsafePointer<Float>, n: Int, k: Int, strideN: Int, strideK: Int, format: PackedWeight.Format,
    panels: Range<Int>, into dst: UnsafeMutableRawPointer
) {
    let g = format.group!, nr = PackedWeight.panelWidth
    let groups = k / g, bytes = format.groupBytes
    let header = format.offsets ? 128 : 64
    withUnsafeTemporaryAllocation(of: Float.self, capacity: g) { column in
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: g * nr) { values in
            let x = column.baseAddress!, q = values.baseAddress!
            for p in panels {
                for b in 0..<groups {
                    let out = dst + (p * groups + b) * bytes
                    let scales = out.assumingMemoryBound(to: Float.self)
                    let offsets = format.offsets ? (out + 64).assumingMemoryBound(to: Float.self) : nil
                    for j in 0..<nr {
                        let row = p * nr + j
                        for s in 0..<g { x[s] = row < n ? source[row * strideN + (b * g + s) * strideK] : 0 }
                        let (scale, offset) = quantizeColumn(x, count: g, bits: format.bits, offsets: format.offsets, into: q + j * g)
                        scales[j] = scale
                        // Int8 values are stored as q + 128: M = -128·S, with stored offsets too.
                        offsets?[j] = format.bits == 8 ? -128 * scale : offset
                    }
                    let quads = out + header
                    quads.initializeMemory(as: UInt8.self, repeating: 0, count: g * 2 * format.bits)
                    for s in 0..<g {
                        for j in 0..<nr {
                            // Int8 values are stored as q + 128; int4 and int6 as q (0…2^bits - 1).
                            let u = format.bits == 8 ? UInt8(truncatingIfNeeded: Int(q[j * g + s]) + 128) : UInt8(bitPattern: q[j * g + s])
                            storeQuantizedValue(u, quads, format: format, step: s, column: j)
                        }
                    }
                }
            }
        }
    }
}

/// One column's group of `count` values to nearest, as llama.cpp's reference quantizers do:
/// int8 as Q8_0 (S = max|x| / 127, q = round(x / S)); int4 without offsets as Q4_0 (S = the value
/// of largest magnitude / -8, q = min(15, trunc(x / S + 8.5))), with offsets as Q4_1 (S = (max -
/// min) / 15, M = min, q = min(15, trunc((x - min) / S + 0.5))); int6 and int5 as those with 64
/// and 32 levels (S = extreme / -32, q = min(63, trunc(x / S + 32.5)); S = (max - min) / 31 …). Returns (S, M); a group holding a NaN
/// or an infinity gets S = M = NaN (its products are NaN, as the fp32 weight's would be).
func quantizeColumn(_ x: UnsafePointer<Float>, count: Int, bits: Int, offsets: Bool, into q: UnsafeMutablePointer<Int8>) -> (Float, Float) {
    let top = Int8(truncatingIfNeeded: (1 << bits) - 1), centre = Float(1 << (bits - 1)) // (top is for bits < 8)
    var finite = true
    for i in 0..<count { finite = finite && x[i].isFinite }
    guard finite else {
        q.initialize(repeating: bits == 8 ? 0 : Int8(centre), count: count)
        return (.nan, .nan)
    }
    if bits == 8 {
        var amax: Float = 0
        for i in 0..<count { amax = max(amax, abs(x[i])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        for i in 0..<count { q[i] = Int8((x[i] * id).rounded()) }
        return (d, 0)
    }
    if offsets {
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for i in 0..<count {
            lo = min(lo, x[i])
            hi = max(hi, x[i])
        }
        let d = (hi - lo) / Float(top)
        let id: Float = d != 0 ? 1 / d : 0
        for i in 0..<count { q[i] = Int8(min(top, Int8(((x[i] - lo) * id + 0.5).rounded(.towardZero)))) }
        return (d, lo)
    }
    var amax: Float = 0, extreme: Float = 0
    for i in 0..<count where abs(x[i]) > amax {
        amax = abs(x[i])
        extreme = x[i]
    }
    let d = extreme / -centre
    let id: Float = d != 0 ? 1 / d : 0
    for i in 0..<count { q[i] = min(top, Int8((x[i] * id + centre + 0.5).rounded(.towardZero))) }
    return (d, -centre * d)
}

/// Dequantizes one group (at `group`) of a quantized panel into `out`: `format.group` steps of
/// 16 floats, each fma(q, S, M) (what the kernels compute).
func dequantizeGroup(_ group: UnsafeRawPointer, format: PackedWeight.Format, into out: UnsafeMutablePointer<Float>) {
    let g = format.group!, nr = PackedWeight.panelWidth
    let scales = group.assumingMemoryBound(to: Float.self)
    let stored = format.offsets ? (group + 64).assumingMemoryBound(to: Float.self) : nil
    let quads = group + (format.offsets ? 128 : 64)
    for j in 0..<nr {
        let s = scales[j]
        let m = stored?[j] ?? -Float(format.centre) * s
        for step in 0..<g {
            out[step * nr + j] = m.addingProduct(Float(quantizedValue(quads, format: format, step: step, column: j)), s)
        }
    }
}

/// The stored (unsigned) value of `column` at `step` of a group's values.
@inline(__always)
func quantizedValue(_ quads: UnsafeRawPointer, format: PackedWeight.Format, step: Int, column j: Int) -> UInt8 {
    let at = quantizedPlace(format: format, step: step, column: j)
    let byte = quads.load(fromByteOffset: at.byte, as: UInt8.self)
    if format.bits == 8 { return byte }
    let low = (step % 8) < 4 ? byte & 15 : byte >> 4
    guard format.bits > 4 else { return low }
    let mask: UInt8 = format.bits == 6 ? 3 : 1
    return low | ((quads.load(fromByteOffset: at.highByte, as: UInt8.self) >> UInt8(at.highShift)) & mask) << 4
}

extension Kernels {
    /// Rounds `rows` rows of `k` floats in place to the values a `format` `PackedWeight` packed
    /// from them holds: bfloat16 to nearest even, a quantized format group by group along each
    /// row (quantized and dequantized, as the kernels see it). For weights a path keeps in fp32.
    public static func roundTo(_ format: PackedWeight.Format, _ p: UnsafeMutablePointer<Float>, rows: Int, k: Int) {
        switch format {
        case .f32: return
        case .bf16: roundToBfloat16(p, count: rows * k)
        case .f16: for i in 0..<(rows * k) { p[i] = floatFromFloat16(float16Bits(p[i])) }
        case .int8, .int4, .int6, .int5:
            let g = format.group!
            precondition(format.fits(k: k), "roundTo: \(format) does not fit rows of \(k)")
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: g) { q in
                for r in 0..<rows {
                    for b in 0..<(k / g) {
                        let x = p + r * k + b * g
                        let (s, m) = quantizeColumn(x, count: g, bits: format.bits, offsets: format.offsets, into: q.baseAddress!)
                        // As stored: u = q + 128 for int8 (M = -128·S), q for int4.
                        let m8 = format.bits == 8 ? -128 * s : m
                        for i in 0..<g { x[i] = m8.addingProduct(Float(format.bits == 8 ? Int(q[i]) + 128 : Int(q[i])), s) }
                    }
                }
            }
        }
    }
}
