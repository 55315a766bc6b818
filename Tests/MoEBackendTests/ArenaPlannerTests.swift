import Foundation
import MoEIR
import MoEKernels
import MoEPasses
import MoETestSupport
import Testing

@testable import MoEBackend

/// The arena planner: buffers alive at the same step never overlap, offsets are aligned, and
/// the arena is at least the peak of live bytes; and the schedule's memory plan on real graphs.
@Suite struct ArenaPlannerTests {
    static func aligned(_ n: Int) -> Int { (n + ArenaPlanner.alignment - 1) / ArenaPlanner.alignment * ArenaPlanner.alignment }

    /// Every problem with `layout` for `requests`, checked by brute force over all pairs.
    static func problems(_ requests: [ArenaPlanner.Request], _ layout: ArenaPlanner.Layout) -> [String] {
        var out: [String] = []
        guard layout.offsets.count == requests.count else { return ["\(layout.offsets.count) offsets for \(requests.count) requests"] }
        for (i, r) in requests.enumerated() {
            let o = layout.offsets[i]
            if o < 0 || o % ArenaPlanner.alignment != 0 { out.append("request \(i): offset \(o) is not 64-byte aligned") }
            if o + r.bytes > layout.totalBytes { out.append("request \(i): [\(o), \(o + r.bytes)) exceeds the arena (\(layout.totalBytes))") }
        }
        for i in requests.indices {
            for j in requests.indices where j > i {
                let a = requests[i], b = requests[j]
                guard a.firstStep <= b.lastStep && b.firstStep <= a.lastStep, a.bytes > 0, b.bytes > 0 else { continue }
                let (oa, ob) = (layout.offsets[i], layout.offsets[j])
                if oa < ob + b.bytes && ob < oa + a.bytes {
                    out.append(
                        "requests \(i) [\(oa), \(oa + a.bytes)) steps \(a.firstStep)...\(a.lastStep) and \(j) [\(ob), \(ob + b.bytes)) steps \(b.firstStep)...\(b.lastStep) overlap"
                    )
                }
            }
        }
        // Peak of live (aligned) bytes, step by step.
        let steps = (requests.map(\.lastStep).max() ?? -1) + 1
        var peak = 0
        for s in 0..<max(steps, 0) {
            peak = max(peak, requests.filter { $0.firstStep <= s && s <= $0.lastStep }.reduce(0) { $0 + aligned($1.bytes) })
        }
        if layout.peakLiveBytes != peak { out.append("peakLiveBytes is \(layout.peakLiveBytes), brute force says \(peak)") }
        if layout.totalBytes < peak { out.append("arena \(layout.totalBytes) is smaller than the peak of live bytes \(peak)") }
        let unshared = requests.reduce(0) { $0 + aligned($1.bytes) }
        if layout.totalBytes > unshared { out.append("arena \(layout.totalBytes) is larger than no sharing at all (\(unshared))") }
        return out
    }

    static func randomRequests(_ rng: inout SeededRandom) -> [ArenaPlanner.Request] {
        let count = Int(rng.next() % 40)
        let steps = 1 + Int(rng.next() % 25)
        return (0..<count).map { _ in
            let a = Int(rng.next() % UInt64(steps)), b = Int(rng.next() % UInt64(steps))
            // Mostly small, some large, some not multiples of 64, a few empty.
            let bytes: Int
            switch rng.next() % 10 {
            case 0: bytes = 0
            case 1, 2: bytes = 1 + Int(rng.next() % 100_000)
            case 3: bytes = 64 * (1 + Int(rng.next() % 8))
            default: bytes = 1 + Int(rng.next() % 3000)
            }
            return .init(bytes: bytes, firstStep: min(a, b), lastStep: max(a, b))
        }
    }

    @Test func randomRequestSets() {
        var rng = SeededRandom(seed: 2024)
        var failures = 0
        for trial in 0..<500 {
            let requests = Self.randomRequests(&rng)
            let p = Self.problems(requests, ArenaPlanner.plan(requests))
            if !p.isEmpty && failures < 5 {
                failures += 1
                Issue.record("trial \(trial), \(requests.count) requests: \(p.prefix(3).joined(separator: "; "))")
            }
        }
    }

    @Test func edgeCases() {
        let cases: [[ArenaPlanner.Request]] = [
            [],
            [.init(bytes: 1, firstStep: 0, lastStep: 0)],
            // All alive at once: no sharing possible.
            (0..<6).map { .init(bytes: 100 * ($0 + 1), firstStep: 0, lastStep: 3) },
            // Disjoint lifetimes: everything can start at 0.
            (0..<6).map { .init(bytes: 1000, firstStep: $0, lastStep: $0) },
            // Lifetimes touching at one step conflict.
            [.init(bytes: 64, firstStep: 0, lastStep: 2), .init(bytes: 64, firstStep: 2, lastStep: 4)],
            // Equal sizes (ties in the placement order).
            (0..<10).map { .init(bytes: 128, firstStep: $0 % 3, lastStep: $0 % 3 + 2) }
        ]
        for (n, requests) in cases.enumerated() {
            let layout = ArenaPlanner.plan(requests)
            let p = Self.problems(requests, layout)
            #expect(p.isEmpty, "case \(n): \(p)")
        }
        let disjoint = ArenaPlanner.plan((0..<6).map { .init(bytes: 1000, firstStep: $0, lastStep: $0) })
        #expect(disjoint.totalBytes == Self.aligned(1000))
        #expect(disjoint.offsets.allSatisfy { $0 == 0 })
    }

