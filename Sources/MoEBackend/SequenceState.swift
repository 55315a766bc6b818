import Foundation
import MoEBasics
import MoEIR
import MoEKernels

/// What the runs of one sequence carry from one run to the next, so that a decoder layer can
/// decode a token at a time: how many tokens the sequence holds so far (the position of the next
/// run's first row), each `attention`'s keys and values of those tokens (its KV cache), and each
/// `rope`'s tables for every position up to `capacity`.
///
/// A run with a sequence (`Executable.run(_:sequence:)`) reads its rows as the sequence's next
/// positions: its ropes rotate by those positions, its attentions attend to every earlier token
/// of the sequence as well as its own, and afterwards the sequence holds its tokens too. Running
/// a prompt at once or a token at a time gives the same outputs. Everything is allocated when the
/// sequence is made, or when `reserve` makes room for more tokens: a run allocates nothing. One run at a time per sequence; different
/// sequences of one executable may run at once.
public final class SequenceState: @unchecked Sendable {
    /// The most tokens the sequence can hold now (`reserve` raises it).
    public var capacity: Int {
        lock.lock()
        defer { lock.unlock() }
        return buffers.capacity
    }
    /// The executable whose runs this sequence is for.
    public let executable: Executable

    /// Per node of the graph: an attention's cache (`[capacity, width]` keys and values, as its
    /// key and value operands lay out a row), else nil.
    struct Cache {
        let keys: AlignedBuffer, values: AlignedBuffer
        let keyWidth: Int, valueWidth: Int
    }

    /// Everything a sequence of `capacity` tokens allocates.
    struct Buffers {
        let capacity: Int
        let caches: [Cache?]
        /// Per node of the graph: a rope's cos and sin tables for positions `0..<capacity`
        /// (`Kernels.ropeTables`; ropes with the same settings share theirs), else nil.
        let ropeTables: [AlignedBuffer?]
        /// Attention scores, `scoresPerPart` floats for each part of a parallel region.
        let scores: AlignedBuffer
        let scoresPerPart: Int
    }
    /// Replaced only by `reserve`, never during a run: the steps read it while one goes on.
    private(set) var buffers: Buffers

    /// Guards `held`, `running` and `buffers`' replacement.
    private let lock = NSLock()
    private var held = 0
    private var running = false

    /// Bytes a sequence of `capacity` tokens of `g` takes, or nil when an Int cannot count them.
    public static func bytes(_ g: Graph, capacity: Int, threads: Int) -> Int? {
        do throws(ByteCount.Overflow) {
            // Kernels.attentionScoresFloats(tokens: capacity), counted without overflowing.
            var total = try ByteCount.product(threads, try ByteCount.sum(capacity, 5), 16)
            var tables: Set<String> = []
            for n in g.nodes {
                guard case .sequence(let op) = n.op else { continue }
                switch op {
                case .attention:
                    let width = widths(n, g)
                    total = try ByteCount.sum(total, try ByteCount.product(capacity, width.key + width.value, 4))
                case .rope:
                    guard tables.insert(ropeKey(n)).inserted else { continue }
                    total = try ByteCount.sum(total, try ByteCount.product(capacity, n.attributes.int("head_dim") ?? 0, 4))
                }
            }
            return total
        } catch {
            return nil
        }
    }

    /// Floats per row of an attention's keys and values.
    private static func widths(_ n: Node, _ g: Graph) -> (key: Int, value: Int) {
        (g[n.operands[1]].tensorType!.last!.fixedValue!, g[n.operands[2]].tensorType!.last!.fixedValue!)
    }

    /// Ropes with equal keys have equal tables.
    private static func ropeKey(_ n: Node) -> String {
        let a = n.attributes
        let yarn = SequenceOp.yarn(a).map { "\($0.factor) \($0.betaFast) \($0.betaSlow) \($0.originalMax) \($0.truncate) \(String(describing: $0.attentionFactor))" }
        return "\(a.int("head_dim") ?? 0) \(a.float("theta") ?? 10000) \(yarn ?? "-")"
    }

    /// A sequence of at most `capacity` tokens for `executable`'s runs. Throws when `capacity` is
    /// below 1, or its buffers need more bytes than an Int counts or than the machine has.
    public init(executable: Executable, capacity: Int) throws(InputError) {
        self.executable = executable
        buffers = try Self.allocate(executable, capacity: capacity)
    }

