import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEKernels
import MoETestSupport
import Testing

/// Experts that differ within one block: per-expert tensors of different widths stacked with
/// `|> pad(rows:)` / `|> pad(cols:)`, written as expressions with biases, followed by fixed
/// experts (copy, constant, zero). The expected output is computed here, plainly, with every
/// expert at its own width: no padding, no moec code.
@Suite struct HeterogeneousExpertsTests {
    static let hidden = 12, widths = [5, 9, 7, 9], widest = 9, tokens = 11, slots = 3
    /// Router rows: 4 computed experts, then copy, constant, zero.
    static let routed = 7

    struct Weights {
        var gate: [Float] = []
        var w1: [[Float]] = [], b1: [[Float]] = [], w2: [[Float]] = [], b2: [[Float]] = []
        var constant: [Float] = []
    }

    static func weights() -> Weights {
        var rng = SplitMix64(state: 42)
        func normals(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) * scale * 1.7 } }
        var w = Weights()
        w.gate = normals(routed * hidden, 0.6)
        for f in widths {
            w.w1.append(normals(f * hidden, 0.4))
            w.b1.append(normals(f, 0.2))
            w.w2.append(normals(hidden * f, 0.4))
            w.b2.append(normals(hidden, 0.2))
        }
        w.constant = normals(hidden, 0.5)
        return w
    }

    static let source = """
        param hidden = 12
        param widest = 9
        input x: [tokens, hidden]
        weight gate: [7, hidden] = "gate.weight"
        weights "experts.{e}." {
          w1: [4, widest, hidden] = "fc1.weight" |> pad(rows: widest)
          b1: [4, widest]         = "fc1.bias" |> pad(rows: widest)
          w2: [4, hidden, widest] = "fc2.weight" |> pad(cols: widest)
          b2: [4, hidden]         = "fc2.bias"
        }
        weight constant: [1, hidden] = "constant"
        let y = moe(x) {
          router:  x |> linear(gate) |> softmax |> topk(3) |> renormalize
          experts: 4 of expert(h) { h |> linear(w1, bias: b1) |> gelu_tanh |> clamp(max: 1.5) |> linear(w2, bias: b2) },
                   1 of copy, 1 of constant(constant), 1 of zero
        }
        output y
        """

    /// The block computed directly: softmax, top-3, renormalise; each chosen computed expert at its
    /// own width, in Double.
    static func expected(_ w: Weights, _ x: [Float]) -> (y: [Float], chosen: Set<Int>) {
        let h = hidden
        var chosen = Set<Int>()
        var y = [Double](repeating: 0, count: tokens * h)
        for t in 0..<tokens {
            let row = (0..<h).map { Double(x[t * h + $0]) }
            var logits = (0..<routed).map { e in (0..<h).reduce(0.0) { $0 + Double(w.gate[e * h + $1]) * row[$1] } }
            let m = logits.max()!
            logits = logits.map { exp($0 - m) }
            let sum = logits.reduce(0, +)
            let p = logits.map { $0 / sum }
            let top = Array(p.indices.sorted { p[$0] > p[$1] }.prefix(slots))
            let norm = top.reduce(0.0) { $0 + p[$1] }
            chosen.formUnion(top)
            for e in top {
                let weight = p[e] / norm
                var out = [Double](repeating: 0, count: h)
                switch e {
                case 0..<4:
                    let f = widths[e]
                    let hiddenRow = (0..<f).map { i -> Double in
                        let v = (0..<h).reduce(Double(w.b1[e][i])) { $0 + Double(w.w1[e][i * h + $1]) * row[$1] }
                        let g = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
                        return min(g, 1.5)
                    }
                    for j in 0..<h { out[j] = (0..<f).reduce(Double(w.b2[e][j])) { $0 + Double(w.w2[e][j * f + $1]) * hiddenRow[$1] } }
                case 4: out = row
                case 5: out = w.constant.map(Double.init)
                default: break
                }
                for j in 0..<h { y[t * h + j] += weight * out[j] }
            }
        }
        return (y.map(Float.init), chosen)
    }

    @Test func paddedWidthsAndFixedExpertsMatchAPlainComputation() throws {
        let w = Self.weights()
        let dir = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("model"), withIntermediateDirectories: true)
        var tensors = [
            SafetensorsWriter.Tensor(name: "gate.weight", shape: [Self.routed, Self.hidden], values: w.gate),
            SafetensorsWriter.Tensor(name: "constant", shape: [1, Self.hidden], values: w.constant)
        ]
        for (e, f) in Self.widths.enumerated() {
            tensors += [
                .init(name: "experts.\(e).fc1.weight", shape: [f, Self.hidden], values: w.w1[e]),
                .init(name: "experts.\(e).fc1.bias", shape: [f], values: w.b1[e]),
                .init(name: "experts.\(e).fc2.weight", shape: [Self.hidden, f], values: w.w2[e]),
                .init(name: "experts.\(e).fc2.bias", shape: [Self.hidden], values: w.b2[e])
            ]
        }
        try SafetensorsWriter.write(tensors: tensors, to: dir.file("model/model.safetensors"))
        try "{}".write(toFile: dir.file("model/config.json"), atomically: true, encoding: .utf8)
        try Self.source.write(toFile: dir.file("het.moe"), atomically: true, encoding: .utf8)

        var rng = SplitMix64(state: 7)
        let x = (0..<(Self.tokens * Self.hidden)).map { _ in Float(rng.unit() * 2 - 1) }
        let (expected, chosen) = Self.expected(w, x)
        // Every kind of expert is chosen by some token, so each path is exercised.
        #expect(chosen.isSuperset(of: [0, 1, 2, 3, 4, 5, 6]), "\(chosen.sorted())")
        let session = CompilerSession(CompileOptions(graphPath: dir.file("het.moe"), modelDirectory: dir.file("model"), verifyEachPass: true))
        let view = try #require(try session.optimize().expertsNodes.first?.view)
        #expect(view.kind == .mlp && view.fixedExperts == ["copy", "constant", "zero"] && view.biasRoles == ["up", "down"])
        let plan = try session.writePlan(to: dir.file("plan.json"))
        var backends: [MatMulBackend] = [.native]
        if case .success(let b?) = BLAS.load(environment: nil) { backends.append(.blas(b)) }
        for backend in backends {
            for threads in [1, 2] {
                let out = try ModelRunner.load(planPath: plan, options: ExecutionOptions(threads: threads, backend: backend))
                    .run(["x": HostTensor(shape: [Self.tokens, Self.hidden], floats: x)])
                let err = relativeError(try #require(out["y"]).floats, expected)
                #expect(err <= 1e-5, "\(backend.description), \(threads) threads: \(err)")
            }
        }
        // By a placement: the static split of all 7 experts (fixed ones included) over 7 workers,
        // with and without LLEP; the fixed experts' workers get no rows.
        for placement in [PlacementExecution(.staticSplit(workers: 7)), PlacementExecution(.staticSplit(workers: 7), dynamicThreshold: 1.1)] {
            let out = try ModelRunner.load(planPath: plan, options: ExecutionOptions(threads: 7, backend: .native, placement: placement))
                .run(["x": HostTensor(shape: [Self.tokens, Self.hidden], floats: x)])
            #expect(relativeError(try #require(out["y"]).floats, expected) <= 1e-5)
        }
        let graph = try session.boundGraph()
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try session.checkpoint()))
        let reference = try #require(try interpreter.run(["x": HostTensor(shape: [Self.tokens, Self.hidden], floats: x)])["y"])
        #expect(relativeError(reference.floats, expected) <= 1e-5)
    }

    /// Groups of computed experts with different kinds, bodies and widths in one block (2 SwiGLU
    /// of width 6, 2 expression experts of width 5 with biases, 1 ReLU MLP of width 7), then a
    /// copy expert: the general path, against a plain computation.
    @Test func groupsWithDifferentBodiesMatchAPlainComputation() throws {
        let h = 10, tokens = 13, experts = 6, k = 2
        var rng = SplitMix64(state: 11)
        func normals(_ n: Int, _ scale: Float = 0.6) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) * scale * 1.7 } }
        let gate = normals(experts * h)
        let sg = normals(2 * 6 * h), su = normals(2 * 6 * h), sd = normals(2 * h * 6)
        let e1 = normals(2 * 5 * h), e1b = normals(2 * 5, 0.3), e2 = normals(2 * h * 5), e2b = normals(2 * h, 0.3)
        let mu = normals(7 * h), md = normals(h * 7)
        let source = """
            input x: [tokens, 10]
            weight gate: [6, 10] = "gate"
            weight sg: [2, 6, 10] = "sg"
            weight su: [2, 6, 10] = "su"
            weight sd: [2, 10, 6] = "sd"
            weight e1: [2, 5, 10] = "e1"
            weight e1b: [2, 5] = "e1b"
            weight e2: [2, 10, 5] = "e2"
            weight e2b: [2, 10] = "e2b"
            weight mu: [1, 7, 10] = "mu"
            weight md: [1, 10, 7] = "md"
            let y = moe(x) {
              router:  x |> linear(gate) |> softmax |> topk(2)
              experts: 2 of swiglu(gate: sg, up: su, down: sd),
                       2 of expert(h) { let a = h |> linear(e1, bias: e1b)  a * sigmoid(a) * 0.5 + 1 |> linear(e2, bias: e2b) },
                       1 of mlp(up: mu, down: md, act: relu),
                       1 of copy
            }
            output y
            """
        let dir = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("model"), withIntermediateDirectories: true)
        let tensors: [SafetensorsWriter.Tensor] = [
            .init(name: "gate", shape: [6, h], values: gate), .init(name: "sg", shape: [2, 6, h], values: sg),
            .init(name: "su", shape: [2, 6, h], values: su), .init(name: "sd", shape: [2, h, 6], values: sd),
            .init(name: "e1", shape: [2, 5, h], values: e1), .init(name: "e1b", shape: [2, 5], values: e1b),
            .init(name: "e2", shape: [2, h, 5], values: e2), .init(name: "e2b", shape: [2, h], values: e2b),
            .init(name: "mu", shape: [1, 7, h], values: mu), .init(name: "md", shape: [1, h, 7], values: md)
        ]
        try SafetensorsWriter.write(tensors: tensors, to: dir.file("model/model.safetensors"))
        try "{}".write(toFile: dir.file("model/config.json"), atomically: true, encoding: .utf8)
        try source.write(toFile: dir.file("groups.moe"), atomically: true, encoding: .utf8)
        let x = normals(tokens * h, 1)

        // The block, plainly: softmax, top-2 (weights not renormalised), each expert its own way.
        func matvec(_ w: [Float], _ offset: Int, rows: Int, _ v: [Double]) -> [Double] {
            (0..<rows).map { r in (0..<v.count).reduce(0.0) { $0 + Double(w[offset + r * v.count + $1]) * v[$1] } }
        }
        var expected = [Float](repeating: 0, count: tokens * h)
        var chosen = Set<Int>()
        for t in 0..<tokens {
            let row = (0..<h).map { Double(x[t * h + $0]) }
            let logits = matvec(gate, 0, rows: experts, row)
            let m = logits.max()!
            let ex = logits.map { exp($0 - m) }
            let p = ex.map { $0 / ex.reduce(0, +) }
            for e in p.indices.sorted(by: { p[$0] > p[$1] }).prefix(k) {
                chosen.insert(e)
                var out: [Double]
                switch e {
                case 0, 1:
                    let g = matvec(sg, e * 6 * h, rows: 6, row), u = matvec(su, e * 6 * h, rows: 6, row)
                    let a = zip(g, u).map { $0 / (1 + exp(-$0)) * $1 }
                    out = (0..<h).map { j in (0..<6).reduce(0.0) { $0 + Double(sd[(e * h + j) * 6 + $1]) * a[$1] } }
                case 2, 3:
                    let l = e - 2
                    let a = matvec(e1, l * 5 * h, rows: 5, row).enumerated().map { $1 + Double(e1b[l * 5 + $0]) }
                    let b = a.map { $0 * (1 / (1 + exp(-$0))) * 0.5 + 1 }
                    out = (0..<h).map { j in (0..<5).reduce(Double(e2b[l * h + j])) { $0 + Double(e2[(l * h + j) * 5 + $1]) * b[$1] } }
                case 4:
                    let a = matvec(mu, 0, rows: 7, row).map { max($0, 0) }
                    out = (0..<h).map { j in (0..<7).reduce(0.0) { $0 + Double(md[j * 7 + $1]) * a[$1] } }
                default: out = row
                }
                for j in 0..<h { expected[t * h + j] += Float(p[e] * out[j]) }
            }
        }
        #expect(chosen == Set(0..<experts), "\(chosen.sorted())")

        let session = CompilerSession(CompileOptions(graphPath: dir.file("groups.moe"), modelDirectory: dir.file("model"), verifyEachPass: true))
        let view = try #require(try session.optimize().expertsNodes.first?.view)
        #expect(view.kind == .program && view.bodies.map(\.count) == [2, 2, 1] && view.fixedExperts == ["copy"])
        let plan = try session.writePlan(to: dir.file("plan.json"))
        var backends: [MatMulBackend] = [.native]
        if case .success(let b?) = BLAS.load(environment: nil) { backends.append(.blas(b)) }
        for backend in backends {
            for threads in [1, 2] {
                let out = try ModelRunner.load(planPath: plan, options: ExecutionOptions(threads: threads, backend: backend))
                    .run(["x": HostTensor(shape: [tokens, h], floats: x)])
                let err = relativeError(try #require(out["y"]).floats, expected)
                #expect(err <= 1e-5, "\(backend.description), \(threads) threads: \(err)")
            }
        }
        let graph = try session.boundGraph()
        let interpreter = ReferenceInterpreter(graph: graph, weights: try WeightBinding.loadHost(graph, try session.checkpoint()))
        let reference = try #require(try interpreter.run(["x": HostTensor(shape: [tokens, h], floats: x)])["y"])
        #expect(relativeError(reference.floats, expected) <= 1e-5)
    }
}
