import Foundation
import MoETestSupport
import Testing

/// `moec place` through the binary: plans from a load file, and every kind of bad input ends
/// with one clear message, a non-zero exit status and no file written.
@Suite struct PlaceTests {
    static let skewed = #"{"expert_load": [[900, 10, 20, 30, 40, 50, 60, 70], [5, 5, 5, 5, 5, 5, 5, 400]], "expert_bytes": 1000}"#

    /// A folder holding `stats.json` with `text`.
    static func folder(_ text: String = skewed) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        try Files.write(text, to: dir.file("stats.json"))
        return dir
    }

    @Test func writesThePlacementAtomicallyAndSummarises() throws {
        let dir = try Self.folder()
        let r = try Moec.run(["place", "--load", "stats.json", "--workers", "4", "--replicas", "12", "-o", "placement.json"], in: dir.path)
        expectSuccess(r)
        #expect(r.stdout.hasPrefix("2 layers, 4 workers × 3 slots: mean max/mean 3.40 static → "), "\(r)")
        #expect(r.stderr == "wrote placement.json\n", "\(r)")
        expectFolder(dir.path, holds: ["stats.json", "placement.json"], after: r)
        let placement = try JSONSerialization.jsonObject(with: Files.read(dir.file("placement.json"))) as! [String: Any]
        let phy2log = try #require(placement["phy2log"] as? [[Int]])
        #expect(phy2log.count == 2 && phy2log.allSatisfy { $0.count == 12 })
        // Every expert has a slot in every layer.
        #expect(phy2log.allSatisfy { Set($0) == Set(0..<8) })
    }

    @Test func explainsAndPrintsJSONWithoutOutputFile() throws {
        let dir = try Self.folder()
        let explained = try Moec.run(["place", "--load", "stats.json", "--workers", "4", "--replicas", "12", "--explain"], in: dir.path)
        expectSuccess(explained)
        #expect(explained.stdout.contains("layer 0 (moec"), "\(explained)")
        #expect(explained.stdout.contains("worker loads, before (static: expert e on worker e·W/E) and after:"), "\(explained)")
        let printed = try Moec.run(["place", "--load", "stats.json", "--workers", "4", "--replicas", "12"], in: dir.path)
        expectSuccess(printed)
        let json = try JSONSerialization.jsonObject(with: Data(printed.stdout.utf8)) as? [String: Any]
        #expect(json?["phy2log"] != nil, "\(printed)")
        expectFolder(dir.path, holds: ["stats.json"])
    }

    @Test func replansAgainstThePreviousPlacementWithoutMoves() throws {
        let dir = try Self.folder()
        expectSuccess(try Moec.run(["place", "--load", "stats.json", "--workers", "4", "--replicas", "12", "-o", "p.json"], in: dir.path))
        let again = try Moec.run(["place", "--load", "stats.json", "--workers", "4", "--replicas", "12", "--previous", "p.json", "-o", "p2.json"], in: dir.path)
        expectSuccess(again)
        #expect(again.stdout.contains(", 0 expert weights moved"), "\(again)")
    }

    /// Bad load files and options that contradict them: exit 1, a message naming the problem,
    /// nothing written.
    @Test(arguments: [
        (
            #"{"expert_load": [[1, 2, 3, 4], [1, 2, 3]]}"#, ["--workers", "2"],
            ["invalid load statistics in 'stats.json':", "layer 1: has 3 experts but layer 0 has 4"]
        ),
        (#"{"expert_load": [[1, -2, 3, 4]]}"#, ["--workers", "2"], ["layer 0, expert 1: load -2 is negative"]),
        (#"{"expert_load": [[1, NaN, 3, 4]]}"#, ["--workers", "2"], ["stats.json:1:22: NaN is not a number JSON allows"]),
        (#"{"expert_load": [[1, 2, "three", 4]]}"#, ["--workers", "2"], ["layer 0, expert 2: expected a non-negative number, found a string"]),
        (#"{"expert_load": []}"#, ["--workers", "2"], ["\"expert_load\" has no layers"]),
        (#"{"loads": [[1, 2]]}"#, ["--workers", "2"], ["missing key \"expert_load\""]),
        (#"{"expert_load": [[1, 2, 3, 4]]"#, ["--workers", "2"], ["stats.json:1:"]),
        (
            #"{"expert_load": [[1, 2, 3, 4]]}"#, ["--workers", "4", "--replicas", "10"],
            ["--replicas 10 is not a multiple of --workers 4: every worker must hold the same number of slots (try 8 or 12)"]
        ),
        (
            #"{"expert_load": [[1, 2, 3, 4, 5, 6, 7, 8]]}"#, ["--workers", "2", "--replicas", "6"],
            ["--replicas 6 is less than the number of experts (8): every expert needs at least one slot"]
        ),
        (
            #"{"expert_load": [[1, 2, 3, 4, 5, 6, 7, 8]]}"#, ["--workers", "3"],
            ["3 workers cannot share 8 experts equally without replicas; pass --replicas P"]
        ),
        (
            #"{"expert_load": [[1, 2, 3, 4, 5, 6]]}"#, ["--workers", "2", "--groups", "4"],
            ["--groups 4 does not divide the number of experts (6)"]
        ),
        (
            #"{"expert_load": [[1, 2, 3, 4]]}"#, ["--workers", "2", "--memory-per-worker", "1G"],
            ["--memory-per-worker: needs the size of one expert"]
        )
    ])
    func badLoadsAndOptionsFailClearly(_ loads: String, _ options: [String], _ messages: [String]) throws {
        let dir = try Self.folder(loads)
        let r = try Moec.run(["place", "--load", "stats.json", "-o", "placement.json"] + options, in: dir.path)
        expectFailure(r, status: 1, ["error: "] + messages)
        #expect(r.stdout.isEmpty, "\(r)")
        expectFolder(dir.path, holds: ["stats.json"], after: r)
    }

    @Test func previousPlacementForOtherExperts() throws {
        let dir = try Self.folder()
        expectSuccess(try Moec.run(["place", "--load", "stats.json", "--workers", "4", "-o", "p.json"], in: dir.path))
        try Files.write(#"{"expert_load": [[1, 2, 3, 4], [4, 3, 2, 1]]}"#, to: dir.file("four.json"))
        let r = try Moec.run(["place", "--load", "four.json", "--workers", "4", "--previous", "p.json", "-o", "new.json"], in: dir.path)
        expectFailure(r, ["--previous placement does not match: it places 8 experts per layer but the load statistics have 4"])
        expectFolder(dir.path, holds: ["stats.json", "p.json", "four.json"], after: r)
    }

    @Test func missingFilesAndFolders() throws {
        let dir = try Self.folder()
        expectFailure(
            try Moec.run(["place", "--load", "nope.json", "--workers", "2"], in: dir.path),
            ["error: cannot read 'nope.json': no such file"])
        expectFailure(
            try Moec.run(["place", "--load", "stats.json", "--workers", "4", "-o", "no/such/p.json"], in: dir.path),
            ["cannot write 'no/such/p.json': folder 'no/such' does not exist"])
        expectFolder(dir.path, holds: ["stats.json"])
    }

    /// Argument mistakes are usage errors: exit 2 and a pointer to --help, before any file is read.
    @Test(arguments: [
        (["--workers", "2"], "--load: is required (the load statistics file)"),
        (["--load", "stats.json"], "--workers: is required (the number of workers)"),
        (["--load", "stats.json", "--workers", "two"], "--workers: expected an integer, found 'two'"),
        (["--load", "stats.json", "--workers", "0"], "--workers expects a positive number of workers, got '0'"),
        (["--load", "stats.json", "--workers", "2", "--replicas", "-4"], "--replicas expects a positive number of replicas, got '-4'"),
        (["--load", "stats.json", "--workrs", "2"], "unknown option '--workrs' for 'moec place' (did you mean '--workers'?)"),
        (["--load", "stats.json", "--workers", "2", "--policy", "best"], "--policy: expected one of moec, eplb, found 'best'"),
        (["--load", "stats.json", "--workers", "2", "--workers", "3"], "option '--workers' is given more than once"),
        (["--load", "stats.json", "--workers", "2", "extra"], "unexpected argument 'extra'"),
        (["--load", "stats.json", "--workers", "2", "-o", "stats.json"], "-o stats.json would overwrite the input file stats.json")
    ])
    func usageMistakes(_ arguments: [String], _ message: String) throws {
        let dir = try Self.folder()
        let r = try Moec.run(["place"] + arguments, in: dir.path)
        expectFailure(r, status: 2, [message, "run 'moec place --help' for usage"])
        expectFolder(dir.path, holds: ["stats.json"], after: r)
        #expect(try Files.read(dir.file("stats.json")) == Data(Self.skewed.utf8))
    }
}
