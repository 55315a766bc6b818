import MoEBasics
import Testing

@testable import MoEPlacement

@Suite struct LoadStatisticsTests {
    func parse(_ text: String) throws(PlacementError) -> LoadStatistics {
        try LoadStatistics(json: PlacementError.parseJSON(text, file: "stats.json"), file: "stats.json")
    }

    func issues(_ text: String) -> [String] {
        do {
            _ = try parse(text)
            return []
        } catch {
            if case .invalidLoads(_, let issues) = error { return issues.map(\.description) }
            return ["\(error)"]
        }
    }

    @Test func readsLoadsAndIgnoresOtherKeys() throws {
        let s = try parse(#"{"imbalance": [1.5], "expert_load": [[3, 0, 2.5], [1, 1, 1]], "entropy": 0.3, "expert_bytes": 4096}"#)
        #expect(s.layers == [[3, 0, 2.5], [1, 1, 1]])
        #expect(s.expertCount == 3 && s.layerCount == 2)
        #expect(s.expertBytes == 4096)
        #expect(try LoadStatistics(json: s.json) == s)
    }

    /// Fixed experts (zero, copy, constant) hold no weights and run where their tokens are: they
    /// are planned with a load of 0.
    @Test func fixedExpertsArePlannedWithoutLoad() throws {
        let s = try parse(#"{"expert_load": [[3, 4, 9, 2], [1, 1, 1, 5]], "fixed_experts": [[2, 3], [3]]}"#)
        #expect(s.layers == [[3, 4, 0, 0], [1, 1, 1, 0]])
        #expect(s.fixedExperts == [[2, 3], [3]])
        #expect(try LoadStatistics(json: s.json) == s)
        #expect(issues(#"{"expert_load": [[3, 4]], "fixed_experts": [[2]]}"#).count == 1)
        #expect(issues(#"{"expert_load": [[3, 4]], "fixed_experts": [1]}"#).count == 1)
    }

    @Test func namesLayerAndExpertOfBadLoads() {
        #expect(
            issues(#"{"expert_load": [[1, -2, 3], [1, "x", null]]}"#) == [
                "layer 0, expert 1: load -2 is negative",
                "layer 1, expert 1: expected a non-negative number, found a string",
                "layer 1, expert 2: expected a non-negative number, found null"
            ])
    }

    @Test func rejectsRaggedAndEmptyShapes() {
        #expect(issues(#"{"expert_load": [[1, 2, 3], [1, 2], [4, 5, 6]]}"#) == ["layer 1: has 2 experts but layer 0 has 3"])
        #expect(issues(#"{"expert_load": []}"#) == ["\"expert_load\" has no layers"])
        #expect(issues(#"{"expert_load": [[1], []]}"#) == ["layer 1: has no experts"])
        #expect(issues(#"{"expert_load": [5, [1]]}"#) == ["layer 0: expected an array of per-expert loads, found a number"])
        #expect(issues(#"{"loads": [[1]]}"#).first?.contains("missing key \"expert_load\"") == true)
        #expect(issues(#"[[1, 2]]"#).first?.contains("expected a JSON object") == true)
        #expect(issues(#"{"expert_load": [[1]], "expert_bytes": -4}"#) == ["\"expert_bytes\" must be a positive integer, found -4"])
    }

    @Test func rejectsNaNAndInfinityFromCode() {
        #expect(throws: PlacementError.self) { try LoadStatistics(layers: [[1, .nan]]) }
        do {
            _ = try LoadStatistics(layers: [[1, .infinity, .nan]])
        } catch {
            #expect("\(error)".contains("layer 0, expert 1: load is infinite"))
            #expect("\(error)".contains("layer 0, expert 2: load is NaN"))
        }
    }

    @Test func reportsJSONSyntaxErrorsWithPosition() {
        #expect(throws: PlacementError.invalidJSON(file: "stats.json", line: 1, column: 21, message: "expected ',' or ']' in array")) {
            try parse(#"{"expert_load": [[1 2]]}"#)
        }
    }

    @Test func printsAtMostTwentyIssues() {
        let row = "[" + Array(repeating: "-1", count: 30).joined(separator: ",") + "]"
        let text = "\(PlacementError.invalidLoads(file: "f", issues: (0..<30).map { .init(layer: 0, expert: $0, "bad") }))"
        #expect(text.contains("… and 10 more"))
        #expect(issues(#"{"expert_load": [\#(row)]}"#).count == 30)
    }
}
