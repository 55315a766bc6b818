import Foundation
import Testing

@testable import MoEPlacement

/// The acceptance measurement of the placement issue, on seeded load matrices the planner was not
/// tuned on (`PlacementBenchmark.cases`; the seed differs from every seed used while developing):
/// (a) moec's max/mean worker load is never worse than EPLB's, on every layer of every case;
/// (b) on average its distance to the lower bound is at least 30 % smaller than EPLB's: asserted as
///     the mean over cases of the per-case ratio, and as the ratio of mean distances over the cases
///     where EPLB is not provably optimal. Over all cases the ratio of mean distances is printed but
///     not asserted: cases without redundant slots where EPLB already meets a slot-aware lower bound
///     (no planner can do better there) carry most of EPLB's total distance (see `PlacementBenchmark`);
/// plus validity (every expert ≥ 1 replica, every worker exactly P/W slots, reported loads equal the
/// placement's) and determinism. The table is printed; `MOEC_PLACEMENT_REPORT=FILE` also writes it.
@Suite struct AcceptanceTests {
    @Test func moecBeatsEPLBOnUnseenLoadMatrices() throws {
        let cases = PlacementBenchmark.cases(count: 48, layers: 3)
        let rows = parallelMap(cases.count) { PlacementBenchmark.run(cases[$0]) }
        for r in rows {
            #expect(r.worseLayers == 0, "moec worse than EPLB on \(r.case)")
            #expect(r.violations.isEmpty, "\(r.case): \(r.violations)")
        }
        let improvable = PlacementBenchmark.summary(rows.filter { !$0.eplbOptimal })
        #expect(improvable.ratio <= 0.7, "mean distance to the lower bound: moec \(improvable.moec), EPLB \(improvable.eplb)")
        #expect(PlacementBenchmark.meanCaseRatio(rows) <= 0.7)
        // Where EPLB is optimal, moec is too (it is never worse, and nothing is better).
        for r in rows where r.eplbOptimal { #expect(abs(r.moecDistance - r.eplbDistance) < 1e-12) }
        let table = PlacementBenchmark.table(rows)
        print(table)
        if let path = ProcessInfo.processInfo.environment["MOEC_PLACEMENT_REPORT"] {
            try table.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    @Test func neverWorseWithTopology() throws {
        let cases = PlacementBenchmark.cases(count: 12, layers: 2, seed: 77).enumerated().map { i, c in
            var c = c
            c.nodes = c.workers >= 8 ? 4 : 2
            c.groups = [1, 4, 8][i % 3]
            return c
        }
        let rows = parallelMap(cases.count) { PlacementBenchmark.run(cases[$0]) }
        for r in rows {
            #expect(r.worseLayers == 0, "moec worse than EPLB on \(r.case)")
            #expect(r.violations.isEmpty, "\(r.case): \(r.violations)")
        }
    }

    @Test func sameInputSameOutput() throws {
        let c = PlacementBenchmark.cases(count: 1, layers: 2, seed: 5)[0]
        let stats = PlacementBenchmark.loads(c)
        let options = PlacementOptions(workers: c.workers, physicalSlots: c.slots, nodes: 2, groups: 4)
        #expect(try PlacementPlanner.plan(stats, options).json.compact == PlacementPlanner.plan(stats, options).json.compact)
    }
}
