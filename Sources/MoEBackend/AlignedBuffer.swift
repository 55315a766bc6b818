import Foundation

/// Owned memory aligned to a cache line (64 bytes), for weights and arenas. Never reallocates:
/// pointers into it stay valid for its lifetime.
public final class AlignedBuffer: @unchecked Sendable {
    public let byteCount: Int
    public let raw: UnsafeMutableRawPointer

    public init(bytes: Int, zeroed: Bool = true) {
        byteCount = max(bytes, 64)
        var p: UnsafeMutableRawPointer?
        let status = posix_memalign(&p, 64, byteCount)
        guard status == 0, let p else {
            fatalError("out of memory: cannot allocate \(byteCount) bytes")
        }
        raw = p
        if zeroed { memset(raw, 0, byteCount) }
    }

    public convenience init(floats: Int, zeroed: Bool = true) {
        self.init(bytes: floats * 4, zeroed: zeroed)
    }

    public var floats: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    public var floatCount: Int { byteCount / 4 }

    deinit { free(raw) }
}
