import MoEBasics
import MoEIR

/// Builtins of the selection family: from scores to a routing, choosing each token's experts
/// (`topk` and its variants, `threshold`, `top_p`, …), the experts' tokens (`expert_choice`), or
/// experts without scores (`hash`, `random_fixed`, `dense`). `within` selects inside an outer
/// routing's groups. `sparsemixer` is PhiMoE's router.
enum SelectionBuiltins {
    static let builtins: [Builtin] = [
        Builtin(
            "topk", ["scores", "k", "bias", "groups", "keep_groups", "group_top", "masked", "by", "force", "disable"],
            positional: 2
        ) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            let k = try args.int("k", &l)
            var attrs: Attributes = ["k": .int(k)]
            var ops = [scores]
            if let b = try args.optionalTensor("bias", &l) { ops.append(b); attrs["with_bias"] = .bool(true) }
            if let by = try args.optionalTensor("by", &l) { ops.append(by); attrs["with_by"] = .bool(true) }
            if let f = try args.optionalInts("force", &l) { attrs["force"] = .ints(f) }
            if let d = try args.optionalInts("disable", &l) { attrs["disable"] = .ints(d) }
            if let groups = try args.optionalInt("groups", &l) {
                attrs["groups"] = .int(groups)
                attrs["keep_groups"] = .int(try args.optionalInt("keep_groups", &l) ?? groups)
                attrs["group_top"] = .int(try args.optionalInt("group_top", &l) ?? 2)
            } else if args.has("keep_groups") || args.has("group_top") {
                throw .error("keep_groups and group_top need groups", at: args.at)
            }
            if let m = try args.optionalNumber("masked", &l) {
                attrs["masked"] = .float(m)
            }
            return try l.node(.topk, ops, attrs, at: args.at)
        },
        Builtin("threshold", ["scores", "tau", "max_k"], positional: 2) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            let attrs: Attributes = ["tau": .float(try args.number("tau", &l))]
            return try l.node(.threshold, [scores], try maxK(attrs, args, &l), at: args.at)
        },
        Builtin("top_p", ["scores", "p", "max_k"], positional: 2) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            let attrs: Attributes = ["p": .float(try args.number("p", &l))]
            return try l.node(.top_p, [scores], try maxK(attrs, args, &l), at: args.at)
        },
        Builtin("stat_topk", ["scores", "k", "max_k"], positional: 2) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            let attrs: Attributes = ["k": .int(try args.int("k", &l))]
            return try l.node(.stat_topk, [scores], try maxK(attrs, args, &l), at: args.at)
        },
        Builtin("dense", ["scores"], positional: 1) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            return try l.node(.dense_route, [scores], at: args.at)
        },
        Builtin("nonzero", ["scores", "max_k"], positional: 1) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            return try l.node(.nonzero, [scores], try maxK([:], args, &l), at: args.at)
        },
        Builtin("expert_choice", ["scores", "k", "capacity_factor"], positional: 2) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            var attrs: Attributes = ["k": .int(try args.int("k", &l))]
            var ops = [scores]
            switch try args.raw("capacity_factor", &l) {
            case .int(let v): attrs["capacity_factor"] = .float(Double(v))
            case .float(let v): attrs["capacity_factor"] = .float(v)
            case .tensor(let id): ops.append(id)
            default: throw .error("capacity_factor must be a number, or a scalar input to set it at run time", at: args.at)
            }
            return try l.node(.expert_choice, ops, attrs, at: args.at)
        },
        Builtin("hash", ["ids", "experts"], positional: 1) { l, args throws(Diagnostic) in
            try hashRoute(method: "hash", args, &l)
        },
        Builtin("random_fixed", ["ids", "experts", "seed"], positional: 1) { l, args throws(Diagnostic) in
            try hashRoute(method: "random", args, &l)
        },
        Builtin("within", ["outer", "inner", "k"], positional: 2) { l, args throws(Diagnostic) in
            let outer = try args.routing("outer", &l, stage: args.function)
            let inner = try args.tensor("inner", &l)
            return try l.node(.within, [outer, inner], ["k": .int(try args.optionalInt("k", &l) ?? 1)], at: args.at)
        },
        Builtin("sparsemixer", ["scores", "jitter_eps"], positional: 1) { l, args throws(Diagnostic) in
            let scores = try args.tensor("scores", &l)
            return try l.node(.sparsemixer, [scores], ["jitter_eps": .float(try args.number("jitter_eps", &l))], at: args.at)
        }
    ]

    /// `attrs` with the optional `max_k` cap (the most experts a token may get).
    private static func maxK(_ attrs: Attributes, _ args: BoundArguments, _ l: inout ASTToIR) throws(Diagnostic) -> Attributes {
        var attrs = attrs
        if let m = try args.optionalInt("max_k", &l) { attrs["max_k"] = .int(m) }
        return attrs
    }

    /// `hash(ids, experts:)` and `random_fixed(ids, experts:, seed:)`: one `hash_route` node, told
    /// apart by its `method`. (`hash` has no `seed` parameter, so its seed is always 0.)
    private static func hashRoute(method: String, _ args: BoundArguments, _ l: inout ASTToIR) throws(Diagnostic) -> ASTToIR.Value {
        let ids = try args.tensor("ids", &l)
        var attrs: Attributes = ["experts": .int(try args.int("experts", &l)), "method": .string(method)]
        attrs["seed"] = .int(try args.optionalInt("seed", &l) ?? 0)
        return try l.node(.hash_route, [ids], attrs, at: args.at)
    }
}
