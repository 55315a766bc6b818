/// What each op accepts and what it produces: the single source of type and shape rules, used by
/// the builder (to infer the type of a new node) and by the verifier (to check that every node's
/// recorded type still follows from its operands). The rules themselves live with their op family
/// (`Ops/*.swift`, `OpFamily.resultType`); this file applies them, checks that the result can be
/// addressed, and holds the helpers the families share.

/// A type error in terms of the op's operands; the caller attaches the source location.
public struct TypeRuleError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var notes: [String]
    public init(_ message: String, notes: [String] = []) {
        self.message = message
        self.notes = notes
    }
    public var description: String { message }
}

public enum OpSchema {
    /// The result type of `op` applied to operands of these types, or nil for leaf ops
    /// (input, weight, constant), whose type is declared rather than inferred.
    /// A result too large to address (`Addressable`) is an error too.
    public static func resultType(_ op: Op, _ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        guard let t = try derivedType(op, operands, attrs) else { return nil }
        guard t.isAddressable else {
            let described: String
            switch t {
            case .tensor(let tt): described = "the shape \(format(tt)), which has more elements" + (tt.shape.contains(.tokens) ? " per token" : "")
            case .routing(let r): described = "a routing of \(r.slots) slots among \(r.experts) experts, which has more elements per token"
            }
            let name = op.elementwiseSymbol.map { "'\($0)'" } ?? op.surfaceName
            throw TypeRuleError("\(name) gives \(described) than moec can address", notes: [Addressable.limitNote])
        }
        return t
    }

    private static func derivedType(_ op: Op, _ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        try op.member.resultType(operands, attrs)
    }

    // MARK: Helpers

    static func arity(_ op: some OpFamily, _ operands: [IRType], _ range: ClosedRange<Int>) throws(TypeRuleError) {
        guard range.contains(operands.count) else {
            let expected = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
            throw TypeRuleError("'\(op.surfaceName)' takes \(expected) operands, got \(operands.count)")
        }
    }

    /// Scores: a tensor [tokens, experts].
    static func scores(_ t: IRType, _ op: String) throws(TypeRuleError) -> (TensorType, Int) {
        let s = try tensor(t, "the scores of \(op)")
        guard s.rank == 2, let e = s.shape[1].fixedValue else {
            throw TypeRuleError("\(op) needs scores of shape [tokens, experts], got \(format(s))")
        }
        return (s, e)
    }

    /// Operand `t` as a tensor of `dtype` (nil: any dtype). Only hash routing reads i32 values:
    /// every other op computes in f32, and the executor would read an i32's bits as a float.
    static func tensor(_ t: IRType, _ what: String, dtype: DType? = .f32) throws(TypeRuleError) -> TensorType {
        switch t {
        case .tensor(let tt):
            if let dtype, tt.dtype != dtype {
                throw TypeRuleError(
                    "\(what) must hold \(dtype) values, got \(format(tt))",
                    notes: tt.dtype == .i32 ? ["i32 values are token ids, read only by hash routing"] : [])
            }
            return tt
        case .routing:
            throw TypeRuleError(
                "\(what) must be a tensor, but it is a routing",
                notes: ["a routing (the result of topk) can only feed routing stages and a moe block's router"])
        }
    }

    static func activation(_ attrs: Attributes) throws(TypeRuleError) {
        guard let a = attrs.string("act"), Activation(rawValue: a) != nil else {
            throw TypeRuleError(
                "unknown activation \(attrs["act"].map { "\($0)" } ?? "(none)")",
                notes: ["activations are " + Activation.allCases.map(\.rawValue).joined(separator: ", ")])
        }
    }

    /// Bits DSelect-k needs to index E experts: ⌈log₂E⌉ (0 for one expert). Counted from the
    /// leading zeros, not by shifting 1 left until it passes E, which never ends beyond 2⁶².
    public static func selectorBits(_ experts: Int) -> Int {
        experts <= 1 ? 0 : Int.bitWidth - (experts - 1).leadingZeroBitCount
    }

    /// NumPy-style broadcasting: shapes align at the right; a dimension of 1 stretches.
    public static func broadcast(_ a: TensorType, _ b: TensorType, _ op: Op) throws(TypeRuleError) -> [Dim] {
        let n = max(a.rank, b.rank)
        var out: [Dim] = []
        for i in 0..<n {
            let da = i < n - a.rank ? Dim.fixed(1) : a.shape[i - (n - a.rank)]
            let db = i < n - b.rank ? Dim.fixed(1) : b.shape[i - (n - b.rank)]
            if da == db {
                out.append(da)
            } else if da == .fixed(1) {
                out.append(db)
            } else if db == .fixed(1) {
                out.append(da)
            } else {
                throw TypeRuleError(
                    "cannot \(op.elementwiseVerb) \(format(a)) and \(format(b)): dimensions \(format(da)) and \(format(db)) differ",
                    notes: ["shapes must match, or have 1 where they differ"])
            }
        }
        return out
    }

    public static func format(_ d: Dim, tokens: String = "tokens") -> String {
        switch d {
        case .fixed(let n): return String(n)
        case .tokens: return tokens
        }
    }

    public static func format(_ t: TensorType, tokens: String = "tokens") -> String {
        "\(t.dtype)[" + t.shape.map { format($0, tokens: tokens) }.joined(separator: ", ") + "]"
    }
}
