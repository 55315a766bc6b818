import Foundation
import MoEKernels

/// Which library multiplies matrices: BLAS loaded at run time, or moec's own packed kernels.
public enum MatMulBackend: Sendable, CustomStringConvertible {
    case blas(BLAS)
    case native

    /// moec's own kernels on CPUs with AVX2 + FMA, unless `MOEC_BLAS` names a library; otherwise
    /// BLAS if one was found, else the native kernels.
    ///
    /// Why not BLAS first: on the MoE layers moec exists for, the packed kernels, which stream
    /// weights packed once at load time and cut the experts between threads by a cost model, were
    /// as fast as OpenBLAS or faster at every batch size measured (the figures are in the README's
    /// Performance section). BLAS remains the choice where moec has no fast kernels (no AVX2, e.g.
    /// Arm with Accelerate) and on request: `MOEC_BLAS=libopenblas.so.0`.
    public static var automatic: MatMulBackend {
        let requested = ProcessInfo.processInfo.environment["MOEC_BLAS"].map { !$0.isEmpty && $0.lowercased() != "none" } ?? false
        if ISA.best != .portable && !requested { return .native }
        if let b = BLAS.shared { return .blas(b) }
        return .native
    }

    public var description: String {
        switch self {
        case .blas(let b): return "BLAS \((b.path as NSString).lastPathComponent)"
        case .native: return "moec kernels (\(ISA.best))"
        }
    }

    public var isNative: Bool { if case .native = self { return true }; return false }
}

/// A weight matrix W `[n, k]` (Hugging Face layout: y = x·Wᵀ) as the backend wants it: the
/// row-major original for BLAS, panels packed once for the native kernels.
public struct LinearWeight: @unchecked Sendable {
    public let n: Int
    public let k: Int
    /// Row-major `[n, k]`, or nil when only the packed form is kept.
    public let raw: UnsafePointer<Float>?
    public let packed: PackedWeight?

    public init(n: Int, k: Int, raw: UnsafePointer<Float>?, packed: PackedWeight?) {
        precondition(raw != nil || packed != nil)
        self.n = n
        self.k = k
        self.raw = raw
        self.packed = packed
    }
}

extension MatMulBackend {
    /// `y[m, n] (+)= x[m, k] · Wᵀ`, rows of x `ldx` apart and rows of y `ldy` apart. The native
    /// kernels pack x into `packBuffer` (`Kernels.packedOperandBytes(m:k:)`) when given, so that
    /// a schedule's steps allocate nothing; otherwise into a buffer allocated per call. With a
    /// `job` (made once per step) its parallel regions allocate nothing either.
    @inline(__always)
    func linear(
        _ x: UnsafePointer<Float>, m: Int, ldx: Int, _ w: LinearWeight,
        _ y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool, threads: Int,
        packBuffer: UnsafeMutablePointer<Float>? = nil, job: GemmJob? = nil
    ) {
        guard m > 0 else { return }
        if case .blas(let blas) = self, let raw = w.raw {
            blas.sgemm(
                transA: false, transB: true, m: m, n: w.n, k: w.k, alpha: 1,
                a: x, lda: ldx, b: raw, ldb: w.k, beta: accumulate ? 1 : 0, c: y, ldc: ldy)
        } else if let packed = w.packed {
            Kernels.gemm(x, packed, y, m: m, ldx: ldx, ldy: ldy, accumulate: accumulate, threads: threads, packBuffer: packBuffer, job: job)
        } else {
            // A computed matrix (`linear(x, w * 2)`) is never packed: one GEMV per row of x,
            // allocation-free but slower than a packed GEMM for many rows.
            for r in 0..<m {
                Kernels.gemv(w.raw!, x + r * ldx, y + r * ldy, n: w.n, k: w.k, accumulate: accumulate, threads: threads)
            }
        }
    }
}
