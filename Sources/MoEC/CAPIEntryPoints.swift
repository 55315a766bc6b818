import CMoEC
import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIR

// The functions `moec.h` declares. Each checks its pointers, does its work in `attempt`, and
// turns every error into a message in `*error`; none may trap on what a caller passes.

/// `char **error` as Swift sees it.
public typealias ErrorOut = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

/// Runs `body`; on an error stores its message in `*error` (when given) and returns nil. On
/// success clears `*error`. Diagnostics about a `.moe` source are rendered with `engine`, which
/// quotes the source line.
private func attempt<T>(_ error: ErrorOut?, engine: () -> DiagnosticEngine? = { nil }, _ body: () throws -> T) -> T? {
    error?.pointee = nil
    do {
        return try body()
    } catch let e as DiagnosticError {
        report((engine() ?? DiagnosticEngine()).render(e.diagnostics), into: error)
    } catch let e as CAPIError {
        report(e.message, into: error)
    } catch let other {
        report("\(other)", into: error)
    }
    return nil
}

private func report(_ message: String, into error: ErrorOut?) {
    var text = message
    while text.hasSuffix("\n") { text.removeLast() }
    error?.pointee = strdup(text)
}

/// A C string argument that must be there.
private func string(_ p: UnsafePointer<CChar>?, _ what: String) throws(CAPIError) -> String {
    guard let p else { throw CAPIError("\(what) is NULL") }
    return String(cString: p)
}

/// Execution options (and the weight format) from `moec_options`, checked.
private func options(_ p: UnsafePointer<moec_options>?) throws(CAPIError) -> (execution: ExecutionOptions, record: Bool, weights: String?) {
    guard let p else { return (ExecutionOptions(), false, nil) }
    // Read only the fields the caller's struct has (`size`): an older caller's is shorter.
    let size = Int(p.pointee.size)
    guard size >= MemoryLayout<UInt32>.size else {
        throw CAPIError("moec_options.size is \(size): set it to sizeof(moec_options) (\(MemoryLayout<moec_options>.size))")
    }
    var o = moec_options()
    withUnsafeMutableBytes(of: &o) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: p, count: min(size, MemoryLayout<moec_options>.size)))
    }
    var execution = ExecutionOptions()
    guard o.threads >= 0, o.threads <= 1024 else { throw CAPIError("moec_options.threads must be between 0 (one per core) and 1024, got \(o.threads)") }
    if o.threads > 0 { execution.threads = Int(o.threads) }
    let weights = o.weights.map { String(cString: $0) }
    return (execution, o.record_routing != 0, weights?.isEmpty == true ? nil : weights)
}

nonisolated(unsafe) private let versionString: UnsafeMutablePointer<CChar> = strdup(MoECompilerVersion.string)!

@_cdecl("moec_version")
public func moecVersion() -> UnsafePointer<CChar> { UnsafePointer(versionString) }

@_cdecl("moec_compile")
public func moecCompile(
    _ graphPath: UnsafePointer<CChar>?, _ modelPath: UnsafePointer<CChar>?, _ params: UnsafePointer<UnsafePointer<CChar>?>?,
    _ paramCount: Int, _ optionsPointer: UnsafePointer<moec_options>?, _ error: ErrorOut?
) -> UInt64 {
    var session: CompilerSession?
    let handle = attempt(error, engine: { session?.diagnostics }) { () throws -> UInt64 in
        let graph = try string(graphPath, "graph_path")
        let model = try string(modelPath, "model_path")
        guard paramCount >= 0, paramCount == 0 || params != nil else { throw CAPIError("params is NULL for param_count \(paramCount)") }
        var overrides: [(name: String, value: String)] = []
        for i in 0..<paramCount {
            let text = try string(params![i], "params[\(i)]")
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                throw CAPIError("params[\(i)] must be NAME=VALUE, got '\(text)'")
            }
            overrides.append((String(text[..<eq]), String(text[text.index(after: eq)...])))
        }
        let o = try options(optionsPointer)
        var compile = CompileOptions(graphPath: graph, modelDirectory: model, overrides: overrides)
        if let w = o.weights, !compile.setWeightFormat(w) {
            throw CAPIError(CompileOptions.unknownWeightFormat(w).replacingOccurrences(of: "--weights", with: "moec_options.weights"))
        }
        try PathCheck.readable(graph, what: "a .moe graph")
        do { try PathCheck.modelFolder(model) } catch let e as DiagnosticError {
            // The same checks as `--model`, named as this API names the path.
            throw DiagnosticError(e.diagnostics.map { d in Diagnostic(d.severity, d.message.replacingOccurrences(of: "--model ", with: "model_path "), at: d.range) })
        }
        let s = CompilerSession(compile)
        session = s
        let runner = try ModelRunner.compile(s, options: o.execution, recordRouting: o.record)
        return PlanRegistry.add(LoadedPlan(runner: runner, source: .compiled(s)))
    }
    return handle ?? 0
}

