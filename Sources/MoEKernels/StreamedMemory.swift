import Foundation

/// Memory for the packed weights the kernels stream (`PackedWeight`'s own storage), in
/// transparent huge pages on Linux (`MADV_HUGEPAGE`), so that streaming a weight walks one TLB
/// entry per 2 MiB instead of one per 4 KiB.
///
/// A weight of 2 MiB or more gets its own 2 MiB-aligned block. Smaller ones (an OLMoE expert's
/// matrices in int4 are 0.3–0.7 MB, in bf16 1–2 MB) are carved, 64-byte aligned, one after the
/// other from shared slabs of `slabBytes`, aligned to their size: had each its own block of 4 KiB
/// pages, a token's walk over dozens of small experts would miss the TLB every 4 KiB. A slab is
/// freed when its last weight is (unless it is the one being carved), so unloading a plan gives
/// its memory back. A slab's untouched tail takes no memory.
enum StreamedMemory {
    static let hugePage = 2 << 20
    static let slabBytes = 16 << 20

    private static let lock = NSLock()
    // Guarded by `lock`: the slab being carved and how far, and the live weights of every slab.
    nonisolated(unsafe) private static var carving: (base: UnsafeMutableRawPointer, used: Int)?
    nonisolated(unsafe) private static var liveWeights: [UInt: Int] = [:]

    /// `bytes` of storage, 64-byte aligned; give it back with `free(_:bytes:)` and the same size.
    static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let size = (max(bytes, 64) + 63) / 64 * 64
        if size >= hugePage { return block(size, alignment: hugePage) }
        lock.lock()
        defer { lock.unlock() }
        if carving == nil || carving!.used + size > slabBytes {
            if let old = carving, liveWeights[UInt(bitPattern: old.base)] == 0 {
                liveWeights[UInt(bitPattern: old.base)] = nil
                Foundation.free(old.base)
            }
            let base = block(slabBytes, alignment: slabBytes)
            carving = (base, 0)
            liveWeights[UInt(bitPattern: base)] = 0
        }
        let p = carving!.base + carving!.used
        carving!.used += size
        liveWeights[UInt(bitPattern: carving!.base), default: 0] += 1
        return p
    }

    static func free(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let size = (max(bytes, 64) + 63) / 64 * 64
        if size >= hugePage {
            Foundation.free(p)
            return
        }
        let base = UInt(bitPattern: p) & ~UInt(slabBytes - 1)
        lock.lock()
        defer { lock.unlock() }
        guard let live = liveWeights[base] else { preconditionFailure("freeing streamed memory that was not allocated here") }
        liveWeights[base] = live - 1
        if live == 1, UInt(bitPattern: carving?.base) != base {
            liveWeights[base] = nil
            Foundation.free(UnsafeMutableRawPointer(bitPattern: base))
        }
    }

    /// A block of `bytes` aligned to `alignment`, marked for huge pages.
    private static func block(_ bytes: Int, alignment: Int) -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer?
        let status = posix_memalign(&p, alignment, bytes)
        guard status == 0, let p else { fatalError("out of memory: cannot allocate \(bytes) bytes for packed weights") }
        #if os(Linux)
            _ = madvise(p, bytes / hugePage * hugePage, Int32(MADV_HUGEPAGE))
        #endif
        return p
    }
}
