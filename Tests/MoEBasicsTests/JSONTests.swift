import Testing

@testable import MoEBasics

@Suite struct JSONTests {
    @Test func parsesNestedValuesInOrder() throws {
        let j = try JSON.parse(#"{"b": [1, 2.5, -3e2], "a": {"x": null, "y": true}, "s": "h\u00e9\n"}"#)
        #expect(j.object?.keys == ["b", "a", "s"])
        #expect(j["b"]?[2]?.double == -300)
        #expect(j["b"]?[0]?.int == 1)
        #expect(j["b"]?[1]?.int == nil)
        #expect(j["a"]?["y"]?.bool == true)
        #expect(j["a"]?["x"]?.isNull == true)
        #expect(j["s"]?.string == "hé\n")
    }

    @Test func roundTripsThroughCompactAndPretty() throws {
        let j = try JSON.parse(#"{"k": [1, {"z": "q\"uote"}, [], {}], "n": 0.1}"#)
        #expect(try JSON.parse(j.compact) == j)
        #expect(try JSON.parse(j.pretty) == j)
        #expect(JSON.format(0.1) == "0.1")
        #expect(JSON.format(3) == "3")
    }

    @Test func surrogatePairs() throws {
        #expect(try JSON.parse(#""\ud83d\ude00""#).string == "😀")
    }

    @Test(arguments: [
        (#"{"a": 1,}"#, 1, 9),
        ("{\n  \"a\" 1}", 2, 7),
        (#"[1, 2"#, 1, 6),
        (#"{"a": 01}"#, 1, 7),
        (#""abc"#, 1, 1),
        (#"{"a": 1, "a": 2}"#, 1, 10),
        ("tru", 1, 4),
        ("[1] x", 1, 5),
        ("\"\\q\"", 1, 2),
        ("", 1, 1)
    ])
    func reportsErrorsWithPosition(text: String, line: Int, column: Int) {
        do {
            _ = try JSON.parse(text)
            Issue.record("expected an error for \(text)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.column == column, "\(error)")
        }
    }

    @Test func rejectsDeepNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONError.self) { try JSON.parse(deep) }
        // 100,000 levels, objects and arrays alternating: the 257th level is the 129th object.
        let mixed = String(repeating: #"{"a":["#, count: 50_000)
        #expect { try JSON.parse(mixed) } throws: { error in
            let e = error as! JSONError
            return e.message == "arrays and objects nested deeper than 256 levels" && e.offset == 128 * 6 && e.line == 1
        }
    }

    @Test func valuesAtTheDepthLimitParsePrintAndCompare() throws {
        let text = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        let v = try JSON.parse(text)
        #expect(v.compact == text)
        #expect(try JSON.parse(v.pretty) == v)
        #expect(Set([v, v]).count == 1)
        #expect(throws: JSONError.self) { try JSON.parse("[" + text + "]") }
    }
}