@_cdecl("moec_load")
public func moecLoad(_ planPath: UnsafePointer<CChar>?, _ optionsPointer: UnsafePointer<moec_options>?, _ error: ErrorOut?) -> UInt64 {
    attempt(error) { () throws -> UInt64 in
        let path = try string(planPath, "plan_path")
        let o = try options(optionsPointer)
        if o.weights != nil {
            throw CAPIError("moec_options.weights applies to moec_compile: a plan already says how its weights are stored (compile again to change it)")
        }
        try PathCheck.readable(path, what: "a plan")
        let runner = try ModelRunner.load(planPath: path, options: o.execution, recordRouting: o.record)
        return PlanRegistry.add(LoadedPlan(runner: runner, source: .file(path)))
    } ?? 0
}

@_cdecl("moec_save")
public func moecSave(_ plan: UInt64, _ path: UnsafePointer<CChar>?, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in
        let p = try PlanRegistry.plan(plan)
        let out = try string(path, "path")
        try PathCheck.writable(out)
        try p.save(to: out)
        return 1
    } ?? 0
}

@_cdecl("moec_input_count")
public func moecInputCount(_ plan: UInt64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in Int32(try PlanRegistry.plan(plan).inputs.count) } ?? -1
}

@_cdecl("moec_output_count")
public func moecOutputCount(_ plan: UInt64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in Int32(try PlanRegistry.plan(plan).outputs.count) } ?? -1
}

@_cdecl("moec_is_sequence")
public func moecIsSequence(_ plan: UInt64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in try PlanRegistry.plan(plan).isSequence ? 1 : 0 } ?? -1
}

/// Copies `text` into `buffer` (at most `capacity` bytes with the NUL) and returns its length.
private func copyName(_ text: String, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: Int) throws(CAPIError) -> Int32 {
    let bytes = Array(text.utf8)
    if capacity > 0 {
        guard let buffer else { throw CAPIError("name is NULL for capacity \(capacity)") }
        let n = min(bytes.count, capacity - 1)
        for i in 0..<n { buffer[i] = CChar(bitPattern: bytes[i]) }
        buffer[n] = 0
    }
    return Int32(bytes.count)
}

@_cdecl("moec_input_name")
public func moecInputName(_ plan: UInt64, _ index: Int32, _ name: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in try copyName(try PlanRegistry.plan(plan).type(output: false, index: index).name, name, capacity) } ?? -1
}

@_cdecl("moec_output_name")
public func moecOutputName(_ plan: UInt64, _ index: Int32, _ name: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in try copyName(try PlanRegistry.plan(plan).type(output: true, index: index).name, name, capacity) } ?? -1
}

/// Writes a type's shape at `tokens` tokens and its element type; returns the rank.
private func copyShape(
    _ type: TensorType, tokens: Int64, _ shape: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ dtype: UnsafeMutablePointer<Int32>?
) throws(CAPIError) -> Int32 {
    guard tokens >= 1 else { throw CAPIError("tokens must be at least 1, got \(tokens)") }
    if capacity > 0 && shape == nil { throw CAPIError("shape is NULL for capacity \(capacity)") }
    let dims = type.shape.map { Int64($0.resolve(tokens: Int(tokens))) }
    for (i, d) in dims.prefix(max(0, capacity)).enumerated() { shape![i] = d }
    dtype?.pointee = Int32(type.dtype == .i32 ? MOEC_I32 : MOEC_F32)
    return Int32(dims.count)
}

@_cdecl("moec_input_shape")
public func moecInputShape(
    _ plan: UInt64, _ index: Int32, _ tokens: Int64, _ shape: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ dtype: UnsafeMutablePointer<Int32>?,
    _ error: ErrorOut?
) -> Int32 {
    attempt(error) { () throws -> Int32 in
        try copyShape(try PlanRegistry.plan(plan).type(output: false, index: index).type, tokens: tokens, shape, capacity, dtype)
    } ?? -1
}

@_cdecl("moec_output_shape")
public func moecOutputShape(
    _ plan: UInt64, _ index: Int32, _ tokens: Int64, _ shape: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ dtype: UnsafeMutablePointer<Int32>?,
    _ error: ErrorOut?
) -> Int32 {
    attempt(error) { () throws -> Int32 in
        try copyShape(try PlanRegistry.plan(plan).type(output: true, index: index).type, tokens: tokens, shape, capacity, dtype)
    } ?? -1
}

