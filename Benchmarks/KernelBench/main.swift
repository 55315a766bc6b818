// moec-kernel-bench: GFLOP/s of moec's packed GEMM against the run-time-loaded BLAS on the
// Mixtral expert shapes, and GB/s of weight bytes for the skinny (decode) shapes.
//
//   swift run -c release moec-kernel-bench [--reps N] [--m 1,4,16] [--threads 1,2]
//                                          [--shapes gateup,down] [--cold] [--isa portable|avx2]
//                                          [--cpu-time] [--moe] [--bf16] [--q8]
//                                          [--quantized [--quantized-shapes NxK,…] [--copies C]
//                                                       [--quantized-formats int8:16,int6:16,…]]
//
// `--bf16` adds fp32 against bf16 packed weights (`PackedWeight(…, format: .bf16)`) on the
// Mixtral expert shapes [7168, 1024] (gate/up) and [1024, 3584] (down) at M = 1, 4, 16, 128: the
// same weight reused (hot, from the caches) and 8 weights cycled (cold, from DRAM).
// `--moe` adds the expert part of a Mixtral-shaped layer (hidden 1024, ffn 3584, 8 experts,
// 128 rows each as with 512 tokens and top-2): gate_up GEMM, SwiGLU, down GEMM per expert.
// The element-wise table (off with `--no-elementwise`) ends with the expert epilogue: gpt-oss's
// activation program against `Kernels.swiglu` on [1024 × 3584] (`--shapes none` skips the GEMM
// tables, to time only these).
//
// `MOEC_BLAS=none` times moec alone: with OpenBLAS loaded, its idle worker threads measurably
// slow moec's 2-thread skinny runs on a 2-core machine (M = 1, 3584→1024 cold: 24–27 GB/s with
// OpenBLAS in the process, 33–35 GB/s without).
//
// Each cell is the median of at least `--reps` timed calls (default 10), in two blocks per library
// after a warm-up call each.
// `--cold` also times the skinny shapes cycling through 8 different weights (≈235 MB), so the
// weights come from DRAM instead of the 32 MiB L3.
import Foundation
import MoEKernels

struct Options {
    var reps = 10
    var ms = [1, 4, 16, 32, 64, 128, 512]
    var threads = [1, 2]
    var shapes = ["gateup", "down"]
    var cold = false
    var isa = ISA.best
    var elementwise = true
    var moe = false
    var bf16 = false
    var q8 = false
    var quantized = false
    /// `--quantized`'s weight shapes [N, K] and how many weights of each it cycles through (8 by
    /// default, more than the caches hold; 1 with a small shape measures the kernel from cache).
    var quantizedShapes = [(7168, 1024), (1024, 3584)]
    var quantizedCopies = 8
    /// `--quantized-formats`: the panel formats `--quantized` compares with f32 instead of its
    /// default table (int8 and int4 in groups of 32, and the Q8Weight kernel).
    var quantizedFormats: [PackedWeight.Format] = []
}

