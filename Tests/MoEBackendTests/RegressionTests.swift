import Foundation
import MoEIR
import MoEKernels
import MoETestSupport
import Testing

@testable import MoEBackend

/// Tests for bugs found in MoEBackend / MoEIR and fixed: each says what went wrong ("Was:"),
/// what the fix does, and checks the symptom is gone. Several of them crashed the test process
/// while the bug was present.
@Suite(.serialized) struct RegressionTests {
    /// Compiles `source` (a `.moe` text) against a random checkpoint. Returns nil when the
    /// compiler rejects it with an error mentioning `rejectionMentions` (and records an issue
    /// when it is rejected for another reason).
    static func compile(_ source: String, rejectionMentions: String) throws -> RandomModel? {
        let dir = TemporaryDirectory("moec-bug")
        try source.write(toFile: dir.file("bug.moe"), atomically: true, encoding: .utf8)
        do {
            return try RandomCheckpoint.make(graphPath: dir.file("bug.moe"), overrides: [], seed: 1)
        } catch {
            #expect("\(error)".contains(rejectionMentions), "rejected for another reason: \(error)")
            return nil
        }
    }

    /// Every executor configuration must match the reference on `model`.
    static func expectExecutorsMatch(
        _ model: RandomModel, tokens: Int = 5,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws {
        let inputs = model.inputs(tokens: tokens, seed: 1)
        let ref = try model.reference.run(inputs)
        for (label, options) in Backends.configurations {
            let out = try model.executable(options).run(inputs)
            for (name, r) in ref {
                let err = out[name].map { relativeError($0, r) } ?? .infinity
                #expect(err <= 1e-5, "\(label) output \(name): max |Δ| / max |ref| = \(err)", sourceLocation: sourceLocation)
            }
        }
    }

    // MARK: 1. BLAS thread count

    /// Was: `Executable.init` called `openblas_set_num_threads(options.threads)` once, at
    /// construction, and BLAS's thread count is process-wide, so an executable ran with the
    /// thread count of whichever BLAS executable was constructed last: its outputs changed in
    /// the last bits (OpenBLAS partitions differently) while other executables came and went.
    /// Now every run sets its count under `BLAS.withThreads`'s process-wide gate, which also
    /// keeps runs needing another count out until it is done (`blasThreadCountHoldsForTheWholeCall`
    /// in BLASTests). The thread count is not read here after a run: tests running in parallel
    /// may have changed it by then.
    @Test func blasExecutableKeepsItsThreadCount() throws {
        let blas = try #require(Backends.blas, "needs a BLAS")
        try #require(blas.canSetThreads, "needs a BLAS whose thread count can be set (OpenBLAS)")
        let model = try RandomCheckpoint.make(graphFile: "deepseek_v3.moe", seed: 13)
        let inputs = model.inputs(tokens: 300, seed: 2)
        let one = model.executable(ExecutionOptions(threads: 1, backend: .blas(blas)))
        let before = try one.run(inputs)
        let two = model.executable(ExecutionOptions(threads: 2, backend: .blas(blas)))
        #expect(one.blasThreads == 1 && two.blasThreads == 2)
        _ = try two.run(inputs)
        let after = try one.run(inputs)
        let same = bitwiseEqual(before["y"]!, after["y"]!)
        #expect(same, "the same executable gives different bits once another executable has run")
    }

    // MARK: 2. Concurrent runs

    /// Was: `run` from two threads with the same token count shared one `Schedule` and its
    /// arena, so the runs overwrote each other's buffers (wrong results, or a crash in
    /// `MoEExpertsKernel`). Now each run checks out a schedule no other run is using
    /// (`Executable.checkOut`), building another only when all are busy. Repro: mixtral (small
    /// params), 64 tokens, `DispatchQueue.concurrentPerform` of 400 runs over 8 inputs; each
    /// result must equal the serial one. Also with BLAS (2 threads), when present.
    @Test
    func concurrentRunsOfOneExecutable() throws {
        let model = try RandomCheckpoint.make(graphFile: "mixtral.moe", seed: 1)
        var options = [("native/1t", ExecutionOptions(threads: 1, backend: .native))]
        if let blas = Backends.blas { options.append(("blas/2t", ExecutionOptions(threads: 2, backend: .blas(blas)))) }
        let inputs = (0..<8).map { model.inputs(tokens: 64, seed: UInt64($0)) }
        for (label, o) in options {
            let exe = model.executable(o)
            let serial = try inputs.map { try exe.run($0)["y"]! }
            let results = ResultSlots(count: 400)
            DispatchQueue.concurrentPerform(iterations: 400) { i in
                results.set(i, try? exe.run(inputs[i % 8])["y"])
            }
            let wrong = (0..<400).filter { results.get($0) != serial[$0 % 8] }.count
            #expect(wrong == 0, "\(label): \(wrong) of 400 concurrent runs gave a wrong result")
            // Serial runs after the burst use the first schedule again (its expert loads are the run's).
            for k in [3, 5] {
                let fresh = model.executable(o)
                _ = try fresh.run(inputs[k])
                _ = try exe.run(inputs[k])
                #expect(exe.schedule(tokens: 64).lastExpertLoads() == fresh.schedule(tokens: 64).lastExpertLoads(), "\(label)")
            }
        }
    }

    final class ResultSlots: @unchecked Sendable {
        private var values: [HostTensor?]
        private let lock = NSLock()
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ v: HostTensor?) { lock.lock(); values[i] = v; lock.unlock() }
        func get(_ i: Int) -> HostTensor? { lock.lock(); defer { lock.unlock() }; return values[i] }
    }

