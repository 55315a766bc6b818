import Foundation

/// A CBLAS library opened with `dlopen` at run time (never linked at build time).
///
/// Search order: Linux `libopenblas.so.0`, `libopenblas.so`, `libblas.so.3`, `libblas.so`;
/// macOS the Accelerate framework. The environment variable `MOEC_BLAS` changes it:
/// `MOEC_BLAS=none` means no BLAS, `MOEC_BLAS=/path/to/lib.so` means exactly that file (an error
/// when it cannot be opened or has no `cblas_sgemm`).
///
/// `@unchecked Sendable`: every stored property is immutable after loading, and the CBLAS
/// functions are safe to call from several threads at once.
public final class BLAS: @unchecked Sendable {
    public typealias SGEMM =
        @convention(c) (
            Int32, Int32, Int32, Int32, Int32, Int32, Float,
            UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
            Float, UnsafeMutablePointer<Float>?, Int32
        ) -> Void
    public typealias SGEMV =
        @convention(c) (
            Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
            UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32
        ) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void
    typealias GetThreads = @convention(c) () -> Int32
    typealias GetConfig = @convention(c) () -> UnsafePointer<CChar>?

    /// CBLAS enumerations.
    public static let rowMajor: Int32 = 101
    public static let noTrans: Int32 = 111
    public static let trans: Int32 = 112

    /// The file that was opened (as given to `dlopen`).
    public let path: String
    /// `openblas_get_config()` when the library has it, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ...".
    public let config: String?
    private let handle: UnsafeMutableRawPointer
    private let sgemmFn: SGEMM
    private let sgemvFn: SGEMV?
    private let setThreadsFn: SetThreads?
    private let getThreadsFn: GetThreads?

    /// Libraries tried in order when `MOEC_BLAS` is not set.
    public static var defaultCandidates: [String] {
        #if os(macOS)
            return ["/System/Library/Frameworks/Accelerate.framework/Accelerate"]
        #else
            return ["libopenblas.so.0", "libopenblas.so", "libblas.so.3", "libblas.so"]
        #endif
    }

    /// The process-wide BLAS, loaded on first use according to `MOEC_BLAS`; nil when none was
    /// found, when `MOEC_BLAS=none`, or when loading failed (then `sharedError` says why).
    public static var shared: BLAS? { sharedResult.blas }
    /// Why `shared` is nil after an explicit `MOEC_BLAS` request failed (nil otherwise).
    public static var sharedError: String? { sharedResult.error }

    private static let sharedResult: (blas: BLAS?, error: String?) = {
        switch load(environment: ProcessInfo.processInfo.environment["MOEC_BLAS"]) {
        case .success(let blas): return (blas, nil)
        case .failure(let error): return (nil, error.description)
        }
    }()

    /// Loads a BLAS the way `MOEC_BLAS` (passed as `environment`) asks. `.success(nil)` means no
    /// BLAS, by request or because no candidate was found.
    public static func load(environment: String?) -> Result<BLAS?, BLASError> {
        if let request = environment, !request.isEmpty {
            if request.lowercased() == "none" { return .success(nil) }
            return open(request).map { Optional($0) }
        }
        for candidate in defaultCandidates {
            if case .success(let blas) = open(candidate) { return .success(blas) }
        }
        return .success(nil)
    }