/// A panel format as `--quantized-formats` spells it: `int8:16`, `int4:32`, `int5:32z` (z: with
/// offsets), `int6:16`.
func panelFormat(_ spec: Substring) -> PackedWeight.Format? {
    let parts = spec.split(separator: ":")
    guard parts.count == 2, let g = Int(parts[1].filter(\.isNumber)) else { return nil }
    let offsets = parts[1].hasSuffix("z")
    switch parts[0] {
    case "int8": return .int8(group: g, offsets: offsets)
    case "int4": return .int4(group: g, offsets: offsets)
    case "int5": return .int5(group: g, offsets: offsets)
    case "int6" where !offsets: return .int6(group: g)
    default: return nil
    }
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    func ints(_ s: String?) -> [Int] { (s ?? "").split(separator: ",").compactMap { Int($0) } }
    while let a = args.next() {
        switch a {
        case "--reps": o.reps = Int(args.next() ?? "") ?? o.reps
        case "--m": o.ms = ints(args.next())
        case "--threads": o.threads = ints(args.next())
        case "--shapes": o.shapes = (args.next() ?? "").split(separator: ",").map(String.init)
        case "--cold": o.cold = true
        case "--cpu-time": o.threads = [1]
        case "--no-elementwise": o.elementwise = false
        case "--moe": o.moe = true
        case "--bf16": o.bf16 = true
        case "--q8": o.q8 = true
        case "--quantized": o.quantized = true
        case "--quantized-shapes":
            o.quantizedShapes = (args.next() ?? "").split(separator: ",").compactMap { shape in
                let nk = shape.split(separator: "x").compactMap { Int($0) }
                return nk.count == 2 ? (nk[0], nk[1]) : nil
            }
        case "--quantized-formats":
            let specs = (args.next() ?? "").split(separator: ",")
            o.quantizedFormats = specs.compactMap(panelFormat)
            guard o.quantizedFormats.count == specs.count else {
                FileHandle.standardError.write("--quantized-formats: expected e.g. int8:16,int6:16,int5:32z,int4:32\n".data(using: .utf8)!)
                exit(2)
            }
        case "--copies": o.quantizedCopies = max(1, Int(args.next() ?? "") ?? o.quantizedCopies)
        case "--isa": o.isa = ISA(rawValue: args.next() ?? "") ?? o.isa
        default:
            FileHandle.standardError.write("unknown argument \(a)\n".data(using: .utf8)!)
            exit(2)
        }
    }
    // Release builds drop `PackedWeight`'s own check (-Ounchecked): a group the kernels cannot
    // block (one that does not divide 128 or the row) would write past its panels.
    for f in o.quantizedFormats {
        for (_, k) in o.quantizedShapes where !f.fits(k: k) {
            FileHandle.standardError.write("--quantized-formats: \(f) does not fit k = \(k) (a group divides 128 and the row)\n".data(using: .utf8)!)
            exit(2)
        }
    }
    return o
}

/// `--cpu-time`: time single-threaded cells by the calling thread's CPU time, which leaves out the
/// time slices other processes take on a busy machine (for tuning; wall time otherwise).
let useCPUTime = CommandLine.arguments.contains("--cpu-time")

