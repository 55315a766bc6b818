import MoEBasics
import MoEIR

/// Builtins of the dense family: per-token layers with their own weights (`linear`, the norms, per
/// head with `groups:`) and
/// the dense feed-forward blocks a shared expert is written with (`swiglu`, `mlp`).
enum DenseBuiltins {
    static let builtins: [Builtin] = [
        Builtin("linear", ["x", "weight", "bias"], positional: 3) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), w = try args.tensor("weight", &l)
            var ops = [x, w]
            if let b = try args.optionalTensor("bias", &l) { ops.append(b) }
            return try l.node(.linear, ops, at: args.at)
        },
        Builtin("rmsnorm", ["x", "weight", "eps", "groups"], positional: 2) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), w = try args.tensor("weight", &l)
            let eps = try args.optionalNumber("eps", &l) ?? 1e-6
            return try l.node(.rmsnorm, [x, w], try normAttributes(eps: eps, args, &l), at: args.at)
        },
        Builtin("layernorm", ["x", "weight", "bias", "eps", "groups"], positional: 3) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), w = try args.tensor("weight", &l)
            var ops = [x, w]
            if let b = try args.optionalTensor("bias", &l) { ops.append(b) }
            let eps = try args.optionalNumber("eps", &l) ?? 1e-5
            return try l.node(.layernorm, ops, try normAttributes(eps: eps, args, &l), at: args.at)
        },
        Builtin("swiglu", ["x", "gate", "up", "down"], positional: 1) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l)
            let g = try args.tensor("gate", &l), u = try args.tensor("up", &l), d = try args.tensor("down", &l)
            return try l.node(.swiglu, [x, g, u, d], at: args.at)
        },
        Builtin("mlp", ["x", "up", "down", "act"], positional: 1) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l)
            let u = try args.tensor("up", &l), d = try args.tensor("down", &l)
            let act = try args.symbol("act", &l, among: Activation.allCases.map(\.rawValue))
            return try l.node(.mlp, [x, u, d], ["act": .string(act)], at: args.at)
        }
    ]

    /// A norm's `eps`, and `groups` when given (each head of a projection normalised alone).
    private static func normAttributes(eps: Double, _ args: BoundArguments, _ l: inout ASTToIR) throws(Diagnostic) -> Attributes {
        var attrs: Attributes = ["eps": .float(eps)]
        if let g = try args.optionalInt("groups", &l), g != 1 { attrs["groups"] = .int(g) }
        return attrs
    }
}
