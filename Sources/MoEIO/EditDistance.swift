/// Closest-name suggestions for "did you mean" notes.
public enum NameSuggestions {
    /// Levenshtein distance over UTF-8 bytes (insertions, deletions and substitutions cost 1).
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            current[0] = i
            for j in 1...y.count {
                let substitution = previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
            }
            swap(&previous, &current)
        }
        return previous[y.count]
    }

    /// Up to `limit` candidates closest to `name`, nearest first (ties by name), leaving out those
    /// so far away that they are no help: more than half of `name`'s length, and at least 2.
    public static func closest(to name: String, in candidates: some Sequence<String>, limit: Int = 3) -> [String] {
        let length = name.utf8.count
        let threshold = max(2, length / 2)
        var scored: [(distance: Int, name: String)] = []
        for c in candidates {
            // The length difference is a lower bound on the distance: skip the quadratic work.
            if abs(c.utf8.count - length) > threshold { continue }
            let d = editDistance(name, c)
            if d <= threshold { scored.append((d, c)) }
        }
        scored.sort { ($0.distance, $0.name) < ($1.distance, $1.name) }
        return scored.prefix(max(0, limit)).map(\.name)
    }
}