@_cdecl("moec_run")
public func moecRun(
    _ plan: UInt64, _ inputs: UnsafePointer<moec_tensor>?, _ inputCount: Int, _ outputs: UnsafePointer<moec_tensor>?, _ outputCount: Int,
    _ error: ErrorOut?
) -> Int32 {
    attempt(error) { () throws -> Int32 in
        let p = try PlanRegistry.plan(plan)
        guard inputCount >= 0, inputCount == 0 || inputs != nil else { throw CAPIError("inputs is NULL for input_count \(inputCount)") }
        guard outputCount >= 0, outputCount == 0 || outputs != nil else { throw CAPIError("outputs is NULL for output_count \(outputCount)") }
        let given = (0..<inputCount).map { inputs![$0] }
        let wanted = (0..<outputCount).map { outputs![$0] }
        try p.run(inputs: given, outputs: wanted)
        return 1
    } ?? 0
}

@_cdecl("moec_stats_json")
public func moecStatsJSON(_ plan: UInt64, _ error: ErrorOut?) -> UnsafeMutablePointer<CChar>? {
    attempt(error) { () throws -> UnsafeMutablePointer<CChar>? in strdup(try PlanRegistry.plan(plan).statisticsJSON()) } ?? nil
}

@_cdecl("moec_stats_reset")
public func moecStatsReset(_ plan: UInt64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in
        try PlanRegistry.plan(plan).resetStatistics()
        return 1
    } ?? 0
}

@_cdecl("moec_free")
public func moecFree(_ plan: UInt64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in
        try PlanRegistry.remove(plan)
        return 1
    } ?? 0
}

@_cdecl("moec_sequence_new")
public func moecSequenceNew(_ plan: UInt64, _ capacity: Int64, _ error: ErrorOut?) -> UInt64 {
    attempt(error) { () throws -> UInt64 in
        SequenceRegistry.handles.add(try LoadedSequence(plan: try PlanRegistry.plan(plan), capacity: capacity))
    } ?? 0
}

@_cdecl("moec_sequence_run")
public func moecSequenceRun(
    _ sequence: UInt64, _ inputs: UnsafePointer<moec_tensor>?, _ inputCount: Int, _ outputs: UnsafePointer<moec_tensor>?, _ outputCount: Int,
    _ error: ErrorOut?
) -> Int32 {
    attempt(error) { () throws -> Int32 in
        let s = try SequenceRegistry.handles.value(sequence)
        guard inputCount >= 0, inputCount == 0 || inputs != nil else { throw CAPIError("inputs is NULL for input_count \(inputCount)") }
        guard outputCount >= 0, outputCount == 0 || outputs != nil else { throw CAPIError("outputs is NULL for output_count \(outputCount)") }
        try s.plan.run(inputs: (0..<inputCount).map { inputs![$0] }, outputs: (0..<outputCount).map { outputs![$0] }, sequence: s.state)
        return 1
    } ?? 0
}

@_cdecl("moec_sequence_length")
public func moecSequenceLength(_ sequence: UInt64, _ error: ErrorOut?) -> Int64 {
    attempt(error) { () throws -> Int64 in Int64(try SequenceRegistry.handles.value(sequence).state.count) } ?? -1
}

@_cdecl("moec_sequence_rewind")
public func moecSequenceRewind(_ sequence: UInt64, _ length: Int64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in
        let s = try SequenceRegistry.handles.value(sequence)
        do { try s.state.rewind(to: Int(length)) } catch let e as InputError { throw CAPIError(e.message) }
        return 1
    } ?? 0
}

@_cdecl("moec_sequence_capacity")
public func moecSequenceCapacity(_ sequence: UInt64, _ error: ErrorOut?) -> Int64 {
    attempt(error) { () throws -> Int64 in Int64(try SequenceRegistry.handles.value(sequence).state.capacity) } ?? -1
}

@_cdecl("moec_sequence_reserve")
public func moecSequenceReserve(_ sequence: UInt64, _ capacity: Int64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in
        let s = try SequenceRegistry.handles.value(sequence)
        guard capacity >= 1 else { throw CAPIError("capacity must be at least 1 token, got \(capacity)") }
        do { try s.state.reserve(capacity: Int(capacity)) } catch let e as InputError { throw CAPIError(e.message) }
        return 1
    } ?? 0
}

@_cdecl("moec_sequence_free")
public func moecSequenceFree(_ sequence: UInt64, _ error: ErrorOut?) -> Int32 {
    attempt(error) { () throws -> Int32 in
        try SequenceRegistry.handles.remove(sequence)
        return 1
    } ?? 0
}

@_cdecl("moec_string_free")
public func moecStringFree(_ string: UnsafeMutablePointer<CChar>?) { free(string) }
