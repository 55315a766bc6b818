import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoEKernels
import MoETestSupport
import Testing

/// Experts written as expressions (`experts: n of expert(h) { … }`): which bodies become packed
/// `swiglu`/`mlp` blocks with an epilogue and which run on the general path, and that every path
/// (packed kernel, unfused BLAS/native path, general path, reference interpreter) gives
/// transformers' output on the gpt-oss fixture.
@Suite struct ExpertBodyTests {
    static let fixture = RepoPaths.fixtures + "/gpt_oss-tiny"

    /// BLAS when one loads, and moec's kernels; 1 and 2 threads.
    static var configurations: [(label: String, options: ExecutionOptions)] {
        var backends: [(String, MatMulBackend)] = [("native", .native)]
        if case .success(let b?) = BLAS.load(environment: nil) { backends.append(("blas", .blas(b))) }
        return backends.flatMap { b in [1, 2].map { t in ("\(b.0)/\(t)t", ExecutionOptions(threads: t, backend: b.1)) } }
    }

    /// graphs/gpt_oss.moe with its experts' body replaced.
    static func gptOss(body: String) throws -> String {
        let source = try String(contentsOfFile: RepoPaths.graphs + "/gpt_oss.moe", encoding: .utf8)
        let start = try #require(source.range(of: "experts: num_experts of expert(h) {"))
        let end = try #require(source.range(of: "\n  }\n}", range: start.upperBound..<source.endIndex))
        return String(source[..<start.lowerBound]) + "experts: num_experts of expert(h) {\n" + body + String(source[end.lowerBound...])
    }

    static let gptOssBody = """
            let g = h |> linear(gate, bias: gate_bias) |> clamp(max: limit)
            let u = h |> linear(up, bias: up_bias) |> clamp(min: -limit, max: limit)
            (u + 1) * g * sigmoid(alpha * g) |> linear(down, bias: down_bias)
        """

    static func session(_ source: String, in dir: TemporaryDirectory, disabled: Set<String> = []) throws -> CompilerSession {
        let path = dir.file("graph.moe")
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return CompilerSession(
            CompileOptions(graphPath: path, modelDirectory: fixture, overrides: [("layer", "1")], verifyEachPass: true, disabledPasses: disabled))
    }