    /// With the `memory-planning` pass's liveness, a chain of element-wise ops needs about two
    /// live buffers, not one per op; without it, every value keeps its own bytes.
    @Test func chainsReuseMemory() throws {
        var t = TinyGraph()
        var v = t.input("x", [.tokens, .fixed(64)])
        for i in 0..<12 { v = try t.op(i % 2 == 0 ? .sigmoid : .neg, [v]) }
        t.output("y", v)
        let one = 100 * 64 * 4
        let planned = try MemoryPlanning().run(t.graph)
        #expect(planned.lastReaders == Array(1...12) + [13])
        let plan = try Schedule.memoryPlan(planned, tokens: 100)
        #expect(plan.layout.totalBytes <= 2 * one, "arena \(plan.layout.totalBytes) for buffers of \(one)")
        #expect(plan.unsharedBytes == 13 * one)
        let unplanned = try Schedule.memoryPlan(t.graph, tokens: 100)
        #expect(unplanned.layout.totalBytes == 13 * one)
    }

    /// Each value fits for one token (`Addressable`), but not for every token count: the plan
    /// refuses a count whose buffers, or their sum, no Int can count, instead of trapping.
    @Test func tokenCountsTooLargeToAddressAreRefused() throws {
        var t = TinyGraph()
        let x = t.input("x", [.tokens, .fixed(1 << 40)])
        t.output("y", try t.op(.sigmoid, [x]))
        #expect(try Schedule.memoryPlan(t.graph, tokens: 2).unsharedBytes == 2 * 2 * (1 << 40) * 4)
        for tokens in [1 << 21, 1 << 30, Int.max] {
            #expect(throws: Schedule.ArenaTooLarge.self) { try Schedule.memoryPlan(t.graph, tokens: tokens) }
        }
        // Two buffers that each fit but together do not.
        let half = Addressable.maxElements / 2 + 1
        var u = TinyGraph()
        let v = u.input("x", [.tokens, .fixed(half)])
        u.output("y", try u.op(.neg, [v]))
        #expect(throws: Schedule.ArenaTooLarge.self) { try Schedule.memoryPlan(u.graph, tokens: 1) }
        #expect(String(describing: Schedule.ArenaTooLarge(tokens: 7)) == "7 tokens need more bytes of buffers than moec can address")
    }

    /// The checked sizes are the sizes the kernels use.
    @Test func checkedSizesMatchTheKernels() throws {
        for m in [1, 5, 6, 7, 100] {
            for k in [1, 3, 64] { #expect(try ByteCount.packedOperand(m: m, k: k) == Kernels.packedOperandBytes(m: m, k: k)) }
        }
        #expect(throws: ByteCount.Overflow.self) { try ByteCount.packedOperand(m: 1, k: Int.max / 8) }
        #expect(try GroupTable.bytes(groups: 80) == (80 * GroupTable.fields + 1 + 2 * 65) * 8)
    }

    /// The schedule's plan on every graph: values live from their step (inputs from the start)
    /// to their last reader (outputs to the end), scratch during its step; no two overlap.
    @Test(arguments: SmallParams.graphFiles)
    func scheduleMemoryPlans(_ file: String) throws {
        let g = try RandomCheckpoint.compile(graphPath: RepoPaths.graphs + "/" + file, overrides: try SmallParams.overrides(for: file))
        var last = Array(g.nodes.indices)
        for (i, n) in g.nodes.enumerated() { for o in n.operands { last[o.index] = max(last[o.index], i) } }
        for o in g.outputs { last[o.value.index] = g.nodes.count }
        for tokens in [1, 7, 64, 300] {
            let plan = try Schedule.memoryPlan(g, tokens: tokens)
            // (name, offset, bytes, first, last) for every buffer, sized independently.
            var buffers: [(String, Int, Int, Int, Int)] = []
            for (i, n) in g.nodes.enumerated() where n.op != .weight && n.op != .constant {
                let bytes: Int
                switch n.type {
                case .tensor(let tt): bytes = tt.elementCount(tokens: tokens) * 4
                case .routing(let r): bytes = tokens * r.slots * 8
                }
                let offset = try #require(plan.valueOffsets[i], "node \(i) (\(n.op)) has no place in the arena")
                buffers.append(("%\(i) \(n.op)", offset, bytes, n.op == .input ? 0 : i, last[i]))
                let scratch = try Schedule.scratchBytes(n, g, tokens: tokens)
                #expect(plan.scratchOffsets[i].count == scratch.count)
                for (k, (o, b)) in zip(plan.scratchOffsets[i], scratch).enumerated() {
                    buffers.append(("%\(i) \(n.op) scratch \(k)", o, b, i, i))
                }
            }
            for a in buffers {
                #expect(a.1 + a.2 <= plan.layout.totalBytes, "\(file) T=\(tokens): \(a.0) ends past the arena")
            }
            for (i, a) in buffers.enumerated() {
                for b in buffers[(i + 1)...] where a.3 <= b.4 && b.3 <= a.4 && a.2 > 0 && b.2 > 0 {
                    #expect(
                        !(a.1 < b.1 + b.2 && b.1 < a.1 + a.2),
                        "\(file) T=\(tokens): \(a.0) [\(a.1), \(a.1 + a.2)) and \(b.0) [\(b.1), \(b.1 + b.2)) are live together and overlap")
                }
            }
            #expect(plan.layout.totalBytes >= plan.layout.peakLiveBytes)
            #expect(plan.layout.totalBytes <= plan.unsharedBytes)
        }
    }
}
