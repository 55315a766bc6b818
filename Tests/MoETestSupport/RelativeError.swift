/// How far `actual` is from `reference`: max |Δ| / max |ref|, the acceptance metric of every
/// parity test. NaN where the other has none, a differing infinity, or different lengths count
/// as an infinite error; NaN in both places and equal infinities count as equal.
public func relativeError(_ actual: [Float], _ reference: [Float]) -> Double {
    guard actual.count == reference.count else { return .infinity }
    var maxDiff = 0.0, maxRef = 0.0
    for (a, r) in zip(actual, reference) {
        if a.isNaN != r.isNaN { return .infinity }
        if a.isNaN { continue }
        if a.isInfinite || r.isInfinite {
            if a != r { return .infinity }
            continue
        }
        maxDiff = max(maxDiff, abs(Double(a) - Double(r)))
        maxRef = max(maxRef, abs(Double(r)))
    }
    if maxDiff == 0 { return 0 }
    return maxDiff / max(maxRef, 1e-30)
}

/// ‖actual − reference‖₂ / ‖reference‖₂: the metric of the paths that quantize activations
/// (whose errors spread over every output rather than peaking in one).
public func relativeL2(_ actual: [Float], _ reference: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (a, r) in zip(actual, reference) {
        num += (Double(a) - Double(r)) * (Double(a) - Double(r))
        den += Double(r) * Double(r)
    }
    return (num / den).squareRoot()
}
