// swift-tools-version: 6.0
//
// moec: a declarative compiler for Mixture-of-Experts model graphs.
//
// The targets follow the pipeline, and each imports only the layers below it:
//
//   MoEBasics      source locations, diagnostics, JSON, name suggestions,   (imports nothing)
//                  SplitMix64, text layout
//   MoESyntax      .moe text → tokens → AST                                 (Basics)
//   MoEIR          typed graph, ops by family, printer and reader, verifier  (Basics)
//   MoEPasses      one optimisation pass per file                            (Basics, IR)
//   MoEIO          safetensors, .npy, config.json                            (Basics)
//   MoEKernels     BLAS and MPI loaded with dlopen, portable kernels,        (KernelsAVX2)
//                  CPU dispatch
//   MoEKernelsAVX2 the same kernels built for AVX2 + FMA (called only when the CPU has them)
//   MoEKernelsAVX512 kernels built for AVX-512 with VNNI (the same: only when the CPU has it)
//   MoEPrefetch    a C inline function for the prefetch hint Swift lacks
//   MoEPlacement   expert load statistics and placement planning             (Basics)
//   MoEBackend     plan, executor steps and reference by family              (Basics, IR, IO, Kernels, Placement)
//   MoECompiler    AST → IR, the pass pipeline, the compile/run façade       (everything above)
//   MoEC           the C API (libMoEC; header in CMoEC/include/moec.h)      (Compiler, Backend, Basics, IR)
//   moec           the command-line tool: argument parsing and printing      (Compiler, Backend, Basics, Placement,
//                                                                              Kernels for MPI)
//
// No package dependencies: the standard library, Foundation and Dispatch only.
import PackageDescription

/// Vector code needs target CPU features at compile time (Swift `SIMD8<Float>` is ~25× slower
/// without them). Only `MoEKernelsAVX2` gets them, and it is called only after a run-time check,
/// so the binary still runs on CPUs without AVX2.
var avx2Flags: [SwiftSetting] = []
/// AVX-512 with VNNI (Ice Lake, Zen 4 and later), for `MoEKernelsAVX512`: entered only after the
/// same kind of run-time check.
var avx512Flags: [SwiftSetting] = []
#if arch(x86_64)
    avx2Flags = [.unsafeFlags(["-Xcc", "-march=haswell", "-Xcc", "-mtune=znver3"])]
    avx512Flags = [
        .unsafeFlags([
            "-Xcc", "-march=haswell", "-Xcc", "-mavx512f", "-Xcc", "-mavx512bw", "-Xcc", "-mavx512vl", "-Xcc", "-mavx512dq",
            "-Xcc", "-mavx512vnni", "-Xcc", "-mtune=znver4"
        ])
    ]
#endif

