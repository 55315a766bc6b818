import MoEBasics
import MoESyntax
import Testing

@testable import MoECompiler

/// The builtins' signatures are spread over one file per op family; these tests pin the surface
/// language the `.moe` files and the README rely on.
@Suite struct BuiltinsTests {
    /// Parameters and how many may be positional, as the language had them before the builtins
    /// were split by family. New builtins may be added, and new labelled parameters after these
    /// (`groups:` of the norms): every call written for them still means the same. These
    /// parameters, their order and the positional count must not change.
    static let established: [String: (parameters: [String], positional: Int)] = [
        "linear": (["x", "weight", "bias"], 3),
        "rmsnorm": (["x", "weight", "eps"], 2),
        "layernorm": (["x", "weight", "bias", "eps"], 3),
        "softmax": (["x", "temperature", "groups"], 1),
        "sigmoid": (["x"], 1), "silu": (["x"], 1), "gelu": (["x"], 1), "gelu_tanh": (["x"], 1), "relu": (["x"], 1),
        "tanh": (["x"], 1), "exp": (["x"], 1), "sqrt": (["x"], 1),
        "topk": (["scores", "k", "bias", "groups", "keep_groups", "group_top", "masked", "by", "force", "disable"], 2),
        "threshold": (["scores", "tau", "max_k"], 2), "top_p": (["scores", "p", "max_k"], 2),
        "stat_topk": (["scores", "k", "max_k"], 2),
        "dense": (["scores"], 1), "nonzero": (["scores", "max_k"], 1),
        "expert_choice": (["scores", "k", "capacity_factor"], 2),
        "hash": (["ids", "experts"], 1), "random_fixed": (["ids", "experts", "seed"], 1),
        "within": (["outer", "inner", "k"], 2),
        "cosine": (["x", "centroids"], 2), "distance": (["x", "centroids"], 2), "subspace": (["x", "bases"], 2),
        "sinkhorn": (["scores", "iterations"], 1),
        "dselect": (["x", "z", "alpha", "experts", "gamma", "z_bias", "alpha_bias"], 1),
        "renormalize": (["routing", "eps"], 1),
        "scale": (["routing", "factor"], 2),
        "capacity": (["routing", "capacity", "fraction"], 2),
        "swiglu": (["x", "gate", "up", "down"], 1),
        "mlp": (["x", "up", "down", "act"], 1)
    ]

    @Test func establishedSignaturesAreUnchanged() {
        for (name, expected) in Self.established.sorted(by: { $0.key < $1.key }) {
            guard let b = Builtins.byName[name] else {
                Issue.record("builtin '\(name)' is missing")
                continue
            }
            #expect(Array(b.parameters.prefix(expected.parameters.count)) == expected.parameters, "\(name)")
            #expect(b.positional == expected.positional, "\(name)")
        }
    }

    @Test func namesAreUniqueAndPositionalsFit() {
        #expect(Set(Builtins.all.map(\.name)).count == Builtins.all.count)
        for b in Builtins.all {
            #expect(Set(b.parameters).count == b.parameters.count, "\(b.name) repeats a parameter")
            #expect((0...b.parameters.count).contains(b.positional), "\(b.name)")
        }
    }
}

/// Builtins that look at their argument before deciding what it must be (`silu` … `exp` fold a
/// compile-time number, `sqrt` also takes a routing) lower it once: a chain of n of them once
/// lowered its innermost argument 2ⁿ times (24 stages hung `moec compile`).
@Suite struct BuiltinChainTests {
    @Test(arguments: ["silu", "gelu", "relu", "sigmoid", "tanh", "exp", "sqrt"])
    func aLongChainLowersEachStageOnce(_ f: String) throws {
        let stages = 40
        let text = "input x: [tokens, 4]\nlet y = x" + String(repeating: " |> \(f)", count: stages) + "\noutput y\n"
        let d = DiagnosticEngine()
        let ast = Parser.parse(SourceFile(path: "chain.moe", text: text), diagnostics: d)
        let g = try #require(ASTToIR.lower(ast, diagnostics: d), "\(d.render())")
        #expect(g.nodes.filter { $0.op.rawValue == f }.count == stages)
    }
}
