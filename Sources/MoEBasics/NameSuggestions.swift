/// "Did you mean" suggestions: the one place that decides which names are close to a misspelt one,
/// for every layer (unknown names and functions in a `.moe` file, config keys, checkpoint tensors,
/// command-line commands and options).
///
/// The distance is the optimal string alignment distance over characters: inserting, deleting or
/// replacing a character, or swapping two neighbours, each count 1, so 'bnech' is one edit from
/// 'bench'. A candidate is suggested when it is at most `max(1, n / 3)` edits from the typed name of
/// n characters: about one slip per three characters, and at least one. Further away a guess
/// misleads more often than it helps, and a short name would match almost anything. The typed name
/// itself is never suggested; ties go to the name that sorts first.
public enum NameSuggestions {
    /// The optimal string alignment distance between `a` and `b` (insertions, deletions,
    /// substitutions and swaps of adjacent characters cost 1; no substring is edited twice).
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        // Three rows of the dynamic-programming table: i − 2 (for swaps), i − 1 and i.
        var beforePrevious = [Int](repeating: 0, count: y.count + 1)
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            current[0] = i
            for j in 1...y.count {
                var d = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
                if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] { d = min(d, beforePrevious[j - 2] + 1) }
                current[j] = d
            }
            (beforePrevious, previous, current) = (previous, current, beforePrevious)
        }
        return previous[y.count]
    }

    /// The farthest a suggestion for `name` may be: `max(1, n / 3)` edits for n characters.
    public static func maximumDistance(for name: String) -> Int { max(1, name.count / 3) }

    /// Up to `limit` candidates within `maximumDistance(for: name)` of `name`, nearest first (ties
    /// by name), without `name` itself.
    public static func closest(to name: String, in candidates: some Sequence<String>, limit: Int = 3) -> [String] {
        let length = name.count
        let threshold = maximumDistance(for: name)
        var scored: [(distance: Int, name: String)] = []
        for c in candidates where c != name {
            // The length difference is a lower bound on the distance: skip the quadratic work.
            if abs(c.count - length) > threshold { continue }
            let d = editDistance(name, c)
            if d <= threshold { scored.append((d, c)) }
        }
        scored.sort { ($0.distance, $0.name) < ($1.distance, $1.name) }
        return scored.prefix(max(0, limit)).map(\.name)
    }

    /// The one candidate to suggest for `name`, if any is close enough.
    public static func best(for name: String, in candidates: some Sequence<String>) -> String? {
        closest(to: name, in: candidates, limit: 1).first
    }
}
