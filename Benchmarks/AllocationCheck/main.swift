// moec-alloc-check: counts heap allocations in the steady state of a schedule, the loop
// `moec run` and `moec bench` repeat for every batch of one size. The executor is meant to run
// it without allocating: every buffer lives in the schedule's arena, planned once per token
// count. The allocator entry points are counted by `MoEAllocationCounter` (glibc only).
//
//   moec-alloc-check GRAPH.moe [--set NAME=VALUE]... [--tokens 1,16,128] [--threads N] [--runs R]
//                    [--placement static:W] [--weights f32|bf16|f16|int8|int4[:G]|int4z[:G]]
//                    [--context C]
//
// With --context C every run continues a sequence (a KV cache) that holds C tokens: the decode
// steps of a decoder layer (the sequence is rewound to C before each run, which allocates
// nothing either).
//
// The graph gets seeded random weights in a temporary checkpoint. For each token count: one
// schedule, 3 warm-up runs (the first run of a schedule may fill lazy caches: Dispatch's
// thread pool, the machine model), then R counted runs. Prints one line per token count and
// exits 1 when any counted run allocated (then also per step), 2 on bad arguments or a failed
// compile. MOEC_ALLOC_DISPATCH=1 first prints what one parallel region costs with Dispatch and
// with `Parallel.forEachChunk`; MOEC_ALLOC_TRACE=1 sets the counter's trace flag around one run
// (for `break malloc if moec_allocation_trace` in gdb).
import Foundation
import MoEAllocationCounter
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIO
import MoEIR
import MoEKernels

func fail(_ message: String, status: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("moec-alloc-check: \(message)\n".utf8))
    exit(status)
}

var graphPath: String?
var overrides: [(name: String, value: String)] = []
var tokenCounts = [1, 16, 128]
var threads = ExecutionOptions.defaultThreads
var runs = 5
var placement: PlacementExecution?
var weightFormat = WeightFormat.f32
var context: Int?
var arguments = CommandLine.arguments.dropFirst()
@MainActor func value(_ option: String) -> String {
    guard let v = arguments.popFirst() else { fail("\(option) needs a value") }
    return v
}
while let a = arguments.popFirst() {
    switch a {
    case "--set":
        let v = value(a)
        guard let eq = v.firstIndex(of: "=") else { fail("--set expects NAME=VALUE, got '\(v)'") }
        overrides.append((String(v[..<eq]), String(v[v.index(after: eq)...])))
    case "--tokens":
        let v = value(a)
        let parsed = v.split(separator: ",").compactMap { Int($0) }
        guard !parsed.isEmpty, parsed.count == v.split(separator: ",").count, parsed.allSatisfy({ $0 > 0 }) else {
            fail("--tokens expects positive integers separated by commas, got '\(v)'")
        }
        tokenCounts = parsed
    case "--threads":
        guard let n = Int(value(a)), n > 0 else { fail("--threads expects a positive integer") }
        threads = n
    case "--runs":
        guard let n = Int(value(a)), n > 0 else { fail("--runs expects a positive integer") }
        runs = n
    case "--placement":
        let v = value(a)
        guard v.hasPrefix("static:"), let w = Int(v.dropFirst(7)), w > 0 else { fail("--placement expects static:W, got '\(v)'") }
        placement = PlacementExecution(.staticSplit(workers: w))
    case "--weights":
        let v = value(a)
        guard let f = WeightFormat(option: v) else { fail(CompileOptions.unknownWeightFormat(v)) }
        weightFormat = f
    case "--context":
        guard let n = Int(value(a)), n > 0 else { fail("--context expects a positive integer") }
        context = n
    case "--help", "-h":
        print(
            "usage: moec-alloc-check GRAPH.moe [--set NAME=VALUE]... [--tokens 1,16,128] [--threads N] [--runs R] [--placement static:W] [--weights f32|bf16|f16|int8|int4[:G]|int4z[:G]] [--context C]"
        )
        exit(0)
    default:
        if a.hasPrefix("-") || graphPath != nil { fail("unexpected argument '\(a)'") }
        graphPath = a
    }
}
guard let graphPath else { fail("missing GRAPH.moe") }
guard moec_allocation_count() >= 0 else { fail("allocations cannot be counted on this platform (glibc only)") }

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("moec-alloc-check-\(getpid())").path
defer { try? FileManager.default.removeItem(atPath: directory) }
let runner: ModelRunner
do {
    // Seeded random weights (scale 1/√fan-in) under the graph's own tensor names.
    let unbound = try CompilerSession(CompileOptions(graphPath: graphPath, overrides: overrides)).optimize()
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var state: UInt64 = 0x5EED
    func uniform() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }
    var tensors: [SafetensorsWriter.Tensor] = []
    var written = Set<String>()
    for w in unbound.weights {
        // A tensor bound twice (gpt-oss's gate_up, read as gate and as up) is written once.
        // Written in the layout the checkpoint stores (before the weight's layout steps).
        for (name, declared) in w.tensors where written.insert(name).inserted {
            let shape = (try? w.layout.source(of: declared).get()).flatMap { $0 } ?? declared
            let scale = 1 / Float(max(shape.last ?? 1, 1)).squareRoot()
            tensors.append(.init(name: name, shape: shape, values: (0..<shape.reduce(1, *)).map { _ in uniform() * scale }))
        }
    }
    try SafetensorsWriter.write(tensors: tensors, to: directory + "/model.safetensors")
    try "{}\n".write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
    let session = CompilerSession(CompileOptions(graphPath: graphPath, modelDirectory: directory, overrides: overrides, weightFormat: weightFormat))
    runner = try ModelRunner.compile(session, options: ExecutionOptions(threads: threads, placement: placement))
} catch {
    fail("\(error)")
}

