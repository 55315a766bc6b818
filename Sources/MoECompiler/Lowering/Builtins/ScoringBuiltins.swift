import MoEBasics
import MoEIR

/// Builtins of the scoring family: from tokens to one score per expert (`softmax` over logits,
/// similarity to centroids, `sinkhorn` balancing, `dselect`, `sparsemax`). `softmax` of a routing is the
/// routing stage `route_softmax`.
enum ScoringBuiltins {
    static let builtins: [Builtin] = [
        Builtin("softmax", ["x", "temperature", "groups"], positional: 1) { l, args throws(Diagnostic) in
            let x = try args.value("x", &l)
            let t = try args.optionalNumber("temperature", &l)
            let groups = try args.optionalInt("groups", &l)
            if l.isRouting(x) {
                if t != nil || groups != nil { throw .error("softmax over a routing takes no temperature or groups", at: args.at) }
                return try l.node(.route_softmax, [x], at: args.at)
            }
            var attrs: Attributes = [:]
            if let t { attrs["temperature"] = .float(t) }
            if let groups { attrs["groups"] = .int(groups) }
            return try l.node(.softmax, [x], attrs, at: args.at)
        },
        Builtin("cosine", ["x", "centroids"], positional: 2) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), c = try args.tensor("centroids", &l)
            return try l.node(.cosine, [x, c], at: args.at)
        },
        Builtin("distance", ["x", "centroids"], positional: 2) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), c = try args.tensor("centroids", &l)
            return try l.node(.distance, [x, c], at: args.at)
        },
        Builtin("subspace", ["x", "bases"], positional: 2) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l), u = try args.tensor("bases", &l)
            return try l.node(.subspace, [x, u], at: args.at)
        },
        Builtin("sinkhorn", ["scores", "iterations"], positional: 1) { l, args throws(Diagnostic) in
            let x = try args.tensor("scores", &l)
            return try l.node(.sinkhorn, [x], ["iterations": .int(try args.optionalInt("iterations", &l) ?? 3)], at: args.at)
        },
        Builtin("dselect", ["x", "z", "alpha", "experts", "gamma", "z_bias", "alpha_bias"], positional: 1) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l)
            var z = try args.tensor("z", &l), alpha = try args.tensor("alpha", &l)
            // The official per-example gate's z and α layers are Dense layers with biases.
            if let b = try args.optionalTensor("z_bias", &l) { z = try l.builder.add(.add, [z, b], at: args.at) }
            if let b = try args.optionalTensor("alpha_bias", &l) { alpha = try l.builder.add(.add, [alpha, b], at: args.at) }
            let attrs: Attributes = ["experts": .int(try args.int("experts", &l)), "gamma": .float(try args.optionalNumber("gamma", &l) ?? 1)]
            return try l.node(.dselect, [x, z, alpha], attrs, at: args.at)
        },
        Builtin("sparsemax", ["x"], positional: 1) { l, args throws(Diagnostic) in
            try l.node(.sparsemax, [try args.tensor("x", &l)], at: args.at)
        }
    ]
}
