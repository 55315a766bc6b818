import Testing

@testable import MoEIO

@Suite struct HalfPrecisionTests {
    @Test func halfToFloatKnownValues() {
        #expect(HalfPrecision.halfToFloat(0x3C00) == 1.0)
        #expect(HalfPrecision.halfToFloat(0xC100) == -2.5)
        #expect(HalfPrecision.halfToFloat(0x7BFF) == 65504)
        #expect(HalfPrecision.halfToFloat(0x0001) == Float(sign: .plus, exponent: -24, significand: 1)) // smallest subnormal
        #expect(HalfPrecision.halfToFloat(0x03FF) == Float(0x3FF) * Float(sign: .plus, exponent: -24, significand: 1)) // largest subnormal
        #expect(HalfPrecision.halfToFloat(0x0400) == Float(sign: .plus, exponent: -14, significand: 1)) // smallest normal
        #expect(HalfPrecision.halfToFloat(0x7C00) == .infinity)
        #expect(HalfPrecision.halfToFloat(0xFC00) == -.infinity)
        #expect(HalfPrecision.halfToFloat(0x7E00).isNaN)
        #expect(HalfPrecision.halfToFloat(0x7C01).isNaN) // signalling NaN payload stays a NaN
        #expect(HalfPrecision.halfToFloat(0x8000).bitPattern == (-Float.zero).bitPattern)
        #expect(HalfPrecision.halfToFloat(0x3555) == 0.333251953125)
    }

    @Test func halfRoundTripsEveryValue() {
        // Every one of the 65536 bit patterns widens and narrows back to itself (NaNs to a NaN).
        for bits in 0...UInt16.max {
            let f = HalfPrecision.halfToFloat(bits)
            let back = HalfPrecision.floatToHalf(f)
            if f.isNaN {
                #expect(back & 0x7C00 == 0x7C00 && back & 0x03FF != 0, "NaN \(bits) narrowed to \(back)")
            } else if back != bits {
                Issue.record("half \(String(bits, radix: 16)) → \(f) → \(String(back, radix: 16))")
                return
            }
        }
    }

    @Test func halfMatchesTheHardwareConversion() {
        #if arch(arm64) || arch(x86_64)
            // Swift's Float16 (where available) is the reference for rounding of arbitrary floats.
            var seed: UInt32 = 12345
            for _ in 0..<20000 {
                seed = seed &* 1_664_525 &+ 1_013_904_223
                let f = Float(bitPattern: seed)
                if f.isNaN { continue }
                let ours = HalfPrecision.floatToHalf(f)
                let theirs = Float16(f).bitPattern
                if ours != theirs {
                    Issue.record("\(f): ours \(String(ours, radix: 16)), Float16 \(String(theirs, radix: 16))")
                    return
                }
            }
        #endif
    }

    @Test func halfNarrowingRounds() {
        #expect(HalfPrecision.floatToHalf(65504) == 0x7BFF)
        #expect(HalfPrecision.floatToHalf(65520) == 0x7C00) // halfway to the next binade rounds to infinity
        #expect(HalfPrecision.floatToHalf(65519) == 0x7BFF)
        #expect(HalfPrecision.floatToHalf(1e10) == 0x7C00)
        #expect(HalfPrecision.floatToHalf(-1e10) == 0xFC00)
        let tiny = Float(sign: .plus, exponent: -24, significand: 1)
        #expect(HalfPrecision.floatToHalf(tiny) == 0x0001)
        #expect(HalfPrecision.floatToHalf(tiny / 2) == 0x0000) // tie to even: zero
        #expect(HalfPrecision.floatToHalf(tiny * 1.5) == 0x0002) // tie to even: 2
        #expect(HalfPrecision.floatToHalf(tiny * 0.75) == 0x0001)
        #expect(HalfPrecision.floatToHalf(1 + Float(sign: .plus, exponent: -11, significand: 1)) == 0x3C00) // tie to even
        #expect(HalfPrecision.floatToHalf(1 + Float(sign: .plus, exponent: -11, significand: 1.5)) == 0x3C01)
        #expect(HalfPrecision.floatToHalf(.nan) & 0x7E00 == 0x7E00)
    }

    @Test func bfloat16KnownValues() {
        #expect(HalfPrecision.bfloat16ToFloat(0x3F80) == 1.0)
        #expect(HalfPrecision.bfloat16ToFloat(0xC020) == -2.5)
        #expect(HalfPrecision.bfloat16ToFloat(0x7F7F) == Float(bitPattern: 0x7F7F_0000)) // largest finite
        #expect(HalfPrecision.bfloat16ToFloat(0x0001) == Float(bitPattern: 0x0001_0000)) // subnormal
        #expect(HalfPrecision.bfloat16ToFloat(0x7F80) == .infinity)
        #expect(HalfPrecision.bfloat16ToFloat(0xFF80) == -.infinity)
        #expect(HalfPrecision.bfloat16ToFloat(0x7FC0).isNaN)
        #expect(HalfPrecision.floatToBfloat16(1.0) == 0x3F80)
        #expect(HalfPrecision.floatToBfloat16(-2.5) == 0xC020)
        #expect(HalfPrecision.floatToBfloat16(.infinity) == 0x7F80)
        #expect(HalfPrecision.floatToBfloat16(Float(bitPattern: 0x3F80_8000)) == 0x3F80) // tie to even, down
        #expect(HalfPrecision.floatToBfloat16(Float(bitPattern: 0x3F81_8000)) == 0x3F82) // tie to even, up
        #expect(HalfPrecision.floatToBfloat16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(HalfPrecision.floatToBfloat16(Float(bitPattern: 0x7F7F_FFFF)) == 0x7F80) // rounds up to infinity
        // A NaN whose payload is only in the low bits must not become infinity.
        #expect(HalfPrecision.bfloat16ToFloat(HalfPrecision.floatToBfloat16(Float(bitPattern: 0x7F80_0001))).isNaN)
    }

    @Test func bfloat16RoundTripsEveryValue() {
        for bits in 0...UInt16.max {
            let f = HalfPrecision.bfloat16ToFloat(bits)
            let back = HalfPrecision.floatToBfloat16(f)
            if f.isNaN { #expect(HalfPrecision.bfloat16ToFloat(back).isNaN); continue }
            if back != bits { Issue.record("bf16 \(bits) → \(back)"); return }
        }
    }
}
