/// The types of IR values: tensors with shapes, and routings (which experts each token uses).

/// One dimension of a shape: a number fixed at compile time, or the graph's symbolic token count.
public enum Dim: Hashable, Sendable {
    case fixed(Int)
    case tokens

    public var fixedValue: Int? {
        if case .fixed(let n) = self { return n }
        return nil
    }

    /// The concrete size once the token count is known.
    public func resolve(tokens: Int) -> Int {
        switch self {
        case .fixed(let n): return n
        case .tokens: return tokens
        }
    }
}

public enum DType: String, Hashable, Sendable {
    case f32, i32
}

/// How large a tensor moec can hold. Element counts, byte counts and offsets are Ints, so a
/// shape whose element count, or byte count (4 bytes per f32 or i32 element), does not fit in
/// an Int cannot be addressed. The lowering refuses such declarations, and `OpSchema` and the
/// verifier refuse such values, so that later stages (printers, the arena planner, weight
/// binding) can multiply a value's dimensions without overflow checks.
public enum Addressable {
    public static let bytesPerElement = 4
    /// The most elements one tensor may have: `Int.max / 4`.
    public static let maxElements = Int.max / bytesPerElement

    /// The product of `dims`, or nil when it exceeds `maxElements`.
    public static func elementCount(_ dims: [Int]) -> Int? {
        if dims.contains(0) { return 0 }
        var n = 1
        for d in dims {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow, p >= 0, p <= maxElements else { return nil }
            n = p
        }
        return n
    }

    /// The note for messages about shapes that are too large.
    public static let limitNote = "a tensor may have at most \(maxElements) elements (Int.max / 4), so that its size in bytes fits in an Int"
}

public struct TensorType: Hashable, Sendable {
    public var dtype: DType
    public var shape: [Dim]

    public init(_ dtype: DType = .f32, _ shape: [Dim]) {
        self.dtype = dtype
        self.shape = shape
    }

    public var rank: Int { shape.count }
    public var isScalar: Bool { shape.isEmpty }
    public var last: Dim? { shape.last }

    /// Elements once the token count is known.
    public func elementCount(tokens: Int) -> Int {
        shape.reduce(1) { $0 * $1.resolve(tokens: tokens) }
    }

    /// Elements for one token (the token dimension counted as 1), or nil when that exceeds
    /// `Addressable.maxElements`.
    public var addressableElementsPerToken: Int? {
        Addressable.elementCount(shape.map { $0.fixedValue ?? 1 })
    }

    /// The fixed dimensions, or nil when one of them is the token count.
    public var fixedShape: [Int]? {
        var out: [Int] = []
        for d in shape { guard let n = d.fixedValue else { return nil }; out.append(n) }
        return out
    }
}

/// A routing: for each token, up to `slots` (expert, weight) pairs chosen among `experts`.
/// A slot may be empty (expert −1), e.g. when a capacity limit dropped the token. A token whose
/// router scores were not finite has expert −2 in every slot: it is routed nowhere and its MoE
/// block output is NaN (the backend's `RoutingMath.invalidToken`).
public struct RoutingType: Hashable, Sendable {
    public var slots: Int
    public var experts: Int
    public init(slots: Int, experts: Int) {
        self.slots = slots
        self.experts = experts
    }
}

public enum IRType: Hashable, Sendable {
    case tensor(TensorType)
    case routing(RoutingType)

    public var tensor: TensorType? { if case .tensor(let t) = self { return t }; return nil }
    public var routing: RoutingType? { if case .routing(let r) = self { return r }; return nil }

    /// Whether one token's share of the value fits `Addressable`: a tensor's elements, or a
    /// routing's slots (an Int32 expert and an f32 weight each, so 2 elements a slot) and its
    /// per-expert counters.
    public var isAddressable: Bool {
        switch self {
        case .tensor(let t): return t.addressableElementsPerToken != nil
        case .routing(let r): return r.slots <= Addressable.maxElements / 2 && r.experts <= Addressable.maxElements
        }
    }
}