    /// The buffers of a sequence of `capacity` tokens, checked as `init` says.
    private static func allocate(_ executable: Executable, capacity: Int) throws(InputError) -> Buffers {
        let g = executable.graph
        guard capacity >= 1 else { throw InputError("a sequence holds at least 1 token, got a capacity of \(capacity)") }
        let threads = executable.options.threads
        guard let bytes = Self.bytes(g, capacity: capacity, threads: threads) else {
            throw InputError("a sequence of \(capacity) tokens needs more bytes than moec can address")
        }
        let memory = ProcessInfo.processInfo.physicalMemory
        guard UInt64(bytes) <= memory else {
            throw InputError(
                "a sequence of \(capacity) tokens needs \(bytes >> 20) MiB for its keys, values and rotary tables, more than this machine's memory (\(memory >> 20) MiB)")
        }
        var caches = [Cache?](repeating: nil, count: g.nodes.count)
        var tables = [AlignedBuffer?](repeating: nil, count: g.nodes.count)
        var shared: [String: AlignedBuffer] = [:]
        for (i, n) in g.nodes.enumerated() {
            guard case .sequence(let op) = n.op else { continue }
            switch op {
            case .attention:
                let (kw, vw) = Self.widths(n, g)
                caches[i] = Cache(
                    keys: AlignedBuffer(floats: capacity * kw, zeroed: false), values: AlignedBuffer(floats: capacity * vw, zeroed: false),
                    keyWidth: kw, valueWidth: vw)
            case .rope:
                let key = Self.ropeKey(n)
                if let t = shared[key] {
                    tables[i] = t
                    continue
                }
                let a = n.attributes, d = a.int("head_dim")!
                let t = AlignedBuffer(floats: capacity * d)
                Kernels.ropeTables(
                    rows: capacity, headDim: d, theta: a.float("theta") ?? 10000, yarn: SequenceOp.yarn(a), cos: t.floats,
                    sin: t.floats + capacity * (d / 2))
                shared[key] = t
                tables[i] = t
            }
        }
        let perPart = Kernels.attentionScoresFloats(tokens: capacity)
        return Buffers(
            capacity: capacity, caches: caches, ropeTables: tables, scores: AlignedBuffer(floats: threads * perPart, zeroed: false),
            scoresPerPart: perPart)
    }

    /// Makes room for `capacity` tokens, keeping the tokens held (their keys and values are
    /// copied into the larger buffers). A capacity not above the present one changes nothing.
    /// Throws, changing nothing, while the sequence runs or when the buffers do not fit (as
    /// `init`). The one call that allocates once the sequence is made.
    public func reserve(capacity: Int) throws(InputError) {
        lock.lock()
        defer { lock.unlock() }
        guard !running else { throw InputError("the sequence is running; reserve room after its run") }
        guard capacity > buffers.capacity else { return }
        let grown = try Self.allocate(executable, capacity: capacity)
        for (old, new) in zip(buffers.caches, grown.caches) {
            guard let old, let new else { continue }
            new.keys.floats.update(from: old.keys.floats, count: held * old.keyWidth)
            new.values.floats.update(from: old.values.floats, count: held * old.valueWidth)
        }
        buffers = grown
    }

    /// Makes the sequence hold `count` tokens whose keys and values are seeded uniform values in
    /// [−1, 1): a context to time decode steps after (`moec bench --context`) without running a
    /// prompt, whose attention would cost time quadratic in `count`. Throws when `count` exceeds
    /// the capacity or the sequence runs.
    public func fillRandomly(count: Int, seed: UInt64) throws(InputError) {
        lock.lock()
        defer { lock.unlock() }
        guard !running else { throw InputError("the sequence is running; fill it before or after its run") }
        guard count >= 0, count <= buffers.capacity else {
            throw InputError("cannot fill a sequence of \(buffers.capacity) tokens with \(count)")
        }
        var random = SplitMix64(state: seed)
        for cache in buffers.caches {
            guard let cache else { continue }
            for (buffer, width) in [(cache.keys, cache.keyWidth), (cache.values, cache.valueWidth)] {
                for i in 0..<(count * width) { buffer.floats[i] = Float(random.unit() * 2 - 1) }
            }
        }
        held = count
    }

    /// How many tokens the sequence holds: the position of the next run's first row.
    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return held
    }

    /// Forgets every token from position `count` on (0: all of them), so that the next run
    /// continues from there: to start a new sequence, or to take back tokens (a rejected draft).
    public func rewind(to count: Int) throws(InputError) {
        lock.lock()
        defer { lock.unlock() }
        guard !running else { throw InputError("the sequence is running; rewind it after its run") }
        guard count >= 0, count <= held else {
            throw InputError("cannot rewind a sequence of \(held) tokens to \(count): give a count from 0 to \(held)")
        }
        held = count
    }

    /// Starts a run of `tokens` more tokens by `executable`: returns the run's first position.
    func begin(_ executable: Executable, tokens: Int) throws(InputError) -> Int {
        guard executable === self.executable else { throw InputError("the sequence was made for another plan") }
        lock.lock()
        defer { lock.unlock() }
        guard !running else { throw InputError("the sequence is already running (one run at a time per sequence)") }
        guard tokens <= buffers.capacity - held else {
            throw InputError(
                "the sequence holds \(held) of its \(buffers.capacity) tokens: \(tokens) more \(tokens == 1 ? "does" : "do") not fit (reserve a larger capacity, or rewind it)")
        }
        running = true
        return held
    }

    /// Ends the run `begin` started: the sequence holds its `tokens` too.
    func end(tokens: Int) {
        lock.lock()
        defer { lock.unlock() }
        held += tokens
        running = false
    }
}

/// The sequence a schedule's current run belongs to, if any, and its first position: set by the
/// run before its steps and read by the rope and attention steps (`SequenceSteps`), which are
/// built once per token count.
final class SequenceBinding: @unchecked Sendable {
    var state: SequenceState?
    var position = 0
}
