import Foundation
import MoEBasics
import MoEPlacement
import Testing

@Suite struct SimulationTests {
    static let cluster = ClusterSpec(
        devices: 32, nodes: 4, flopsPerSecond: 4e14, intraNodeBandwidth: 4.5e11, interNodeBandwidth: 5e10,
        tokensPerDevice: 4096, topK: 8, experts: 64, layers: 2, physicalSlots: 96,
        expertFlopsPerToken: 1.3e8, expertBytes: 4.4e7, tokenBytes: 14336, zipf: 1.2, seed: 3)

    @Test func ranksPoliciesAndConservesTokens() throws {
        let report = try ClusterSimulator.simulate(Self.cluster)
        #expect(report.policies.map(\.name) == ["static", "eplb", "moec"])
        let (st, eplb, moec) = (report.policies[0], report.policies[1], report.policies[2])
        #expect(moec.imbalance <= eplb.imbalance + 1e-12)
        #expect(eplb.imbalance < st.imbalance)
        #expect(moec.stepTime < st.stepTime)
        #expect(moec.computeTime <= eplb.computeTime * (1 + 1e-12))
        for p in report.policies {
            #expect(p.stepTime > 0 && p.stepTime <= p.computeTime + p.allToAllTime + 1e-12)
            // Every device sends 7/8 of its pairs off-device... at most all of them.
            let pairs = 32.0 * 4096 * 8 * 2
            #expect(p.intraNodeBytes + p.interNodeBytes <= pairs * 2 * 14336 * (1 + 1e-9))
        }
        #expect(report.table.contains("moec"))
        #expect(report.json.array?.count == 3)
    }

    @Test func readsClusterFilesAndRejectsBadOnes() throws {
        let good =
            #"{"devices": 16, "nodes": 2, "flops_per_second": 1e14, "intra_node_bandwidth": 1e11, "inter_node_bandwidth": 1e10, "tokens_per_device": 1024, "top_k": 2, "experts": 32, "expert_flops_per_token": 1e8, "expert_bytes": 1e7, "token_bytes": 4096, "memory_bytes": 1e8}"#
        let spec = try ClusterSpec(json: JSON.parse(good))
        #expect(spec.slots == 32 && spec.nodes == 2 && spec.topK == 2)
        let report = try ClusterSimulator.simulate(spec)
        // 2 slots × 1 layer × 1e7 bytes fit in 1e8.
        #expect(report.policies.allSatisfy { $0.fitsMemory })
        for (text, message) in [
            (#"{"devices": 16}"#, "missing \"flops_per_second\""),
            (good.replacingOccurrences(of: "\"nodes\": 2", with: "\"nodes\": 3"), "\"nodes\" (3) does not divide \"devices\" (16)"),
            (good.replacingOccurrences(of: "\"top_k\": 2", with: "\"top_k\": 2, \"gpus\": 1"), "unknown key \"gpus\""),
            (good.replacingOccurrences(of: "\"experts\": 32", with: "\"experts\": 32, \"physical_slots\": 40"), "\"physical_slots\" (40) is not a multiple of \"devices\" (16)"),
            (good.replacingOccurrences(of: "\"token_bytes\": 4096", with: "\"token_bytes\": -1"), "\"token_bytes\" must be a positive number")
        ] {
            #expect(throws: PlacementError.invalidCluster(file: "<cluster>", message: message)) { try ClusterSpec(json: JSON.parse(text)) }
        }
    }

    @Test func usesGivenLoadsScaledToTheBatch() throws {
        var c = Self.cluster
        c.layers = 1
        let loads = try LoadStatistics(layers: [Array(repeating: 1.0, count: 64)])
        let report = try ClusterSimulator.simulate(c, loads: loads)
        // Uniform loads over 64 experts on 32 devices with 96 slots: static is perfectly balanced.
        #expect(abs(report.policies[0].imbalance - 1) < 1e-12)
        #expect(throws: PlacementError.self) { try ClusterSimulator.simulate(c, loads: try LoadStatistics(layers: [[1, 2]])) }
    }

    /// Thousands of devices, hundreds of experts: seconds, not minutes (the figure in the hand-off
    /// note comes from a release build; debug builds are about ten times slower).
    @Test func scalesToThousandsOfDevices() throws {
        let big = ClusterSpec(
            devices: 2048, nodes: 256, flopsPerSecond: 4e14, intraNodeBandwidth: 4.5e11, interNodeBandwidth: 5e10,
            tokensPerDevice: 8192, topK: 8, experts: 256, layers: 2, physicalSlots: 4096,
            expertFlopsPerToken: 1.3e8, expertBytes: 4.4e7, tokenBytes: 14336, zipf: 1.0, seed: 7)
        let start = Date()
        let report = try ClusterSimulator.simulate(big)
        let seconds = Date().timeIntervalSince(start)
        print("simulate 2048 devices × 256 experts × 2 layers:", String(format: "%.2f s", seconds))
        print(report.table)
        #expect(report.policies[2].imbalance <= report.policies[1].imbalance + 1e-12)
        #expect(seconds < 120)
    }

    /// Larger clusters, run only with `MOEC_SCALE_PROBE=1` (best in a release build:
    /// `MOEC_SCALE_PROBE=1 swift test -c release -Xswiftc -enable-testing --filter scaleProbe`).
    @Test func scaleProbe() throws {
        guard ProcessInfo.processInfo.environment["MOEC_SCALE_PROBE"] == "1" else { return }
        for (d, n, e, p, layers) in [(1024, 128, 256, 2048, 8), (4096, 512, 256, 8192, 4), (8192, 1024, 512, 16384, 2), (2048, 256, 384, 4096, 8)] {
            let c = ClusterSpec(
                devices: d, nodes: n, flopsPerSecond: 4e14, intraNodeBandwidth: 4.5e11, interNodeBandwidth: 5e10,
                tokensPerDevice: 8192, topK: 8, experts: e, layers: layers, physicalSlots: p,
                expertFlopsPerToken: 1.3e8, expertBytes: 4.4e7, tokenBytes: 14336, zipf: 1.0, seed: 7)
            let start = Date()
            let report = try ClusterSimulator.simulate(c)
            print(String(format: "simulated in %.2f s", Date().timeIntervalSince(start)))
            print(report.table)
        }
    }
}
