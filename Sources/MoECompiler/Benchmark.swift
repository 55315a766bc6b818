import Foundation
import MoEBackend
import MoEBasics

/// Timing of one token count: medians over repeated runs on seeded random inputs.
public struct BenchResult: Sendable {
    public var tokens: Int
    public var times: [Double] // seconds, in run order
    public var work: WorkEstimate
    public var arenaBytes: Int

    public var median: Double {
        let s = times.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    public var min: Double { times.min() ?? 0 }
    public var max: Double { times.max() ?? 0 }

    public func toJSON(graph: String, threads: Int, backend: String) -> JSON {
        var o = JSONObject()
        o["graph"] = .string(graph)
        o["tokens"] = JSON(tokens)
        o["median_ms"] = JSON((median * 1e6).rounded() / 1e3)
        o["min_ms"] = JSON((min * 1e6).rounded() / 1e3)
        o["max_ms"] = JSON((max * 1e6).rounded() / 1e3)
        o["runs"] = JSON(times.count)
        o["tokens_per_s"] = JSON((Double(tokens) / median * 10).rounded() / 10)
        o["gflops"] = JSON((work.flops / median / 1e9 * 100).rounded() / 100)
        o["weight_mb_touched"] = JSON((work.weightBytes / 1e6 * 100).rounded() / 100)
        o["experts_hit"] = JSON(work.expertsHit)
        o["experts_total"] = JSON(work.expertsTotal)
        o["arena_bytes"] = JSON(arenaBytes)
        o["threads"] = JSON(threads)
        o["backend"] = .string(backend)
        return .object(o)
    }
}

public enum Benchmark {
    /// Runs the schedule for `tokens`: `warmup` untimed runs, then timed runs until both
    /// `minRuns` runs and `minSeconds` have passed (or exactly `repeat` runs when given).
    public static func measure(
        _ runner: ModelRunner, tokens: Int, repeat: Int? = nil, warmup: Int = 3,
        minRuns: Int = 10, minSeconds: Double = 1.0, maxRuns: Int = 1000, seed: UInt64 = 0
    ) -> BenchResult {
        let schedule = runner.executable.schedule(tokens: tokens)
        schedule.fillInputsRandomly(seed: seed &+ UInt64(tokens))
        for _ in 0..<warmup { schedule.execute() }
        var times: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        while true {
            let t0 = DispatchTime.now().uptimeNanoseconds
            schedule.execute()
            let t1 = DispatchTime.now().uptimeNanoseconds
            times.append(Double(t1 - t0) / 1e9)
            if let r = `repeat` {
                if times.count >= r { break }
            } else if times.count >= maxRuns || (times.count >= minRuns && Double(t1 - start) / 1e9 >= minSeconds) {
                break
            }
        }
        let work = WorkEstimate(graph: runner.graph, tokens: tokens, expertLoads: schedule.lastExpertLoads())
        return BenchResult(tokens: tokens, times: times, work: work, arenaBytes: schedule.arenaBytes)
    }
}
