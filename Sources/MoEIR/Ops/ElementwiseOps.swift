/// Element-wise functions of one tensor, and arithmetic on two with NumPy broadcasting (equal
/// dims, or 1, or a scalar).
public enum ElementwiseOp: String, OpFamily {
    case silu, gelu, gelu_tanh, relu, sigmoid, tanh, exp, sqrt, neg
    case add, sub, mul, div

    public var surfaceName: String { rawValue }

    /// `+ - * /`, which take two operands.
    public var isBinary: Bool {
        switch self {
        case .add, .sub, .mul, .div: return true
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg: return false
        }
    }

    /// The operator as written in source (`+`), for binary ops.
    public var symbol: String? {
        switch self {
        case .add: return "+"
        case .sub: return "-"
        case .mul: return "*"
        case .div: return "/"
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg: return nil
        }
    }

    /// The verb in messages about shapes that do not broadcast.
    public var verb: String {
        switch self {
        case .add: return "add"
        case .sub: return "subtract"
        case .mul: return "multiply"
        case .div: return "divide"
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg: return "apply \(rawValue) to"
        }
    }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        if isBinary {
            try OpSchema.arity(self, operands, 2...2)
            let a = try OpSchema.tensor(operands[0], "the left operand of \(symbol!)")
            let b = try OpSchema.tensor(operands[1], "the right operand of \(symbol!)")
            return .tensor(TensorType(.f32, try OpSchema.broadcast(a, b, .elementwise(self))))
        }
        try OpSchema.arity(self, operands, 1...1)
        let x = try OpSchema.tensor(operands[0], "the input of \(self)")
        return .tensor(x)
    }

    public var isNonNegative: Bool {
        switch self {
        case .sigmoid, .exp, .relu, .sqrt: return true
        case .silu, .gelu, .gelu_tanh, .tanh, .neg, .add, .sub, .mul, .div: return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .silu, .gelu, .gelu_tanh, .relu, .sigmoid, .tanh, .exp, .sqrt, .neg, .add, .sub, .mul, .div: return false
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .sigmoid: return .scoreFunction("sigmoid")
        case .silu, .gelu, .gelu_tanh, .relu, .tanh, .exp, .sqrt, .neg, .add, .sub, .mul, .div: return nil
        }
    }
}

extension Op {
    public static let silu = Op.elementwise(.silu)
    public static let gelu = Op.elementwise(.gelu)
    public static let gelu_tanh = Op.elementwise(.gelu_tanh)
    public static let relu = Op.elementwise(.relu)
    public static let sigmoid = Op.elementwise(.sigmoid)
    public static let tanh = Op.elementwise(.tanh)
    public static let exp = Op.elementwise(.exp)
    public static let sqrt = Op.elementwise(.sqrt)
    public static let neg = Op.elementwise(.neg)
    public static let add = Op.elementwise(.add)
    public static let sub = Op.elementwise(.sub)
    public static let mul = Op.elementwise(.mul)
    public static let div = Op.elementwise(.div)

    /// The operator of a binary element-wise op (`+`), else nil.
    public var elementwiseSymbol: String? { if case .elementwise(let o) = self { return o.symbol }; return nil }
    /// The verb for a broadcasting message.
    var elementwiseVerb: String { if case .elementwise(let o) = self { return o.verb }; return rawValue }
}