let release: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "moec",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "moec", targets: ["moec"]),
        // libMoEC: the C API (`Sources/CMoEC/include/moec.h`), which the Python package loads.
        .library(name: "MoEC", type: .dynamic, targets: ["MoEC"])
    ],
    targets: [
        // Core: text to IR.
        .target(name: "MoEBasics"),
        .target(name: "MoESyntax", dependencies: ["MoEBasics"]),
        .target(name: "MoEIR", dependencies: ["MoEBasics"]),
        .target(name: "MoEPasses", dependencies: ["MoEIR"]),

        // Backend: weights, kernels, execution.
        .target(name: "MoEIO", dependencies: ["MoEBasics"]),
        .target(name: "MoEKernelsAVX2", dependencies: ["MoEPrefetch"], swiftSettings: avx2Flags + release),
        .target(name: "MoEPrefetch"),
        .target(name: "MoEKernelsAVX512", dependencies: ["MoEPrefetch"], swiftSettings: avx512Flags + release),
        .target(name: "MoEKernels", dependencies: ["MoEKernelsAVX2", "MoEKernelsAVX512"], swiftSettings: release),
        .target(name: "MoEBackend", dependencies: ["MoEIR", "MoEIO", "MoEKernels", "MoEPlacement"], swiftSettings: release),
        .target(name: "MoEPlacement", dependencies: ["MoEBasics"]),
        .executableTarget(
            name: "moec-kernel-bench", dependencies: ["MoEKernels"],
            path: "Benchmarks/KernelBench", swiftSettings: release),

        // Driver and CLI.
        .target(
            name: "MoECompiler",
            dependencies: ["MoEBasics", "MoESyntax", "MoEIR", "MoEPasses", "MoEIO", "MoEBackend", "MoEPlacement"]),
        // `moec lsp`: the Language Server Protocol over the compiler façade, for editors.
        .target(name: "MoELanguageServer", dependencies: ["MoECompiler", "MoESyntax", "MoEIR", "MoEBasics"]),
        // The CLI: the compiler façade, plus the types it names (diagnostics, execution options, placement's command, MPI).
        .executableTarget(
            name: "moec", dependencies: ["MoECompiler", "MoEBasics", "MoEBackend", "MoEPlacement", "MoEKernels", "MoELanguageServer"]),
        // The C API: moec.h (a C target, so that Swift exports exactly the header's types) and its
        // implementation over the compiler façade.
        .target(name: "CMoEC"),
        .target(name: "MoEC", dependencies: ["CMoEC", "MoECompiler", "MoEBackend", "MoEBasics", "MoEIR"], swiftSettings: release),
        // Counts heap allocations in a schedule's steady state (the executor must make none).
        .target(name: "MoEAllocationCounter", path: "Benchmarks/AllocationCounter"),
        .executableTarget(
            name: "moec-alloc-check", dependencies: ["MoECompiler", "MoEKernels", "MoEAllocationCounter"],
            path: "Benchmarks/AllocationCheck", swiftSettings: release),

        // Tests, laid out like the pipeline.
        .target(name: "MoETestSupport", dependencies: ["MoEBasics"], path: "Tests/MoETestSupport"),
        .testTarget(name: "MoEBasicsTests", dependencies: ["MoEBasics", "MoETestSupport"]),
        .testTarget(name: "MoESyntaxTests", dependencies: ["MoESyntax", "MoETestSupport"], exclude: ["Diagnostics"]),
        .testTarget(name: "MoEIRTests", dependencies: ["MoEIR", "MoETestSupport"], exclude: ["Golden"]),
        .testTarget(name: "MoEPassesTests", dependencies: ["MoEPasses", "MoEIR", "MoETestSupport"], exclude: ["Golden"]),
        .testTarget(name: "MoEIOTests", dependencies: ["MoEIO", "MoETestSupport"]),
        .testTarget(name: "MoEKernelsTests", dependencies: ["MoEKernels", "MoEKernelsAVX2", "MoETestSupport"]),
        .testTarget(
            name: "MoEBackendTests",
            dependencies: ["MoEBackend", "MoEIR", "MoEIO", "MoEKernels", "MoEPasses", "MoECompiler", "MoETestSupport"]),
        .testTarget(name: "MoEPlacementTests", dependencies: ["MoEPlacement", "MoETestSupport"]),
        .testTarget(name: "MoECompilerTests", dependencies: ["MoECompiler", "MoEPlacement", "MoETestSupport"], exclude: ["Diagnostics", "Golden"]),
        .testTarget(name: "MoELanguageServerTests", dependencies: ["MoELanguageServer", "MoEBasics", "MoESyntax", "MoETestSupport"]),
        .testTarget(name: "moecTests", dependencies: ["MoEIO", "MoETestSupport"]),
        // The C API driven from C (a C program linked with the library's code), run by MoECTests.
        .executableTarget(name: "moec-capi-check", dependencies: ["CMoEC", "MoEC"], path: "Tests/CAPICheck"),
        .testTarget(name: "MoECTests", dependencies: ["MoEIO", "MoETestSupport"])
    ]
)
