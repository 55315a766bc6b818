import MoEBasics
import MoEIR

/// Builtins of the dense family: per-token layers with their own weights (`linear`, the norms) and
/// the dense feed-forward blocks a shared expert is written with (`swiglu`, `mlp`).
enum DenseBuiltins {
    static let builtins: [Builtin] = [
        Builtin("linear", ["x", "weight", "bias"], positional: 3) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), w = try args.tensor("weight", &l)
            var ops = [x, w]
            if let b = try args.optionalTensor("bias", &l) { ops.append(b) }
            return try l.node(.linear, ops, at: args.at)
        },
        Builtin("rmsnorm", ["x", "weight", "eps"], positional: 2) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), w = try args.tensor("weight", &l)
            let eps = try args.optionalNumber("eps", &l) ?? 1e-6
            return try l.node(.rmsnorm, [x, w], ["eps": .float(eps)], at: args.at)
        },
        Builtin("layernorm", ["x", "weight", "bias", "eps"], positional: 3) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), w = try args.tensor("weight", &l)
            var ops = [x, w]
            if let b = try args.optionalTensor("bias", &l) { ops.append(b) }
            let eps = try args.optionalNumber("eps", &l) ?? 1e-5
            return try l.node(.layernorm, ops, ["eps": .float(eps)], at: args.at)
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
}