    static func expertsNode(_ g: Graph) throws -> ExpertsNode { try #require(g.expertsNodes.first?.view) }

    static var x: HostTensor {
        get throws {
            let a = try NpyArray(path: fixture + "/x.npy")
            return HostTensor(shape: a.shape, floats: a.floats())
        }
    }
    static var y: [Float] { get throws { try NpyArray(path: fixture + "/y.npy").floats() } }

    /// Runs the source through a saved plan on every backend and thread count, and through the
    /// reference interpreter; every output must match transformers' within 1e-4 of max |y|.
    static func checkEveryPath(_ source: String, disabled: Set<String> = []) throws {
        let dir = TemporaryDirectory()
        let s = try session(source, in: dir, disabled: disabled)
        let plan = try s.writePlan(to: dir.file("plan.json"))
        for (label, options) in Self.configurations {
            let out = try ModelRunner.load(planPath: plan, options: options).run(["x": try x])
            let err = relativeError(try #require(out["y"]).floats, try y)
            #expect(err <= 1e-4, "\(label): \(err)")
        }
        let graph = try s.boundGraph()
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try s.checkpoint()))
        let err = relativeError(try #require(try interpreter.run(["x": try x])["y"]).floats, try y)
        #expect(err <= 1e-4, "interpreter: \(err)")
    }

    @Test func gptOssBodyRunsOnThePackedKernelWithAnEpilogue() throws {
        let dir = TemporaryDirectory()
        let s = try Self.session(try Self.gptOss(body: Self.gptOssBody), in: dir)
        let view = try Self.expertsNode(try s.optimize())
        #expect(view.kind == .swiglu)
        #expect(view.biasRoles == ["gate", "up", "down"])
        let epilogue = try #require(view.epilogue)
        // gate = %0, up = %1: min(gate, limit), clamp(up), (up + 1) · gate · σ(α·gate).
        #expect(!epilogue.hasLinear && epilogue.inputs == 2)
        #expect(epilogue.instructions.first == .binary("min", .register(0), .constant(0.4)))
        #expect(view.has(.fuseGateUp) && view.has(.prepacked) && view.has(.permute))
        #expect(Executable.runsPackedKernel(view.node, try s.optimize()))
        let plan = try s.emit(.plan)
        #expect(plan.contains("an expression on the packed kernel, with biases on gate, up, down"), "\(plan)")
        #expect(plan.contains("in the GEMM's epilogue"))
    }

    @Test func gptOssMatchesTransformersOnEveryPath() throws {
        try Self.checkEveryPath(try Self.gptOss(body: Self.gptOssBody))
        // Gate and up as two matrices: the epilogue runs after the whole first layer.
        try Self.checkEveryPath(try Self.gptOss(body: Self.gptOssBody), disabled: ["expert-gate-up-fusion"])
        // No permutation or packing: the unfused path.
        try Self.checkEveryPath(try Self.gptOss(body: Self.gptOssBody), disabled: ["token-permutation", "expert-weight-prepacking"])
    }

    /// The same expert with a step after the down projection: not the packed kernel's shape, so
    /// the general path runs it, with the same result.
    @Test func otherShapesRunOnTheGeneralPath() throws {
        let body = """
                let g = h |> linear(gate, bias: gate_bias) |> clamp(max: limit)
                let u = h |> linear(up, bias: up_bias) |> clamp(min: -limit, max: limit)
                let y = (u + 1) * g * sigmoid(alpha * g) |> linear(down, bias: down_bias)
                max(y, -1e30)
            """
        let source = try Self.gptOss(body: body)
        let dir = TemporaryDirectory()
        let s = try Self.session(source, in: dir)
        let view = try Self.expertsNode(try s.optimize())
        #expect(view.kind == .program)
        #expect(view.programWeights.count == 6)
        #expect(!view.has(.prepacked))
        #expect(try s.emit(.plan).contains("general expression path"))
        try Self.checkEveryPath(source)
    }

    /// A body that is SwiGLU (or an MLP with an activation) lowers to the plain kind: no epilogue.
    @Test func plainSwiGLUAndMLPBodiesNeedNoEpilogue() throws {
        let dir = TemporaryDirectory()
        let swiglu = try Self.session(try Self.gptOss(body: "silu(h |> linear(gate)) * linear(h, up) |> linear(down)"), in: dir)
        let a = try Self.expertsNode(try swiglu.optimize())
        #expect(a.kind == .swiglu && a.epilogue == nil && a.biasRoles.isEmpty)
        let mlp = try Self.session(try Self.gptOss(body: "h |> linear(up, bias: up_bias) |> gelu |> linear(down)"), in: dir)
        let b = try Self.expertsNode(try mlp.optimize())
        #expect(b.kind == .mlp && b.epilogue == nil && b.activation == .gelu && b.biasRoles == ["up"])
    }

    /// An MLP body with biases and a non-activation epilogue, checked against the reference
    /// interpreter (which evaluates the body as written) on every backend.
    @Test func mlpWithEpilogueMatchesTheInterpreter() throws {
        let source = try Self.gptOss(body: "h |> linear(up, bias: up_bias) |> tanh |> clamp(min: -0.5) |> linear(down, bias: down_bias)")
        let dir = TemporaryDirectory()
        let s = try Self.session(source, in: dir)
        let view = try Self.expertsNode(try s.optimize())
        #expect(view.kind == .mlp && view.epilogue != nil)
        let graph = try s.boundGraph()
        let reference = try #require(
            try ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try s.checkpoint())).run(["x": try Self.x])["y"])
        let plan = try s.writePlan(to: dir.file("plan.json"))
        for (label, options) in Self.configurations {
            let out = try ModelRunner.load(planPath: plan, options: options).run(["x": try Self.x])
            let err = relativeError(try #require(out["y"]).floats, reference.floats)
            #expect(err <= 1e-5, "\(label): \(err)")
        }
    }

    /// A '(' that starts a line starts the result, not a call of the stage above it.
    @Test func aResultStartingWithABracketOnItsOwnLine() throws {
        let body = """
                let g = h |> linear(gate, bias: gate_bias) |> tanh
                let u = h |> linear(up, bias: up_bias) |> relu
                (u + 1) * g |> linear(down, bias: down_bias)
            """
        let dir = TemporaryDirectory()
        let view = try Self.expertsNode(try Self.session(try Self.gptOss(body: body), in: dir).optimize())
        #expect(view.kind == .swiglu)
        #expect(view.epilogue?.description == "%2 = tanh %0; %3 = relu %1; %4 = add %3 1.0; %5 = mul %4 %2")
    }

    @Test func programTextRoundTrips() throws {
        let text = "%1 = linear %0 w0 w1; %2 = min %1 7.0; %3 = mul 1.702 %2; %4 = sigmoid %3; %5 = linear %4 w2"
        let p = try ExpertProgram(parsing: text, inputs: 1)
        #expect(p.description == text)
        #expect(p.weightsRead == [0, 1, 2])
        #expect(throws: TypeRuleError.self) { try ExpertProgram(parsing: "%1 = min %2 7", inputs: 1) }
        #expect(throws: TypeRuleError.self) { try ExpertProgram(parsing: "%1 = softmax %0", inputs: 1) }
        #expect(throws: TypeRuleError.self) { try ExpertProgram(parsing: "%2 = linear %0 w0", inputs: 1) }
    }
}
