/// Values from outside the graph. Their types are declared, not inferred: the verifier checks
/// each against its declaration (an input's, the weight table's, a constant's f32 scalar).
public enum LeafOp: String, OpFamily {
    case input // attrs: name
    case weight // attrs: index (into Graph.weights)
    case constant // attrs: value (a scalar f32)

    public var surfaceName: String { rawValue }

    public func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        switch self {
        case .input, .weight, .constant:
            guard operands.isEmpty else { throw TypeRuleError("'\(rawValue)' takes no operands") }
            return nil
        }
    }

    public var isNonNegative: Bool {
        switch self {
        case .input, .weight, .constant: return false
        }
    }

    public var mixesTokens: Bool {
        switch self {
        case .input, .weight, .constant: return false
        }
    }

    public var routerFusionPart: RouterFusionPart? {
        switch self {
        case .input, .weight, .constant: return nil
        }
    }
}

extension Op {
    public static let input = Op.leaf(.input)
    public static let weight = Op.leaf(.weight)
    public static let constant = Op.leaf(.constant)
}
