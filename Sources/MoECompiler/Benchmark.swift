import Foundation
import MoEBackend
import MoEBasics

/// Timing of one token count: medians over repeated runs on seeded random inputs.
public struct BenchResult: Sendable {
    public var tokens: Int
    /// The tokens of a sequence the runs followed (`--context`), 0 for none.
    public var context = 0
    public var times: [Double] // seconds, in run order
    public var work: WorkEstimate
    public var arenaBytes: Int
    /// Under `mpirun`: per rank, where its time went (`times` are then the slowest rank's per run).
    public var ranks: [RankTimes] = []

    /// One rank's medians over the runs, in seconds, and its traffic in a run.
    public struct RankTimes: Sendable {
        /// The run's other work: the router, the rows sorted by expert, the ops outside the blocks.
        public var route: Double
        /// Rows packed and exchanged by all-to-all (including the wait for the slowest rank).
        public var dispatch: Double
        public var experts: Double
        public var combine: Double
        /// (token, expert) rows it computed, and bytes it sent.
        public var pairs: Int
        public var bytesSent: Int
        /// Tokens it ran the graph on (its share when the ranks shard the tokens, else all),
        /// and the (token, expert) pairs its router made of them.
        public var tokens: Int
        public var routed: Int
    }
    /// Under `mpirun`: whether the ranks shard the tokens, or why each runs them all.
    public var allTokensReason: String?

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    public var median: Double { Self.median(times) }
    public var min: Double { times.min() ?? 0 }
    public var max: Double { times.max() ?? 0 }

    public func toJSON(graph: String, threads: Int, backend: String) -> JSON {
        var o = JSONObject()
        o["graph"] = .string(graph)
        o["tokens"] = JSON(tokens)
        if context > 0 { o["context"] = JSON(context) }
        o["median_ms"] = JSON((median * 1e6).rounded() / 1e3)
        o["min_ms"] = JSON((min * 1e6).rounded() / 1e3)
        o["max_ms"] = JSON((max * 1e6).rounded() / 1e3)
        o["runs"] = JSON(times.count)
        o["tokens_per_s"] = JSON((Double(tokens) / median * 10).rounded() / 10)
        o["gflops"] = JSON((work.flops / median / 1e9 * 100).rounded() / 100)
        o["weight_mb_touched"] = JSON((work.weightBytes / 1e6 * 100).rounded() / 100)
        o["weight_gb_per_s"] = JSON((work.weightBytes / median / 1e9 * 100).rounded() / 100)
        o["experts_hit"] = JSON(work.expertsHit)
        o["experts_total"] = JSON(work.expertsTotal)
        o["arena_bytes"] = JSON(arenaBytes)
        o["threads"] = JSON(threads)
        o["backend"] = .string(backend)
        if !ranks.isEmpty {
            func ms(_ seconds: Double) -> JSON { JSON((seconds * 1e6).rounded() / 1e3) }
            o["ranks"] = .array(
                ranks.enumerated().map { r, t in
                    var q = JSONObject()
                    q["rank"] = JSON(r)
                    q["route_ms"] = ms(t.route)
                    q["dispatch_ms"] = ms(t.dispatch)
                    q["experts_ms"] = ms(t.experts)
                    q["combine_ms"] = ms(t.combine)
                    q["pairs"] = JSON(t.pairs)
                    q["bytes_sent"] = JSON(t.bytesSent)
                    q["tokens"] = JSON(t.tokens)
                    q["routed_pairs"] = JSON(t.routed)
                    return .object(q)
                })
            o["tokens_sharded"] = .bool(allTokensReason == nil)
            if let allTokensReason { o["all_tokens_reason"] = .string(allTokensReason) }
        }
        return .object(o)
    }
}

