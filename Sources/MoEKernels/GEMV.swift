import MoEKernelsAVX2

extension Kernels {
    /// `y[N] (+)= W[N, K] · x[K]` on an unpacked row-major weight (row stride `ldw`, default K):
    /// one token through a weight that was never packed (e.g. before packing, or a weight used
    /// once). `threads` > 1 splits the rows of W. For repeated use, a `PackedWeight` and `gemm`
    /// with m = 1 stream the same bytes as fast (measured with moec-kernel-bench).
    public static func gemv(
        _ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
        n: Int, k: Int, ldw: Int? = nil, accumulate: Bool = false, threads: Int = 1,
        isa: ISA = .best
    ) {
        let ldw = ldw ?? k
        precondition(ldw >= k, "gemv: ldw \(ldw) < k \(k)")
        let wp = SendablePointer(w), xp = SendablePointer(x), yp = SendablePointer(y)
        let useThreads = 2 * n * k < 2_000_000 ? 1 : threads
        let avx2 = isa.runsAVX2
        // Chunks of 4 rows keep the four-row blocks aligned whatever the thread count.
        Parallel.forEachChunk(count: (n + 3) / 4, threads: useThreads) { quads in
            let rows = (quads.lowerBound * 4)..<min(n, quads.upperBound * 4)
            if avx2 {
                avx2GemvRows(
                    w: wp.pointer, ldw: ldw, k: k, x: xp.pointer, y: yp.pointer,
                    rowBegin: rows.lowerBound, rowEnd: rows.upperBound, accumulate: accumulate)
            } else {
                for j in rows {
                    let r = wp.pointer + j * ldw
                    var s: Float = 0
                    for kk in 0..<k { s += r[kk] * xp.pointer[kk] }
                    yp.pointer[j] = accumulate ? yp.pointer[j] + s : s
                }
            }
        }
    }
}
