import Foundation
import MoEIO
import MoETestSupport
import Testing

/// Bad input that still crashes or gives a message without a location, in code outside the
/// command-line tool. Each test states the behaviour wanted; enable it once the bug is fixed.
@Suite struct KnownBugTests {
    @Test(.disabled("bug: Int overflow trap in WeightInfo.elementCount (MoEIR/Graph.swift) via PlanPrinter; ASTToIR accepts dims whose product overflows Int"))
    func hugeParamsDoNotCrashEmitPlan() throws {
        let r = try Moec.run(["compile", "graphs/mixtral.moe", "--set", "hidden=9223372036854775807", "--emit", "plan"], in: RepoPaths.root)
        expectFailure(r, ["graphs/mixtral.moe:", "error: "])
        let r2 = try Moec.run(["compile", "graphs/mixtral.moe", "--set", "hidden=4294967296", "--set", "ffn=4294967296", "--emit", "plan"], in: RepoPaths.root)
        expectFailure(r2, ["graphs/mixtral.moe:", "error: "])
    }

}
