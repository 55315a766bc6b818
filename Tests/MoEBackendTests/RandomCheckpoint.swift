import Foundation
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoEKernels
import MoETestSupport

@testable import MoEBackend

/// Small `--set` overrides for every graph in `graphs/`, so the whole family runs in a test in
/// milliseconds. Sizes are odd where the language allows it (SIMD tails, packing remainders).
/// A graph file without an entry fails the tests: add one when adding a graph.
enum SmallParams {
    static let table: [String: [(name: String, value: String)]] = [
        "mixtral.moe": [("hidden", "24"), ("ffn", "40"), ("num_experts", "8"), ("top_k", "2")],
        "mixtral_stacked.moe": [("hidden", "19"), ("ffn", "33"), ("num_experts", "6"), ("top_k", "3")],
        "olmoe.moe": [("hidden", "21"), ("ffn", "13"), ("num_experts", "16"), ("top_k", "4"), ("norm_topk", "false")],
        // shared_ffn large enough that the dense shared expert crosses the native GEMM's
        // threading threshold (2 MFLOP) at 300 tokens, so 2 threads really run in parallel.
        "qwen2_moe.moe": [
            ("hidden", "40"), ("ffn", "12"), ("shared_ffn", "123"), ("num_experts", "12"),
            ("top_k", "4"), ("norm_topk", "true")
        ],
        "deepseek_v3.moe": [
            ("hidden", "28"), ("ffn", "10"), ("num_experts", "32"), ("num_shared", "2"), ("top_k", "6"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "2.5")
        ],
        // Capacity 5 of 8 experts: no drops at 1 token, drops at 64 and 300.
        "switch.moe": [("hidden", "20"), ("ffn", "36"), ("num_experts", "8"), ("expert_capacity", "5"), ("act", "gelu")],
        "dbrx.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "6"), ("top_k", "2")],
        "aria.moe": [("hidden", "20"), ("ffn", "10"), ("num_experts", "8"), ("top_k", "3"), ("num_shared", "2")],
        "granitemoe.moe": [("hidden", "18"), ("ffn", "14"), ("num_experts", "8"), ("top_k", "3")],
        "granitemoeshared.moe": [("hidden", "18"), ("ffn", "14"), ("shared_ffn", "22"), ("num_experts", "8"), ("top_k", "3")],
        "ernie4_5_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "12"), ("top_k", "4"), ("num_shared", "1")],
        "qwen3_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "16"), ("top_k", "4"), ("norm_topk", "true")],
        "flex_olmo.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "5"), ("top_k", "5"), ("norm_topk", "false")],
        "minimax.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2")],
        "hunyuan_v1_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2")],
        "glm4_moe.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "1.5")
        ],
        "dots1.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "false"), ("scaling", "1.5")
        ],
        "jamba.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2")],
        "jetmoe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2")],
        "qwen3_next.moe": [("hidden", "20"), ("ffn", "12"), ("shared_ffn", "18"), ("num_experts", "16"), ("top_k", "4"), ("norm_topk", "true")],
        "glm4_moe_lite.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "1.5")
        ],
        "exaone_moe.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "1.5")
        ],
        "afmoe.moe": [("hidden", "20"), ("ffn", "10"), ("num_experts", "12"), ("num_shared", "1"), ("top_k", "3"), ("scaling", "1.5")],
        // Without the expert bias (the committed fixture uses it).
        "lfm2_moe.moe": [
            ("hidden", "20"), ("ffn", "12"), ("num_experts", "12"), ("top_k", "3"), ("use_bias", "false"), ("norm_topk", "true"),
            ("scaling", "1.5")
        ],
        // Top-2 (the released models use 1) so each token's two scaled inputs are summed.
        "llama4.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2")],
        "hy_v4.moe": [
            ("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2"), ("n_group", "2"), ("topk_group", "1"), ("limit", "0.5")
        ],
        "nemotron_h.moe": [
            ("hidden", "20"), ("ffn", "12"), ("shared_ffn", "16"), ("num_experts", "8"), ("top_k", "2"), ("n_group", "2"),
            ("topk_group", "1")
        ],
        "gpt_oss.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("top_k", "2"), ("limit", "0.5")],
        "nllb_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("fraction", "0.3")],
        "longcat_flash.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "6"), ("zero_experts", "3"), ("top_k", "3")],
        "phimoe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("jitter", "0.1")],
        "qwen3_vl_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "12"), ("top_k", "3")],
        "ernie4_5_vl_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "12"), ("top_k", "4"), ("num_shared", "1")],
        "glm4v_moe.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "false"), ("scaling", "1.5")
        ],
        // The group-limited path (the committed fixture covers "greedy").
        "deepseek_v2.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "2"), ("top_k", "4"),
            ("topk_method", "group_limited_greedy"), ("n_group", "4"), ("topk_group", "2"), ("scaling", "1.5")
        ],
        "bailing_hybrid.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "false"), ("scaling", "2.5")
        ],
        "sarvam_moe.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "2"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "2.5")
        ],
        "glm_moe_dsa.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "1"), ("topk_group", "1"), ("norm_topk", "true"), ("scaling", "2.5")
        ],
        // The sigmoid path with a plain sum (the committed fixture covers softmax and "average").
        "cohere2_moe.moe": [
            ("hidden", "20"), ("ffn", "12"), ("num_experts", "8"), ("num_shared", "1"), ("top_k", "3"),
            ("selection", "sigmoid"), ("norm_topk", "true"), ("combine", "sum")
        ],
        "granitemoehybrid.moe": [("hidden", "18"), ("ffn", "14"), ("shared_ffn", "22"), ("num_experts", "8"), ("top_k", "3")],
        "granitemoe_swa.moe": [("hidden", "18"), ("ffn", "14"), ("shared_ffn", "22"), ("num_experts", "8"), ("top_k", "3")],
        "qwen3_5_moe.moe": [("hidden", "20"), ("ffn", "12"), ("shared_ffn", "18"), ("num_experts", "16"), ("top_k", "4")],
        "qwen3_omni_moe.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "16"), ("top_k", "4"), ("norm_topk", "false")],
        "deepseek_v32.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "false"), ("scaling", "2.5")
        ],
        "solar_open.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "2"), ("top_k", "4"),
            ("n_group", "2"), ("topk_group", "1"), ("norm_topk", "true"), ("scaling", "1.5")
        ],
        "mellum.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "16"), ("top_k", "4"), ("norm_topk", "false")],
        "minimax_m2.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "12"), ("top_k", "3")],
        "mistral4.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "false"), ("scaling", "2.0")
        ],
        "mimo_v2_flash.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "2.0")
        ],
        "axk1.moe": [
            ("hidden", "20"), ("ffn", "10"), ("num_experts", "16"), ("num_shared", "1"), ("top_k", "4"),
            ("n_group", "4"), ("topk_group", "2"), ("norm_topk", "true"), ("scaling", "2.5"), ("eps", "1e-5")
        ],
        "hy_v3.moe": [("hidden", "20"), ("ffn", "12"), ("num_experts", "12"), ("num_shared", "1"), ("top_k", "3"), ("scaling", "2.5")],
        "lara_mini.moe": [("hidden", "20"), ("ffn", "12"), ("shared_ffn", "18"), ("num_experts", "12"), ("top_k", "3"), ("norm_topk", "false")]
    ]

    /// Every `.moe` file in `graphs/`, sorted.
    static var graphFiles: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: RepoPaths.graphs)) ?? []
        return names.filter { $0.hasSuffix(".moe") }.sorted()
    }

    /// The overrides for `file` (a name in `graphs/`), or an error saying to add them.
    static func overrides(for file: String) throws -> [(name: String, value: String)] {
        guard let o = table[file] else { throw TestFailure("add small params for graphs/\(file)") }
        return o
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A checkpoint with seeded random weights for any graph, compiled and loaded: the graph bound
/// against it, its weights as aligned buffers (for `Executable`) and as host tensors (for the
/// reference interpreter).
final class RandomModel: @unchecked Sendable {
    let name: String
    let graph: Graph
    let buffers: [AlignedBuffer]
    let host: [HostTensor]
    /// The checkpoint folder (deleted when the model goes away).
    let directory: TemporaryDirectory

    init(name: String, graph: Graph, buffers: [AlignedBuffer], host: [HostTensor], directory: TemporaryDirectory) {
        self.name = name
        self.graph = graph
        self.buffers = buffers
        self.host = host
        self.directory = directory
    }

    var reference: ReferenceInterpreter { ReferenceInterpreter(graph: graph, weights: host) }

    func executable(_ options: ExecutionOptions) -> Executable {
        Executable(graph: graph, weights: buffers, options: options)
    }

    /// Seeded standard-normal values for every input (`tokens` rows).
    func inputs(tokens: Int, seed: UInt64) -> [String: HostTensor] {
        randomInputs(graph, tokens: tokens, seed: seed)
    }
}

/// Seeded random inputs for any graph: standard normal floats, small non-negative ints.
func randomInputs(_ graph: Graph, tokens: Int, seed: UInt64) -> [String: HostTensor] {
    var rng = SeededRandom(seed: seed &* 1_000_003 &+ UInt64(tokens))
    var out: [String: HostTensor] = [:]
    for (name, _, type) in graph.inputs {
        let shape = type.shape.map { $0.resolve(tokens: tokens) }
        let count = shape.reduce(1, *)
        if type.dtype == .i32 {
            out[name] = HostTensor(shape: shape, ints: (0..<count).map { _ in Int32(rng.next() % 100) })
        } else {
            out[name] = HostTensor(shape: shape, floats: rng.normals(count))
        }
    }
    return out
}

enum RandomCheckpoint {
    /// The graph lowered and optimised with `overrides`, without weights (to read its weight table).
    static func compile(graphPath: String, overrides: [(name: String, value: String)]) throws -> Graph {
        try CompilerSession(CompileOptions(graphPath: graphPath, overrides: overrides, verifyEachPass: true)).optimize()
    }

    /// Seeded random values for one checkpoint tensor of weight `w`.
    ///
    /// - matrices and stacked matrices: normal with scale 1/√fan_in (fan_in = last dimension),
    ///   so activations stay O(1) through every layer;
    /// - vectors: norm weights (name contains "norm") around 1, anything else (biases such as
    ///   DeepSeek's `e_score_correction_bias`) normal with scale 0.3, nonzero, large enough to
    ///   change which experts are selected.
    static func values(for w: WeightInfo, shape: [Int], rng: inout SeededRandom) -> [Float] {
        let count = shape.reduce(1, *)
        if shape.count >= 2 {
            return rng.normals(count, scale: 1 / Double(max(shape.last!, 1)).squareRoot())
        }
        if w.name.lowercased().contains("norm") {
            return rng.normals(count, scale: 0.1).map { 1 + $0 }
        }
        return rng.normals(count, scale: 0.3).map { $0 == 0 ? 0.01 : $0 }
    }

    /// A shape a checkpoint tensor can have for `w`'s layout steps to make `shape` of it; a
    /// `reshape` accepts its own target, so the walk back goes on from there.
    static func storedShape(_ w: WeightInfo, _ shape: [Int]) -> [Int] {
        var s = shape
        for step in w.layout.reversed() {
            if case .success(let previous?) = step.source(of: s) { s = previous }
        }
        return s
    }

    /// Writes `model.safetensors` (every tensor of the weight table, by its checkpoint name)
    /// and a `config.json` into `directory`.
    static func write(_ graph: Graph, to directory: String, seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var tensors: [SafetensorsWriter.Tensor] = []
        var written: Set<String> = []
        for w in graph.weights {
            for (name, shape) in w.tensors where written.insert(name).inserted {
                let stored = storedShape(w, shape)
                tensors.append(.init(name: name, shape: stored, values: values(for: w, shape: stored, rng: &rng)))
            }
        }
        try SafetensorsWriter.write(
            tensors: tensors, metadata: ["format": "pt", "source": "moec tests (random)"],
            to: directory + "/model.safetensors")
        let config = "{\"architectures\": [\"RandomForMoecTests\"], \"model_type\": \"\(graph.name)\"}\n"
        try config.write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
    }

    /// Compiles `graphPath` with `overrides`, writes a random checkpoint for it, compiles again
    /// against that checkpoint (weights checked by name and shape) and loads the weights.
    static func make(graphPath: String, overrides: [(name: String, value: String)], seed: UInt64) throws -> RandomModel {
        let unbound = try compile(graphPath: graphPath, overrides: overrides)
        let dir = TemporaryDirectory("moec-random")
        try write(unbound, to: dir.path, seed: seed)
        let session = CompilerSession(
            CompileOptions(
                graphPath: graphPath, modelDirectory: dir.path, overrides: overrides,
                verifyEachPass: true))
        let graph = try session.boundGraph()
        let checkpoint = try session.checkpoint()
        let buffers = try WeightBinding.load(graph, checkpoint)
        let host = try WeightBinding.loadHost(graph, checkpoint)
        let name = ((graphPath as NSString).lastPathComponent as NSString).deletingPathExtension
        return RandomModel(name: name, graph: graph, buffers: buffers, host: host, directory: dir)
    }

    /// A random model for the graph file `file` in `graphs/`, with its small params.
    static func make(graphFile file: String, seed: UInt64 = 1) throws -> RandomModel {
        try make(graphPath: RepoPaths.graphs + "/" + file, overrides: try SmallParams.overrides(for: file), seed: seed)
    }
}

/// The matrix-multiply backends to test: BLAS when one loads (whatever `MOEC_BLAS` says, so
/// both run in one process), and the native kernels.
enum Backends {
    static let blas: BLAS? = {
        if case .success(let b?) = BLAS.load(environment: nil) { return b }
        return nil
    }()

    static var all: [(name: String, backend: MatMulBackend)] {
        var out: [(String, MatMulBackend)] = []
        if let b = blas { out.append(("blas", .blas(b))) }
        out.append(("native", .native))
        return out
    }

    /// Every (backend, threads) configuration the tests run.
    static var configurations: [(label: String, options: ExecutionOptions)] {
        all.flatMap { b in [1, 2].map { t in ("\(b.name)/\(t)t", ExecutionOptions(threads: t, backend: b.backend)) } }
    }
}
