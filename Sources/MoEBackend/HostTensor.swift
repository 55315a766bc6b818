import MoEIR

/// A tensor in ordinary memory: a shape and row-major (C order) elements.
public struct HostTensor: Equatable, Sendable {
    public enum Storage: Equatable, Sendable {
        case f32([Float])
        case i32([Int32])
    }

    public var shape: [Int]
    public var storage: Storage

    public init(shape: [Int], floats: [Float]) {
        precondition(shape.reduce(1, *) == floats.count, "shape \(shape) does not hold \(floats.count) elements")
        self.shape = shape
        self.storage = .f32(floats)
    }

    public init(shape: [Int], ints: [Int32]) {
        precondition(shape.reduce(1, *) == ints.count, "shape \(shape) does not hold \(ints.count) elements")
        self.shape = shape
        self.storage = .i32(ints)
    }

    public var count: Int { shape.reduce(1, *) }

    public var dtype: DType {
        if case .i32 = storage { return .i32 }
        return .f32
    }

    /// Elements as floats (ints converted).
    public var floats: [Float] {
        switch storage {
        case .f32(let f): return f
        case .i32(let i): return i.map(Float.init)
        }
    }

    public var ints: [Int32]? {
        if case .i32(let i) = storage { return i }
        return nil
    }
}

/// Why a set of inputs does not fit a graph.
public struct InputError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Graph {
    /// Checks that `inputs` supply every input of the graph with a fitting shape and returns
    /// the token count they imply.
    public func tokenCount(for inputs: [String: HostTensor]) throws(InputError) -> Int {
        try tokenCount(shapes: inputs.mapValues { ($0.shape, $0.dtype) })
    }

    /// The same check for inputs given by shape and element type (buffers a caller owns).
    public func tokenCount(shapes inputs: [String: (shape: [Int], dtype: DType)]) throws(InputError) -> Int {
        var tokens: Int?
        var tokensFrom = ""
        for (name, _, type) in self.inputs {
            guard let t = inputs[name] else {
                throw InputError("missing input '\(name)' (\(OpSchema.format(type, tokens: tokensName)))")
            }
            guard t.shape.count == type.rank else {
                throw InputError("input '\(name)' must have \(type.rank) dimensions \(OpSchema.format(type, tokens: tokensName)), got shape \(t.shape)")
            }
            if type.dtype == .i32 && t.dtype != .i32 {
                throw InputError("input '\(name)' must hold integers (i32), got floats")
            }
            if type.dtype == .f32 && t.dtype != .f32 {
                throw InputError("input '\(name)' must hold floats (f32), got integers (i32)")
            }
            for (i, d) in type.shape.enumerated() {
                switch d {
                case .fixed(let n):
                    guard t.shape[i] == n else {
                        throw InputError(
                            "input '\(name)' dimension \(i + 1) must be \(n), got \(t.shape[i]) (shape \(t.shape), expected \(OpSchema.format(type, tokens: tokensName)))")
                    }
                case .tokens:
                    if let known = tokens, known != t.shape[i] {
                        throw InputError("inputs disagree on \(tokensName): '\(tokensFrom)' has \(known), '\(name)' has \(t.shape[i])")
                    }
                    tokens = t.shape[i]
                    tokensFrom = name
                }
            }
        }
        let extra = Set(inputs.keys).subtracting(self.inputs.map(\.name))
        if let e = extra.sorted().first {
            throw InputError("unknown input '\(e)'; the graph's inputs are " + self.inputs.map(\.name).joined(separator: ", "))
        }
        guard let n = tokens else { return 1 }
        guard n >= 1 else { throw InputError("\(tokensName) must be at least 1, got \(n)") }
        return n
    }
}
