import MoEIR
import MoEKernels

/// Checked arithmetic for the arena's byte counts. Every value fits an Int for one token
/// (`Addressable`, kept by the verifier), but its bytes for many tokens, or a kernel's scratch,
/// may still not: memory planning then refuses the token count (`Schedule.ArenaTooLarge`)
/// instead of trapping on overflow.
enum ByteCount {
    struct Overflow: Error {}

    static func product(_ factors: Int...) throws(Overflow) -> Int { try product(factors) }

    static func product(_ factors: [Int]) throws(Overflow) -> Int {
        var p = 1
        for f in factors {
            let (v, overflow) = p.multipliedReportingOverflow(by: f)
            if overflow { throw Overflow() }
            p = v
        }
        return p
    }

    static func sum(_ terms: Int...) throws(Overflow) -> Int { try sum(terms) }

    static func sum(_ terms: [Int]) throws(Overflow) -> Int {
        var s = 0
        for t in terms {
            let (v, overflow) = s.addingReportingOverflow(t)
            if overflow { throw Overflow() }
            s = v
        }
        return s
    }

    /// Elements of a tensor of type `t` for `tokens` tokens.
    static func elements(_ t: TensorType, tokens: Int) throws(Overflow) -> Int {
        try product(t.shape.map { $0.resolve(tokens: tokens) })
    }

    /// `n` rounded up to a multiple of `m`.
    static func roundedUp(_ n: Int, to m: Int) throws(Overflow) -> Int {
        try product(try sum(n, m - 1) / m, m)
    }

    /// `Kernels.packedOperandBytes(m:k:)`: m rows rounded up to whole row panels, k floats each.
    static func packedOperand(m: Int, k: Int) throws(Overflow) -> Int {
        try product(try roundedUp(m, to: PackedRows.rowsPerPanel), k, 4)
    }
}
