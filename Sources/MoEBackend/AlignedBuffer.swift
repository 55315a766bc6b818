import Foundation

/// Owned memory aligned to a cache line (64 bytes), for weights and arenas. Never reallocates:
/// pointers into it stay valid for its lifetime.
public final class AlignedBuffer: @unchecked Sendable {
    public let byteCount: Int
    public let raw: UnsafeMutableRawPointer

    /// Whether `raw` is an anonymous mapping of its own (`untouchedZeros`), given back with munmap.
    private let mapped: Bool

    public init(bytes: Int, zeroed: Bool = true) {
        byteCount = max(bytes, 64)
        mapped = false
        var p: UnsafeMutableRawPointer?
        let status = posix_memalign(&p, 64, byteCount)
        guard status == 0, let p else {
            fatalError("out of memory: cannot allocate \(byteCount) bytes")
        }
        raw = p
        if zeroed { memset(raw, 0, byteCount) }
    }

    /// Zeros that cost no memory until written: an anonymous mapping of its own (page-aligned),
    /// whose pages the system provides, zeroed, when first touched. For an MPI rank's arena, of
    /// which it touches only its own experts' rows.
    public init(untouchedZeros bytes: Int) {
        byteCount = max(bytes, 64)
        guard let p = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("out of memory: cannot map \(byteCount) bytes")
        }
        raw = p
        mapped = true
    }

    public convenience init(floats: Int, zeroed: Bool = true) {
        self.init(bytes: floats * 4, zeroed: zeroed)
    }

    public var floats: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    public var floatCount: Int { byteCount / 4 }

    /// Gives the whole pages inside floats `range` back to the system (they read as zeros
    /// afterwards). For a buffer whose contents were copied elsewhere (weights after packing), so
    /// that the two copies never coexist in memory in full.
    public func releasePages(floats range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: raw) + range.lowerBound * 4 + page - 1) / page * page
        let end = (Int(bitPattern: raw) + range.upperBound * 4) / page * page
        guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(p, end - start, Int32(MADV_DONTNEED))
    }

    deinit {
        if mapped { munmap(raw, byteCount) } else { free(raw) }
    }
}
