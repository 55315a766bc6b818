/// The assignment problem: a one-to-one matching of rows to columns of a square matrix with the
/// largest total score. Kuhn–Munkres with potentials (Jonker–Volgenant style), O(n³); ties resolve
/// the same way on every run.
enum Hungarian {
    /// `score[i][j]`: the value of matching row `i` with column `j`. Returns the column of each row.
    static func maximise(_ score: [[Double]]) -> [Int] {
        let n = score.count
        if n == 0 { return [] }
        let top = score.flatMap { $0 }.max() ?? 0
        // Minimise cost = top − score, 1-based arrays as in the classic formulation.
        var u = Array(repeating: 0.0, count: n + 1), v = Array(repeating: 0.0, count: n + 1)
        var p = Array(repeating: 0, count: n + 1), way = Array(repeating: 0, count: n + 1)
        for i in 1...n {
            p[0] = i
            var j0 = 0
            var minv = Array(repeating: Double.infinity, count: n + 1)
            var used = Array(repeating: false, count: n + 1)
            repeat {
                used[j0] = true
                let i0 = p[j0]
                var delta = Double.infinity, j1 = 0
                for j in 1...n where !used[j] {
                    let cur = (top - score[i0 - 1][j - 1]) - u[i0] - v[j]
                    if cur < minv[j] { minv[j] = cur; way[j] = j0 }
                    if minv[j] < delta { delta = minv[j]; j1 = j }
                }
                for j in 0...n {
                    if used[j] { u[p[j]] += delta; v[j] -= delta } else { minv[j] -= delta }
                }
                j0 = j1
            } while p[j0] != 0
            repeat {
                let j1 = way[j0]
                p[j0] = p[j1]
                j0 = j1
            } while j0 != 0
        }
        var column = Array(repeating: 0, count: n)
        for j in 1...n where p[j] > 0 { column[p[j] - 1] = j - 1 }
        return column
    }
}
