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
    /// modulo E. `random`: a fixed pseudo-random expert per id, splitmix64 of (seed·1000003 + id)
    /// modulo E.
    public static func hashExpert(id: Int32, experts: Int, method: String, seed: Int) -> Int {
        let u = UInt64(UInt32(bitPattern: id))
        if method == "hash" {
            return Int((UInt32(truncatingIfNeeded: u) &* 2_654_435_761) % UInt32(experts))
        }
        return Int(SplitMix64.mix(UInt64(bitPattern: Int64(seed)) &* 1_000_003 &+ u) % UInt64(experts))
    }

    /// DSelect-k's smooth step: 0 below −γ/2, 1 above γ/2, a cubic in between.
    public static func smoothStep(_ t: Double, gamma g: Double) -> Double {
        if t <= -g / 2 { return 0 }
        if t >= g / 2 { return 1 }
        return -2 * t * t * t / (g * g * g) + 3 * t / (2 * g) + 0.5
    }

    /// Bits DSelect-k needs to index E experts: ⌈log₂E⌉ (the type rule's count).
    public static func selectorBits(_ experts: Int) -> Int { OpSchema.selectorBits(experts) }

    /// Expert-choice capacity: ⌈T·k·cf / E⌉ tokens per expert, at most T.
    public static func expertChoiceCapacity(tokens: Int, k: Int, factor: Double, experts: Int) -> Int {
        let c = (Double(tokens) * Double(k) * factor / Double(experts)).rounded(.up)
        // Clamped in Double: a factor given at run time may be huge, infinite or NaN, which
        // `Int(_:)` cannot convert. NaN takes no tokens, like a factor of 0.
        guard c > 0 else { return 0 }
        return c >= Double(tokens) ? tokens : Int(c)
    }
}
