import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIR

/// A graph using what the printer leaves implicit or escapes: a memory plan, repeated names,
/// locations in files with directories (two of them with the same last component), strings
/// with quotes, a routing, infinite and list attributes, repeated weights, a token dimension
/// with its own name.
func awkwardGraph() throws -> Graph {
    func at(_ file: String, _ line: Int, _ column: Int, _ length: Int) -> SourceRange {
        SourceRange(SourceLocation(file: file, line: line, column: column), length: length)
    }
    var b = GraphBuilder(name: "awkward")
    b.setParams([
        ParamBinding(name: "k", value: .int(2), source: "default"),
        ParamBinding(name: "tau", value: .float(-0.25), source: "config.json:router_tau"),
        ParamBinding(name: "norm", value: .bool(false), source: "--set"),
        ParamBinding(name: "kind", value: .string("say \"hi\"\\\n# not a comment"), source: "default"),
        ParamBinding(name: "n_group", value: .null, source: "config.json:n_group")
    ])
    let x = b.addInput(name: "x", type: TensorType(.f32, [.tokens, .fixed(8)]), at: at("models/a/g.moe", 3, 7, 1))
    let gate = b.addWeight(
        WeightInfo(
            name: "gate", pattern: "gate \"{e}\".weight", shape: [6, 8], location: at("models/a/g.moe", 5, 3, 4),
            repeats: [1, 2, 3]))
    let bias = b.addWeight(WeightInfo(name: "bias", pattern: "bias", shape: [6], location: at("models/b/h.moe", 6, 3, 4)))
    let s = try b.add(.linear, [x, gate], at: [at("models/a/g.moe", 9, 12, 6), at("other/h.moe", 1, 1, 0)], name: "h")
    let s2 = try b.add(.add, [s, bias], at: at("/abs/path, with comma/x.moe", 9, 20, 1), name: "h")
    let minusInfinity = b.addConstant(-.infinity)
    let s3 = try b.add(.mul, [s2, minusInfinity], name: "h")
    let r = try b.add(
        .topk, [s3],
        [
            "k": .int(2), "force": .ints([0, 3]), "disable": .ints([]), "masked": .bool(true),
            "eps": .float(1e-20), "floor": .float(-.infinity)
        ], at: [at("<unknown>", 0, 0, 1), at("lib.moe", 2, 4, 3)])
    let w1 = b.addWeight(WeightInfo(name: "w1", pattern: "e.{e}.w1", shape: [6, 4, 8], layout: [.reshape([8, 8]), .transpose, .split(part: 1, of: 2)]))
    let w2 = b.addWeight(WeightInfo(name: "w2", pattern: "e.{e}.w2", shape: [6, 8, 4]))
    let y = try b.add(
        .moe_experts, [x, r, w1, w2], ["experts": .int(6), "kind": .string("mlp"), "act": .string("gelu")],
        at: [at("models/c/k.moe", 4, 1, 2)], name: "y")
    b.addOutput(name: "y", value: y)
    b.addOutput(name: "h", value: s2)
    var g = b.finish()
    g.tokensName = "T"
    var last = Array(g.nodes.indices)
    for (i, n) in g.nodes.enumerated() { for o in n.operands { last[o.index] = max(last[o.index], i) } }
    for o in g.outputs { last[o.value.index] = g.nodes.count }
    g.lastReaders = last
    return g
}

/// The IR text reader: what the printer prints reads back to the same graph, and broken text
/// gets located errors.
@Suite struct IRReaderTests {
    static func read(_ text: String) throws -> Graph { try IRReader(file: "t.ir").read(text) }

