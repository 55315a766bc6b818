import Foundation
import MoEBasics
import MoEIR

/// Shared definitions of routing arithmetic whose exact form is part of a mechanism's meaning,
/// so the interpreter and the executor agree by construction on these small pieces.
public enum RoutingMath {
    /// Φ⁻¹(p), the standard normal quantile, for 0 < p < 1 (Acklam's rational approximation,
    /// refined by one Halley step; relative error below 1e-12).
    public static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1)
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        var x: Double
        if p < low {
            let q = (-2 * log(p)).squareRoot()
            x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        } else if p <= 1 - low {
            let q = p - 0.5, r = q * q
            x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        } else {
            let q = (-2 * log(1 - p)).squareRoot()
            x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        let e = 0.5 * erfc(-x / 2.0.squareRoot()) - p
        let u = e * (2 * Double.pi).squareRoot() * Foundation.exp(x * x / 2)
        return x - u / (1 + x * u / 2)
    }

    /// The expert a token id hashes to. `hash`: Knuth's multiplicative hash of the id's 32 bits,
    /// keeping the high bits, ⌊E · frac(id · 2654435761 / 2³²)⌋ (the low bits, `mod E`, would be
    /// plain striping `id mod E` for a power-of-two E). `random`: a fixed pseudo-random expert per
    /// id, splitmix64 of (seed·1000003 + id) modulo E.
    public static func hashExpert(id: Int32, experts: Int, method: String, seed: Int) -> Int {
        let u = UInt64(UInt32(bitPattern: id))
        if method == "hash" {
            let fraction = UInt64(UInt32(truncatingIfNeeded: u) &* 2_654_435_761) // frac(·) · 2³²
            return Int((fraction * UInt64(experts)) >> 32)
        }
        return Int(SplitMix64.mix(UInt64(bitPattern: Int64(seed)) &* 1_000_003 &+ u) % UInt64(experts))
    }

    /// The expert index every slot of a token holds when its router scores are not finite (the
    /// one rule for non-finite values): the token is routed nowhere, takes no capacity and no
    /// part in balancing, and its MoE block output row is NaN. (−1 is a slot with no expert.)
    public static let invalidToken: Int32 = -2

    /// Whether a score makes its token invalid: NaN or +∞. −∞ is not: it is the masking
    /// convention (an expert that cannot be chosen; a softmax gives it probability 0).
    @inline(__always)
    public static func isInvalidScore(_ v: Float) -> Bool { v.isNaN || v == .infinity }

    /// Whether any of `count` scores from `row` is invalid (see `isInvalidScore`).
    @inline(__always)
    static func hasInvalidScore(_ row: UnsafePointer<Float>, _ count: Int) -> Bool {
        for j in 0..<count where isInvalidScore(row[j]) { return true }
        return false
    }

    /// Relative distance under which two selection scores of `topk(by:)` count as tied.
    /// Sinkhorn's scalings leave a few ulps of rounding on what is exactly a tie (every entry of a
    /// one-token batch balances to 1/E), and the weights row must decide such ties, not rounding.
    public static let selectionTieTolerance: Float = 1e-6

    /// Whether a candidate with selection score `a` and weight `wa` is chosen before one with
    /// `b`, `wb` under `topk(by:)`: the larger score, or within the tie tolerance the larger
    /// weight. (Equal in both: the scan order, i.e. the lower index, decides.)
    @inline(__always)
    public static func selectsBefore(_ a: Float, _ wa: Float, than b: Float, _ wb: Float) -> Bool {
        if abs(a - b) <= selectionTieTolerance * max(abs(a), abs(b)) { return wa > wb }
        return a > b
    }

    /// DSelect-k's smooth step: 0 below −γ/2, 1 above γ/2, a cubic in between.
    public static func smoothStep(_ t: Double, gamma g: Double) -> Double {
        if t <= -g / 2 { return 0 }
        if t >= g / 2 { return 1 }
        return -2 * t * t * t / (g * g * g) + 3 * t / (2 * g) + 0.5
    }

    /// Bits DSelect-k needs to index E experts: ⌈log₂E⌉ (the type rule's count).
    public static func selectorBits(_ experts: Int) -> Int { OpSchema.selectorBits(experts) }

    /// Expert-choice capacity: ⌈T·k·cf / E⌉ tokens per expert, at most T, for a factor given at
    /// run time as an f32 scalar (see the `Double` form for the rule).
    public static func expertChoiceCapacity(tokens: Int, k: Int, runTimeFactor factor: Float, experts: Int) -> Int {
        capacity(tokens: tokens, k: k, factor: Double(factor), written: factor.description, experts: experts)
    }

    /// Expert-choice capacity: ⌈T·k·cf / E⌉ tokens per expert, at most T.
    ///
    /// The factor counts as written: the shortest decimal that reads back as the value (`1.2`,
    /// not the f32 value 1.2000000476837158), and the ceiling is taken exactly in integers on
    /// that decimal, so T = 20, k = 2, cf = 1.2, E = 8 gives 6 and T = 40, cf = 1.1 gives 11.
    /// Only a decimal whose integer form overflows 64 bits (more than ~18 significant digits
    /// with a huge T·k, or an exponent beyond ±18) falls back to the binary value.
    public static func expertChoiceCapacity(tokens: Int, k: Int, factor: Double, experts: Int) -> Int {
        capacity(tokens: tokens, k: k, factor: factor, written: factor.description, experts: experts)
    }

    private static func capacity(tokens: Int, k: Int, factor: Double, written: String, experts: Int) -> Int {
        // NaN takes no tokens, like a factor of 0; an infinite factor takes every token.
        guard factor > 0 else { return 0 }
        guard factor.isFinite else { return tokens }
        if let (m, scale) = decimal(written), let exact = exactCeiling(tokens * k, m, scale, experts, limit: tokens) {
            return exact
        }
        let c = (Double(tokens) * Double(k) * factor / Double(experts)).rounded(.up)
        return c >= Double(tokens) ? tokens : max(Int(c), 0)
    }

    /// min(limit, ⌈n · m / (E · 10^s)⌉) in integers (s may be negative), or nil on overflow.
    private static func exactCeiling(_ n: Int, _ m: Int, _ s: Int, _ e: Int, limit: Int) -> Int? {
        guard let p = power10(abs(s)) else { return nil }
        var numerator = n, denominator = e
        if s >= 0 {
            let (d, o) = e.multipliedReportingOverflow(by: p)
            guard !o else { return nil }
            denominator = d
        } else {
            let (v, o) = n.multipliedReportingOverflow(by: p)
            guard !o else { return nil }
            numerator = v
        }
        // numerator · m against limit · denominator, both as 128-bit products.
        let product = numerator.multipliedFullWidth(by: m), bound = limit.multipliedFullWidth(by: denominator)
        if product.high > bound.high || (product.high == bound.high && product.low >= bound.low) { return limit }
        let (q, r) = denominator.dividingFullWidth(product)
        return r > 0 ? q + 1 : q
    }

    private static func power10(_ s: Int) -> Int? {
        guard s <= 18 else { return nil }
        var p = 1
        for _ in 0..<s { p *= 10 }
        return p
    }

    /// A non-negative decimal such as `123.45e-3` as (12345, 5): value = m / 10^s; nil if it is
    /// not one or m overflows. Scans the bytes without allocating (the executor calls it per run).
    static func decimal(_ text: String) -> (m: Int, s: Int)? {
        var m = 0, fractionDigits = 0, exponent = 0, exponentSign = 1
        var inFraction = false, inExponent = false, sawDigit = false, sawExponentDigit = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = Int(byte - UInt8(ascii: "0"))
                if inExponent {
                    guard exponent < 10_000 else { return nil }
                    exponent = exponent * 10 + digit
                    sawExponentDigit = true
                } else {
                    let (times10, o1) = m.multipliedReportingOverflow(by: 10)
                    let (next, o2) = times10.addingReportingOverflow(digit)
                    guard !o1, !o2 else { return nil }
                    m = next
                    sawDigit = true
                    if inFraction { fractionDigits += 1 }
                }
            case UInt8(ascii: "."):
                guard !inFraction, !inExponent else { return nil }
                inFraction = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                guard sawDigit, !inExponent else { return nil }
                inExponent = true
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard inExponent, !sawExponentDigit, exponentSign == 1 else { return nil }
                if byte == UInt8(ascii: "-") { exponentSign = -1 }
            default:
                return nil
            }
        }
        guard sawDigit, !inExponent || sawExponentDigit else { return nil }
        return (m, fractionDigits - exponentSign * exponent)
    }
}
