import Foundation
import MoEBasics
import MoEIR
import MoEKernels

/// One executable graph specialised to a token count: every buffer has a fixed place in one
/// arena and every op is a closure with its pointers and sizes already bound. Running it is a
/// loop over closures.
public final class Schedule: @unchecked Sendable {
    public struct Step {
        /// The op (or fused ops) this step runs, for listings and profiles.
        public let name: String
        /// The node whose value the step computes.
        public let node: ValueID
        let run: () -> Void
    }

    public let tokens: Int
    public let layout: ArenaPlanner.Layout
    public private(set) var steps: [Step] = []
    let arena: AlignedBuffer
    /// Constants live outside the arena so that no buffer ever overwrites them.
    let constants: AlignedBuffer
    unowned let executable: Executable
    /// The sequence of the run in progress, when it has one (`Executable.run(_:sequence:)`).
    let sequence = SequenceBinding()
    /// Arena byte offset of each node's value (nil for weights and constants).
    private let offsets: [Int?]
    /// Arena byte offsets of each node's scratch buffers.
    private let scratchOffsets: [[Int]]
    private let constantIndex: [Int: Int]
    /// Per MoE node: how many (token, slot) pairs each expert received in the last run.
    public private(set) var expertLoads: [(node: Int, counts: UnsafeMutablePointer<Int32>, experts: Int)] = []
    /// Per MoE node, in the last run: [tokens routed to no expert, tokens whose input or router
    /// scores were not finite] (see `ExpertsSteps.nonFiniteRows`).
    private var tokenCounts: [(node: Int, counts: UnsafeMutablePointer<Int>)] = []

