import Foundation
import MoEIO
import MoETestSupport
import Testing

/// `mpirun -n R moec run … --placement P`: each rank one worker of the placement. The outputs
/// must equal the single-process run bit for bit (each row computed by the same kernel, combined
/// in the same order) for every family's graph, for static, planned and replicated placements,
/// at 2 and 4 ranks, whether the ranks shard the tokens or each runs them all, and be the same
/// bits run after run;
/// bad input must end every rank with a clear error, a non-zero exit and no output file.
///
/// Needs Open MPI's `mpirun` on PATH (`.ci/run` installs `openmpi-bin`); without it the tests
/// are skipped, and say so. `MOEC_SKIP_MPI_TESTS=1` skips them too: a placed run always runs
/// moec's kernels, so CI's passes under other `MOEC_BLAS` settings would repeat the same runs.
/// Serialized: the ranks of one job already fill the machine's cores.
@Suite(
    .serialized, .enabled(if: MPIRun.mpirun != nil, "skipped: no mpirun on PATH (install Open MPI, e.g. apt-get install openmpi-bin)"),
    .disabled(if: ProcessInfo.processInfo.environment["MOEC_SKIP_MPI_TESTS"] == "1", "skipped: MOEC_SKIP_MPI_TESTS=1"))
struct MPIRunTests {
    /// One fixture per family (and the stacked and multi-layer layouts), each with an expert
    /// count that 2 and 4 ranks share equally.
    static let fixtures = [
        "mixtral-h24-f40-e8-k2-s3", "mixtral-h16-f20-e8-k2-t13-s31-stacked", "qwen2_moe-h16-f16-e4-k3-t5-s43-norm",
        "olmoe-h16-f8-e64-k8-t12-s51", "deepseek_v3-h16-f8-e16-k4-g4-tg2-t13-s61", "switch-h16-f24-e4-cap2-t11-s71"
    ]
    static let tokenCounts = [1, 7, 64, 300]

    enum Kind: CaseIterable { case staticSplit, planned, replicated }

    /// The `--placement` value of `kind` for `ranks` workers and `experts` experts, writing a
    /// placement file into `dir` when needed. Planned: the experts dealt out in a shuffled order
    /// (not the static split's consecutive runs). Replicated: that, plus one replica per worker
    /// of the experts 0, 1, … (so a replicated expert's pairs are split between two ranks).
    static func placement(_ kind: Kind, ranks: Int, experts: Int, in dir: TemporaryDirectory) throws -> String {
        let shuffled = (0..<experts).map { ($0 * 5 + 3) % experts }.enumerated().sorted { ($0.element, $0.offset) < ($1.element, $1.offset) }
            .map(\.offset)
        var slots: [Int]
        switch kind {
        case .staticSplit: return "static"
        case .planned: slots = shuffled
        case .replicated:
            let perWorker = experts / ranks
            slots = []
            for w in 0..<ranks { slots += shuffled[(w * perWorker)..<((w + 1) * perWorker)] + [(w + 1) % experts] }
        }
        let name = "\(kind)-\(ranks).json"
        try Files.write(#"{"workers": \#(ranks), "experts": \#(experts), "phy2log": [\#(slots)]}"#, to: dir.file(name))
        return name
    }

    /// Random normal tokens `[tokens, hidden]` (a fixed LCG and Box–Muller).
    static func writeInput(tokens: Int, hidden: Int, seed: UInt64, to path: String) throws {
        var state = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (Float(state >> 40) + 0.5) / Float(1 << 24)
        }
        let values = (0..<(tokens * hidden)).map { _ in (-2 * logf(uniform())).squareRoot() * cosf(2 * .pi * uniform()) }
        try NpyArray(shape: [tokens, hidden], storage: .float32(values)).write(to: path)
    }

    struct Fixture {
        var name: String
        var path: String { RepoPaths.fixtures + "/" + name }
        var meta: [String: Any]
        var hidden: Int { (meta["hyperparameters"] as! [String: Any])["hidden_size"] as! Int }
        var experts: Int { (meta["hyperparameters"] as! [String: Any])["num_experts"] as! Int }
        var graph: String {
            let layout = meta["layout"] as? String ?? "hub"
            return RepoPaths.graphs + "/\(meta["family"] as! String)\(layout.hasPrefix("stacked") ? "_stacked" : "").moe"
        }

