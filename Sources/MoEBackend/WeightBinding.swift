import Foundation
import MoEBasics
import MoEIO
import MoEIR

/// Connects a graph's weight table to a checkpoint: checks that every tensor exists with the
/// shape the graph declares (errors point at the weight's declaration in the `.moe` source and
/// name the tensor, its shape and the expected one), then loads them as f32.
public enum WeightBinding {
    /// Every problem binding `graph`'s weights to `checkpoint`, as diagnostics.
    public static func check(_ graph: Graph, _ checkpoint: Checkpoint) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        for w in graph.weights {
            var missing: [String] = []
            for (name, shape) in w.tensors {
                let info: TensorInfo?
                do {
                    info = try checkpoint.info(name)
                } catch {
                    problems.append(.error("weight '\(w.name)': \(error)", at: w.location))
                    continue
                }
                guard let info else { missing.append(name); continue }
                guard info.dtype.isReadableAsFloat else {
                    problems.append(
                        .error(
                            "weight '\(w.name)': tensor '\(name)' has dtype \(info.dtype.rawValue), which moec cannot read as f32",
                            at: w.location))
                    continue
                }
                if !w.layout.isEmpty {
                    if let problem = layoutProblem(w, tensor: name, shape: info.shape, expected: shape) { problems.append(problem) }
                } else if info.shape != shape {
                    var notes: [Diagnostic.Note] = []
                    if w.perExpert {
                        notes.append(.init("'\(w.name)' is declared \(w.shape) and read per expert ({e}), so each tensor must be \(shape)"))
                    }
                    if info.shape.count == 2, shape.count == 2, info.shape == shape.reversed() {
                        notes.append(.init("the tensor looks transposed: Hugging Face linear weights are [out, in]"))
                    }
                    problems.append(
                        .error(
                            "tensor '\(name)' has shape \(info.shape), but weight '\(w.name)' expects \(shape)",
                            at: w.location, notes: notes))
                }
            }
            if let first = missing.first {
                var notes: [Diagnostic.Note] = []
                if missing.count > 1 { notes.append(.init("\(missing.count) of its \(w.tensors.count) tensors are missing")) }
                let suggestions = checkpoint.suggestions(for: first, limit: 3)
                if !suggestions.isEmpty {
                    notes.append(.init("the checkpoint has similar tensors: " + suggestions.map { "'\($0)'" }.joined(separator: ", ")))
                }
                if !w.perExpert, let e = stackedAlternative(w, checkpoint) {
                    notes.append(.init(e))
                }
                problems.append(.error("weight '\(w.name)': the checkpoint has no tensor '\(first)'", at: w.location, notes: notes))
            }
        }
        return problems
    }

    /// Why `w`'s layout steps do not turn a tensor of `shape` into `expected`, or nil.
    private static func layoutProblem(_ w: WeightInfo, tensor: String, shape: [Int], expected: [Int]) -> Diagnostic? {
        var s = shape
        for (i, step) in w.layout.enumerated() {
            switch step.apply(to: s) {
            case .success(let next): s = next
            case .failure(let e):
                let before = i == 0 ? "" : " (\(s) after \(Array(w.layout[..<i]).text))"
                return .error(
                    "weight '\(w.name)': layout step '\(step)' does not fit tensor '\(tensor)' of shape \(shape)\(before): \(e.message)",
                    at: w.location)
            }
        }
        guard s != expected else { return nil }
        return .error(
            "tensor '\(tensor)' has shape \(shape), which '\(w.layout.text)' makes \(s), but weight '\(w.name)' expects \(expected)", at: w.location,
            notes: w.perExpert ? [.init("'\(w.name)' is declared \(w.shape) and read per expert ({e})")] : [])
    }

    /// When a single-tensor pattern is missing but per-expert tensors exist, say so.
    private static func stackedAlternative(_ w: WeightInfo, _ ckpt: Checkpoint) -> String? {
        let candidate = w.pattern.replacingOccurrences(of: ".weight", with: ".0.weight")
        return ckpt.contains(candidate) ? "per-expert tensors exist ('\(candidate)'): use {e} in the tensor name" : nil
    }

    /// Loads every weight into its own aligned f32 buffer, in weight-table order.
    /// `progress` is called with (bytes read, bytes to read): the bytes of what is actually read,
    /// so the last call has them equal.
    ///
    /// `slices`: per weight-table index, the slices of its first dimension (the experts of a
    /// stacked expert weight) to read; the others are neither read from the checkpoint nor
    /// written, so their pages of the buffer are never touched and cost no memory (an MPI rank
    /// reads only its own experts). Weights not named are read whole. A stacked tensor rearranged
    /// by layout steps that act on each expert's slice alone (a transpose of the last two
    /// dimensions, a split, de-interleave or pad of the rows or columns of each expert; gpt-oss's
    /// `gate_up_proj`) is read and rearranged slice by slice; any other rearranged tensor is read
    /// whole when it holds a wanted slice.
    ///
    /// Weights in `stored` (GGUF-typed formats, `WeightFormat.isGGUFType`, and `int4Rows`) are
    /// read as the file stores them: their tensors' blocks (or a GPTQ/AWQ linear's `Int4Rows`),
    /// concatenated, for the packing to repack exactly.
    /// Weights in `deferred` (`readsBySlice`) get their buffer but no bytes: the packing reads
    /// them expert by expert (`loadSlices`), so a quantized plan never holds them whole in f32.
    public static func load(
        _ graph: Graph, _ checkpoint: Checkpoint, slices: [Int: Set<Int>] = [:], stored: Set<Int> = [], deferred: Set<Int> = [],
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> [AlignedBuffer] {
        let problems = check(graph, checkpoint)
        if !problems.isEmpty { throw DiagnosticError(problems) }
        // Each weight's bytes fit in an Int (`Addressable`); their sum is checked.
        var total = 0
        for w in graph.weights {
            let (sum, overflow) = total.addingReportingOverflow(w.elementCount * Addressable.bytesPerElement)
            if overflow { throw DiagnosticError(.error("the weights need more bytes than moec can address")) }
            total = sum
        }
        let reads = graph.weights.indices.map { i in SliceRead(graph.weights[i], wanted: slices[i]) }
        // Per weight: the layout steps for one slice of its stacked tensor, when they act slice by slice.
        let sliceSteps: [[WeightLayoutStep]?] = try zip(graph.weights, reads).map { w, read in
            guard !read.whole, !w.layout.allSatisfy(\.keepsOrder), w.tensors.count == 1, w.repeats == nil,
                let shape = try checkpoint.info(w.tensors[0].name)?.shape
            else { return nil }
            return Self.stepsPerLeadingSlice(w.layout, tensorShape: shape, slices: w.sourceShape.first ?? 0)
        }
        // What will be read, tensor by tensor, as the loop below reads it.
        total = 0
        for (i, (w, read)) in zip(graph.weights, reads).enumerated() {
            var offset = 0
            for (name, shape) in w.tensors {
                let n = shape.reduce(1, *)
                let runs = read.runs(within: offset..<(offset + n))
                if w.layout.allSatisfy(\.keepsOrder) {
                    total += runs.reduce(0) { $0 + $1.count } * Addressable.bytesPerElement
                } else if sliceSteps[i] != nil, let tensor = try checkpoint.info(name)?.shape {
                    total += read.sourceSlices.count * tensor.dropFirst().reduce(1, *) * Addressable.bytesPerElement
                } else if !runs.isEmpty {
                    total += n * Addressable.bytesPerElement
                }
                offset += n
            }
        }
        var done = 0
        var out: [AlignedBuffer] = []
        for (wi, (w, read)) in zip(graph.weights, reads).enumerated() {
            if stored.contains(wi) {
                if deferred.contains(wi), !w.format.isGGUFType, let k = w.shape.last, let group = w.format.group {
                    // Int4 rows read expert by expert when packed (`loadSlices(asStored:)`).
                    out.append(AlignedBuffer(floats: (w.elementCount / k * Int4Rows.rowBytes(k: k, group: group) + 3) / 4, zeroed: false))
                } else {
                    out.append(try storedBytes(w, checkpoint))
                }
                continue
            }
            let sourceCount = w.sourceShape.reduce(1, *)
            let buffer = AlignedBuffer(floats: sourceCount, zeroed: false)
            if deferred.contains(wi) {
                // Read expert by expert when packed (`loadSlices`): nothing touched yet.
                out.append(buffer)
                continue
            }
            try readWeight(w, read, sliceSteps: sliceSteps[wi], checkpoint, into: buffer) { n in
                done += n
                progress?(done, total)
            }
            if let repeats = w.repeats {
                // Upcycling: slice i of the first dimension appears repeats[i] times.
                let slice = sourceCount / repeats.count
                let expanded = AlignedBuffer(floats: w.elementCount, zeroed: false)
                var to = 0
                for (i, r) in repeats.enumerated() {
                    for _ in 0..<r {
                        if read.wanted?.contains(to / slice) ?? true {
                            (expanded.floats + to).update(from: buffer.floats + i * slice, count: slice)
                        }
                        to += slice
                    }
                }
                out.append(expanded)
            } else {
                out.append(buffer)
            }
        }
        return out
    }

    /// Whether a weight can be read one slice of its first dimension at a time into its buffer
    /// (`load(deferred:)`, `loadSlices`): stacked experts with no upcycling, whose tensors are
    /// reshaped at most or rearranged slice by slice.
    public static func readsBySlice(_ w: WeightInfo, _ checkpoint: Checkpoint) -> Bool {
        guard w.repeats == nil, w.shape.count >= 2, (w.shape.first ?? 0) > 0 else { return false }
        if w.layout.allSatisfy(\.keepsOrder) { return true }
        guard w.tensors.count == 1, let shape = try? checkpoint.info(w.tensors[0].name)?.shape else { return false }
        return stepsPerLeadingSlice(w.layout, tensorShape: shape, slices: w.sourceShape.first ?? 0) != nil
    }

    /// Reads slices `slices` of a weight's first dimension (an expert, or a matrix's rows) into
    /// their place in `buffer` (a buffer of the whole weight that `load(deferred:)` left unread),
    /// and no other bytes. `asStored`: the weight is read as stored (`int4Rows`), its slices as
    /// int4 rows.
    public static func loadSlices(_ w: WeightInfo, _ checkpoint: Checkpoint, _ slices: Range<Int>, into buffer: AlignedBuffer, asStored: Bool = false) throws {
        if asStored { return try int4RowSlices(w, checkpoint, slices, into: buffer) }
        let read = SliceRead(w, wanted: Set(slices))
        var steps: [WeightLayoutStep]? = nil
        if !w.layout.allSatisfy(\.keepsOrder), w.tensors.count == 1, let shape = try checkpoint.info(w.tensors[0].name)?.shape {
            steps = stepsPerLeadingSlice(w.layout, tensorShape: shape, slices: w.sourceShape.first ?? 0)
        }
        try readWeight(w, read, sliceSteps: steps, checkpoint, into: buffer) { _ in }
    }

    /// Reads what `read` asks of weight `w` into `buffer` (its source shape), reporting the
    /// floats' bytes read as it goes.
    private static func readWeight(
        _ w: WeightInfo, _ read: SliceRead, sliceSteps: [WeightLayoutStep]?, _ checkpoint: Checkpoint, into buffer: AlignedBuffer,
        progress: (Int) -> Void
    ) throws {
        var offset = 0
        for (name, shape) in w.tensors {
            let n = shape.reduce(1, *)
            do {
                if w.layout.allSatisfy(\.keepsOrder) {
                    // A reshape or squeeze moves no element: the tensor's bytes are the weight's.
                    for run in read.runs(within: offset..<(offset + n)) {
                        let destination = UnsafeMutableBufferPointer(start: buffer.floats + run.lowerBound, count: run.count)
                        if run.count == n {
                            try checkpoint.copyFloats(name, into: destination)
                        } else {
                            try checkpoint.copyFloats(name, elements: (run.lowerBound - offset)..<(run.upperBound - offset), into: destination)
                        }
                        progress(run.count * 4)
                    }
                } else if let steps = sliceSteps, let info = try checkpoint.info(name) {
                    // Slice by slice: tensor slice s becomes weight slice s.
                    let from = info.shape.dropFirst().reduce(1, *), to = read.sliceFloats
                    var slice = [Float](repeating: 0, count: from)
                    for s in read.sourceSlices {
                        try slice.withUnsafeMutableBufferPointer { try checkpoint.copyFloats(name, elements: (s * from)..<((s + 1) * from), into: $0) }
                        var shape = [1] + info.shape.dropFirst()
                        var data = slice
                        for step in steps {
                            guard case .success(let next) = step.apply(to: shape) else { throw WeightLayoutError("layout step '\(step)' does not fit \(shape)") }
                            data = step.apply(data, shape: shape)
                            shape = next
                        }
                        guard data.count == to else { throw WeightLayoutError("the layout gives \(data.count) elements per slice, \(to) expected") }
                        _ = UnsafeMutableBufferPointer(start: buffer.floats + s * to, count: to).update(fromContentsOf: data)
                        progress(from * 4)
                    }
                } else if !read.runs(within: offset..<(offset + n)).isEmpty {
                    let destination = UnsafeMutableBufferPointer(start: buffer.floats + offset, count: n)
                    try copyRearranged(name, w.layout, from: checkpoint, into: destination)
                    progress(n * 4)
                }
            } catch {
                throw DiagnosticError(.error("weight '\(w.name)': \(error)", at: w.location))
            }
            offset += n
        }
    }

    /// The weights whose tensors are all GPTQ or AWQ linears quantized in groups of their int4
    /// format's size (`int4z`, `int4z:64`, `int4z:128`), rows as stored: read as `Int4Rows` and
    /// repacked with their values (`load(stored:)`).
    public static func int4Rows(_ graph: Graph, _ checkpoint: Checkpoint) -> Set<Int> {
        guard checkpoint.int4Quantization != nil else { return [] }
        return Set(
            graph.weights.indices.filter { i in
                let w = graph.weights[i]
                guard w.format.offsets, w.format.bits == 4, !w.format.isGGUFType, w.repeats == nil, w.layout.allSatisfy(\.keepsOrder) else { return false }
                return w.tensors.allSatisfy { (try? checkpoint.info($0.name))??.int4Group == w.format.group }
            })
    }

    /// A weight's tensors as stored, one after the other: a GGUF-typed weight's blocks (their
    /// type checked against the weight's format, and their rows against its shape), or an int4
    /// weight's GPTQ/AWQ linears as `Int4Rows`.
    private static func storedBytes(_ w: WeightInfo, _ checkpoint: Checkpoint) throws -> AlignedBuffer {
        if !w.format.isGGUFType { return try int4RowBytes(w, checkpoint) }
        var infos: [TensorInfo] = []
        for (name, _) in w.tensors {
            guard let info = try checkpoint.info(name), let type = info.ggmlType else {
                throw DiagnosticError(.error("weight '\(w.name)' is \(w.format.rawValue), but '\(name)' is no GGUF tensor", at: w.location))
            }
            guard type.description.lowercased() == w.format.rawValue else {
                throw DiagnosticError(
                    .error("weight '\(w.name)' is \(w.format.rawValue) in the plan, but '\(name)' is \(type) in the file", at: w.location))
            }
            infos.append(info)
        }
        let bytes = infos.reduce(0) { $0 + $1.byteRange.count }
        guard w.repeats == nil, w.layout.allSatisfy(\.keepsOrder), let k = w.shape.last,
            bytes == w.elementCount / k * (k / (infos.first?.ggmlType?.blockSize ?? 1)) * (infos.first?.ggmlType?.blockBytes ?? 0)
        else {
            throw DiagnosticError(.error("weight '\(w.name)': its GGUF tensors do not hold whole rows of \(w.shape)", at: w.location))
        }
        let buffer = AlignedBuffer(floats: (bytes + 3) / 4, zeroed: false)
        var offset = 0
        for info in infos {
            do {
                try checkpoint.copyStoredBytes(info.name, into: UnsafeMutableRawPointer(buffer.floats) + offset)
            } catch {
                throw DiagnosticError(.error("weight '\(w.name)': \(error)", at: w.location))
            }
            offset += info.byteRange.count
        }
        return buffer
    }

    /// Rows of slices `slices` of an int4 weight's first dimension (an expert, or a matrix's
    /// rows), from the GPTQ/AWQ linears that hold them, as `Int4Rows` in their place in `buffer`.
    private static func int4RowSlices(_ w: WeightInfo, _ checkpoint: Checkpoint, _ slices: Range<Int>, into buffer: AlignedBuffer) throws {
        guard let group = w.format.group, let k = w.shape.last, let count = w.shape.first, count > 0 else {
            throw DiagnosticError(.error("weight '\(w.name)' is \(w.format.rawValue), which is not read as stored", at: w.location))
        }
        let rowBytes = Int4Rows.rowBytes(k: k, group: group), sliceRows = w.elementCount / k / count
        let wanted = (slices.lowerBound * sliceRows)..<(slices.upperBound * sliceRows)
        var first = 0
        for (name, shape) in w.tensors {
            let rows = shape.reduce(1, *) / k
            let part = wanted.clamped(to: first..<(first + rows))
            if !part.isEmpty {
                do {
                    try checkpoint.copyInt4Rows(
                        name, rows: (part.lowerBound - first)..<(part.upperBound - first),
                        into: UnsafeMutableRawPointer(buffer.floats) + part.lowerBound * rowBytes)
                } catch {
                    throw DiagnosticError(.error("weight '\(w.name)': \(error)", at: w.location))
                }
            }
            first += rows
        }
    }

    /// An int4 weight's GPTQ/AWQ linears as `Int4Rows` of its group, one after the other.
    private static func int4RowBytes(_ w: WeightInfo, _ checkpoint: Checkpoint) throws -> AlignedBuffer {
        guard let group = w.format.group, let k = w.shape.last, w.layout.allSatisfy(\.keepsOrder), w.repeats == nil else {
            throw DiagnosticError(.error("weight '\(w.name)' is \(w.format.rawValue), which is not read as stored", at: w.location))
        }
        let rowBytes = Int4Rows.rowBytes(k: k, group: group)
        let buffer = AlignedBuffer(floats: (w.elementCount / k * rowBytes + 3) / 4, zeroed: false)
        var row = 0
        for (name, _) in w.tensors {
            do {
                guard let info = try checkpoint.info(name), info.int4Group == group, info.shape.last == k else {
                    throw DiagnosticError(
                        .error("weight '\(w.name)' is \(w.format.rawValue) in the plan, but '\(name)' is no GPTQ/AWQ linear in groups of \(group)", at: w.location))
                }
                let rows = info.elementCount / k
                try checkpoint.copyInt4Rows(name, rows: 0..<rows, into: UnsafeMutableRawPointer(buffer.floats) + row * rowBytes)
                row += rows
            } catch let e as DiagnosticError {
                throw e
            } catch {
                throw DiagnosticError(.error("weight '\(w.name)': \(error)", at: w.location))
            }
        }
        return buffer
    }

    /// Which floats of one weight's source buffer to read: all, or the slices of its first
    /// dimension that hold wanted slices of the weight (under upcycling, a source slice is
    /// wanted when any of its copies is).
    private struct SliceRead {
        /// Wanted slices of the weight (after repeats); nil: all.
        let wanted: Set<Int>?
        /// Floats per slice of the source buffer, and the wanted source slices, ascending.
        let sliceFloats: Int
        let sourceSlices: [Int]
        let whole: Bool

        init(_ w: WeightInfo, wanted: Set<Int>?) {
            let source = w.sourceShape
            guard let wanted, let first = source.first, first > 0, source.count >= 2 else {
                self.wanted = nil
                sliceFloats = 0
                sourceSlices = []
                whole = true
                return
            }
            self.wanted = wanted
            sliceFloats = source.dropFirst().reduce(1, *)
            if let repeats = w.repeats {
                var picked: [Int] = []
                var copy = 0
                for (i, r) in repeats.enumerated() {
                    if (copy..<(copy + r)).contains(where: wanted.contains) { picked.append(i) }
                    copy += r
                }
                sourceSlices = picked
            } else {
                sourceSlices = (0..<first).filter(wanted.contains)
            }
            whole = false
        }

        /// Floats this read takes from the checkpoint.
        func sourceFloats(_ w: WeightInfo) -> Int { whole ? w.sourceShape.reduce(1, *) : sourceSlices.count * sliceFloats }

        /// The wanted floats inside `range` of the source buffer, as maximal runs, ascending.
        func runs(within range: Range<Int>) -> [Range<Int>] {
            if whole { return range.isEmpty ? [] : [range] }
            var out: [Range<Int>] = []
            for s in sourceSlices {
                let lo = max(range.lowerBound, s * sliceFloats), hi = min(range.upperBound, (s + 1) * sliceFloats)
                guard lo < hi else { continue }
                if let last = out.last, last.upperBound == lo { out[out.count - 1] = last.lowerBound..<hi } else { out.append(lo..<hi) }
            }
            return out
        }
    }

    /// The layout steps as they apply to one slice `[1, …]` of a stacked tensor of `tensorShape`,
    /// when each step keeps the leading dimension (`slices` long) and acts on each of its slices
    /// alone; nil otherwise.
    static func stepsPerLeadingSlice(_ steps: [WeightLayoutStep], tensorShape: [Int], slices: Int) -> [WeightLayoutStep]? {
        guard tensorShape.first == slices, slices > 0 else { return nil }
        var shape = tensorShape
        var out: [WeightLayoutStep] = []
        for step in steps {
            let rank = shape.count
            switch step {
            case .transpose, .split, .deinterleave: guard rank >= 3 else { return nil }
            case .pad(let cols, _): guard cols ? rank >= 2 : rank >= 3 else { return nil }
            case .squeeze(let d): guard d >= 1 else { return nil }
            case .reshape: break
            }
            guard case .success(let next) = step.apply(to: shape), next.first == slices else { return nil }
            if case .reshape(let target) = step {
                out.append(.reshape([1] + target.dropFirst()))
            } else {
                out.append(step)
            }
            shape = next
        }
        return out
    }

    /// Reads a tensor and applies the layout steps (checked by `check`) into `destination`.
    private static func copyRearranged(
        _ name: String, _ layout: [WeightLayoutStep], from checkpoint: Checkpoint, into destination: UnsafeMutableBufferPointer<Float>
    ) throws {
        guard let info = try checkpoint.info(name) else { throw WeightLayoutError("no tensor '\(name)'") }
        var shape = info.shape
        var data = [Float](repeating: 0, count: shape.reduce(1, *))
        try data.withUnsafeMutableBufferPointer { try checkpoint.copyFloats(name, into: $0) }
        for step in layout {
            guard case .success(let next) = step.apply(to: shape) else { throw WeightLayoutError("layout step '\(step)' does not fit \(shape)") }
            data = step.apply(data, shape: shape)
            shape = next
        }
        guard data.count == destination.count else { throw WeightLayoutError("the layout gives \(data.count) elements, \(destination.count) expected") }
        _ = destination.update(fromContentsOf: data)
    }

    /// Loads weights as host tensors, for the reference interpreter.
    public static func loadHost(_ graph: Graph, _ checkpoint: Checkpoint) throws -> [HostTensor] {
        let buffers = try load(graph, checkpoint)
        return zip(graph.weights, buffers).map { w, b in
            HostTensor(shape: w.shape, floats: Array(UnsafeBufferPointer(start: b.floats, count: w.elementCount)))
        }
    }
}