    /// The errors reading `text` gives, one line each (`t.ir:3:5: error: …`).
    static func errors(_ text: String) -> [String] {
        do {
            _ = try read(text)
            return []
        } catch let e as DiagnosticError {
            return e.diagnostics.map(\.description)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    @Test(arguments: [true, false])
    func printedGraphsReadBack(_ planned: Bool) throws {
        for var g in [try sampleGraph(), try awkwardGraph()] {
            if !planned { g.lastReaders = nil }
            #expect(Verifier.verify(g).isEmpty)
            let text = IRPrinter().print(g)
            let back = try Self.read(text)
            #expect(back == g, "\(text)")
            #expect(IRPrinter().print(back) == text)
        }
    }

    @Test func awkwardGraphPrintsWhatTheReaderNeeds() throws {
        let text = IRPrinter().print(try awkwardGraph())
        #expect(text.hasPrefix("graph awkward {                             # models/a/g.moe, models/c/k.moe\n"), "\(text)")
        #expect(text.contains(#"param kind = "say \"hi\"\\\n# not a comment" # default"#), "\(text)")
        #expect(text.contains(#"weight @gate: f32[6, 8] = "gate \"{e}\".weight" repeat [1, 2, 3]"#), "\(text)")
        #expect(text.contains("%h.1 = add %h, %bias : f32[T, 6]"), "\(text)")
        #expect(text.contains(#"param n_group = null"#), "\(text)")
        #expect(text.contains(#"weight @w1: f32[6, 4, 8] = "e.{e}.w1" layout "reshape([8, 8]) |> transpose |> split(1, of: 2)""#), "\(text)")
        #expect(text.contains("# g.moe:9:12-18, other/h.moe:1:1-1\n"), "two files called h.moe keep their paths\n\(text)")
        #expect(text.contains("# models/b/h.moe:6:3-7\n"), "\(text)")
        #expect(text.contains("# /abs/path, with comma/x.moe:9:20-21\n"), "\(text)")
        #expect(text.contains("{k = 2, force = [0, 3], disable = [], masked = true, eps = 1e-20, floor = -inf} : route[T, 2 of 6] # <unknown>:0:0-1, lib.moe:2:4-7\n"), "\(text)")
        #expect(text.contains("after %y: %x, %7"), "\(text)")
    }

    /// Hand-trimmed text: any numbering, comment lines, no locations, no memory plan.
    @Test func handWrittenTextReads() throws {
        let g = try Self.read(
            """
            # A router on its own.
            graph r {
              weight @gate: f32[4, 8] = "gate"

              %x = input "x" : f32[tokens, 8]
              %17 = weight @gate : f32[4, 8]
              # comment lines may come anywhere
              %3 = linear %x, %17 : f32[tokens, 4]
              %p = softmax %3 {temperature = 2} : f32[tokens, 4]
              output p = %p
            }

            """)
        #expect(g.nodes.map(\.op) == [.input, .weight, .linear, .softmax])
        #expect(g.nodes.map(\.name) == ["x", nil, nil, "p"])
        #expect(g.nodes[3].operands == [ValueID(2)] && g.nodes[3].attributes.int("temperature") == 2)
        #expect(g.lastReaders == nil && g.tokensName == "tokens" && g.nodes.allSatisfy { $0.locations.isEmpty })
        #expect(IRPrinter().print(g).contains("  %2 = linear %x, %1 : f32[tokens, 4]\n"))
    }

    static let router = """
        graph r {
          weight @gate: f32[4, 8] = "gate"
          %x = input "x" : f32[tokens, 8]
          %gate = weight @gate : f32[4, 8]
          %3 = linear %x, %gate : f32[tokens, 4]
          %p = softmax %3 : f32[tokens, 4]
          output p = %p
        }
        """

    /// One change to a line of `router` and the error it must give.
    @Test(
        arguments: [
            ("%p = softmax %3 : f32[tokens, 4]", "%p = sofmax %3 : f32[tokens, 4]", "t.ir:6:8: error: unknown op 'sofmax'"),
            ("%p = softmax %3 : f32[tokens, 4]", "%p = softmax %9 : f32[tokens, 4]", "t.ir:6:16: error: %9 is not defined before this line"),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 : f32[tokens, 5]",
                "t.ir:6:3: error: %p (softmax): recorded type f32[tokens, 5] but operands give f32[tokens, 4]"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 : f32[T, 4]",
                "t.ir:6:25: error: a second dimension symbol 'T': the token count is already called 'tokens'"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 : f64[tokens, 4]",
                "t.ir:6:21: error: unknown type 'f64' (expected f32[…], i32[…] or route[…])"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 : f32[tokens, 4",
                "t.ir:6:34: error: expected ']' at the end of the line"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 {temperature = 2x} : f32[tokens, 4]",
                "t.ir:6:34: error: malformed number '2x'"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 {temperature = 1, temperature = 2} : f32[tokens, 4]",
                "t.ir:6:37: error: attribute 'temperature' is given twice"
            ),
            ("%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 {t = \"open} : f32[tokens, 4]", "t.ir:6:24: error: unterminated string"),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 {t = 99999999999999999999} : f32[tokens, 4]",
                "t.ir:6:24: error: the integer 99999999999999999999 does not fit in 64 bits"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 : f32[tokens, 4]  # g.moe:1",
                "t.ir:6:39: error: expected a source location 'file:line:column-end', found 'g.moe:1'"
            ),
            (
                "%p = softmax %3 : f32[tokens, 4]", "%p = softmax %3 : f32[tokens, 4]  junk",
                "t.ir:6:37: error: expected '#' or the end of the line, found 'junk'"
            ),
            ("%3 = linear %x, %gate : f32[tokens, 4]", "%x = linear %x, %gate : f32[tokens, 4]", "t.ir:5:3: error: %x is defined twice"),
            ("%gate = weight @gate : f32[4, 8]", "%gate = weight @gat : f32[4, 8]", "t.ir:4:18: error: no weight @gat in the weight table"),
            (
                "%gate = weight @gate : f32[4, 8]", "%gate = weight @gate {index = 0} : f32[4, 8]",
                "t.ir:4:25: error: 'index' is given by the weight's operand"
            ),
            (
                "%gate = weight @gate : f32[4, 8]", "%gate = weight @gate : f32[8, 4]",
                "t.ir:4:3: error: %gate (weight): weight @gate has type f32[8, 4] but its table entry is f32[4, 8]"
            ),
            (
                "weight @gate: f32[4, 8] = \"gate\"", "weight @gate: f32[4, 8] = \"gate\" repeat [1, 2]",
                "t.ir:2:42: error: the repeat counts add up to 3, but the weight's first dimension is 4"
            ),
            (
                "weight @gate: f32[4, 8] = \"gate\"", "weight @gate: i32[4, 8] = \"gate\"",
                "t.ir:2:17: error: weights are f32, bf16, f16, int8, int4, int4g64, int4g128, int4z, int4zg64, int4zg128, q8_0, q4_0, q4_k, q5_k or q6_k, found 'i32'"
            ),
            (
                "weight @gate: f32[4, 8] = \"gate\"", "weight @gate: f32[4, 8] = \"gate\" layout \"transpose |> rotate(2)\"",
                "t.ir:2:43: error: unknown layout step 'rotate(2)' (expected one of transpose, reshape, squeeze, split, deinterleave, pad)"
            ),
            ("output p = %p", "output p = %q", "t.ir:7:14: error: %q is not defined before this line"),
            ("output p = %p", "output p = %p %3", "t.ir:7:17: error: expected the end of the line, found '%'"),
            ("output p = %p", "output p = %p\n  output p = %3", "t.ir:8:10: error: output 'p' is declared twice"),
            ("output p = %p", "outptu p = %p", "t.ir:7:3: error: expected a param, weight, node, output or memory line, found 'outptu'"),
            ("output p = %p", "", "t.ir:1:1: error: graph 'r' has no outputs"),
            ("  output p = %p\n}", "  output p = %p", "t.ir:7:16: error: expected '}' to close graph 'r'"),
            ("}", "}\n%q = softmax %p : f32[tokens, 4]", "t.ir:9:1: error: text after the graph's closing '}'"),
            ("graph r {", "grahp r {", "t.ir:1:1: error: expected 'graph', found 'grahp'")
        ] as [(String, String, String)])
    func brokenTextIsReportedWhereItIs(_ original: String, _ replacement: String, _ expected: String) {
        let text = Self.router.replacingOccurrences(of: original, with: replacement)
        #expect(text != Self.router)
        let errors = Self.errors(text)
        #expect(errors.first == expected, "\(errors)")
    }

    /// Every line with an error is reported; lines that read a broken value are not.
    @Test func errorsAreCollectedWithoutCascades() {
        let errors = Self.errors(
            """
            graph r {
              param k = two                             # default
              weight @gate: f32[4, 8] = "gate"
              %x = input "x" : f32[tokens, 8]
              %gate = weight @gate : f32[4, 8]
              %3 = linaer %x, %gate : f32[tokens, 4]
              %p = softmax %3 : f32[tokens, 4]
              %q = softmax %p : f32[tokens, 4]
              output p = %q
              memory
                after %x: %gate
            }
            """)
        #expect(
            errors == [
                "t.ir:2:13: error: expected a number, true, false or a string, found 'two'",
                "t.ir:6:8: error: unknown op 'linaer'",
                "t.ir:11:15: error: weight values live outside the arena and are not in the memory plan"
            ], "\(errors)")
    }

