import Foundation
import Testing

@testable import MoEKernels

@Test func blasNoneMeansNoLibrary() throws {
    let result = BLAS.load(environment: "none")
    #expect(try result.get() == nil)
}

@Test func blasMissingFileIsAClearError() {
    let result = BLAS.load(environment: "/nonexistent/libnothing.so")
    guard case .failure(let error) = result else {
        Issue.record("loading a missing file succeeded")
        return
    }
    #expect(error.description.contains("/nonexistent/libnothing.so"))
    #expect(error.description.contains("cannot be loaded"))
}

#if os(Linux)
    @Test func blasLibraryWithoutSgemmIsAClearError() {
        // libm is always present and has no cblas_sgemm.
        let result = BLAS.open("libm.so.6")
        guard case .failure(let error) = result else {
            Issue.record("libm was accepted as a BLAS")
            return
        }
        #expect(error.description.contains("cblas_sgemm"))
    }
#endif

/// The BLAS path and the native packed path agree on the product's `y = x · Wᵀ` shapes.
/// Skipped (passes) when no BLAS is present or `MOEC_BLAS=none`.
@Test func blasAndNativeAgree() throws {
    guard let blas = BLAS.shared else { return }
    #expect(!blas.path.isEmpty)
    var rng = TestRandom(seed: 9)
    for (m, n, k) in [(1, 17, 31), (7, 129, 100), (64, 100, 300), (129, 64, 17)] {
        let x = rng.array(m * k), w = rng.array(n * k), y0 = rng.array(m * n)
        let packed = PackedWeight(weight: w, n: n, k: k)
        for accumulate in [false, true] {
            var yb = y0, yn = y0
            x.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    yb.withUnsafeMutableBufferPointer { yp in
                        blas.linear(
                            xp.baseAddress!, weight: wp.baseAddress!, yp.baseAddress!, m: m, n: n, k: k,
                            accumulate: accumulate)
                    }
                    yn.withUnsafeMutableBufferPointer { yp in
                        Kernels.gemm(xp.baseAddress!, packed, yp.baseAddress!, m: m, accumulate: accumulate)
                    }
                }
            }
            let ref = referenceLinear(x: x, w: w, y0: accumulate ? y0 : nil, m: m, n: n, k: k)
            #expect(firstGemmMismatch(yb, ref, k: k) == nil, "BLAS \(m)x\(n)x\(k)")
            #expect(firstGemmMismatch(yn, ref, k: k) == nil, "native \(m)x\(n)x\(k)")
        }
    }
    // Thread control is present for OpenBLAS and round-trips (through the gate: other tests
    // run executables, which set the count, in parallel).
    if blas.canSetThreads {
        blas.withThreads(1) { #expect(blas.threads == 1) }
    }
}

/// `withThreads` holds the process-wide thread count for the whole call: a caller needing
/// another count waits until it is done, then gets its own.
@Test func blasThreadCountHoldsForTheWholeCall() throws {
    guard let blas = BLAS.shared, blas.canSetThreads else { return }
    let inside = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
    let firstDone = DispatchSemaphore(value: 0), secondDone = DispatchSemaphore(value: 0)
    let seen = SeenThreads()
    DispatchQueue.global().async {
        blas.withThreads(1) {
            inside.signal()
            release.wait()
            seen.first = blas.threads
        }
        firstDone.signal()
    }
    inside.wait()
    DispatchQueue.global().async {
        blas.withThreads(2) { seen.second = blas.threads }
        secondDone.signal()
    }
    #expect(secondDone.wait(timeout: .now() + 0.3) == .timedOut, "a 2-thread caller ran inside a 1-thread call")
    release.signal()
    firstDone.wait()
    secondDone.wait()
    #expect(seen.first == 1)
    #expect(seen.second == 2)
}

private final class SeenThreads: @unchecked Sendable {
    var first: Int?, second: Int?
}

@Test func isaSelection() {
    #expect(ISA.available.contains(.portable))
    #expect(ISA.available.contains(.avx2) == ISA.cpuHasAVX2FMA)
    #expect(ISA.available.contains(.avx512) == (ISA.cpuHasAVX2FMA && ISA.cpuHasAVX512VNNI))
    let env = ProcessInfo.processInfo.environment
    if env["MOEC_SIMD"] == "portable" || env["MOEC_ISA"] == "portable" {
        #expect(ISA.best == .portable)
    } else if env["MOEC_ISA"] == "avx2" {
        #expect(ISA.best == (ISA.cpuHasAVX2FMA ? .avx2 : .portable))
    } else {
        #expect(ISA.best == (ISA.cpuHasAVX2FMA ? (ISA.cpuHasAVX512VNNI ? .avx512 : .avx2) : .portable))
    }
    #expect(ISA.int8UsesAVX512 == (ISA.best == .avx512))
    #if arch(x86_64) && os(Linux)
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        #expect(ISA.cpuHasAVX2FMA == (flags.contains(" avx2") && flags.contains(" fma")))
    #endif
}

#if os(Linux)
    @Test func blasExplicitPathLoads() throws {
        let path = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
        guard FileManager.default.fileExists(atPath: path) else { return }
        let blas = try #require(try BLAS.load(environment: path).get())
        #expect(blas.path == path)
        #expect(blas.summary.contains(path))
    }
#endif

/// `MOEC_BLAS=/bad/path` leaves no BLAS and says why (run the suite with it set to see this test bite).
@Test func blasSharedReportsAFailedRequest() {
    let request = ProcessInfo.processInfo.environment["MOEC_BLAS"] ?? ""
    if request.isEmpty || request.lowercased() == "none" {
        #expect(BLAS.sharedError == nil)
    } else if BLAS.shared == nil {
        #expect(BLAS.sharedError?.contains(request) == true)
    }
}