    // MARK: 3. A weight as a graph output

    /// Was: `Executable.onlyReadAsMatrix` decided a weight needs only its packed form by looking
    /// at the nodes that read it, ignoring graph outputs, so a weight both multiplied by and
    /// output (`output w`) was dropped for the native backend and `Schedule.outputs` stopped with
    /// "weight @w is only kept packed". Now an output keeps its unpacked copy.
    @Test
    func weightAsGraphOutput() throws {
        let source = """
            model bug
            input x: [tokens, 8]
            weight w: [6, 8] = "w"
            let y = linear(x, w)
            output y
            output w
            """
        let model = try #require(try Self.compile(source, rejectionMentions: "output"))
        try Self.expectExecutorsMatch(model)
        let g = model.graph
        let w = try #require(g.weights.firstIndex { $0.name == "w" })
        #expect(!Executable.onlyReadAsMatrix(g, weight: w))
    }

    // MARK: 4. Computed matrices

    /// Was: `linear`, `swiglu`, `mlp` and `moe_experts` accept any tensor of the right shape as
    /// their matrix operands, but the executor built matrix steps only for weight nodes, so
    /// `linear(x, w * 2)` compiled and `Schedule.matrices` then stopped with "matrix operands
    /// are weights"; same for expert weights (`mlp(up: u * 2, …)`). Now a computed matrix is
    /// multiplied unpacked from its arena buffer (`Schedule.matrices`, `MatMulBackend.linear`).
    @Test
    func computedMatrixOperands() throws {
        let dense = """
            model bug
            input x: [tokens, 8]
            weight w: [6, 8] = "w"
            let y = linear(x, w * 2)
            output y
            """
        try Self.expectExecutorsMatch(try #require(try Self.compile(dense, rejectionMentions: "weight")))
        let ffn = """
            model bug
            input x: [tokens, 8]
            weight g: [6, 8] = "g"
            weight u: [6, 8] = "u"
            weight d: [8, 6] = "d"
            let y = swiglu(x, gate: g - u, up: u, down: d / 2)
            output y
            """
        try Self.expectExecutorsMatch(try #require(try Self.compile(ffn, rejectionMentions: "weight")), tokens: 37)
        let experts = """
            model bug
            input x: [tokens, 8]
            weight g: [4, 8] = "g"
            weight u: [4, 6, 8] = "u"
            weight d: [4, 8, 6] = "d"
            let y = moe(x) {
              router:  x |> linear(g) |> softmax |> topk(2)
              experts: 4 of mlp(up: u * 2, down: d, act: relu)
            }
            output y
            """
        try Self.expectExecutorsMatch(try #require(try Self.compile(experts, rejectionMentions: "weight")), tokens: 37)
    }

    // MARK: 5. Integers where floats are expected

    /// Was: i32 tensors reached float ops as raw bits. OpSchema checked the dtype only for unary
    /// and binary ops, so `input x: i32[tokens, 8]` then `linear(x, w)` verified, and the
    /// executor multiplied the int bits as floats (the reference converted them); likewise
    /// `Graph.tokenCount` accepted an i32 `HostTensor` for an f32 input. Now every operand
    /// except hash routing's token ids must be f32 (`OpSchema.tensor`), and `tokenCount`
    /// throws an `InputError` for integers given for an f32 input.
    @Test
    func integersWhereFloatsAreExpected() throws {
        let source = """
            model bug
            input x: i32[tokens, 8]
            weight w: [6, 8] = "w"
            let y = linear(x, w)
            output y
            """
        let model = try Self.compile(source, rejectionMentions: "i32")
        #expect(model == nil, "linear of an i32 input compiles")

        // Integers given for an f32 input.
        var t = TinyGraph()
        let x = t.input("x", [.tokens, .fixed(4)])
        t.output("y", try t.op(.linear, [x, t.randomWeight("w", [3, 4])]))
        let ints = ["x": HostTensor(shape: [2, 4], ints: [1, 2, 3, 4, 5, 6, 7, 8])]
        let exe = Executable(graph: t.graph, weights: t.buffers(), options: ExecutionOptions(threads: 1, backend: .native))
        #expect(throws: InputError.self) { try exe.run(ints) }
        #expect(throws: InputError.self) { try ReferenceInterpreter(graph: t.graph, weights: t.weights).run(ints) }
    }

    // MARK: 6. Softmax of −∞

    /// Was: the reference mapped a row that is entirely −∞ to the uniform distribution, the
    /// executor's kernels computed exp(−∞ − (−∞)) = NaN, for `softmax` and `route_softmax`.
    /// Now both give zeros (a masked-out row gets no weight; see `ReferenceInterpreter.softmax`).
    @Test
    func softmaxOfMinusInfinity() throws {
        var t = TinyGraph()
        let x = t.input("x", [.tokens, .fixed(4)])
        t.output("y", try t.op(.softmax, [x]))
        let row: [Float] = [-.infinity, -.infinity, -.infinity, -.infinity]
        let inputs = ["x": HostTensor(shape: [2, 4], floats: row + [0, 1, 2, 3])]
        let ref = try ReferenceInterpreter(graph: t.graph, weights: t.weights).run(inputs)
        #expect(ref["y"]!.floats.prefix(4).allSatisfy { $0 == 0 }, "softmax of all −∞: \(ref["y"]!.floats.prefix(4))")
        for (label, options) in Backends.configurations {
            let out = try Executable(graph: t.graph, weights: t.buffers(), options: options).run(inputs)
            #expect(relativeError(out["y"]!, ref["y"]!) <= 1e-6, "\(label): softmax \(out["y"]!.floats) vs reference \(ref["y"]!.floats)")
        }

        // route_softmax of chosen scores that are all −∞.
        let r = try RoutingTests.readout(experts: 4) { t, s in try t.op(.route_softmax, [try t.op(.topk, [s], ["k": .int(2)])]) }
        let scores = RoutingTests.inputs([[-.infinity, -.infinity, -.infinity, -.infinity], [0, 1, 2, 3]])
        let rref = try ReferenceInterpreter(graph: r.graph, weights: r.weights).run(scores)
        for (label, options) in Backends.configurations {
            let out = try Executable(graph: r.graph, weights: r.buffers(), options: options).run(scores)
            #expect(relativeError(out["y"]!, rref["y"]!) <= 1e-6, "\(label): route_softmax \(out["y"]!.floats) vs reference \(rref["y"]!.floats)")
        }
    }

    // MARK: 7. The oracle's GELU tails

    /// Was: the reference computed GELU as ½x(1 + erf(x/√2)) and the tanh form as
    /// ½x(1 + tanh(u)), which cancel to exactly 0 for x ≲ −8 (erf) or x ≲ −6 (tanh), while the
    /// true values (and the executor's kernels) are tiny but nonzero: gelu(−9) = −1.0157e−18,
    /// gelu_tanh(−9) = −1.3365e−28. Now it uses ½x·erfc(−x/√2) and x / (1 + e^(−2u)).
    @Test
    func referenceGeluTails() throws {
        for (op, expected) in [(Op.gelu, -1.015729565358458e-18), (.gelu_tanh, -1.336459594734881e-28)] {
            var t = TinyGraph()
            let x = t.input("x", [.tokens, .fixed(1)])
            t.output("y", try t.op(op, [x]))
            let y = try ReferenceInterpreter(graph: t.graph, weights: []).run(["x": HostTensor(shape: [1, 1], floats: [-9])])["y"]!.floats[0]
            #expect(abs(Double(y) - expected) <= 1e-4 * abs(expected), "reference \(op)(-9) = \(y), expected \(expected)")
        }
    }

    // MARK: 8. The work of a halting hop

    /// Was: `WorkEstimate` took every operand of `moe_experts` after the routing for an expert
    /// weight, so a halting hop's active mask (`f32[tokens]`, no fixed shape) crashed
    /// `moec bench` on any graph with `halt:`. Now the mask is left out, and each hop counts its
    /// own (token, expert) pairs times one expert's matrix sizes.
    @Test
    func workEstimateOfHaltingHops() throws {
        let m = try RandomCheckpoint.make(
            graphPath: RepoPaths.graphs + "/mechanisms/multihop.moe",
            overrides: [("hidden", "16"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2")], seed: 3)
        let exe = m.executable(ExecutionOptions(threads: 1))
        let tokens = 40
        _ = try exe.run(m.inputs(tokens: tokens, seed: 2))
        let loads = exe.schedule(tokens: tokens).lastExpertLoads()
        let work = WorkEstimate(graph: m.graph, tokens: tokens, expertLoads: loads)
        let hops = m.graph.nodes.filter { $0.op == .moe_experts }
        #expect(hops.count == 3 && hops.dropFirst().allSatisfy { $0.attributes.bool("with_active") == true })
        // Per (token, expert) pair: swiglu's three 16×12 matrices, 2 flops per multiply-add.
        // Per hop and token: the router's linear, 16 → 8.
        let pairs = loads.reduce(0) { $0 + $1.reduce(0, +) }
        #expect(pairs < 3 * tokens * 2, "some tokens halt")
        #expect(work.flops == Double(2 * pairs * 3 * 16 * 12 + 3 * 2 * tokens * 16 * 8), "\(work.flops)")
        #expect(work.expertsTotal == 3 * 8 && work.expertsHit == loads.joined().filter { $0 > 0 }.count)
    }
}