func now() -> Double {
    var t = timespec()
    clock_gettime(useCPUTime ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Median seconds per call of `a` and of `b` over at least `reps` calls each (and at least 0.3 s
/// each). The two are timed in alternating blocks, with a pause between blocks: OpenBLAS's idle
/// workers spin for a while after each call, and timing moec's threads next to them would
/// measure that fight instead of the kernel.
func medians(reps: Int, _ a: () -> Void, _ b: (() -> Void)?) -> (Double, Double?) {
    func block(_ f: () -> Void, _ n: Int, into times: inout [Double]) {
        f()
        let start = now()
        var done = 0
        while done < n || (now() - start < 0.15 && done < 100) {
            let t0 = now()
            f()
            times.append(now() - t0)
            done += 1
        }
    }
    var ta: [Double] = [], tb: [Double] = []
    let half = (reps + 1) / 2
    for _ in 0..<2 {
        block(a, half, into: &ta)
        if let b {
            usleep(300_000)
            block(b, half, into: &tb)
            usleep(300_000)
        }
    }
    func med(_ t: [Double]) -> Double { t.sorted()[t.count / 2] }
    return (med(ta), tb.isEmpty ? nil : med(tb))
}

func randomArray(_ count: Int, seed: inout UInt64) -> [Float] {
    (0..<count).map { _ in
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: seed >> 11) % 2000 - 1000) / 1000 * 0.05
    }
}

/// Unbuffered output, so progress shows when piped to a file.
func print(_ line: String = "") { FileHandle.standardOutput.write((line + "\n").data(using: .utf8)!) }

func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
func f1(_ x: Double) -> String { String(format: "%.1f", x) }

let opts = parseOptions()
let blas = BLAS.shared
print("moec-kernel-bench: isa \(opts.isa) (cpu avx2+fma: \(ISA.cpuHasAVX2FMA)), reps ≥ \(opts.reps), median")
print("BLAS: \(blas?.summary ?? "none\(BLAS.sharedError.map { " (\($0))" } ?? "")")")
print()

var shapeTable: [String: (k: Int, n: Int, name: String)] = [
    "gateup": (1024, 7168, "1024→7168"),
    "down": (3584, 1024, "3584→1024")
]
// Any other shape as KxN, e.g. --shapes 4096x14336.
for name in opts.shapes where shapeTable[name] == nil {
    let parts = name.split(separator: "x").compactMap { Int($0) }
    if parts.count == 2 { shapeTable[name] = (parts[0], parts[1], "\(parts[0])→\(parts[1])") }
}

print("| shape | M | thr | native GFLOP/s | BLAS GFLOP/s | native/BLAS | native GB/s W | BLAS GB/s W |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
var seed: UInt64 = 42
for shapeName in opts.shapes {
    guard let shape = shapeTable[shapeName] else { continue }
    let (k, n) = (shape.k, shape.n)
    let w = randomArray(n * k, seed: &seed)
    let packed = PackedWeight(weight: w, n: n, k: k, threads: 2)
    for m in opts.ms {
        let x = randomArray(m * k, seed: &seed)
        var y = [Float](repeating: 0, count: m * n)
        for t in opts.threads {
            let flops = 2.0 * Double(m * n * k)
            blas?.setThreads(t)
            let (tn, tb) = x.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let (xq, wq, yq) = (xp.baseAddress!, wp.baseAddress!, yp.baseAddress!)
                        return medians(
                            reps: opts.reps,
                            {
                                Kernels.gemm(xq, packed, yq, m: m, threads: t, isa: opts.isa)
                            },
                            blas.map { blas in
                                {
                                    blas.linear(xq, weight: wq, yq, m: m, n: n, k: k)
                                }
                            })
                    }
                }
            }
            let bytes = Double(n * k * 4)
            let skinny = m <= 16
            let cells = [
                shape.name, "\(m)", "\(t)", f1(flops / tn / 1e9), tb.map { f1(flops / $0 / 1e9) } ?? "-",
                tb.map { String(format: "%.2f", $0 / tn) } ?? "-",
                skinny ? f1(bytes / tn / 1e9) : "", skinny ? (tb.map { f1(bytes / $0 / 1e9) } ?? "-") : ""
            ]
            print("| " + cells.joined(separator: " | ") + " |")
        }
    }
}

if opts.cold {
    print()
    print("Skinny shapes with 8 different weights cycled (weights come from DRAM):")
    print("| shape | M | thr | native GB/s W | BLAS GB/s W | native GFLOP/s | BLAS GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for shapeName in opts.shapes {
        guard let shape = shapeTable[shapeName] else { continue }
        let (k, n) = (shape.k, shape.n)
        let ws = (0..<8).map { _ in randomArray(n * k, seed: &seed) }
        let packs = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2) }
        for m in opts.ms where m <= 16 {
            let x = randomArray(m * k, seed: &seed)
            var y = [Float](repeating: 0, count: m * n)
            for t in opts.threads {
                var i = 0, j = 0
                blas?.setThreads(t)
                let (tn, tb) = x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                        return medians(
                            reps: max(opts.reps, 16),
                            {
                                Kernels.gemm(xq, packs[i & 7], yq, m: m, threads: t, isa: opts.isa)
                                i += 1
                            },
                            blas.map { blas in
                                {
                                    ws[j & 7].withUnsafeBufferPointer { wp in
                                        blas.linear(xq, weight: wp.baseAddress!, yq, m: m, n: n, k: k)
                                    }
                                    j += 1
                                }
                            })
                    }
                }
                let bytes = Double(n * k * 4), flops = 2.0 * Double(m * n * k)
                let cells = [
                    shape.name, "\(m)", "\(t)", f1(bytes / tn / 1e9), tb.map { f1(bytes / $0 / 1e9) } ?? "-",
                    f1(flops / tn / 1e9), tb.map { f1(flops / $0 / 1e9) } ?? "-"
                ]
                print("| " + cells.joined(separator: " | ") + " |")
            }
        }
    }
}

