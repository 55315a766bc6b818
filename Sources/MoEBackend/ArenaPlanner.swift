/// Places buffers with known lifetimes into one arena so that buffers alive at the same time
/// never overlap, and the arena stays small.
///
/// 1. Each buffer is live from the step that writes it to the last step that reads it
///    (inclusive).
/// 2. Buffers are placed largest first (ties: earliest first); each goes to the lowest
///    64-byte-aligned offset where it overlaps no already-placed buffer whose lifetime
///    intersects its own.
/// 3. The arena's size is the highest end offset.
///
/// Greedy-by-size is the usual heuristic for this (NP-hard) packing; it is within a few percent
/// of the peak of simultaneously live bytes on dataflow graphs like ours.
public enum ArenaPlanner {
    public struct Request: Sendable {
        public var bytes: Int
        public var firstStep: Int
        public var lastStep: Int
        public init(bytes: Int, firstStep: Int, lastStep: Int) {
            self.bytes = bytes
            self.firstStep = firstStep
            self.lastStep = lastStep
        }
    }

    public struct Layout: Sendable {
        public var offsets: [Int]
        public var totalBytes: Int
        /// The largest number of bytes live at one step: a lower bound for `totalBytes`.
        public var peakLiveBytes: Int
    }

    public static let alignment = 64

    public static func plan(_ requests: [Request]) -> Layout {
        func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
        let order = requests.indices.sorted {
            let a = requests[$0], b = requests[$1]
            return a.bytes != b.bytes ? a.bytes > b.bytes : (a.firstStep, $0) < (b.firstStep, $1)
        }
        var offsets = [Int](repeating: 0, count: requests.count)
        var placed: [Int] = []
        var total = 0
        for i in order {
            let r = requests[i]
            let size = aligned(r.bytes)
            // Intervals of conflicting buffers, sorted by offset.
            let conflicts =
                placed
                .filter { requests[$0].firstStep <= r.lastStep && r.firstStep <= requests[$0].lastStep }
                .map { (offsets[$0], offsets[$0] + aligned(requests[$0].bytes)) }
                .sorted { $0.0 < $1.0 }
            var candidate = 0
            for (start, end) in conflicts {
                if candidate + size <= start { break }
                candidate = max(candidate, end)
            }
            offsets[i] = candidate
            placed.append(i)
            total = max(total, candidate + size)
        }
        let steps = (requests.map(\.lastStep).max() ?? -1) + 1
        var live = [Int](repeating: 0, count: max(steps, 0))
        for r in requests where r.firstStep <= r.lastStep {
            for s in r.firstStep...r.lastStep { live[s] += aligned(r.bytes) }
        }
        return Layout(offsets: offsets, totalBytes: total, peakLiveBytes: live.max() ?? 0)
    }
}
