/// A heap key: smaller value first, then lower index, so that ties always break towards the lower
/// index and results are deterministic.
struct Ranked: Comparable {
    var value: Double
    var index: Int
    init(_ value: Double, _ index: Int) {
        self.value = value
        self.index = index
    }
    static func < (a: Ranked, b: Ranked) -> Bool { a.value < b.value || (a.value == b.value && a.index < b.index) }
}

/// A binary min-heap.
struct MinHeap<Element: Comparable> {
    private(set) var items: [Element] = []

    init(_ items: [Element] = []) {
        self.items = items
        if items.count > 1 {
            for i in stride(from: items.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        }
    }

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var top: Element? { items.first }

    mutating func push(_ x: Element) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i] < items[parent] else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    @discardableResult
    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let x = items.removeLast()
        if !items.isEmpty { siftDown(0) }
        return x
    }

    /// Replaces the smallest element (cheaper than pop + push).
    mutating func replaceTop(_ x: Element) {
        items[0] = x
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = items.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n, items[l] < items[m] { m = l }
            if r < n, items[r] < items[m] { m = r }
            if m == i { return }
            items.swapAt(i, m)
            i = m
        }
    }
}
