import MoEBasics
import MoEIR

/// Builtins of the routing-stages family: they take a routing (after an expert selection) and
/// change its weights or drop assignments. `softmax` and `sqrt` of a routing are stages too; they
/// live with their tensor forms in `ScoringBuiltins` and `ElementwiseBuiltins`.
enum RoutingStagesBuiltins {
    static let builtins: [Builtin] = [
        Builtin("renormalize", ["routing", "eps"], positional: 1) { l, args throws(Diagnostic) in
            let r = try args.routing("routing", &l, stage: args.function)
            let eps = try args.optionalNumber("eps", &l) ?? 0
            return try l.node(.route_renormalize, [r], ["eps": .float(eps)], at: args.at)
        },
        Builtin("scale", ["routing", "factor"], positional: 2) { l, args throws(Diagnostic) in
            let r = try args.routing("routing", &l, stage: args.function)
            let f = try args.number("factor", &l)
            return try l.node(.route_scale, [r], ["factor": .float(f)], at: args.at)
        },
        Builtin("capacity", ["routing", "capacity"], positional: 2) { l, args throws(Diagnostic) in
            let r = try args.routing("routing", &l, stage: args.function)
            let cap = try args.int("capacity", &l)
            return try l.node(.route_capacity, [r], ["capacity": .int(cap)], at: args.at)
        }
    ]
}
