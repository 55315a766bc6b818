import MoEBasics
import Testing

@Suite struct NameSuggestionsTests {
    @Test func editDistanceCountsInsertionsDeletionsSubstitutionsAndSwaps() {
        #expect(NameSuggestions.editDistance("", "abc") == 3)
        #expect(NameSuggestions.editDistance("abc", "") == 3)
        #expect(NameSuggestions.editDistance("hidden", "hidden") == 0)
        #expect(NameSuggestions.editDistance("hiden", "hidden") == 1) // insertion
        #expect(NameSuggestions.editDistance("gates", "gate") == 1) // deletion
        #expect(NameSuggestions.editDistance("vocab_sise", "vocab_size") == 1) // substitution
        #expect(NameSuggestions.editDistance("bnech", "bench") == 1) // swap of neighbours
        #expect(NameSuggestions.editDistance("kitten", "sitting") == 3)
        // Optimal string alignment edits no substring twice: "ca" → "abc" is 3, not 2.
        #expect(NameSuggestions.editDistance("ca", "abc") == 3)
        #expect(NameSuggestions.editDistance("é", "e") == 1) // characters, not bytes
    }

    @Test func suggestsWithinOneEditPerThreeCharacters() {
        #expect(NameSuggestions.maximumDistance(for: "x") == 1)
        #expect(NameSuggestions.maximumDistance(for: "gate") == 1)
        #expect(NameSuggestions.maximumDistance(for: "hidden") == 2)
        #expect(NameSuggestions.best(for: "hiden", in: ["experts", "hidden"]) == "hidden")
        #expect(NameSuggestions.best(for: "hdn", in: ["hidden"]) == nil) // 3 edits for 3 characters
        #expect(NameSuggestions.best(for: "frobnicate", in: ["compile", "run", "bench", "profile", "place"]) == nil)
        #expect(NameSuggestions.best(for: "--modle", in: ["--model", "--output", "-o"]) == "--model")
    }

    @Test func closestIsNearestFirstThenByNameWithoutTheNameItself() {
        let names = ["experts.2.w1", "experts.1.w1", "experts.0.w1", "experts.10.w1", "gate"]
        #expect(NameSuggestions.closest(to: "experts.3.w1", in: names) == ["experts.0.w1", "experts.1.w1", "experts.2.w1"])
        #expect(NameSuggestions.closest(to: "experts.3.w1", in: names, limit: 1) == ["experts.0.w1"])
        #expect(NameSuggestions.closest(to: "experts.1.w1", in: names, limit: 5) == ["experts.0.w1", "experts.10.w1", "experts.2.w1"])
        #expect(NameSuggestions.closest(to: "gate", in: names, limit: 0) == [])
        #expect(NameSuggestions.best(for: "gate", in: ["gate"]) == nil)
    }
}
