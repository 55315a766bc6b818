/// IEEE 754 binary16 ("half") and bfloat16 conversions to and from `Float`, by bit manipulation,
/// so they behave the same on every CPU and need no `Float16` support from the platform.
///
/// Widening is exact for every input, subnormals, infinities and NaN payloads included.
/// Narrowing rounds to nearest, ties to even; values too large become infinity, NaN stays NaN.
public enum HalfPrecision {
    /// binary16 bits (1 sign, 5 exponent, 10 mantissa) → Float.
    @inline(__always)
    public static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        var mantissa = UInt32(h & 0x03FF)
        switch exponent {
        case 0:
            if mantissa == 0 { return Float(bitPattern: sign) } // ±0
            // Subnormal: value = mantissa · 2^-24. Shift the leading 1 up to the implicit bit
            // (bit 10), lowering the exponent once per shift; 2^-14 is float exponent 113.
            var e: UInt32 = 113
            while mantissa & 0x0400 == 0 {
                mantissa <<= 1
                e -= 1
            }
            mantissa &= 0x03FF
            return Float(bitPattern: sign | (e << 23) | (mantissa << 13))
        case 0x1F:
            // Infinity (mantissa 0) or NaN (payload kept in the top mantissa bits).
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default:
            return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
    }

    /// bfloat16 bits (the top half of a Float) → Float.
    @inline(__always)
    public static func bfloat16ToFloat(_ b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Float → binary16 bits, round to nearest even.
    public static func floatToHalf(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x007F_FFFF
        if exponent == 0xFF {
            if mantissa == 0 { return sign | 0x7C00 }
            // Keep the top payload bits and force the quiet bit so the result is still a NaN.
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: mantissa >> 13)
        }
        let e = exponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            // Below 2^-25 even the smallest subnormal is more than twice as far: round to zero.
            if e < -10 { return sign }
            // Subnormal half: value / 2^-24 = (1.m · 2^23) >> (14 - e), rounded.
            let full = mantissa | 0x0080_0000
            let shift = UInt32(14 - e)
            var h = full >> shift
            let rest = full & ((1 << shift) - 1)
            let halfway: UInt32 = 1 << (shift - 1)
            if rest > halfway || (rest == halfway && h & 1 == 1) { h += 1 }
            return sign | UInt16(h) // a carry into bit 10 gives the smallest normal, as it should
        }
        var h = UInt32(e << 10) | (mantissa >> 13)
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 } // a carry may reach infinity, correctly
        return sign | UInt16(h)
    }

    /// Float → bfloat16 bits, round to nearest even.
    public static func floatToBfloat16(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(x >> 16) | 0x0040 } // quiet, so truncation cannot make it infinity
        let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
        return UInt16(rounded >> 16)
    }
}
