import Dispatch
import Foundation

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
        let ran = WorkerPool.shared.run(parts: parts) { p in body(chunk(p, of: parts, count: count)) }
        if !ran {
            // The pool is running another region (a nested one, or a concurrent run): Dispatch.
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                body(chunk(p, of: parts, count: count))
            }
        }
    }

    /// `forEachChunk` with a job made once (see `ChunkJob`): the same chunks, and the region
    /// allocates nothing.
    public static func forEachChunk(count: Int, threads: Int, job: ChunkJob) {
        let parts = max(1, min(threads, count))
        if parts == 1 {
            if count > 0 { job.body(0..<count) }
            return
        }
        job.count = count
        job.parts = parts
        if !WorkerPool.shared.run(parts: parts, job: job) {
            DispatchQueue.concurrentPerform(iterations: parts) { p in job.run(part: p) }
        }
    }

    /// The `p`-th of `parts` contiguous near-equal chunks of `0..<count`.
    public static func chunk(_ p: Int, of parts: Int, count: Int) -> Range<Int> {
        let base = count / parts, extra = count % parts
        let start = p * base + min(p, extra)
        return start..<(start + base + (p < extra ? 1 : 0))
    }
}

/// A parallel region's body made once (per schedule step) and run many times: the workers get a
/// reference to it, where the closure `forEachChunk(count:threads:_:)` takes has to be boxed for
/// them on every call. Not for two regions at once (`count` and `parts` are per run).
public final class ChunkJob: @unchecked Sendable {
    let body: @Sendable (Range<Int>) -> Void
    var count = 0, parts = 1

    public init(_ body: @escaping @Sendable (Range<Int>) -> Void) { self.body = body }

    func run(part p: Int) { body(Parallel.chunk(p, of: parts, count: count)) }
}

/// Threads kept parked between parallel regions, so that a region costs a few lock round trips
/// and, run with a `ChunkJob`, no heap allocation: the executor's steady state allocates nothing.
/// (Dispatch's `concurrentPerform` allocates about four blocks per call, and a closure handed to
/// `run(parts:_:)` is boxed once per call; measured with `moec-alloc-check`.)
///
/// One region at a time: `run` returns false when the pool is busy (a region started inside a
/// region, or two runs on different threads), and the caller falls back to Dispatch. Parts are
/// claimed one by one under the lock by the caller and the workers; the caller returns when every
/// part has finished. Workers are started on first need (at most `maxWorkers`) and never exit.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()
    static let maxWorkers = 63

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private var generation = 0
    private var job: ((Int) -> Void)?
    private var jobObject: ChunkJob?
    private var parts = 0, nextPart = 0, remaining = 0
    private var busy = false
    private var workers = 0

    private init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(finished, nil)
    }

    /// Runs `body(p)` for every p in `0..<parts`, on the calling thread and up to `parts − 1`
    /// workers; false (nothing run) when the pool is busy.
    func run(parts: Int, _ body: (Int) -> Void) -> Bool {
        withoutActuallyEscaping(body) { job in
            region(parts: parts, closure: job, object: nil)
        }
    }

    /// `run` for a job object: no closure is boxed, so the region allocates nothing.
    func run(parts: Int, job: ChunkJob) -> Bool {
        region(parts: parts, closure: nil, object: job)
    }

    private func region(parts: Int, closure: ((Int) -> Void)?, object: ChunkJob?) -> Bool {
        pthread_mutex_lock(mutex)
        if busy {
            pthread_mutex_unlock(mutex)
            return false
        }
        busy = true
        while workers < min(parts - 1, Self.maxWorkers) {
            workers += 1
            let t = Thread { [unowned self] in self.workerLoop() }
            t.name = "moec-worker"
            t.start()
        }
        job = closure
        jobObject = object
        self.parts = parts
        nextPart = 0
        remaining = parts
        generation &+= 1
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
        work()
        pthread_mutex_lock(mutex)
        while remaining > 0 { pthread_cond_wait(finished, mutex) }
        job = nil
        jobObject = nil
        busy = false
        pthread_mutex_unlock(mutex)
        return true
    }

    /// Claims and runs parts of the current region until none is left.
    private func work() {
        while true {
            pthread_mutex_lock(mutex)
            let p = nextPart
            guard p < parts else {
                pthread_mutex_unlock(mutex)
                return
            }
            nextPart += 1
            pthread_mutex_unlock(mutex)
            runPart(p)
            pthread_mutex_lock(mutex)
            remaining -= 1
            if remaining == 0 { pthread_cond_signal(finished) }
            pthread_mutex_unlock(mutex)
        }
    }

    /// Calls the job in its own frame, so this thread's reference to it is gone before the part
    /// counts as finished (`withoutActuallyEscaping` checks that nothing kept it).
    @inline(never)
    private func runPart(_ p: Int) {
        pthread_mutex_lock(mutex)
        let job = self.job, object = jobObject
        pthread_mutex_unlock(mutex)
        if let object { object.run(part: p) } else { job!(p) }
    }

    private func workerLoop() {
        var seen = 0
        while true {
            pthread_mutex_lock(mutex)
            while generation == seen { pthread_cond_wait(wake, mutex) }
            seen = generation
            pthread_mutex_unlock(mutex)
            work()
        }
    }
}