if opts.ms.contains(1) {
    print()
    print("M = 1: packed weight (gemm) vs unpacked [N, K] weight (gemv), GB/s of weight bytes,")
    print("8 different weights cycled (DRAM):")
    print("| shape | thr | packed gemm | unpacked gemv | BLAS sgemv |")
    print("|---|---:|---:|---:|---:|")
    for shapeName in opts.shapes {
        guard let shape = shapeTable[shapeName] else { continue }
        let (k, n) = (shape.k, shape.n)
        let ws = (0..<8).map { _ in randomArray(n * k, seed: &seed) }
        let packs = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2) }
        let x = randomArray(k, seed: &seed)
        var y = [Float](repeating: 0, count: n)
        for t in opts.threads {
            var i = 0
            blas?.setThreads(t)
            let times: [Double?] = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                    let (tp, tu) = medians(
                        reps: max(opts.reps, 16),
                        {
                            Kernels.gemm(xq, packs[i & 7], yq, m: 1, threads: t, isa: opts.isa); i += 1
                        },
                        {
                            ws[i & 7].withUnsafeBufferPointer { Kernels.gemv($0.baseAddress!, xq, yq, n: n, k: k, threads: t, isa: opts.isa) }
                            i += 1
                        })
                    var tb: Double? = nil
                    if let blas {
                        tb =
                            medians(
                                reps: max(opts.reps, 16),
                                {
                                    ws[i & 7].withUnsafeBufferPointer { blas.linear(xq, weight: $0.baseAddress!, yq, m: 1, n: n, k: k) }
                                    i += 1
                                }, nil
                            ).0
                    }
                    return [tp, tu, tb]
                }
            }
            let bytes = Double(n * k * 4)
            print("| " + ([shape.name, "\(t)"] + times.map { $0.map { f1(bytes / $0 / 1e9) } ?? "-" }).joined(separator: " | ") + " |")
        }
    }
}

if opts.bf16 {
    print()
    print("Packed weight fp32 vs bf16 (median; GB/s counts the weight bytes each format streams):")
    print("| W [N, K] | weights | M | thr | f32 ms | bf16 ms | bf16 speed-up | f32 GB/s | bf16 GB/s | f32 GFLOP/s | bf16 GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, k) in [(7168, 1024), (1024, 3584)] {
        for cold in [false, true] {
            let count = cold ? 8 : 1
            let ws = (0..<count).map { _ in randomArray(n * k, seed: &seed) }
            let f32 = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2) }
            let bf16 = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2, format: .bf16) }
            for m in [1, 4, 16, 128] {
                let x = randomArray(m * k, seed: &seed)
                var y = [Float](repeating: 0, count: m * n)
                for t in opts.threads {
                    var i = 0, j = 0
                    let (tf, tb) = x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                            return medians(
                                reps: max(opts.reps, 16),
                                {
                                    Kernels.gemm(xq, f32[i % count], yq, m: m, threads: t, isa: opts.isa)
                                    i += 1
                                },
                                {
                                    Kernels.gemm(xq, bf16[j % count], yq, m: m, threads: t, isa: opts.isa)
                                    j += 1
                                })
                        }
                    }
                    let tb16 = tb!
                    let flops = 2.0 * Double(m * n * k)
                    let cells = [
                        "[\(n), \(k)]", cold ? "8 cycled" : "1 (hot)", "\(m)", "\(t)",
                        String(format: "%.3f", tf * 1e3), String(format: "%.3f", tb16 * 1e3), String(format: "%.2f", tf / tb16),
                        f1(Double(f32[0].byteCount) / tf / 1e9), f1(Double(bf16[0].byteCount) / tb16 / 1e9),
                        f1(flops / tf / 1e9), f1(flops / tb16 / 1e9)
                    ]
                    print("| " + cells.joined(separator: " | ") + " |")
                }
            }
        }
    }
}