    @Test func memoryPlansAreReadAndChecked() throws {
        var text = IRPrinter().print(try awkwardGraph())
        #expect(try Self.read(text).lastReaders == (try awkwardGraph()).lastReaders)
        text = text.replacingOccurrences(of: "after %y: %x, %7", with: "after %h: %x\n    after %y: %7")
        let errors = Self.errors(text)
        #expect(errors.contains { $0.hasSuffix("error: %y (moe_experts): reads %x, whose memory the plan frees after step 3") }, "\(errors)")
        #expect(
            Self.errors(text.replacingOccurrences(of: "after %h: %x\n", with: "after %h: %x, %x\n")).first?
                .hasSuffix("error: this value is already freed after another step") == true)
    }

    /// Junk never crashes the reader: every prefix of a printed graph, and every line cut short,
    /// reads or fails with located errors.
    @Test func truncatedTextFailsCleanly() throws {
        let text = IRPrinter().print(try awkwardGraph())
        let scalars = Array(text.unicodeScalars)
        for cut in stride(from: 0, to: scalars.count, by: 3) {
            let prefix = String(String.UnicodeScalarView(scalars[..<cut]))
            let errors = Self.errors(prefix)
            #expect(!errors.isEmpty && errors.allSatisfy { $0.hasPrefix("t.ir:") }, "cut at \(cut): \(errors)")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() where line.count > 4 {
            for keep in [line.count / 2, line.count - 2] {
                var damaged = lines
                damaged[i] = line.prefix(keep)
                let errors = Self.errors(damaged.joined(separator: "\n"))
                #expect(errors.allSatisfy { $0.hasPrefix("t.ir:") }, "line \(i + 1) cut to \(keep): \(errors)")
            }
        }
    }

    /// Every op's name, by family (written out: the reader must know each of them).
    static let opNames = [
        "input", "weight", "constant",
        "linear", "rmsnorm", "layernorm", "swiglu", "mlp",
        "silu", "gelu", "gelu_tanh", "relu", "sigmoid", "tanh", "exp", "sqrt", "neg", "add", "sub", "mul", "div",
        "softmax", "cosine", "distance", "subspace", "sinkhorn", "dselect",
        "topk", "fused_router", "threshold", "top_p", "stat_topk", "expert_choice", "dense_route", "nonzero", "hash_route", "within",
        "route_renormalize", "route_softmax", "route_scale", "route_sqrt", "route_capacity",
        "moe_experts", "halt_mask"
    ]

    @Test func everyOpNameIsKnown() {
        #expect(Self.opNames.allSatisfy { Op(rawValue: $0)?.rawValue == $0 })
    }

    /// Any op on any node line, with its operands cut down or repeated: the reader answers with
    /// a graph or with located problems (the verifier's type rules see every combination).
    @Test func everyOpOnEveryNodeLineIsReadOrReported() throws {
        let text = IRPrinter().print(try awkwardGraph())
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var rejected = 0
        for (i, line) in lines.enumerated() where line.hasPrefix("  %") {
            let parts = line.components(separatedBy: " = ")
            guard parts.count >= 2, let opEnd = parts[1].firstIndex(of: " ") else { continue }
            let rest = String(parts[1][opEnd...])
            let operandVariants = [
                rest, rest.replacingOccurrences(of: #"%[^ ,{:]+, "#, with: "", options: .regularExpression),
                rest.replacingOccurrences(of: #" (%[^ ,{:]+)"#, with: " $1, $1", options: .regularExpression)
            ]
            for op in Self.opNames {
                for operands in operandVariants {
                    var damaged = lines
                    damaged[i] = parts[0] + " = " + op + operands
                    let errors = Self.errors(damaged.joined(separator: "\n"))
                    #expect(errors.allSatisfy { $0.hasPrefix("t.ir:") }, "\(damaged[i]): \(errors)")
                    if !errors.isEmpty { rejected += 1 }
                }
            }
        }
        #expect(rejected > 100)
    }
}