        init(_ name: String) throws {
            self.name = name
            meta = try JSONSerialization.jsonObject(with: Files.read(RepoPaths.fixtures + "/" + name + "/meta.json")) as! [String: Any]
        }
    }

    @Test(arguments: fixtures)
    func ranksMatchTheSingleProcessRun(_ name: String) throws {
        let f = try Fixture(name)
        let dir = TemporaryDirectory()
        let layer = f.meta["layer"] as! Int
        expectSuccess(try Moec.run(["compile", f.graph, "--model", f.path, "--set", "layer=\(layer)", "-o", "plan.json"], in: dir.path))
        let fixtureIndex = Self.fixtures.firstIndex(of: name)!
        var references: [Int: Data] = [:]
        var checkedRepeat = false
        for (r, ranks) in [2, 4].enumerated() {
            for (k, kind) in Kind.allCases.enumerated() {
                // Each (ranks, kind) of a fixture gets another token count: every fixture meets all four.
                let tokens = Self.tokenCounts[(fixtureIndex + k + 2 * r) % Self.tokenCounts.count]
                let x = "x\(tokens).npy"
                if references[tokens] == nil {
                    try Self.writeInput(tokens: tokens, hidden: f.hidden, seed: UInt64(tokens), to: dir.file(x))
                    // The single-process run on moec's kernels, as the placed runs are (not BLAS).
                    let single = try Moec.run(
                        ["run", "plan.json", "--input", "x=\(x)", "--output", "y=ref\(tokens).npy", "--threads", "1"], in: dir.path,
                        environment: ["MOEC_BLAS": "none"])
                    expectSuccess(single)
                    references[tokens] = try Files.read(dir.file("ref\(tokens).npy"))
                }
                let p = try Self.placement(kind, ranks: ranks, experts: f.experts, in: dir)
                func args(_ output: String) -> [String] {
                    ["run", "plan.json", "--input", "x=\(x)", "--output", "y=\(output)", "--placement", p, "--threads", "1"]
                }
                let what = "\(name) \(kind) on \(ranks) ranks, \(tokens) tokens"
                let first = try MPIRun.moec(args("y.npy"), ranks: ranks, in: dir.path)
                expectSuccess(first)
                #expect(first.stderr.contains("[rank 0] wrote y"), "\(what)\n\(first)")
                #expect(!first.stderr.contains("[rank 1] wrote"), "only rank 0 writes: \(what)\n\(first)")
                let y = try Files.read(dir.file("y.npy"))
                let error = relativeError(try NpyArray(data: y).floats(), try NpyArray(data: references[tokens]!).floats())
                #expect(y == references[tokens]!, "\(what): not the single-process bits, max |Δ| / max |y| = \(error)")
                if !checkedRepeat {
                    checkedRepeat = true
                    let again = try MPIRun.moec(args("again.npy"), ranks: ranks, in: dir.path)
                    expectSuccess(again)
                    #expect(try Files.read(dir.file("again.npy")) == y, "not the same bits run after run: \(what)")
                }
            }
        }
    }