if opts.q8 {
    print()
    print("Packed weight fp32 vs int8 blocks (Q8Weight; the q8 time includes quantizing x; median; GB/s counts")
    print("the weight bytes each format streams):")
    print("| W [N, K] | weights | M | thr | f32 ms | q8 ms | q8 speed-up | f32 GB/s | q8 GB/s | f32 GFLOP/s | q8 GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, k) in [(7168, 1024), (1024, 3584)] {
        for cold in [false, true] {
            let count = cold ? 8 : 1
            let ws = (0..<count).map { _ in randomArray(n * k, seed: &seed) }
            let f32 = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2) }
            let q8 = ws.map { Q8Weight(quantizing: $0, n: n, k: k) }
            for m in [1, 4, 16, 128] {
                let x = randomArray(m * k, seed: &seed)
                let xq8 = Q8Activations(rows: m, k: k)
                var y = [Float](repeating: 0, count: m * n)
                for t in opts.threads {
                    var i = 0, j = 0
                    let (tf, tq) = x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                            return medians(
                                reps: max(opts.reps, 16),
                                {
                                    Kernels.gemm(xq, f32[i % count], yq, m: m, threads: t, isa: opts.isa)
                                    i += 1
                                },
                                {
                                    xq8.quantize(xq, m: m, k: k, ldx: k)
                                    Kernels.q8Gemm(xq8, q8[j % count], y: yq, ldy: n, threads: t, isa: opts.isa)
                                    j += 1
                                })
                        }
                    }
                    let tq8 = tq!
                    let flops = 2.0 * Double(m * n * k)
                    let cells = [
                        "[\(n), \(k)]", cold ? "8 cycled" : "1 (hot)", "\(m)", "\(t)",
                        String(format: "%.3f", tf * 1e3), String(format: "%.3f", tq8 * 1e3), String(format: "%.2f", tf / tq8),
                        f1(Double(f32[0].byteCount) / tf / 1e9), f1(Double(q8[0].byteCount) / tq8 / 1e9),
                        f1(flops / tf / 1e9), f1(flops / tq8 / 1e9)
                    ]
                    print("| " + cells.joined(separator: " | ") + " |")
                }
            }
        }
    }
}

