extension Kernels {
    /// BLAS-style row-major `C = alpha·op(A)·op(B) + beta·C` without BLAS, with `op(A)` `[M, K]`,
    /// `op(B)` `[K, N]`: element (i, k) of op(A) is `a[i*lda + k]`, or `a[k*lda + i]` when
    /// `transA`; element (k, j) of op(B) is `b[k*ldb + j]`, or `b[j*ldb + k]` when `transB`.
    /// `beta == 0` overwrites C without reading it (as BLAS does).
    ///
    /// Both operands are packed on every call (B into a temporary `PackedWeight`), then the packed
    /// kernels run; for a constant B, pack it once with `PackedWeight` and call `gemm` instead.
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = 1, isa: ISA = .best
    ) {
        guard m > 0, n > 0 else { return }
        precondition(ldc >= n, "sgemm: ldc \(ldc) < n \(n)")
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 {
                row.update(repeating: 0, count: n)
            } else if beta != 1 {
                for j in 0..<n { row[j] *= beta }
            }
        }
        guard k > 0, alpha != 0 else { return }
        let packedB = PackedWeight(n: n, k: k)
        packedB.fill(from: b, strideN: transB ? ldb : 1, strideK: transB ? 1 : ldb, threads: threads)
        let packedA = PackedA(m: m, k: k)
        defer { packedA.data.deallocate() }
        packedA.fill(from: a, strideM: transA ? 1 : lda, strideK: transA ? lda : 1, alpha: alpha, threads: threads)
        runPacked(packedA, packedB, c, ldy: ldc, accumulate: true, threads: threads, isa: isa)
    }
}