    /// Mechanisms with more to them than one exchange per block: several hops sharing the
    /// experts, routing across tokens (expert choice, Sinkhorn), upcycled and hierarchical
    /// experts, two task heads. Each on its own checkpoint and input, static split on 2 and 4 ranks.
    @Test(arguments: [
        ("multihop", "multihop_h16-f16-e8-k2-h3-t04-n13", ["y"], [String]()),
        ("expert_choice", "expert_choice_h16-f16-e8-k2-cf1-n16", ["y"], ["capacity_factor"]),
        ("sinkhorn_router", "sinkhorn_router_h16-f16-e8-k2-i3-n16", ["y"], []),
        ("upcycling", "upcycling_h16-f16-k2-n13", ["y"], []),
        ("hierarchical", "hierarchical_h16-f12-g4x4-o2-i1-n13", ["y"], []),
        ("mmoe_ranking", "mmoe_ranking_f16-e4-ffn24-t8-n13", ["ctr", "cvr"], [])
    ])
    func mechanismsMatchTheSingleProcessRun(_ graph: String, _ fixture: String, _ outputs: [String], _ extraInputs: [String]) throws {
        let dir = TemporaryDirectory()
        let model = RepoPaths.fixtures + "/mechanisms/" + fixture
        let base =
            ["run", RepoPaths.graphs + "/mechanisms/\(graph).moe", "--model", model, "--threads", "1"]
            + (["x"] + extraInputs).flatMap { ["--input", "\($0)=\(model)/\($0).npy"] }
        func outputArgs(_ prefix: String) -> [String] { outputs.flatMap { ["--output", "\($0)=\(prefix)-\($0).npy"] } }
        expectSuccess(try Moec.run(base + outputArgs("single"), in: dir.path, environment: ["MOEC_BLAS": "none"]))
        for ranks in [2, 4] {
            let r = try MPIRun.moec(base + outputArgs("ranks\(ranks)") + ["--placement", "static"], ranks: ranks, in: dir.path)
            expectSuccess(r)
            for o in outputs {
                let want = try NpyArray(path: dir.file("single-\(o).npy")).floats()
                let got = try NpyArray(path: dir.file("ranks\(ranks)-\(o).npy")).floats()
                let error = relativeError(got, want)
                #expect(
                    try Files.read(dir.file("ranks\(ranks)-\(o).npy")) == Files.read(dir.file("single-\(o).npy")),
                    "\(graph) on \(ranks) ranks, output \(o): not the single-process bits, max |Δ| / max |ref| = \(error) (\(got.count) of \(want.count) values)")
            }
        }
    }

    /// Every rank makes the same runs (10 by default: each run exchanges rows), and only rank 0
    /// prints: one JSON line per token count.
    @Test func benchPrintsOnceAndEndsOnEveryRank() throws {
        let dir = TemporaryDirectory()
        let r = try MPIRun.moec(
            ["bench", Files.mixtralGraph, "--model", Files.example, "--tokens", "1,7", "--warmup", "1", "--placement", "static", "--json"],
            ranks: 2, in: dir.path)
        expectSuccess(r)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(r)")
        for (line, tokens) in zip(lines, [1, 7]) {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(o?["tokens"] as? Int == tokens && o?["runs"] as? Int == 10, "\(r)")
            #expect(
                (o?["backend"] as? String)?.hasSuffix("one worker per rank (2 MPI ranks), tokens sharded between the ranks") == true, "\(r)")
            // Per rank: its parts, its pairs (together every token's top-2) and the rows it sent.
            let ranks = o?["ranks"] as? [[String: Any]] ?? []
            #expect(ranks.map { $0["rank"] as? Int } == [0, 1], "\(r)")
            #expect(ranks.reduce(0) { $0 + ($1["pairs"] as? Int ?? 0) } == 2 * tokens, "\(r)")
            // Together the ranks sent each pair computed away from its token once there (32
            // floats of x and its weight) and once back (32 floats of result).
            let sent = ranks.reduce(0) { $0 + ($1["bytes_sent"] as? Int ?? 0) }
            #expect(sent % (65 * 4) == 0 && sent <= 2 * tokens * 65 * 4, "\(r)")
            for q in ranks {
                for part in ["route_ms", "dispatch_ms", "experts_ms", "combine_ms"] {
                    #expect((q[part] as? Double ?? -1) >= 0 && (q[part] as? Double ?? .infinity) <= (o?["max_ms"] as? Double ?? 0), "\(part): \(q)")
                }
            }
        }
        let text = try MPIRun.moec(
            ["bench", Files.mixtralGraph, "--model", Files.example, "--tokens", "7", "--warmup", "0", "--placement", "static"], ranks: 2,
            in: dir.path)
        expectSuccess(text)
        for rank in 0..<2 {
            #expect(text.stdout.contains("rank \(rank): route "), "\(text)")
        }
    }

    /// Each rank reads only its experts' weights from the checkpoint: on a Mixtral layer of
    /// 24 MiB of experts, a rank of two peaks (`MOEC_PEAK_RSS=1`) at least a quarter of the
    /// experts' bytes below the one rank that holds them all. (Reading every expert and then
    /// dropping the others' pages peaks as high as one rank.)
    @Test func eachRankReadsOnlyItsExperts() throws {
        let dir = TemporaryDirectory()
        let h = 256, f = 1024, e = 8
        var seed: UInt32 = 1
        func weights(_ n: Int) -> [Float] {
            (0..<n).map { _ in
                seed = seed &* 1_664_525 &+ 1_013_904_223
                return Float(Int(seed >> 16) % 2001 - 1000) / 20000
            }
        }
        var tensors = [SafetensorsWriter.Tensor(name: "model.layers.0.block_sparse_moe.gate.weight", shape: [e, h], values: weights(e * h))]
        for x in 0..<e {
            for (name, shape) in [("w1", [f, h]), ("w3", [f, h]), ("w2", [h, f])] {
                tensors.append(.init(name: "model.layers.0.block_sparse_moe.experts.\(x).\(name).weight", shape: shape, values: weights(f * h)))
            }
        }
        try Files.write(
            #"{"hidden_size": \#(h), "intermediate_size": \#(f), "num_local_experts": \#(e), "num_experts_per_tok": 2}"#, to: dir.file("config.json"))
        try SafetensorsWriter.write(tensors: tensors, to: dir.file("model.safetensors"))
        try Self.writeInput(tokens: 5, hidden: h, seed: 5, to: dir.file("x.npy"))
        var peaks: [Int: [Int]] = [:]
        for ranks in [1, 2] {
            let r = try MPIRun.moec(
                [
                    "run", Files.mixtralGraph, "--model", dir.path, "--input", "x=x.npy", "--output", "y=y\(ranks).npy", "--placement", "static",
                    "--threads", "1"
                ], ranks: ranks, in: dir.path, environment: ["MOEC_PEAK_RSS": "1"])
            expectSuccess(r)
            peaks[ranks] = (0..<ranks).compactMap { rank in
                r.stderr.split(separator: "\n").first { $0.hasPrefix("[rank \(rank)] peak RSS: ") }
                    .flatMap { Int($0.split(separator: " ")[4]) }
            }
            #expect(peaks[ranks]!.count == ranks, "\(r)")
        }
        let expertKiB = 3 * e * f * h * 4 / 1024
        for peak in peaks[2]! {
            #expect(peak <= peaks[1]![0] - expertKiB / 4, "peak RSS of a rank of 2: \(peak) KiB, of 1 rank: \(peaks[1]![0]) KiB; experts \(expertKiB) KiB")
        }
        #expect(try Files.read(dir.file("y1.npy")) == Files.read(dir.file("y2.npy")))
    }

    /// Sharded tokens: each rank routes only its contiguous share (7 tokens on 2 ranks: 3 and 4;
    /// 1 token on 4 ranks: 0, 0, 0, 1), its router making top-2 pairs of those tokens alone, and
    /// the ranks together compute every pair once. The same runs give the single-process
    /// outputs bit for bit (ranks with no tokens still serve their experts).
    @Test func eachRankRoutesOnlyItsShareOfTheTokens() throws {
        let dir = TemporaryDirectory()
        for (ranks, tokens, shares) in [(2, 7, [3, 4]), (4, 1, [0, 0, 0, 1]), (4, 9, [2, 2, 2, 3])] {
            let r = try MPIRun.moec(
                [
                    "bench", Files.mixtralGraph, "--model", Files.example, "--tokens", "\(tokens)", "--warmup", "0", "--repeat", "1", "--json",
                    "--placement", "static", "--threads", "1"
                ], ranks: ranks, in: dir.path)
            expectSuccess(r)
            let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(o?["tokens_sharded"] as? Bool == true, "\(r)")
            let q = o?["ranks"] as? [[String: Any]] ?? []
            #expect(q.map { $0["tokens"] as? Int } == shares, "\(r)")
            #expect(q.map { $0["routed_pairs"] as? Int } == shares.map { 2 * $0 }, "\(r)")
            #expect(q.reduce(0) { $0 + ($1["pairs"] as? Int ?? 0) } == 2 * tokens, "\(r)")
        }
        for (ranks, tokens) in [(4, 1), (4, 3), (2, 5)] {
            try Self.writeInput(tokens: tokens, hidden: 32, seed: UInt64(tokens), to: dir.file("x\(tokens).npy"))
            let common = ["run", Files.mixtralGraph, "--model", Files.example, "--input", "x=x\(tokens).npy", "--threads", "1"]
            expectSuccess(try Moec.run(common + ["--output", "y=single\(tokens).npy"], in: dir.path, environment: ["MOEC_BLAS": "none"]))
            let placement = try Self.placement(.replicated, ranks: ranks, experts: 8, in: dir)
            let r = try MPIRun.moec(common + ["--output", "y=ranks\(tokens).npy", "--placement", placement], ranks: ranks, in: dir.path)
            expectSuccess(r)
            #expect(r.stderr.contains("tokens sharded between the ranks"), "\(r)")
            #expect(try Files.read(dir.file("ranks\(tokens).npy")) == Files.read(dir.file("single\(tokens).npy")), "\(tokens) tokens on \(ranks) ranks")
        }
    }

    /// A graph whose tokens depend on each other (expert choice: each expert takes its top
    /// tokens of the whole batch) keeps every token on every rank, says why, and still equals
    /// the single-process run bit for bit.
    @Test func tokenMixingGraphsRunEveryTokenOnEveryRank() throws {
        let dir = TemporaryDirectory()
        let model = RepoPaths.fixtures + "/mechanisms/expert_choice_h16-f16-e8-k2-cf1-n16"
        let common = [
            "run", RepoPaths.graphs + "/mechanisms/expert_choice.moe", "--model", model, "--threads", "1", "--input", "x=\(model)/x.npy",
            "--input", "capacity_factor=\(model)/capacity_factor.npy"
        ]
        expectSuccess(try Moec.run(common + ["--output", "y=single.npy"], in: dir.path, environment: ["MOEC_BLAS": "none"]))
        let r = try MPIRun.moec(common + ["--output", "y=ranks.npy", "--placement", "static"], ranks: 2, in: dir.path)
        expectSuccess(r)
        #expect(r.stderr.contains("every rank runs all tokens ("), "\(r)")
        #expect(r.stderr.contains("expert_choice"), "\(r)")
        #expect(r.stderr.contains(" gives a token a result that depends on the other tokens)"), "\(r)")
        #expect(try Files.read(dir.file("ranks.npy")) == Files.read(dir.file("single.npy")), "expert_choice on 2 ranks: not the single-process bits")
        let bench = try MPIRun.moec(
            [
                "bench", RepoPaths.graphs + "/mechanisms/expert_choice.moe", "--model", model, "--tokens", "7", "--warmup", "0", "--repeat", "1",
                "--json", "--placement", "static"
            ], ranks: 2, in: dir.path)
        expectSuccess(bench)
        let o = try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any]
        #expect(o?["tokens_sharded"] as? Bool == false, "\(bench)")
        #expect((o?["all_tokens_reason"] as? String)?.contains("expert_choice") == true, "\(bench)")
        #expect((o?["ranks"] as? [[String: Any]] ?? []).map { $0["tokens"] as? Int } == [7, 7], "\(bench)")
    }

    /// `--stats` with sharded tokens: every rank records, the loads and token counts are summed
    /// and the router scores gathered, so rank 0 writes the file one process writes (multi-hop:
    /// one load per hop, tokens halted between hops), and the outputs the same bits.
    @Test func statisticsOfShardedRanksAreThoseOfOneProcess() throws {
        let dir = TemporaryDirectory()
        let model = RepoPaths.fixtures + "/mechanisms/multihop_h16-f16-e8-k2-h3-t04-n13"
        for (graph, folder) in [(Files.mixtralGraph, Files.example), (RepoPaths.graphs + "/mechanisms/multihop.moe", model)] {
            let common = ["run", graph, "--model", folder, "--input", "x=\(folder)/x.npy", "--threads", "1"]
            expectSuccess(try Moec.run(common + ["--stats", "single.json", "--output", "y=single.npy"], in: dir.path, environment: ["MOEC_BLAS": "none"]))
            for ranks in [2, 4] {
                let r = try MPIRun.moec(common + ["--stats", "ranks.json", "--output", "y=ranks.npy", "--placement", "static"], ranks: ranks, in: dir.path)
                expectSuccess(r)
                #expect(r.stderr.contains("tokens sharded between the ranks"), "\(r)")
                #expect(try Files.read(dir.file("ranks.json")) == Files.read(dir.file("single.json")), "\(graph) on \(ranks) ranks: other statistics")
                #expect(try Files.read(dir.file("ranks.npy")) == Files.read(dir.file("single.npy")), "\(graph) on \(ranks) ranks: other outputs")
            }
        }
    }

    /// `--llep T` across ranks: a rank's excess pairs go only to ranks holding a replica of the
    /// expert (a rank holds only its experts' weights). Every expert on both ranks: each rank's
    /// pairs within LLEP's capacity ⌈T·pairs/2⌉ (the static split gives rank 1 the odd rows of
    /// each expert). No replicas (static): nowhere to send them, the static pair counts. The ranks
    /// shard the tokens and plan LLEP over every rank's rows together; outputs equal the
    /// single-process run bit for bit.
    @Test func llepMovesPairsBetweenReplicaHolders() throws {
        let dir = TemporaryDirectory()
        try Files.write(#"{"workers": 2, "experts": 8, "phy2log": [[0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1, 0]]}"#, to: dir.file("both.json"))
        let tokens = 57
        try Self.writeInput(tokens: tokens, hidden: 32, seed: 57, to: dir.file("x.npy"))
        func pairs(_ placement: String, llep: Bool) throws -> [Int] {
            let r = try MPIRun.moec(
                ["bench", Files.mixtralGraph, "--model", Files.example, "--tokens", "\(tokens)", "--warmup", "0", "--repeat", "1", "--json", "--placement", placement]
                    + (llep ? ["--llep", "1.0"] : []), ranks: 2, in: dir.path)
            expectSuccess(r)
            let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            return (o?["ranks"] as? [[String: Any]] ?? []).map { $0["pairs"] as? Int ?? -1 }
        }
        let capacity = (2 * tokens + 1) / 2
        let balanced = try pairs("both.json", llep: true)
        #expect(balanced.count == 2 && balanced.allSatisfy { $0 <= capacity } && balanced.reduce(0, +) == 2 * tokens, "\(balanced)")
        let unbalanced = try pairs("both.json", llep: false)
        #expect(unbalanced.reduce(0, +) == 2 * tokens && unbalanced[1] > capacity, "the test needs an uneven static split: \(unbalanced)")
        #expect(try pairs("static", llep: true) == pairs("static", llep: false))
        expectSuccess(
            try Moec.run(
                ["run", Files.mixtralGraph, "--model", Files.example, "--input", "x=x.npy", "--output", "y=single.npy", "--threads", "1"], in: dir.path,
                environment: ["MOEC_BLAS": "none"]))
        for (ranks, placement) in [(2, "both.json"), (4, "static")] {
            let r = try MPIRun.moec(
                ["run", Files.mixtralGraph, "--model", Files.example, "--input", "x=x.npy", "--output", "y=y.npy", "--placement", placement, "--llep", "1.0", "--threads", "1"],
                ranks: ranks, in: dir.path)
            expectSuccess(r)
            #expect(r.stderr.contains("tokens sharded between the ranks"), "\(r)")
            #expect(try Files.read(dir.file("y.npy")) == Files.read(dir.file("single.npy")), "\(placement) on \(ranks) ranks with --llep 1.0")
        }
    }

    @Test func placementOfOtherWorkersIsRefusedByEveryRank() throws {
        let dir = TemporaryDirectory()
        let p = try Self.placement(.planned, ranks: 4, experts: 8, in: dir)
        let r = try MPIRun.moec(
            ["run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy", "--placement", p],
            ranks: 2, in: dir.path)
        for rank in 0..<2 {
            #expect(
                r.stderr.contains("[rank \(rank)] error: --placement: the placement has 4 workers but mpirun started 2 processes; run it with 'mpirun -n 4'"),
                "\(r)")
        }
        #expect(r.status != 0 && !r.timedOut, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
    }

    @Test func withoutAPlacementTheRanksRefuseToRunEveryExpert() throws {
        let dir = TemporaryDirectory()
        let r = try MPIRun.moec(
            ["run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy"],
            ranks: 2, in: dir.path)
        #expect(r.stderr.contains("[rank 1] error: mpirun started 2 processes, but without --placement each would run every expert"), "\(r)")
        #expect(r.status != 0 && !r.timedOut, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
    }

    /// `profile` writes its statistics from one process: under mpirun every rank would.
    @Test func profileRefusesToRunOnSeveralRanks() throws {
        let dir = TemporaryDirectory()
        let r = try MPIRun.moec(
            ["profile", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "-o", "stats.json", "--placement", "static"],
            ranks: 2, in: dir.path)
        #expect(r.stderr.contains("[rank 0] error: moec profile runs in one process; under mpirun only 'run' and 'bench'"), "\(r)")
        #expect(r.status != 0 && !r.timedOut, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("stats.json")))
    }

    @Test func missingLibmpiIsAnErrorNamingTheRank() throws {
        let dir = TemporaryDirectory()
        let r = try MPIRun.moec(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=\(Files.example)/x.npy", "--output", "y=y.npy",
                "--placement", "static"
            ],
            ranks: 2, in: dir.path, environment: ["MOEC_MPI": dir.file("no-libmpi.so")])
        #expect(r.stderr.contains("[rank 0] error: MPI: MOEC_MPI=\(dir.file("no-libmpi.so")) cannot be loaded"), "\(r)")
        #expect(r.status != 0 && !r.timedOut, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
    }

    /// Rank 1 alone cannot open the model, after MPI is up: it ends the whole job (`MPI_Abort`),
    /// so rank 0 does not wait for it forever, and writes nothing.
    @Test func aRankThatFailsAloneEndsTheJob() throws {
        let dir = TemporaryDirectory()
        // sh -c SCRIPT sh MOEC: the script finds moec's path in $1.
        let script = """
            if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then model=missing; else model='\(Files.example)'; fi
            exec "$1" run '\(Files.mixtralGraph)' --model "$model" --input x='\(Files.example)/x.npy' --output y=y.npy --placement static
            """
        let r = try Moec.run(
            [], in: dir.path, environment: MPIRun.rootConsent, launcher: MPIRun.launcher(ranks: 2) + ["/bin/sh", "-c", script, "sh"])
        #expect(r.stderr.contains("[rank 1] error: --model missing: no such folder"), "\(r)")
        #expect(r.status != 0 && !r.timedOut, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
    }
}

/// Starting moec under Open MPI's `mpirun`.
enum MPIRun {
    /// `mpirun` on PATH, or nil.
    static let mpirun: String? = {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let p = "\(folder)/mpirun"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }()

    /// `mpirun -n RANKS` with more ranks than cores allowed (the CI machine has 2).
    static func launcher(ranks: Int) -> [String] { [mpirun!, "--oversubscribe", "-n", "\(ranks)"] }

    /// `mpirun -n RANKS moec ARGUMENTS` in `directory`. (Open MPI refuses to run as root unless
    /// told, as in CI containers.)
    static func moec(_ arguments: [String], ranks: Int, in directory: String, environment: [String: String] = [:]) throws -> Moec.Result {
        try Moec.run(arguments, in: directory, environment: environment.merging(rootConsent) { a, _ in a }, launcher: launcher(ranks: ranks))
    }

    static let rootConsent = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
}
