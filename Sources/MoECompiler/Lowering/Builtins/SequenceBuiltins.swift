import MoEBasics
import MoEIR

/// Builtins of the sequence family, for a whole decoder layer around a MoE block: `rope` (rotary
/// position embeddings, transformers' default rope or `scaling: "yarn"`) and `attention` (causal self-attention with
/// grouped key/value heads, an optional sliding window, `window: null` or 0 for none, and
/// gpt-oss's per-head `sinks:`). The run's tokens are one sequence.
enum SequenceBuiltins {
    static let builtins: [Builtin] = [
        Builtin(
            "rope", ["x", "head_dim", "theta", "scaling", "factor", "beta_fast", "beta_slow", "original_max", "truncate", "attention_factor"],
            positional: 1
        ) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l)
            let d = try args.int("head_dim", &l)
            let theta = try args.optionalNumber("theta", &l) ?? 10000
            var attrs: Attributes = ["head_dim": .int(d), "theta": .float(theta)]
            // `scaling:` names transformers' rope_type: "default" (none) or "yarn".
            let yarnArguments = ["factor", "beta_fast", "beta_slow", "original_max", "truncate", "attention_factor"]
            let scaling = args.has("scaling") ? try args.symbol("scaling", &l, among: ["default", "yarn"]) : "default"
            if scaling == "yarn" {
                attrs["factor"] = .float(try args.number("factor", &l))
                attrs["beta_fast"] = .float(try args.optionalNumber("beta_fast", &l) ?? 32)
                attrs["beta_slow"] = .float(try args.optionalNumber("beta_slow", &l) ?? 1)
                attrs["original_max"] = .int(try args.int("original_max", &l))
                attrs["truncate"] = .bool(try args.optionalBool("truncate", &l) ?? true)
                if let a = try args.optionalNumber("attention_factor", &l) { attrs["attention_factor"] = .float(a) }
            } else if let given = yarnArguments.first(where: args.has) {
                throw .error("'\(given)' is an argument of YaRN scaling: add 'scaling: \"yarn\"'", at: args.at)
            }
            return try l.node(.rope, [x], attrs, at: args.at)
        },
        Builtin("attention", ["q", "k", "v", "heads", "kv_heads", "scale", "window", "sinks"], positional: 3) { l, args throws(Diagnostic) in
            let q = try args.tensor("q", &l), k = try args.tensor("k", &l), v = try args.tensor("v", &l)
            var operands = [q, k, v]
            if let sinks = try args.optionalTensor("sinks", &l) { operands.append(sinks) }
            let heads = try args.int("heads", &l)
            var attrs: Attributes = ["heads": .int(heads), "kv_heads": .int(try args.optionalInt("kv_heads", &l) ?? heads)]
            if let s = try args.optionalNumber("scale", &l) { attrs["scale"] = .float(s) }
            // A window of null (a config's "sliding_window": null) or 0 is none.
            if args.has("window") {
                if case .null = try args.raw("window", &l) {
                } else if case let w = try args.int("window", &l), w != 0 {
                    attrs["window"] = .int(w)
                }
            }
            return try l.node(.attention, operands, attrs, at: args.at)
        }
    ]
}
