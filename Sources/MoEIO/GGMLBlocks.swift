/// The tensor types of GGUF files (ggml's `ggml_type`) that moec reads, and their dequantization.
///
/// A quantized type stores a row of `ne[0]` values as `ne[0] / blockSize` blocks of `blockBytes`
/// bytes each. The layouts and the arithmetic follow ggml's `dequantize_row_*` (ggml-quants.c)
/// operation for operation, so the results equal llama.cpp's and gguf-py's bit for bit:
///
///   Q8_0  34 B / 32:  f16 d, 32 × int8 q                       y = q · d
///   Q4_0  18 B / 32:  f16 d, 16 bytes of nibbles               y = (q − 8) · d; low nibbles are
///                                                               values 0–15, high ones 16–31
///   Q4_K 144 B / 256: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
///                     128 bytes of nibbles                     y = (d · sc) · q − dmin · m
///   Q5_K 176 B / 256: as Q4_K, plus 32 bytes holding each value's fifth bit
///   Q6_K 210 B / 256: 128 bytes of low nibbles, 64 of 2-bit highs, 16 int8 scales (sub-blocks
///                     of 16), f16 d                            y = (d · sc) · (q − 32)
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// Values per block (1 for the plain float types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q8_0: 32
        case .q4_K, .q5_K, .q6_K: 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q8_0: 34
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        }
    }

    /// ggml's name for it (`Q4_K`), as llama.cpp's tools print it.
    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        }
    }

    /// ggml's names of the types moec does not read, for messages (`ggml_type` numbers).
    public static func nameOfUnsupported(_ raw: UInt32) -> String? {
        let names: [UInt32: String] = [
            3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
            18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
            27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"
        ]
        return names[raw]
    }

    /// Dequantizes `blocks` whole blocks starting at `source` into `blocks · blockSize` floats.
    /// The caller has checked that the bytes are inside the file.
    public func dequantize(blocks: Int, from source: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        switch self {
        case .f32:
            for i in 0..<blocks { y[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .f16:
            for i in 0..<blocks { y[i] = HalfPrecision.halfToFloat(Self.u16(source, 2 * i)) }
        case .bf16:
            for i in 0..<blocks { y[i] = HalfPrecision.bfloat16ToFloat(Self.u16(source, 2 * i)) }
        case .q8_0:
            for b in 0..<blocks { Self.q8_0(source + b * 34, y + b * 32) }
        case .q4_0:
            for b in 0..<blocks { Self.q4_0(source + b * 18, y + b * 32) }
        case .q4_K:
            for b in 0..<blocks { Self.q4_K(source + b * 144, y + b * 256) }
        case .q5_K:
            for b in 0..<blocks { Self.q5_K(source + b * 176, y + b * 256) }
        case .q6_K:
            for b in 0..<blocks { Self.q6_K(source + b * 210, y + b * 256) }
        }
    }

    /// Values per group when `forEachGroup` reads this type (its values are then kept exactly by
    /// moec's int8 and int4 formats): 32 for Q8_0, Q4_0, Q4_K and Q5_K, 16 for Q6_K; nil for the
    /// float types.
    public var keptGroup: Int? {
        switch self {
        case .q8_0, .q4_0, .q4_K, .q5_K: 32
        case .q6_K: 16
        case .f32, .f16, .bf16: nil
        }
    }

    /// A row of `k` values (whole blocks at `source`) as groups of `keptGroup` values for moec's
    /// int formats: `body(group, S, M, u)` with each value exactly `fma(u, S, M)`:
    ///
    ///   Q8_0  u = q + 128, S = d, M = -128·d
    ///   Q4_0  u = the nibble, S = d, M = -8·d
    ///   Q4_K  per sub-block of 32: u = the nibble (0…15), S = d·sc, M = -(dmin·m)
    ///   Q5_K  per sub-block of 32: u = the 5-bit value (0…31), S = d·sc, M = -(dmin·m)
    ///   Q6_K  per sub-block of 16: u = q + 96 (32…159, so u − 128 = q − 32), S = d·sc, M = -128·S
    ///
    /// All exact in fp32 (24 significant bits): d and dmin are halves (11 bits), sc and m 6-bit
    /// (Q6_K's sc an int8, |sc| ≤ 128: 7 bits), so S and M need at most 18 bits; u·S + M is
    /// rounded once. Q4_K, Q5_K: u·S (u < 32, 5 bits) is exact, so that one rounding is ggml's
    /// `(d·sc)·q − dmin·m`. Q6_K: u·S − 128·S = S·(q − 32), |q − 32| ≤ 32 (5 bits), is exact
    /// too, and so is ggml's `(d·sc)·(q − 32)` (Q6_K's zeros may come out −0 there and +0 here).
    public func forEachGroup(row source: UnsafeRawPointer, k: Int, _ body: (Int, Float, Float, UnsafePointer<UInt8>) -> Void) {
        precondition(keptGroup != nil && k % blockSize == 0, "forEachGroup: \(self) rows of \(k)")
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { buffer in
            let u = buffer.baseAddress!
            switch self {
            case .q8_0:
                for b in 0..<(k / 32) {
                    let p = source + b * 34
                    let d = Self.half(p, 0)
                    for i in 0..<32 { u[i] = Self.byte(p, 2 + i) &+ 128 }
                    body(b, d, -128 * d, u)
                }
            case .q4_0:
                for b in 0..<(k / 32) {
                    let p = source + b * 18
                    let d = Self.half(p, 0)
                    for j in 0..<16 {
                        u[j] = Self.byte(p, 2 + j) & 0x0F
                        u[j + 16] = Self.byte(p, 2 + j) >> 4
                    }
                    body(b, d, -8 * d, u)
                }
            case .q4_K, .q5_K:
                // Q5_K is Q4_K's layout with 32 bytes of fifth bits (bit `sub` of qh[l]) before the nibbles.
                let five = self == .q5_K, bytes = five ? 176 : 144
                for b in 0..<(k / 256) {
                    let p = source + b * bytes
                    let d = Self.half(p, 0), dmin = Self.half(p, 2)
                    let scales = p + 4, qh = p + 16, qs = p + (five ? 48 : 16)
                    for sub in 0..<8 {
                        let (sc, m) = Self.scaleMin(sub, scales)
                        let chunk = sub / 2
                        for l in 0..<32 {
                            let q = Self.byte(qs, 32 * chunk + l)
                            u[l] = sub % 2 == 0 ? q & 0x0F : q >> 4
                            if five { u[l] |= ((Self.byte(qh, l) >> UInt8(sub)) & 1) << 4 }
                        }
                        body(8 * b + sub, d * sc, -(dmin * m), u)
                    }
                }
            case .q6_K:
                for b in 0..<(k / 256) {
                    let p = source + b * 210
                    let d = Self.half(p, 208)
                    // Sub-block s of 16 (0…15): half h = s / 8 of 128 values, in it quarter
                    // j = (s % 8) / 2 (values 32j + l, l < 32; as in `q6_K`, quarter j takes the low
                    // (j < 2) or high nibbles of ql[l + 32·(j % 2)] and bits 2j, 2j+1 of qh[l]) and
                    // l in (s % 2)·16 ..< +16; its scale is byte s of the 16 (`q6_K`'s sc[l/16 + 2j]).
                    for s in 0..<16 {
                        let h = s / 8, j = (s % 8) / 2, l0 = (s % 2) * 16
                        let ql = p + 64 * h, qh = p + 128 + 32 * h
                        let sc = Float(Int8(bitPattern: Self.byte(p, 192 + s)))
                        for i in 0..<16 {
                            let l = l0 + i
                            let q = Self.byte(ql, l + 32 * (j % 2)), low = j < 2 ? q & 0x0F : q >> 4
                            let high = (Self.byte(qh, l) >> UInt8(2 * j)) & 3
                            u[i] = (low | (high << 4)) + 96
                        }
                        let scale = d * sc
                        body(16 * b + s, scale, -128 * scale, u)
                    }
                }
            default: preconditionFailure("forEachGroup: \(self)")
            }
        }
    }

    @inline(__always)
    private static func u16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    private static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float { HalfPrecision.halfToFloat(u16(p, offset)) }

    @inline(__always)
    private static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 { p.load(fromByteOffset: offset, as: UInt8.self) }

    private static func q8_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        for i in 0..<32 { y[i] = Float(Int8(bitPattern: byte(p, 2 + i))) * d }
    }

    private static func q4_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        for j in 0..<16 {
            let q = byte(p, 2 + j)
            y[j] = Float(Int(q & 0x0F) - 8) * d
            y[j + 16] = Float(Int(q >> 4) - 8) * d
        }
    }

    /// Sub-block j's 6-bit scale and min from the 12 packed bytes at `s` (ggml's
    /// `get_scale_min_k4`).
    @inline(__always)
    private static func scaleMin(_ j: Int, _ s: UnsafeRawPointer) -> (Float, Float) {
        if j < 4 { return (Float(byte(s, j) & 63), Float(byte(s, j + 4) & 63)) }
        let sc = (byte(s, j + 4) & 0x0F) | ((byte(s, j - 4) >> 6) << 4)
        let m = (byte(s, j + 4) >> 4) | ((byte(s, j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    private static func q4_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), dmin = half(p, 2)
        let scales = p + 4, qs = p + 16
        // Each 32 bytes of nibbles hold two sub-blocks: the low nibbles, then the high ones.
        for chunk in 0..<4 {
            let (sc0, m0) = scaleMin(2 * chunk, scales), (sc1, m1) = scaleMin(2 * chunk + 1, scales)
            let d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1
            let out = y + 64 * chunk
            for l in 0..<32 {
                let q = byte(qs, 32 * chunk + l)
                out[l] = d0 * Float(q & 0x0F) - min0
                out[32 + l] = d1 * Float(q >> 4) - min1
            }
        }
    }

    private static func q5_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), dmin = half(p, 2)
        let scales = p + 4, qh = p + 16, qs = p + 48
        for chunk in 0..<4 {
            let (sc0, m0) = scaleMin(2 * chunk, scales), (sc1, m1) = scaleMin(2 * chunk + 1, scales)
            let d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1
            let out = y + 64 * chunk
            // Sub-block s takes its fifth bits from bit s of qh[l].
            let bit0 = UInt8(2 * chunk), bit1 = UInt8(2 * chunk + 1)
            for l in 0..<32 {
                let q = byte(qs, 32 * chunk + l), h = byte(qh, l)
                out[l] = d0 * Float((q & 0x0F) | (((h >> bit0) & 1) << 4)) - min0
                out[32 + l] = d1 * Float((q >> 4) | (((h >> bit1) & 1) << 4)) - min1
            }
        }
    }

    private static func q6_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 208)
        // Two halves of 128 values; in each, value l, l + 32, l + 64, l + 96 share ql and qh bytes.
        for half in 0..<2 {
            let ql = p + 64 * half, qh = p + 128 + 32 * half, sc = p + 192 + 8 * half
            let out = y + 128 * half
            for l in 0..<32 {
                let s = l / 16
                let a = byte(ql, l), b = byte(ql, l + 32), h = byte(qh, l)
                let q1 = Int((a & 0x0F) | ((h & 3) << 4)) - 32
                let q2 = Int((b & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                let q3 = Int((a >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = Int((b >> 4) | (((h >> 6) & 3) << 4)) - 32
                out[l] = d * Float(Int8(bitPattern: byte(sc, s))) * Float(q1)
                out[l + 32] = d * Float(Int8(bitPattern: byte(sc, s + 2))) * Float(q2)
                out[l + 64] = d * Float(Int8(bitPattern: byte(sc, s + 4))) * Float(q3)
                out[l + 96] = d * Float(Int8(bitPattern: byte(sc, s + 6))) * Float(q4)
            }
        }
    }
}