    /// Opens one library file; fails when it cannot be opened or lacks `cblas_sgemm`.
    public static func open(_ path: String) -> Result<BLAS, BLASError> {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            return .failure(BLASError(path: path, message: "cannot be loaded: \(reason)"))
        }
        guard let sym = dlsym(handle, "cblas_sgemm") else {
            dlclose(handle)
            return .failure(BLASError(path: path, message: "has no cblas_sgemm symbol"))
        }
        return .success(BLAS(path: path, handle: handle, sgemm: unsafeBitCast(sym, to: SGEMM.self)))
    }

    private init(path: String, handle: UnsafeMutableRawPointer, sgemm: SGEMM) {
        self.path = path
        self.handle = handle
        sgemmFn = sgemm
        sgemvFn = dlsym(handle, "cblas_sgemv").map { unsafeBitCast($0, to: SGEMV.self) }
        setThreadsFn = dlsym(handle, "openblas_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) }
        getThreadsFn = dlsym(handle, "openblas_get_num_threads").map { unsafeBitCast($0, to: GetThreads.self) }
        let getConfig = dlsym(handle, "openblas_get_config").map { unsafeBitCast($0, to: GetConfig.self) }
        config = getConfig.flatMap { $0() }.map { String(cString: $0) }
    }

    // The handle is never closed: function pointers from it may be held anywhere.

    /// One line for logs: the path and the configuration string when known.
    public var summary: String { config.map { "\(path) (\($0))" } ?? path }

    /// True when the library can set its thread count (OpenBLAS).
    public var canSetThreads: Bool { setThreadsFn != nil }

    /// OpenBLAS's worker count, or nil for libraries without `openblas_get_num_threads`.
    public var threads: Int? { getThreadsFn.map { Int($0()) } }

    /// Sets OpenBLAS's worker count (no-op for other libraries). The count is process-wide: code
    /// that needs a particular count while it runs uses `withThreads`.
    ///
    /// Measured on the 2-core VM: once OpenBLAS has run threaded, its idle workers keep competing
    /// with moec's own threads, and moec's 2-thread skinny GEMMs in the same process lose up to a
    /// third of their bandwidth (M = 1–16, 3584→1024). An executor that mixes both should give
    /// BLAS one thread, or not load it (`MOEC_BLAS=none`), when moec's kernels run threaded.
    public func setThreads(_ n: Int) { setThreadsFn?(Int32(max(1, n))) }

    /// Runs `body` with OpenBLAS's worker count at `n`. The count is process-wide, so a gate
    /// shared by every `BLAS` object (two may be the same library) lets callers needing the same
    /// count run together and makes a caller needing another wait until they are done; callers
    /// already waiting go before newcomers, so neither side starves. The count stays `n` after.
    /// Libraries without a thread count (not OpenBLAS) just run `body`. Do not nest calls.
    public func withThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        guard canSetThreads else { return try body() }
        ThreadCountGate.shared.enter(max(1, n)) { if threads != $0 { setThreads($0) } }
        defer { ThreadCountGate.shared.leave() }
        return try body()
    }

    /// Row-major `C = alpha·op(A)·op(B) + beta·C`, with `op(A)` `[M, K]` and `op(B)` `[K, N]`.
    public func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        sgemmFn(
            Self.rowMajor, transA ? Self.trans : Self.noTrans, transB ? Self.trans : Self.noTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `y[M, N] (+)= x[M, K] · Wᵀ` with W `[N, K]` row-major (the unpacked weight).
    /// M = 1 goes to `cblas_sgemv` when present: some OpenBLAS versions (0.3.21 here) do not
    /// forward a one-row sgemm to GEMV and run it 5–10× slower.
    public func linear(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, accumulate: Bool = false
    ) {
        if m == 1, let sgemv = sgemvFn {
            sgemv(
                Self.rowMajor, Self.noTrans, Int32(n), Int32(k), 1, weight, Int32(k), x, 1,
                accumulate ? 1 : 0, y, 1)
            return
        }
        sgemm(
            transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: x, lda: k, b: weight, ldb: k,
            beta: accumulate ? 1 : 0, c: y, ldc: n)
    }
}

/// The process-wide gate behind `BLAS.withThreads`: `active` callers are inside with the
/// thread count `count`; `waiting` callers wait for another count (or behind those that do).
private final class ThreadCountGate: @unchecked Sendable {
    static let shared = ThreadCountGate()
    private let condition = NSCondition()
    private var count = 0, active = 0, waiting = 0

    /// Waits until callers with another count are done (and, for a newcomer, until nobody is
    /// waiting), then calls `set(n)` and joins those with count `n`.
    func enter(_ n: Int, set: (Int) -> Void) {
        condition.lock()
        var isWaiting = false
        while active > 0 && (count != n || (!isWaiting && waiting > 0)) {
            if !isWaiting { isWaiting = true; waiting += 1 }
            condition.wait()
        }
        if isWaiting { waiting -= 1 }
        count = n
        active += 1
        set(n)
        condition.unlock()
    }

    func leave() {
        condition.lock()
        active -= 1
        if active == 0 { condition.broadcast() }
        condition.unlock()
    }
}

/// A BLAS library asked for by `MOEC_BLAS` could not be used.
public struct BLASError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public var description: String { "MOEC_BLAS=\(path): \(message)" }
}
