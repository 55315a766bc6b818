import MoEBasics
import MoEIR

/// Builtins of the sequence family, for a whole decoder layer around a MoE block: `rope` (rotary
/// position embeddings, transformers' default rope) and `attention` (causal self-attention with
/// grouped key/value heads and an optional sliding window, `window: null` or 0 for none). The
/// run's tokens are one sequence.
enum SequenceBuiltins {
    static let builtins: [Builtin] = [
        Builtin("rope", ["x", "head_dim", "theta"], positional: 1) { l, args throws(Diagnostic) in
            let x = try args.tensor("x", &l)
            let d = try args.int("head_dim", &l)
            let theta = try args.optionalNumber("theta", &l) ?? 10000
            return try l.node(.rope, [x], ["head_dim": .int(d), "theta": .float(theta)], at: args.at)
        },
        Builtin("attention", ["q", "k", "v", "heads", "kv_heads", "scale", "window"], positional: 3) { l, args throws(Diagnostic) in
            let q = try args.tensor("q", &l), k = try args.tensor("k", &l), v = try args.tensor("v", &l)
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
            return try l.node(.attention, [q, k, v], attrs, at: args.at)
        }
    ]
}
