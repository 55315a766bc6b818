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

    /// The fixed dimensions, or nil when one of them is the token count.
    public var fixedShape: [Int]? {
        var out: [Int] = []
        for d in shape { guard let n = d.fixedValue else { return nil }; out.append(n) }
        return out
    }
}

/// A routing: for each token, up to `slots` (expert, weight) pairs chosen among `experts`.
/// A slot may be empty (expert −1), e.g. when a capacity limit dropped the token.
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
}
