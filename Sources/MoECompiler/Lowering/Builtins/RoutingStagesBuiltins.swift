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
        // `capacity(c)`: each expert keeps at most c pairs; `capacity(fraction: f)`: at most
        // ⌈f · tokens⌉ of the run's tokens (NLLB-MoE's `moe_eval_capacity_token_fraction`).
        Builtin("capacity", ["routing", "capacity", "fraction"], positional: 2) { l, args throws(Diagnostic) in
            let r = try args.routing("routing", &l, stage: args.function)
            if let f = try args.optionalNumber("fraction", &l) {
                guard !args.has("capacity") else {
                    throw .error("capacity takes a count or 'fraction:', not both", at: args.at)
                }
                guard f > 0, f.isFinite else {
                    throw .error("capacity's fraction must be a positive number (of the run's tokens), got \(f)", at: args.at)
                }
                return try l.node(.route_capacity, [r], ["capacity_fraction": .float(f)], at: args.at)
            }
            guard args.has("capacity") else {
                throw .error(
                    "capacity needs a count of pairs per expert, or 'fraction:' of the run's tokens", at: args.at,
                    notes: [.init("e.g. '|> capacity(64)' or '|> capacity(fraction: 1.0)'")])
            }
            let cap = try args.int("capacity", &l)
            return try l.node(.route_capacity, [r], ["capacity": .int(cap)], at: args.at)
        }
    ]
}