if opts.quantized && !opts.quantizedFormats.isEmpty {
    print()
    print("Packed weight fp32 against quantized panels (median ms; × = f32 / format; GB/s counts the weight bytes each")
    print("format streams), isa \(opts.isa):")
    let names = opts.quantizedFormats.map(\.description)
    let header: [String] = ["W [N, K]", "M", "thr", "f32 ms"] + names.map { "\($0) ms" } + names.map { "\($0) ×" } + names.map { "\($0) GB/s" }
    print("| " + header.joined(separator: " | ") + " |")
    print("|---|---:|---:|---:|" + String(repeating: "---:|", count: 3 * names.count))
    for (n, k) in opts.quantizedShapes {
        let count = opts.quantizedCopies
        let ws = (0..<count).map { _ in randomArray(n * k, seed: &seed) }
        let packed =
            [ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2) }]
            + opts.quantizedFormats.map { f in ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2, format: f) } }
        for m in opts.ms {
            let x = randomArray(m * k, seed: &seed)
            var y = [Float](repeating: 0, count: m * n)
            for t in opts.threads {
                var times: [Double] = []
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                        for weights in packed {
                            var i = 0
                            times.append(
                                medians(
                                    reps: max(opts.reps, 16),
                                    {
                                        Kernels.gemm(xq, weights[i % count], yq, m: m, threads: t, isa: opts.isa)
                                        i += 1
                                    }, nil
                                ).0)
                        }
                    }
                }
                var cells: [String] = ["[\(n), \(k)]", "\(m)", "\(t)"]
                cells += times.map { String(format: "%.3f", $0 * 1e3) }
                cells += times.dropFirst().map { String(format: "%.2f", times[0] / $0) }
                for f in 1..<packed.count { cells.append(f1(Double(packed[f][0].byteCount) / times[f] / 1e9)) }
                print("| " + cells.joined(separator: " | ") + " |")
            }
        }
    }
} else if opts.quantized {
    print()
    print("Packed weight fp32 vs int8 and int4 panels (groups of 32, widened to f32 in registers or strips; median;")
    print("GB/s counts the weight bytes each format streams), and the int8-activation Q8Weight kernel:")
    print("| W [N, K] | M | thr | f32 ms | int8 ms | int4 ms | q8·q8 ms | int8 × | int4 × | q8·q8 × | int8 GB/s | int4 GB/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, k) in opts.quantizedShapes {
        let count = opts.quantizedCopies
        let ws = (0..<count).map { _ in randomArray(n * k, seed: &seed) }
        let f32 = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2) }
        let i8 = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2, format: .int8(group: 32)) }
        let i4 = ws.map { PackedWeight(weight: $0, n: n, k: k, threads: 2, format: .int4(group: 32)) }
        let q8 = ws.map { Q8Weight(quantizing: $0, n: n, k: k) }
        for m in opts.ms {
            let x = randomArray(m * k, seed: &seed)
            let xq8 = Q8Activations(rows: m, k: k)
            var y = [Float](repeating: 0, count: m * n)
            for t in opts.threads {
                var times: [Double] = []
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                        for weights in [f32, i8, i4] {
                            var i = 0
                            times.append(
                                medians(
                                    reps: max(opts.reps, 16),
                                    {
                                        Kernels.gemm(xq, weights[i % count], yq, m: m, threads: t, isa: opts.isa)
                                        i += 1
                                    }, nil
                                ).0)
                        }
                        var j = 0
                        times.append(
                            medians(
                                reps: max(opts.reps, 16),
                                {
                                    xq8.quantize(xq, m: m, k: k, ldx: k)
                                    Kernels.q8Gemm(xq8, q8[j % count], y: yq, ldy: n, threads: t, isa: opts.isa)
                                    j += 1
                                }, nil
                            ).0)
                    }
                }
                let cells =
                    [
                        "[\(n), \(k)]", "\(m)", "\(t)"
                    ] + times.map { String(format: "%.3f", $0 * 1e3) } + times.dropFirst().map { String(format: "%.2f", times[0] / $0) } + [
                        f1(Double(i8[0].byteCount) / times[1] / 1e9), f1(Double(i4[0].byteCount) / times[2] / 1e9)
                    ]
                print("| " + cells.joined(separator: " | ") + " |")
            }
        }
    }
}

if opts.moe {
    print()
    print("Mixtral-shaped experts: 8 × (128×1024→7168, SwiGLU, 128×3584→1024), ms per layer (median):")
    print("| thr | native ms | native GFLOP/s | BLAS ms | BLAS GFLOP/s | native/BLAS speed |")
    print("|---:|---:|---:|---:|---:|---:|")
    let (h, f, e, rows) = (1024, 3584, 8, 128)
    let gateUp = (0..<e).map { _ in randomArray(2 * f * h, seed: &seed) }
    let down = (0..<e).map { _ in randomArray(h * f, seed: &seed) }
    let gateUpPacked = gateUp.map { PackedWeight(weight: $0, n: 2 * f, k: h, threads: 2) }
    let downPacked = down.map { PackedWeight(weight: $0, n: h, k: f, threads: 2) }
    let x = randomArray(rows * h, seed: &seed)
    var gu = [Float](repeating: 0, count: rows * 2 * f), act = [Float](repeating: 0, count: rows * f)
    var out = [Float](repeating: 0, count: rows * h)
    let flops = Double(e) * 2 * Double(rows) * Double(h) * Double(3 * f)
    for t in opts.threads {
        blas?.setThreads(t)
        let (tn, tb) = x.withUnsafeBufferPointer { xp in
            gu.withUnsafeMutableBufferPointer { gp in
                act.withUnsafeMutableBufferPointer { ap in
                    out.withUnsafeMutableBufferPointer { op in
                        let (xq, gq, aq, oq) = (xp.baseAddress!, gp.baseAddress!, ap.baseAddress!, op.baseAddress!)
                        return medians(
                            reps: opts.reps,
                            {
                                for j in 0..<e {
                                    Kernels.gemm(xq, gateUpPacked[j], gq, m: rows, threads: t, isa: opts.isa)
                                    Kernels.swiglu(gq, aq, rows: rows, f: f, isa: opts.isa)
                                    Kernels.gemm(aq, downPacked[j], oq, m: rows, accumulate: j > 0, threads: t, isa: opts.isa)
                                }
                            },
                            blas.map { blas in
                                {
                                    for j in 0..<e {
                                        gateUp[j].withUnsafeBufferPointer { blas.linear(xq, weight: $0.baseAddress!, gq, m: rows, n: 2 * f, k: h) }
                                        Kernels.swiglu(gq, aq, rows: rows, f: f, isa: opts.isa)
                                        down[j].withUnsafeBufferPointer { blas.linear(aq, weight: $0.baseAddress!, oq, m: rows, n: h, k: f, accumulate: j > 0) }
                                    }
                                }
                            })
                    }
                }
            }
        }
        let cells = [
            "\(t)", String(format: "%.1f", tn * 1e3), f1(flops / tn / 1e9),
            tb.map { String(format: "%.1f", $0 * 1e3) } ?? "-", tb.map { f1(flops / $0 / 1e9) } ?? "-",
            tb.map { String(format: "%.2f", $0 / tn) } ?? "-"
        ]
        print("| " + cells.joined(separator: " | ") + " |")
    }
}

