import Dispatch
import Foundation
import MoEKernels

/// What one thread of this machine sustains: packed-GEMM FLOP/s and streaming bandwidth. The
/// executor uses it to price work (a GEMM on m rows through a weight costs
/// max(FLOPs / peak, weight bytes / bandwidth)), which is what decides how an MoE layer's experts
/// are cut between threads: whole experts and weight halves when few tokens make every expert a
/// bandwidth problem (decode), panel ranges weighted by FLOPs when many tokens make them GEMMs
/// (prefill). The crossover is `crossoverRows`: rows per expert at which a GEMM stops being
/// bandwidth-bound.
///
/// Measured once per process (about 30 ms, the first time an MoE schedule is built), or set with
/// `MOEC_MACHINE="gflops=G,gbs=B"` (per-thread figures) for reproducible cost decisions.
public struct MachineModel: Sendable, CustomStringConvertible {
    /// Packed-GEMM FLOP/s of one thread.
    public var flopsPerThread: Double
    /// Streaming read bandwidth of one thread while all threads stream (bytes/s).
    public var bytesPerSecondPerThread: Double
    /// How it was obtained ("measured", "MOEC_MACHINE").
    public var source: String

    public init(flopsPerThread: Double, bytesPerSecondPerThread: Double, source: String) {
        self.flopsPerThread = flopsPerThread
        self.bytesPerSecondPerThread = bytesPerSecondPerThread
        self.source = source
    }

    /// The model of this machine (measured or from the environment), computed once, when a layer
    /// big enough to be worth sharing between threads first runs.
    public static let current: MachineModel = fromEnvironment() ?? measure()

    /// Round figures for a recent x86 core, used only to tell whether a layer is big enough to
    /// need `current` (so small models never pay for the measurement).
    public static let nominal = MachineModel(flopsPerThread: 50e9, bytesPerSecondPerThread: 12e9, source: "nominal")

    /// The model `--emit plan` predicts with: `MOEC_MACHINE` when set, else `nominal` (a plan
    /// printout should not depend on how busy the machine was when it was printed).
    public static var forPlanning: MachineModel { fromEnvironment() ?? nominal }

    /// Seconds one thread spends on an m-row GEMM slice reading `weightFloats` weight values.
    @inline(__always)
    public func gemmSeconds(rows m: Int, weightFloats: Int) -> Double {
        max(2 * Double(m) * Double(weightFloats) / flopsPerThread, 4 * Double(weightFloats) / bytesPerSecondPerThread)
    }

    /// Rows at which a GEMM's FLOPs take as long as streaming its weights: below, bandwidth-bound.
    public var crossoverRows: Double { flopsPerThread * 4 / (2 * bytesPerSecondPerThread) }

    public var description: String {
        String(
            format: "%.0f GFLOP/s and %.1f GB/s per thread (%@); GEMMs are bandwidth-bound below %.0f rows",
            flopsPerThread / 1e9, bytesPerSecondPerThread / 1e9, source, crossoverRows)
    }

    static func fromEnvironment() -> MachineModel? {
        guard let spec = ProcessInfo.processInfo.environment["MOEC_MACHINE"] else { return nil }
        var gflops: Double?, gbs: Double?
        for part in spec.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let v = Double(kv[1]), v > 0 else { continue }
            if kv[0] == "gflops" { gflops = v } else if kv[0] == "gbs" { gbs = v }
        }
        guard let gflops, let gbs else { return nil }
        return MachineModel(flopsPerThread: gflops * 1e9, bytesPerSecondPerThread: gbs * 1e9, source: "MOEC_MACHINE")
    }

    /// Times a cache-resident packed GEMM on one thread, and a streaming read of a 32 MiB buffer on
    /// every core at once; best of a few tries each (the machine may be busy).
    static func measure() -> MachineModel {
        let k = 512, n = 512, m = 48
        let w = PackedWeight(weight: (0..<(n * k)).map { Float($0 % 7) * 0.01 }, n: n, k: k)
        let a = UnsafeMutablePointer<Float>.allocate(capacity: PackedRows.floatCount(m: m, k: k))
        let x = [Float](repeating: 0.5, count: m * k)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { a.deallocate(); y.deallocate() }
        x.withUnsafeBufferPointer { PackedRows.pack($0.baseAddress!, ld: k, m: m, k: k, into: a) }
        var gemm = Double.infinity
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            Kernels.gemmPacked(a, m: m, w, panels: 0..<w.panels, y, ldy: n)
            gemm = min(gemm, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        let flops = 2 * Double(m * n * k) / gemm

        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let perThread = 32 * 1024 * 1024 / 4 / cores
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: perThread * cores)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 1, count: perThread * cores)
        let base = SendablePointer(buffer)
        var stream = Double.infinity
        for _ in 0..<3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: cores) { c in
                blackHole(streamSum(base.pointer + c * perThread, count: perThread))
            }
            stream = min(stream, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        let bytesPerThread = Double(perThread * 4) / stream
        return MachineModel(flopsPerThread: flops, bytesPerSecondPerThread: bytesPerThread, source: "measured")
    }
}

/// Sum of `count` floats with four independent 4-wide accumulators (keeps the loads in flight
/// on any x86-64 or ARM CPU without target flags).
func streamSum(_ p: UnsafePointer<Float>, count: Int) -> Float {
    var s0 = SIMD4<Float>(), s1 = SIMD4<Float>(), s2 = SIMD4<Float>(), s3 = SIMD4<Float>()
    let raw = UnsafeRawPointer(p)
    var i = 0
    while i + 16 <= count {
        s0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
        s1 += raw.loadUnaligned(fromByteOffset: i * 4 + 16, as: SIMD4<Float>.self)
        s2 += raw.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD4<Float>.self)
        s3 += raw.loadUnaligned(fromByteOffset: i * 4 + 48, as: SIMD4<Float>.self)
        i += 16
    }
    var s = (s0 + s1 + s2 + s3).sum()
    while i < count { s += p[i]; i += 1 }
    return s
}

@inline(never)
func blackHole(_ x: Float) {
    if x.isNaN { FileHandle.standardError.write(Data()) }
}