    init(executable: Executable, tokens: Int) throws(ArenaTooLarge) {
        self.executable = executable
        self.tokens = tokens
        let g = executable.graph
        let memory = try Schedule.memoryPlan(g, tokens: tokens)
        layout = memory.layout
        offsets = memory.valueOffsets
        scratchOffsets = memory.scratchOffsets
        constantIndex = memory.constantIndex
        // An MPI rank writes only its experts' rows of the expert buffers: the pages of the
        // others' stay untouched (and cost no memory) when the arena is not zeroed by hand.
        arena = executable.options.world == nil ? AlignedBuffer(bytes: layout.totalBytes) : AlignedBuffer(untouchedZeros: layout.totalBytes)
        constants = AlignedBuffer(floats: max(memory.constantIndex.count, 1))
        for (i, slot) in memory.constantIndex {
            constants.floats[slot] = Float(g.nodes[i].attributes.float("value") ?? 0)
        }
        for (i, n) in g.nodes.enumerated() where n.op == .moe_experts {
            let e = g[n.expertsView!.routing].type.routing!.experts
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: e)
            p.initialize(repeating: 0, count: e)
            expertLoads.append((i, p, e))
            let c = UnsafeMutablePointer<Int>.allocate(capacity: 2)
            c.initialize(repeating: 0, count: 2)
            tokenCounts.append((i, c))
        }
        for d in Schedule.stepDescriptions(g) {
            let n = g[d.node]
            guard let run = n.op.steps.step(self, n, d.node.index) else { preconditionFailure("\(d.name) has no step") }
            steps.append(Step(name: d.name, node: d.node, run: run))
        }
    }

    /// Where every value and scratch buffer of `g` lives in the arena for `tokens` tokens.
    public struct MemoryPlan: Sendable {
        public var layout: ArenaPlanner.Layout
        var valueOffsets: [Int?]
        var scratchOffsets: [[Int]]
        var constantIndex: [Int: Int]
        /// Bytes of values and scratch, summed without reuse (what the arena saves against).
        public var unsharedBytes: Int
    }

    /// A token count whose buffers need more bytes than an Int can count.
    public struct ArenaTooLarge: Error, Sendable, CustomStringConvertible {
        public var tokens: Int
        public var description: String { "\(tokens) tokens need more bytes of buffers than moec can address" }
    }

    /// Plans the arena: each value is live from its step (inputs: from the start) to its last
    /// reader as the `memory-planning` pass recorded it (`Graph.lastReaders`; outputs to the
    /// end), or to the end of the run when the graph has no memory plan; each step's scratch
    /// only during the step. Throws when a
    /// buffer, or all of them together, would need more bytes than an Int holds.
    public static func memoryPlan(_ g: Graph, tokens: Int) throws(ArenaTooLarge) -> MemoryPlan {
        do throws(ByteCount.Overflow) {
            return try checkedMemoryPlan(g, tokens: tokens)
        } catch {
            throw ArenaTooLarge(tokens: tokens)
        }
    }

    private static func checkedMemoryPlan(_ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> MemoryPlan {
        let end = g.nodes.count
        // The verifier checks a plan's liveness; one of the wrong length is ignored here, not trusted.
        let uses = g.lastReaders.flatMap { $0.count == end ? $0 : nil } ?? [Int](repeating: end, count: end)
        var requests: [ArenaPlanner.Request] = []
        var valueRequest = [Int?](repeating: nil, count: g.nodes.count)
        var scratchRequests = [[Int]](repeating: [], count: g.nodes.count)
        var constantIndex: [Int: Int] = [:]
        for (i, n) in g.nodes.enumerated() {
            switch n.op {
            case .weight: continue
            case .constant:
                constantIndex[i] = constantIndex.count
                continue
            default: break
            }
            let first = n.op == .input ? 0 : i
            valueRequest[i] = requests.count
            requests.append(.init(bytes: try valueBytes(n.type, tokens: tokens), firstStep: first, lastStep: max(uses[i], i)))
            for bytes in try scratchBytes(n, g, tokens: tokens) {
                scratchRequests[i].append(requests.count)
                requests.append(.init(bytes: bytes, firstStep: i, lastStep: i))
            }
        }
        // Every offset, end and live total the planner computes is at most the sum of all
        // aligned buffers, so once that fits in an Int the planner cannot overflow.
        var aligned: [Int] = []
        for r in requests { aligned.append(try ByteCount.roundedUp(r.bytes, to: ArenaPlanner.alignment)) }
        let unshared = try ByteCount.sum(aligned)
        let layout = ArenaPlanner.plan(requests)
        return MemoryPlan(
            layout: layout,
            valueOffsets: valueRequest.map { $0.map { layout.offsets[$0] } },
            scratchOffsets: scratchRequests.map { $0.map { layout.offsets[$0] } },
            constantIndex: constantIndex,
            unsharedBytes: unshared)
    }

    deinit {
        for l in expertLoads { l.counts.deallocate() }
        for c in tokenCounts { c.counts.deallocate() }
    }

    /// The load buffer of MoE node `i`.
    func loadCounts(_ i: Int) -> UnsafeMutablePointer<Int32> {
        expertLoads.first { $0.node == i }!.counts
    }

    /// The token counts of MoE node `i`: [routed to no expert, invalid].
    func tokenCounts(_ i: Int) -> UnsafeMutablePointer<Int> {
        tokenCounts.first { $0.node == i }!.counts
    }

    /// Per `moe_experts` node in graph order, the tokens of the last run routed to no expert
    /// (`unrouted`; tokens halted before a hop are not counted at it) and the tokens whose input
    /// or router scores were not finite (`invalid`: their output rows are NaN).
    public func lastTokenCounts() -> [(unrouted: Int, invalid: Int)] {
        tokenCounts.map { ($0.counts[0], $0.counts[1]) }
    }

    /// The MoE layer (`Graph.moeLayers`) of MoE node `i`: its layer in a placement. Every hop of
    /// a multi-hop block is in its block's layer.
    func moeLayerIndex(_ i: Int) -> Int {
        executable.graph.moeLayers.firstIndex { $0.nodes.contains(ValueID(i)) }!
    }

    /// Expert token counts of the last run, per `moe_experts` node in graph order (a multi-hop
    /// block has one node per hop; `Graph.moeLayers` groups them into the block's layer).
    public func lastExpertLoads() -> [[Int]] {
        expertLoads.map { l in (0..<l.experts).map { Int(l.counts[$0]) } }
    }

    static func valueBytes(_ t: IRType, tokens: Int) throws(ByteCount.Overflow) -> Int {
        switch t {
        case .tensor(let tt): return try ByteCount.product(max(try ByteCount.elements(tt, tokens: tokens), 1), 4)
        case .routing(let r): return try ByteCount.product(tokens, r.slots, 8)
        }
    }

    /// Temporary buffers a step needs while it runs (its family's `StepFamily.scratchBytes`).
    static func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        try n.op.steps.scratchBytes(n, g, tokens: tokens)
    }

    // MARK: Pointers

    func pointer(_ id: ValueID) -> UnsafeMutableRawPointer {
        let n = executable.graph[id]
        switch n.op {
        case .weight:
            let i = n.attributes.int("index")!
            guard let p = executable.weightPointer(i) else {
                preconditionFailure("weight @\(executable.graph.weights[i].name) is only kept packed")
            }
            return UnsafeMutableRawPointer(mutating: p)
        case .constant:
            return UnsafeMutableRawPointer(constants.floats + constantIndex[id.index]!)
        default:
            return arena.raw + offsets[id.index]!
        }
    }

    func floats(_ id: ValueID) -> UnsafeMutablePointer<Float> { pointer(id).assumingMemoryBound(to: Float.self) }

    func scratch(_ node: Int, _ k: Int) -> UnsafeMutableRawPointer { arena.raw + scratchOffsets[node][k] }

    /// The matrix (2-D) or per-expert matrices (3-D) of a matrix operand: a weight's, prepared
    /// once by the executable, or views of a computed value's arena buffer (`linear(x, w * 2)`),
    /// which are multiplied unpacked.
    func matrices(_ id: ValueID) -> [LinearWeight] {
        let n = executable.graph[id]
        if n.op == .weight { return executable.matrices[n.attributes.int("index")!] }
        let shape = n.tensorType!.fixedShape!
        let rows = shape[shape.count - 2], cols = shape[shape.count - 1]
        let base = UnsafePointer(floats(id))
        return (0..<(shape.count == 3 ? shape[0] : 1)).map {
            LinearWeight(n: rows, k: cols, raw: base + $0 * rows * cols, packed: nil)
        }
    }

    // MARK: Running

    /// Copies the inputs into the arena.
    func load(_ inputs: [String: HostTensor]) {
        for (name, id, _) in executable.graph.inputs {
            let t = inputs[name]!
            let p = pointer(id)
            switch t.storage {
            case .f32(let f): f.withUnsafeBufferPointer { p.copyMemory(from: $0.baseAddress!, byteCount: f.count * 4) }
            case .i32(let v): v.withUnsafeBufferPointer { p.copyMemory(from: $0.baseAddress!, byteCount: v.count * 4) }
            }
        }
    }

    /// Copies rows `rows` of the inputs with a token dimension (the first: `TokenSharding`
    /// checked it) into the arena, and the inputs without one whole: this rank's share of a
    /// sharded run (`Executable.shardsTokens`).
    func load(_ inputs: [String: HostTensor], rows: Range<Int>) {
        precondition(rows.count == tokens, "a share of \(rows.count) tokens loaded into a schedule for \(tokens)")
        for (name, id, type) in executable.graph.inputs {
            let t = inputs[name]!
            let width = type.shape.first == .tokens ? type.shape.dropFirst().reduce(1) { $0 * $1.resolve(tokens: 0) } : 0
            let range = width == 0 ? 0..<t.count : (rows.lowerBound * width)..<(rows.upperBound * width)
            let p = pointer(id)
            switch t.storage {
            case .f32(let f): f.withUnsafeBufferPointer { p.copyMemory(from: $0.baseAddress! + range.lowerBound, byteCount: range.count * 4) }
            case .i32(let v): v.withUnsafeBufferPointer { p.copyMemory(from: $0.baseAddress! + range.lowerBound, byteCount: range.count * 4) }
            }
        }
    }

    /// Copies the inputs from buffers a caller owns (the graph's inputs in order, each holding
    /// its type's elements at this schedule's token count: the caller checked the shapes).
    func load(_ inputs: [UnsafeRawPointer]) {
        for ((_, id, type), p) in zip(executable.graph.inputs, inputs) {
            pointer(id).copyMemory(from: p, byteCount: type.elementCount(tokens: tokens) * 4)
        }
    }

    /// Copies output `index` (of the graph's outputs) into a buffer a caller owns, which holds
    /// its elements at this schedule's token count.
    func copyOutput(_ index: Int, to buffer: UnsafeMutableRawPointer) {
        let o = executable.graph.outputs[index]
        let count = executable.graph[o.value].tensorType!.elementCount(tokens: tokens)
        buffer.copyMemory(from: pointer(o.value), byteCount: count * 4)
    }

    /// Runs every step in order (with BLAS at the executable's thread count).
    public func execute() {
        executable.withBLASThreads { for s in steps { s.run() } }
    }

    /// Runs every step on the loaded inputs as the next tokens of `sequence` (see
    /// `SequenceState`), which then holds them. Throws, running nothing, when the tokens do not
    /// fit, the sequence is running, or it is another executable's.
    public func execute(continuing sequence: SequenceState) throws(InputError) {
        let position = try sequence.begin(executable, tokens: tokens)
        self.sequence.state = sequence
        self.sequence.position = position
        execute()
        self.sequence.state = nil
        sequence.end(tokens: tokens)
    }

    /// Runs one step alone (BLAS threads as the executable's), for tools that look at steps.
    public func execute(step i: Int) {
        executable.withBLASThreads { steps[i].run() }
    }

    /// Copies the outputs out of the arena.
    func outputs() -> [String: HostTensor] {
        var out: [String: HostTensor] = [:]
        let g = executable.graph
        for o in g.outputs {
            let t = g[o.value].tensorType!
            let shape = t.shape.map { $0.resolve(tokens: tokens) }
            let count = shape.reduce(1, *)
            let p = pointer(o.value)
            if t.dtype == .i32 {
                out[o.name] = HostTensor(shape: shape, ints: Array(UnsafeBufferPointer(start: p.assumingMemoryBound(to: Int32.self), count: count)))
            } else {
                out[o.name] = HostTensor(shape: shape, floats: Array(UnsafeBufferPointer(start: p.assumingMemoryBound(to: Float.self), count: count)))
            }
        }
        return out
    }

    /// Fills the inputs with seeded random values (for benchmarks), without allocating. With
    /// `share`, the schedule runs rows `share` of a run of `of` tokens (`Executable.tokenShare`):
    /// it gets those rows of the inputs the whole run would get.
    public func fillInputsRandomly(seed: UInt64, share: Range<Int>? = nil, of total: Int? = nil) {
        var random = SplitMix64(state: seed &+ SplitMix64.gamma)
        let share = share ?? 0..<tokens
        precondition(share.count == tokens, "a share of \(share.count) tokens for a schedule of \(tokens)")
        for (_, id, type) in executable.graph.inputs {
            let count = type.elementCount(tokens: total ?? tokens)
            // Elements kept: the share's rows of an input with a token dimension, else all.
            let width = type.shape.first == .tokens ? count / max(total ?? tokens, 1) : 0
            let kept = width == 0 ? 0..<count : (share.lowerBound * width)..<(share.upperBound * width)
            if type.dtype == .i32 {
                let p = pointer(id).assumingMemoryBound(to: Int32.self)
                for i in 0..<count {
                    let v = Int32(truncatingIfNeeded: random.next() % 32000)
                    if kept.contains(i) { p[i - kept.lowerBound] = v }
                }
            } else {
                let p = floats(id)
                for i in 0..<count {
                    // Approximately standard normal: sum of uniforms.
                    var s = 0.0
                    for _ in 0..<4 { s += random.unit() }
                    if kept.contains(i) { p[i - kept.lowerBound] = Float((s - 2) * 1.7320508) }
                }
            }
        }
    }

    /// The arena's size in bytes.
    public var arenaBytes: Int { layout.totalBytes }
}
