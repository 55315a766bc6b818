import MoEIR
import MoEKernels

/// Executor steps of rotary embeddings and causal self-attention (see `SequenceOp`). A step is
/// built for one token count, so the rotary tables of its positions are computed then, and each
/// thread's row of attention scores is allocated then: a run computes no sine and allocates
/// nothing. A run that continues a sequence (`SequenceBinding`) takes the sequence's tables at
/// its positions instead, appends its keys and values to the sequence's cache and attends over
/// the whole cache.
extension SequenceOp: StepFamily {
    /// A rope's YaRN settings, when it has them (`factor` set).
    static func yarn(_ a: Attributes) -> Kernels.YaRN? {
        guard let factor = a.float("factor") else { return nil }
        return Kernels.YaRN(
            factor: factor, betaFast: a.float("beta_fast") ?? 32, betaSlow: a.float("beta_slow") ?? 1, originalMax: a.int("original_max") ?? 1,
            truncate: a.bool("truncate") ?? true, attentionFactor: a.float("attention_factor"))
    }

    func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] { [] }

    func step(_ s: Schedule, _ n: Node, _ i: Int) -> (() -> Void)? {
        let g = s.executable.graph, threads = s.executable.options.threads
        let a = n.attributes
        switch self {
        case .rope:
            let xt = g[n.operands[0]].tensorType!
            let x = UnsafePointer(s.floats(n.operands[0])), y = SendablePointer(s.floats(ValueID(i)))
            let rows = s.rows(xt), width = xt.last!.fixedValue!, d = a.int("head_dim")!
            let tables = AlignedBuffer(floats: max(rows * d, 1))
            let cos = tables.floats, sin = tables.floats + rows * (d / 2)
            Kernels.ropeTables(rows: rows, headDim: d, theta: a.float("theta") ?? 10000, yarn: Self.yarn(a), cos: cos, sin: sin)
            let xp = SendablePointer(x), cp = SendablePointer(cos), sp = SendablePointer(sin)
            let binding = s.sequence, half = d / 2
            let job = ChunkJob { r in
                if let state = binding.state, let own = state.buffers.ropeTables[i] {
                    // The sequence's tables cover every position; this run's rows start at `position`.
                    let at = binding.position * half, capacity = state.buffers.capacity
                    Kernels.rope(
                        xp.pointer, y.pointer, rows: r, width: width, headDim: d, cos: own.floats + at, sin: own.floats + capacity * half + at)
                    return
                }
                withExtendedLifetime(tables) {
                    Kernels.rope(xp.pointer, y.pointer, rows: r, width: width, headDim: d, cos: cp.pointer, sin: sp.pointer)
                }
            }
            let parallel = rows * width >= 1 << 15 ? threads : 1
            return { Parallel.forEachChunk(count: rows, threads: parallel, job: job) }

        case .attention:
            let qt = g[n.operands[0]].tensorType!, vt = g[n.operands[2]].tensorType!
            let q = SendablePointer(s.floats(n.operands[0])), k = SendablePointer(s.floats(n.operands[1]))
            let v = SendablePointer(s.floats(n.operands[2])), out = SendablePointer(s.floats(ValueID(i)))
            let sinks = n.operands.count == 4 ? SendablePointer(s.floats(n.operands[3])) : nil
            let heads = a.int("heads")!, kvHeads = a.int("kv_heads") ?? heads
            let rows = s.rows(qt), d = qt.last!.fixedValue! / heads, dv = vt.last!.fixedValue! / kvHeads
            let scale = Float(a.float("scale") ?? 1 / Double(d).squareRoot()), window = a.int("window") ?? 0
            // Work items are blocks of rows of a head, or of a key/value head's query heads for one
            // row (`Kernels.attentionItems`); each part of the region scores its items in its own
            // part of `scores`.
            let items = Kernels.attentionItems(tokens: rows, heads: heads, kvHeads: kvHeads), perPart = Kernels.attentionScoresFloats(tokens: rows)
            let parts = max(1, min(threads, items))
            let scores = AlignedBuffer(floats: parts * perPart)
            let sp = SendablePointer(scores.floats)
            let binding = s.sequence
            let job = ChunkJob { r in
                var part = 0
                while Parallel.chunk(part, of: parts, count: items).lowerBound != r.lowerBound { part += 1 }
                if let state = binding.state, let cache = state.buffers.caches[i] {
                    // Keys and values of every position so far, this run's appended (the step did).
                    let b = state.buffers
                    Kernels.attention(
                        q: q.pointer, k: cache.keys.floats, v: cache.values.floats, out: out.pointer, tokens: rows,
                        position: binding.position, heads: heads, kvHeads: kvHeads, headDim: d, valueDim: dv, scale: scale, window: window,
                        sinks: sinks.map { UnsafePointer($0.pointer) }, items: r, scores: b.scores.floats + part * b.scoresPerPart)
                    return
                }
                withExtendedLifetime(scores) {
                    Kernels.attention(
                        q: q.pointer, k: k.pointer, v: v.pointer, out: out.pointer, tokens: rows, heads: heads, kvHeads: kvHeads,
                        headDim: d, valueDim: dv, scale: scale, window: window, sinks: sinks.map { UnsafePointer($0.pointer) }, items: r,
                        scores: sp.pointer + part * perPart)
                }
            }
            return {
                if let state = binding.state, let cache = state.buffers.caches[i] {
                    // This run's keys and values join the sequence's at its positions.
                    let at = binding.position
                    (cache.keys.floats + at * cache.keyWidth).update(from: k.pointer, count: rows * cache.keyWidth)
                    (cache.values.floats + at * cache.valueWidth).update(from: v.pointer, count: rows * cache.valueWidth)
                }
                Parallel.forEachChunk(count: items, threads: parts, job: job)
            }
        }
    }
}
