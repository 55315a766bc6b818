import Foundation
import MoETestSupport
import Testing

/// `moec run --placement`: the experts run by a placement (or the naive static split), with the
/// same outputs as the plain run; wrong placements are refused before any work.
@Suite struct RunByPlacementTests {
    func run(_ extra: [String], in dir: TemporaryDirectory) throws -> Moec.Result {
        try Moec.run(
            [
                "run", Files.mixtralGraph, "--model", Files.example, "--input", "x=" + Files.example + "/x.npy",
                "--output", "y=y.npy", "--check", "y=" + Files.example + "/y_transformers.npy"
            ] + extra, in: dir.path)
    }

    @Test func placedRunsMatchTheReference() throws {
        let dir = TemporaryDirectory()
        try Files.write(#"{"workers": 2, "experts": 8, "phy2log": [[0, 1, 2, 3, 0, 4, 5, 6, 7, 1]]}"#, to: dir.file("p.json"))
        for extra in [
            ["--placement", "static", "--threads", "2"], ["--placement", "static", "--threads", "4", "--llep", "1.1"],
            ["--placement", "p.json"], ["--placement", "p.json", "--llep", "1.0"]
        ] {
            let r = try run(extra, in: dir)
            expectSuccess(r)
            #expect(r.stderr.contains("check y: max |Δ| / max |ref| =") && r.stderr.contains(" ok "), "\(extra)\n\(r)")
        }
    }

    @Test func refusesPlacementsThatDoNotFit() throws {
        let dir = TemporaryDirectory()
        try Files.write(#"{"workers": 2, "experts": 6, "phy2log": [[0, 1, 2, 3, 4, 5]]}"#, to: dir.file("six.json"))
        expectFailure(try run(["--placement", "six.json"], in: dir), ["--placement: the placement places 6 experts per layer but moe block"])
        expectFailure(try run(["--placement", "static", "--threads", "3"], in: dir), ["8 experts, which 3 workers cannot share equally"])
        expectFailure(try run(["--placement", "static"], in: dir), status: 2, ["--placement static needs --threads W"])
        expectFailure(try run(["--llep", "1.1"], in: dir), status: 2, ["--llep applies to --placement"])
        expectFailure(try run(["--placement", "missing.json"], in: dir), ["missing.json"])
        #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
    }

    /// A plan compiled without token permutation or pre-packing has no packed experts kernel to
    /// run by a placement: refused with the reason, before any work; with both, it runs.
    @Test func placementNeedsThePackedKernelPasses() throws {
        let dir = TemporaryDirectory()
        for pass in ["token-permutation", "expert-weight-prepacking"] {
            expectSuccess(
                try Moec.run(
                    [
                        "compile", Files.mixtralGraph, "--model", Files.example, "--disable-pass", pass,
                        "-o", "p.json"
                    ], in: dir.path))
            let r = try Moec.run(
                [
                    "run", "p.json", "--input", "x=" + Files.example + "/x.npy", "--output", "y=y.npy",
                    "--placement", "static", "--threads", "2"
                ], in: dir.path)
            expectFailure(
                r,
                [
                    "--placement runs the experts on moec's packed experts kernel, which moe block",
                    "it needs the token-permutation and expert-weight-prepacking passes"
                ])
            #expect(!FileManager.default.fileExists(atPath: dir.file("y.npy")))
        }
        expectSuccess(
            try Moec.run(
                [
                    "compile", Files.mixtralGraph, "--model", Files.example, "--disable-pass", "combine-fusion",
                    "-o", "p.json"
                ], in: dir.path))
        expectSuccess(
            try Moec.run(
                [
                    "run", "p.json", "--input", "x=" + Files.example + "/x.npy", "--output", "y=y.npy",
                    "--placement", "static", "--threads", "2", "--check", "y=" + Files.example + "/y_transformers.npy"
                ],
                in: dir.path))
    }
}