public enum Benchmark {
    /// Runs the schedule for `tokens`: `warmup` untimed runs, then timed runs until both
    /// `minRuns` runs and `minSeconds` have passed (or exactly `repeat` runs when given).
    /// With `context`, each run is the next `tokens` tokens of a sequence that holds `context`
    /// tokens of random keys and values (a decode step with a KV cache), rewound to them before
    /// every run.
    public static func measure(
        _ runner: ModelRunner, tokens: Int, repeat: Int? = nil, warmup: Int = 3,
        minRuns: Int = 10, minSeconds: Double = 1.0, maxRuns: Int = 1000, seed: UInt64 = 0, context: Int = 0
    ) throws -> BenchResult {
        let executable = runner.executable
        let schedule = executable.schedule(tokens: executable.scheduleTokens(tokens))
        // Sharded, each rank gets its share of the inputs one process would run.
        schedule.fillInputsRandomly(seed: seed &+ UInt64(tokens), share: executable.tokenShare(tokens), of: tokens)
        var sequence: SequenceState?
        if context > 0 {
            do {
                let s = try executable.makeSequence(capacity: context + tokens)
                try s.fillRandomly(count: context, seed: seed &+ 7)
                sequence = s
            } catch {
                throw DiagnosticError(.error("--context: \(error.message)"))
            }
        }
        /// A sharded run ends with the outputs gathered (the all-tokens mode gathers each block's).
        func run() {
            if let sequence {
                // Cannot fail: the sequence holds `context` tokens, has room for `tokens` more,
                // and only this loop runs it.
                try! sequence.rewind(to: context)
                try! schedule.execute(continuing: sequence)
                return
            }
            schedule.execute()
            if executable.shardsTokens { _ = executable.gatheredOutputs(schedule, tokens: tokens) }
        }
        for _ in 0..<warmup { run() }
        var times: [Double] = []
        let distributed = runner.executable.distributedTimes
        var parts: [[Double]] = [] // under mpirun, per run: route, dispatch, experts, combine
        let start = DispatchTime.now().uptimeNanoseconds
        while true {
            distributed?.reset()
            let t0 = DispatchTime.now().uptimeNanoseconds
            run()
            let t1 = DispatchTime.now().uptimeNanoseconds
            times.append(Double(t1 - t0) / 1e9)
            if let d = distributed {
                parts.append([times.last! - d.dispatch - d.experts - d.combine, d.dispatch, d.experts, d.combine])
            }
            if let r = `repeat` {
                if times.count >= r { break }
            } else if times.count >= maxRuns || (times.count >= minRuns && Double(t1 - start) / 1e9 >= minSeconds) {
                break
            }
        }
        // Sharded, each rank routed its share: the work is every rank's loads together.
        let work = WorkEstimate(graph: runner.graph, tokens: tokens, expertLoads: executable.lastExpertLoads(tokens: tokens), context: context)
        var result = BenchResult(tokens: tokens, times: times, work: work, arenaBytes: schedule.arenaBytes)
        result.context = context
        if let d = distributed {
            // Every rank made the same runs (`repeat` is set under mpirun): each run's time is
            // its slowest rank's, and each rank's parts are its medians.
            let n = times.count
            let routed = schedule.lastExpertLoads().reduce(0) { $0 + $1.reduce(0, +) }
            let mine =
                times + (0..<4).map { p in BenchResult.median(parts.map { $0[p] }) }
                + [Double(d.pairs), Double(d.bytesSent), Double(schedule.tokens), Double(routed)]
            let all = d.gather(mine)
            result.times = (0..<n).map { run in all.map { $0[run] }.max()! }
            result.ranks = all.map {
                BenchResult.RankTimes(
                    route: $0[n], dispatch: $0[n + 1], experts: $0[n + 2], combine: $0[n + 3], pairs: Int($0[n + 4]), bytesSent: Int($0[n + 5]),
                    tokens: Int($0[n + 6]), routed: Int($0[n + 7]))
            }
            result.allTokensReason = executable.allTokensReason
        }
        return result
    }
}