var allocated = false
if ProcessInfo.processInfo.environment["MOEC_ALLOC_DISPATCH"] != nil {
    for _ in 0..<3 { DispatchQueue.concurrentPerform(iterations: 2) { _ in } }
    let before = moec_allocation_count()
    for _ in 0..<10 { DispatchQueue.concurrentPerform(iterations: 2) { _ in } }
    print("concurrentPerform: \(Double(moec_allocation_count() - before) / 10) allocations per call")
    let b2 = moec_allocation_count()
    for _ in 0..<10 { Parallel.forEachChunk(count: 2, threads: 2) { _ in } }
    print("Parallel.forEachChunk: \(Double(moec_allocation_count() - b2) / 10) allocations per call")
}
for tokens in tokenCounts {
    let schedule = runner.executable.schedule(tokens: tokens)
    schedule.fillInputsRandomly(seed: UInt64(tokens))
    // One run: plain, or (--context) the next tokens of a sequence holding `context` tokens.
    var run: () -> Void = { schedule.execute() }
    if let context {
        do {
            let sequence = try runner.executable.makeSequence(capacity: context + tokens)
            let prompt = runner.executable.schedule(tokens: context)
            prompt.fillInputsRandomly(seed: 7)
            try prompt.execute(continuing: sequence)
            run = {
                do {
                    try sequence.rewind(to: context)
                    try schedule.execute(continuing: sequence)
                } catch {
                    fail("\(error)")
                }
            }
        } catch {
            fail("\(error)")
        }
    }
    for _ in 0..<3 { run() }
    var counts: [Int] = []
    for _ in 0..<runs {
        let before = moec_allocation_count()
        run()
        counts.append(moec_allocation_count() - before)
    }
    print(
        "tokens \(tokens)\(context.map { " after \($0)" } ?? ""): allocations per run \(counts.map(String.init).joined(separator: " ")) (\(threads) threads, \(runner.executable.options.backend), weights: \(runner.weightFormatSummary))"
    )
    if counts.contains(where: { $0 > 0 }) {
        allocated = true
        // Which steps allocate.
        if ProcessInfo.processInfo.environment["MOEC_ALLOC_TRACE"] != nil {
            moec_allocation_set_trace(1)
            schedule.execute()
            moec_allocation_set_trace(0)
        }
        for (i, step) in schedule.steps.enumerated() {
            let before = moec_allocation_count()
            schedule.execute(step: i)
            let n = moec_allocation_count() - before
            if n > 0 { print("  step \(i) \(step.name): \(n)") }
        }
    }
}
exit(allocated ? 1 : 0)