if opts.elementwise {
    print()
    print("Element-wise and row kernels (G elements/s, 1 thread, median):")
    print("| kernel | shape | portable | avx2 |")
    print("|---|---|---:|---:|")
    let n = 1 << 16
    let x = randomArray(n, seed: &seed).map { $0 * 100 }
    let gu = randomArray(128 * 2 * 3584, seed: &seed).map { $0 * 40 }
    let w = randomArray(1024, seed: &seed)
    var y = [Float](repeating: 0, count: max(n, 128 * 3584, 512 * 1024))
    let rows = randomArray(512 * 1024, seed: &seed).map { $0 * 40 }
    typealias Body = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, ISA) -> Void
    let cases: [(String, String, Int, [Float], Body)] = [
        ("exp", "\(n)", n, x, { Kernels.exp($0, $1, count: n, isa: $2) }),
        ("sigmoid", "\(n)", n, x, { Kernels.sigmoid($0, $1, count: n, isa: $2) }),
        ("silu", "\(n)", n, x, { Kernels.silu($0, $1, count: n, isa: $2) }),
        ("gelu (erf)", "\(n)", n, x, { Kernels.gelu($0, $1, count: n, isa: $2) }),
        ("gelu (tanh)", "\(n)", n, x, { Kernels.geluTanh($0, $1, count: n, isa: $2) }),
        ("erf", "\(n)", n, x, { Kernels.erf($0, $1, count: n, isa: $2) }),
        ("swiglu", "128×(2·3584)", 128 * 3584, gu, { Kernels.swiglu($0, $1, rows: 128, f: 3584, isa: $2) }),
        ("softmax rows", "8192×8", 8192 * 8, rows, { Kernels.softmaxRows($0, $1, rows: 8192, cols: 8, isa: $2) }),
        ("softmax rows", "512×1024", 512 * 1024, rows, { Kernels.softmaxRows($0, $1, rows: 512, cols: 1024, isa: $2) }),
        (
            "rmsnorm rows", "512×1024", 512 * 1024, rows,
            { x, y, isa in
                w.withUnsafeBufferPointer { Kernels.rmsNormRows(x, weight: $0.baseAddress!, y, rows: 512, cols: 1024, eps: 1e-5, isa: isa) }
            }
        ),
        ("axpy", "\(n)", n, x, { Kernels.axpy(alpha: 0.5, $0, $1, count: n, isa: $2) })
    ]
    for (name, shape, count, input, body) in cases {
        var cells = [name, shape]
        for isa in [ISA.portable, .avx2] where isa == .portable || ISA.cpuHasAVX2FMA {
            let (t, _) = input.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let (xq, yq) = (xp.baseAddress!, yp.baseAddress!)
                    return medians(reps: opts.reps, { body(xq, yq, isa) }, nil)
                }
            }
            cells.append(String(format: "%.2f", Double(count) / t / 1e9))
        }
        print("| " + cells.joined(separator: " | ") + " |")
    }
}

