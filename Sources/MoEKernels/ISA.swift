import Foundation
import MoEKernelsAVX2

/// Which compiled kernel set runs: the portable one (plain Swift, any CPU), the one built for
/// AVX2 + FMA in `MoEKernelsAVX2`, or that one with the AVX-512 VNNI kernels of
/// `MoEKernelsAVX512` where they exist (integer products on quantized weights, `q8Gemm`). Every
/// kernel entry point takes an `isa:` argument that defaults to `ISA.best`; asking for a set the
/// CPU lacks runs the next one down, so no instruction executes on a CPU that lacks it.
public enum ISA: String, Sendable, CaseIterable, CustomStringConvertible {
    case portable
    case avx2
    case avx512

    /// True when the CPU reports both AVX2 and FMA (checked once, at first use).
    public static let cpuHasAVX2FMA: Bool = detectAVX2FMA()

    /// The kernel set used by default: the best the CPU has, unless the environment variable
    /// `MOEC_ISA=portable|avx2` (or `MOEC_SIMD=portable`) asks for a lower one.
    public static let best: ISA = {
        let env = ProcessInfo.processInfo.environment
        let asked = env["MOEC_ISA"]?.lowercased()
        if env["MOEC_SIMD"]?.lowercased() == "portable" || asked == "portable" || !cpuHasAVX2FMA { return .portable }
        return cpuHasAVX512VNNI && asked != "avx2" ? .avx512 : .avx2
    }()

    /// True when the CPU reports AVX-512 F, BW, VL, DQ and VNNI (checked once, at first use).
    public static let cpuHasAVX512VNNI: Bool = detectAVX512VNNI()

    /// Whether the int8 kernels (`Kernels.q8Gemm`) take their AVX-512 VNNI path by default: the
    /// CPU has it and `MOEC_ISA` is not `avx2` or `portable`. (The fp32 kernels have no AVX-512
    /// path yet.)
    public static let int8UsesAVX512: Bool = best == .avx512

    /// The kernel sets this CPU can run (tests exercise each).
    public static var available: [ISA] {
        cpuHasAVX2FMA ? (cpuHasAVX512VNNI ? [.portable, .avx2, .avx512] : [.portable, .avx2]) : [.portable]
    }

    /// What actually runs when `self` is asked for.
    @inline(__always)
    var runsAVX2: Bool { self != .portable && ISA.cpuHasAVX2FMA }

    /// Whether the AVX-512 VNNI kernels run when `self` is asked for.
    @inline(__always)
    var runsAVX512: Bool { self == .avx512 && ISA.cpuHasAVX2FMA && ISA.cpuHasAVX512VNNI }

    public var description: String { rawValue }
}

/// AVX-512 with VNNI from `/proc/cpuinfo` (Linux; other systems: no).
private func detectAVX512VNNI() -> Bool {
    #if arch(x86_64) && os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let flags = Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
            return ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"].allSatisfy(flags.contains)
        }
        return false
    #else
        return false
    #endif
}

/// Reads the CPU's feature flags: `/proc/cpuinfo` on Linux, `sysctlbyname` on macOS.
private func detectAVX2FMA() -> Bool {
    #if arch(x86_64) && os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let flags = Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
            return flags.contains("avx2") && flags.contains("fma")
        }
        return false
    #elseif arch(x86_64) && os(macOS)
        func flag(_ name: String) -> Bool {
            var value: Int32 = 0
            var size = MemoryLayout<Int32>.size
            return sysctlbyname(name, &value, &size, nil, 0) == 0 && value != 0
        }
        return flag("hw.optional.avx2_0") && flag("hw.optional.fma")
    #else
        return false
    #endif
}
