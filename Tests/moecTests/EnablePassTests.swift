import Foundation
import MoETestSupport
import Testing

/// `moec compile --enable-pass`: optional passes, shown in `--emit ir-opt`.
@Suite struct EnablePassTests {
    @Test func routerScoreExposureShowsInIROpt() throws {
        let plain = try Moec.run(["compile", "graphs/mixtral.moe", "--emit", "ir-opt"], in: RepoPaths.root)
        expectSuccess(plain)
        #expect(!plain.stdout.contains("#router-scores"), "\(plain)")
        let r = try Moec.run(["compile", "graphs/mixtral.moe", "--enable-pass", "router-score-exposure", "--emit", "ir-opt"], in: RepoPaths.root)
        expectSuccess(r)
        #expect(r.stdout.contains("output y = %y\n  output #router-scores-0.0 = %"), "\(r)")
    }

    @Test func unknownOptionalPassIsAUsageError() throws {
        let r = try Moec.run(["compile", "graphs/mixtral.moe", "--enable-pass", "memory-planning", "--emit", "ir-opt"], in: RepoPaths.root)
        expectFailure(r, status: 2, ["unknown optional pass 'memory-planning' for --enable-pass (optional passes: router-score-exposure)"])
    }
}