if opts.elementwise {
    print()
    print("Expert epilogue vs SwiGLU, ns per output element (1 thread, median); gate/up rows [rows, 2·3584]:")
    print("| kernel | rows × features | calls | portable | avx2 |")
    print("|---|---|---|---:|---:|")
    let f = 3584
    // gpt-oss: gate = min(g, 7); up = clamp(u, −7, 7); out = (up + 1) · gate · sigmoid(1.702 · gate).
    let gptOSS = ExpertEpilogue(
        inputs: 2,
        instructions: [
            .binary(.min, .register(0), .constant(7)), .binary(.min, .register(1), .constant(7)),
            .binary(.max, .register(3), .constant(-7)), .binary(.mul, .constant(1.702), .register(2)),
            .unary(.sigmoid, .register(5)), .binary(.mul, .register(2), .register(6)),
            .binary(.add, .register(4), .constant(1)), .binary(.mul, .register(8), .register(7))
        ])!
    let biasGate = randomArray(f, seed: &seed), biasUp = randomArray(f, seed: &seed)
    typealias Body = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, ISA) -> Void
    func epilogue(_ p: ExpertEpilogue, rows: Int, biases: Bool, strip: (rows: Int, features: Int)?) -> Body {
        { gu, out, bg, bu, isa in
            let (rs, fs) = strip ?? (rows, f)
            for r in stride(from: 0, to: rows, by: rs) {
                for j in stride(from: 0, to: f, by: fs) {
                    Kernels.expertEpilogue(
                        p, rows: min(rs, rows - r), count: min(fs, f - j), gu + r * 2 * f + j, lda: 2 * f, biasA: biases ? bg + j : nil,
                        gu + r * 2 * f + f + j, ldb: 2 * f, biasB: biases ? bu + j : nil, out + r * f + j, ldo: f, isa: isa)
                }
            }
        }
    }
    for rows in [1024, 8] {
        let gu = randomArray(rows * 2 * f, seed: &seed).map { $0 * 160 } // ±8: the clamps engage
        var out = [Float](repeating: 0, count: rows * f)
        let shape = "\(rows) × \(f)"
        let cases: [(String, String, Body)] = [
            ("swiglu kernel", "1", { gu, out, _, _, isa in Kernels.swiglu(gu, out, rows: rows, f: f, isa: isa) }),
            ("epilogue: swiglu program", "1", epilogue(.swiglu, rows: rows, biases: false, strip: nil)),
            ("epilogue: gpt-oss + biases", "1", epilogue(gptOSS, rows: rows, biases: true, strip: nil)),
            ("epilogue: gpt-oss + biases", "6 × 16 strips", epilogue(gptOSS, rows: rows, biases: true, strip: (6, 16)))
        ]
        for (name, calls, body) in cases {
            var cells = [name, shape, calls]
            for isa in [ISA.portable, .avx2] where isa == .portable || ISA.cpuHasAVX2FMA {
                let t = gu.withUnsafeBufferPointer { g in
                    out.withUnsafeMutableBufferPointer { o in
                        biasGate.withUnsafeBufferPointer { bg in
                            biasUp.withUnsafeBufferPointer { bu in
                                let (gq, oq, bgq, buq) = (g.baseAddress!, o.baseAddress!, bg.baseAddress!, bu.baseAddress!)
                                return medians(reps: opts.reps, { body(gq, oq, bgq, buq, isa) }, nil).0
                            }
                        }
                    }
                }
                cells.append(String(format: "%.3f", t / Double(rows * f) * 1e9))
            }
            print("| " + cells.joined(separator: " | ") + " |")
        }
    }
}
