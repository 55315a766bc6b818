import Dispatch

/// A raw pointer that may cross into concurrently running closures.
///
/// `@unchecked Sendable` because the compiler cannot see that the threads touch disjoint parts:
/// every user in this module hands each thread its own output range (and only reads shared
/// inputs), which is what makes the access race-free.
public struct SendablePointer<Pointee>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Pointee>
    public init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
    public init(_ pointer: UnsafePointer<Pointee>) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}

public enum Parallel {
    /// Splits `0..<count` into at most `threads` contiguous chunks of near-equal size and runs
    /// `body(chunkRange)` for each, concurrently when `threads > 1`. The chunking depends only on
    /// `count` and `threads`; a body that writes only its own range gives results independent of
    /// scheduling.
    public static func forEachChunk(count: Int, threads: Int, _ body: @Sendable (Range<Int>) -> Void) {
        let parts = max(1, min(threads, count))
        if parts == 1 {
            if count > 0 { body(0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            body(chunk(p, of: parts, count: count))
        }
    }

    /// The `p`-th of `parts` contiguous near-equal chunks of `0..<count`.
    public static func chunk(_ p: Int, of parts: Int, count: Int) -> Range<Int> {
        let base = count / parts, extra = count % parts
        let start = p * base + min(p, extra)
        return start..<(start + base + (p < extra ? 1 : 0))
    }
}
