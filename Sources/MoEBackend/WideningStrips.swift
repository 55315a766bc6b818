import Foundation
import MoEKernels

/// The scratch strips a bf16 GEMM widens weight blocks into (`Kernels.gemmPacked`'s
/// `bf16Strip`), one per thread that may run such a GEMM at once, allocated when a schedule
/// step is built so that a run allocates nothing.
///
/// A thread whose index in its parallel region is known uses `strip(lane)` directly; code that
/// runs on whichever thread picks it up (a placement's groups, an MPI rank's groups) claims a
/// free lane for the duration (`claim` / `release`, under a mutex: a few tens of nanoseconds
/// per expert group). No lanes (`floatsPerLane` 0) when every matrix is f32.
final class WideningStrips: @unchecked Sendable {
    let lanes: Int
    let floatsPerLane: Int
    private let storage: AlignedBuffer?
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private let inUse: UnsafeMutablePointer<Bool>

    init(lanes: Int, floatsPerLane: Int) {
        self.lanes = floatsPerLane > 0 ? max(lanes, 1) : 0
        self.floatsPerLane = floatsPerLane
        // Each strip on its own cache lines (the buffer is 64-byte aligned; lanes are rounded
        // up to 16 floats).
        let stride = (floatsPerLane + 15) / 16 * 16
        storage = self.lanes > 0 ? AlignedBuffer(floats: self.lanes * stride, zeroed: false) : nil
        inUse = .allocate(capacity: max(self.lanes, 1))
        inUse.initialize(repeating: false, count: max(self.lanes, 1))
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        inUse.deallocate()
    }

    /// Lane `lane`'s strip; nil without bf16 matrices.
    func strip(_ lane: Int) -> UnsafeMutablePointer<Float>? {
        guard let storage else { return nil }
        precondition(lane >= 0 && lane < lanes, "widening strip lane \(lane) of \(lanes)")
        return storage.floats + lane * ((floatsPerLane + 15) / 16 * 16)
    }

    /// A lane no other thread holds, or nil (no strips, or all held: the GEMM then takes a
    /// temporary buffer, which is correct, only slower).
    func claim() -> Int? {
        guard lanes > 0 else { return nil }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        for l in 0..<lanes where !inUse[l] {
            inUse[l] = true
            return l
        }
        return nil
    }

    func release(_ lane: Int?) {
        guard let lane else { return }
        pthread_mutex_lock(mutex)
        inUse[lane] = false
        pthread_mutex_unlock(mutex)
    }
}
