import Foundation

/// A weight matrix W `[N, K]` (row-major, Hugging Face `nn.Linear` layout: N outputs, K inputs)
/// copied once into the panel layout the GEMM micro-kernels stream.
///
/// Layout: `panels = ⌈N/16⌉` panels of 16 output columns; panel `p` is `K` steps of 16 floats,
/// `data[p*K*16 + k*16 + j] = W[p*16 + j, k]`, with zeros for columns past N. The buffer is
/// 64-byte aligned (2 MiB from 2 MiB up) and owned by this object, except for one made over
/// caller storage (`init(n:k:storage:)`, a per-call scratch that `repack` refills). The same
/// layout serves the AVX2 and the portable kernels, and any K-blocking is done by the kernels (a
/// K-block of a panel is contiguous).
///
/// Not changed after `init` except by `repack`, which its one user calls between products on the
/// same thread, so sharing it between the threads of a product is safe (`@unchecked Sendable`
/// because the storage is a raw pointer).
public final class PackedWeight: @unchecked Sendable {
    /// Columns per panel.
    public static let panelWidth = 16

    /// Output features (rows of W).
    public let n: Int
    /// Input features (columns of W).
    public let k: Int
    /// Number of 16-column panels.
    public let panels: Int
    let data: UnsafeMutablePointer<Float>
    /// Whether `data` was allocated here (and is freed with this object).
    private let ownsData: Bool

    /// Packs W `[n, k]` row-major. `threads` > 1 packs panels concurrently.
    public convenience init(weight: UnsafePointer<Float>, n: Int, k: Int, threads: Int = 1) {
        self.init(n: n, k: k)
        fill(from: weight, strideN: k, strideK: 1, threads: threads)
    }

    /// Packs W `[n, k]` row-major from an array.
    public convenience init(weight: [Float], n: Int, k: Int, threads: Int = 1) {
        precondition(weight.count == n * k, "PackedWeight: \(weight.count) values for [\(n), \(k)]")
        self.init(n: n, k: k)
        weight.withUnsafeBufferPointer { fill(from: $0.baseAddress!, strideN: k, strideK: 1, threads: threads) }
    }

    /// Allocates the packed storage (uninitialised until `fill`).
    init(n: Int, k: Int) {
        precondition(n > 0 && k > 0, "PackedWeight: empty shape [\(n), \(k)]")
        self.n = n
        self.k = k
        panels = (n + Self.panelWidth - 1) / Self.panelWidth
        let count = panels * k * Self.panelWidth
        data = Self.allocateStreamed(bytes: count * 4).bindMemory(to: Float.self, capacity: count)
        ownsData = true
    }

    static let hugePage = 2 << 20

    /// Storage the kernels stream from: 64-byte aligned; from 2 MiB up, aligned to 2 MiB and
    /// marked for transparent huge pages on Linux (`MADV_HUGEPAGE`), so streaming a weight walks
    /// one TLB entry per 2 MiB instead of one per 4 KiB. Freed with `free`.
    static func allocateStreamed(bytes: Int) -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer?
        let big = bytes >= hugePage
        let status = posix_memalign(&p, big ? hugePage : 64, max(bytes, 64))
        guard status == 0, let p else { fatalError("out of memory: cannot allocate \(bytes) bytes for a packed weight") }
        #if os(Linux)
            if big { _ = madvise(p, bytes / hugePage * hugePage, Int32(MADV_HUGEPAGE)) }
        #endif
        return p
    }

    /// A packed matrix in storage the caller owns (`bytes(n:k:)` bytes, kept alive as long as
    /// this object is used), filled by `repack`: for weights packed per call into a scratch
    /// buffer rather than once at load time.
    public init(n: Int, k: Int, storage: UnsafeMutableRawPointer) {
        precondition(n > 0 && k > 0, "PackedWeight: empty shape [\(n), \(k)]")
        self.n = n
        self.k = k
        panels = (n + Self.panelWidth - 1) / Self.panelWidth
        data = storage.bindMemory(to: Float.self, capacity: panels * k * Self.panelWidth)
        ownsData = false
    }

    /// Bytes of packed storage for W `[n, k]`.
    public static func bytes(n: Int, k: Int) -> Int { (n + panelWidth - 1) / panelWidth * panelWidth * k * 4 }

    /// Packs W `[n, k]` row-major (this object's shape) into this object's storage, replacing
    /// what it held. `threads` > 1 packs panels concurrently.
    public func repack(from weight: UnsafePointer<Float>, threads: Int = 1) {
        fill(from: weight, strideN: k, strideK: 1, threads: threads)
    }

    /// Packs any strided matrix: element (n, k) is `source[n*strideN + k*strideK]`.
    func fill(from source: UnsafePointer<Float>, strideN: Int, strideK: Int, threads: Int) {
        let src = SendablePointer(source), dst = SendablePointer(data)
        let n = n, k = k
        Parallel.forEachChunk(count: panels, threads: threads) { range in
            packPanels(
                src.pointer, n: n, k: k, strideN: strideN, strideK: strideK,
                panels: range, into: dst.pointer)
        }
    }

    deinit { if ownsData { free(data) } }

    /// Bytes of packed storage (the weight bytes a full GEMM streams).
    public var byteCount: Int { panels * k * Self.panelWidth * 4 }

    /// The weight back as `[n, k]` row-major (for tests and debugging).
    public func unpacked() -> [Float] {
        var w = [Float](repeating: 0, count: n * k)
        for p in 0..<panels {
            for kk in 0..<k {
                for j in 0..<Self.panelWidth where p * Self.panelWidth + j < n {
                    w[(p * Self.panelWidth + j) * k + kk] = data[(p * k + kk) * Self.panelWidth + j]
                }
            }
        }
        return w
    }
}

/// Writes the given panels of the strided matrix into the packed layout (see `PackedWeight`).
func packPanels(
    _ src: UnsafePointer<Float>, n: Int, k: Int, strideN: Int, strideK: Int,
    panels: Range<Int>, into dst: UnsafeMutablePointer<Float>
) {
    let w = PackedWeight.panelWidth
    for p in panels {
        let out = dst + p * k * w
        let cols = min(w, n - p * w)
        if strideK == 1 {
            // Rows of W are contiguous: walk k in blocks so the 16 source rows stay in cache.
            var k0 = 0
            while k0 < k {
                let kEnd = min(k, k0 + 64)
                for j in 0..<w {
                    if j < cols {
                        let row = src + (p * w + j) * strideN
                        for kk in k0..<kEnd { out[kk * w + j] = row[kk] }
                    } else {
                        for kk in k0..<kEnd { out[kk * w + j] = 0 }
                    }
                }
                k0 = kEnd
            }
        } else {
            for kk in 0..<k {
                for j in 0..<w {
                    out[kk * w + j] = j < cols ? src[(p * w + j) * strideN + kk * strideK] : 0
                }
            }
        }
    }
}
