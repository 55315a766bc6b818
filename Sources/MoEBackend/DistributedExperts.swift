import Dispatch
import MoEKernels

/// Where an `mpirun` rank's time goes in the MoE blocks of one run, summed over the blocks
/// (`moec bench` under `mpirun` prints it per rank). Reset before a run, read after it.
public final class DistributedTimes: @unchecked Sendable {
    let world: MPIWorld
    /// Seconds in this rank's expert groups (x rows packed, the GEMMs and the activation).
    public internal(set) var experts = 0.0
    /// Seconds moving rows between ranks: packed, exchanged by `MPI_Alltoallv` (waiting there for
    /// the slowest rank too), unpacked; with the tokens sharded, x rows out and results back.
    public internal(set) var dispatch = 0.0
    /// Seconds combining this rank's tokens and gathering outputs: each block's on every rank
    /// (all tokens on every rank), or the run's outputs at its end (tokens sharded).
    public internal(set) var combine = 0.0
    /// (token, expert) rows this rank computed, and bytes it sent to other ranks.
    public internal(set) var pairs = 0
    public internal(set) var bytesSent = 0

    init(_ world: MPIWorld) { self.world = world }

    public var rank: Int { world.rank }
    public var ranks: Int { world.size }

    public func reset() {
        experts = 0
        dispatch = 0
        combine = 0
        pairs = 0
        bytesSent = 0
    }

    /// Every rank's `values` (the same count on every rank) on every rank: `result[r]` is rank r's.
    /// A collective call: every rank must make it.
    public func gather(_ values: [Double]) -> [[Double]] {
        var all = [Double](repeating: 0, count: values.count * world.size)
        for (i, v) in values.enumerated() { all[world.rank * values.count + i] = v }
        all.withUnsafeMutableBufferPointer { world.allGatherInPlace($0.baseAddress!, countPerRank: values.count) }
        return (0..<world.size).map { Array(all[($0 * values.count)..<(($0 + 1) * values.count)]) }
    }

    /// Seconds since `start` (`DispatchTime` nanoseconds), and now.
    static func lap(_ start: inout UInt64) -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { start = now }
        return Double(now - start) / 1e9
    }
}

/// A placed MoE block across the ranks of an `mpirun` job (`ExecutionOptions.world`) when every
/// rank runs every token: rank r is worker r of the placement and runs only the groups of its
/// slots. The ranks use this mode only for graphs they cannot shard by tokens (`TokenSharding`:
/// `expert_choice`, `capacity`, Sinkhorn, values not one row per token); otherwise each rank runs the graph on its share of the tokens alone and the block exchanges
/// (token, expert) rows both ways (`ShardedExperts`, `Executable.shardsTokens`).
///
/// Every rank runs the whole graph on all tokens: the router, the permutation and the groups
/// (`ExpertPlacementRun.makeGroups`) are computed identically everywhere, so every rank knows
/// which rank computes which rows of `ys`, and who needs them, without asking. Rank r combines
/// the tokens of its share `tokens(ofRank: r)` (contiguous, sizes within one). Then:
///
/// 1. Each rank runs the groups of its worker (all phases per group, `--threads` inside the rank).
/// 2. `sendRows`: one `MPI_Alltoallv` sends each row of `ys` a rank computed to the rank whose
///    share holds the row's token (rows in group order, each group's rows in order, on both
///    sides), and each rank puts the rows it receives in their places in its `ys`.
/// 3. Each rank combines its tokens as one process does (slot order), then `gatherOutput`: one
///    `MPI_Allgatherv` in place gives every rank the whole output, for the ops after the block.
///
/// Each row of `ys` is computed by the same kernel on the same packed operands as in one process
/// (an output element is one FMA chain over k, whatever the group's other rows), and the combine
/// sums in slot order, so every rank's output equals the single-process placed run bit for bit.
final class DistributedExperts: @unchecked Sendable {
    let world: MPIWorld
    let tokens: Int
    let hidden: Int
    /// Per token: the rank whose share holds it.
    private let owner: UnsafeMutablePointer<Int32>
    /// Rows received from the other ranks: at most every (token, slot) pair of this rank's share.
    private let received: UnsafeMutablePointer<Float>
    /// Per rank, in floats: sent to it, where they start in the send buffer, received from it,
    /// where they start in `received`.
    private let counts: UnsafeMutablePointer<Int32>

    /// Where this rank's time goes, when measured (`Executable.distributedTimes`).
    let times: DistributedTimes?

    /// For one schedule: `tokens`, routed to `slots` experts each, of `h` features.
    init(_ world: MPIWorld, tokens: Int, slots: Int, hidden h: Int, times: DistributedTimes? = nil) {
        self.times = times
        let rows = tokens * slots
        precondition(rows <= Int(Int32.max) / max(h, 1), "an MPI exchange of \(rows) rows of \(h) floats exceeds MPI's 32-bit counts")
        self.world = world
        self.tokens = tokens
        hidden = h
        owner = .allocate(capacity: max(tokens, 1))
        for r in 0..<world.size {
            for t in Self.share(r, of: tokens, ranks: world.size) { owner[t] = Int32(r) }
        }
        let share = (tokens + world.size - 1) / world.size
        received = .allocate(capacity: max(share * slots * h, 1))
        counts = .allocate(capacity: 4 * world.size)
    }

    deinit {
        owner.deallocate()
        received.deallocate()
        counts.deallocate()
    }

    /// Tokens `share(r) ..` of rank r: a contiguous equal split (`TokenSplit.equal`). The tokens
    /// a rank combines here, and the tokens it runs the graph on when the ranks shard them.
    static func share(_ r: Int, of tokens: Int, ranks: Int) -> Range<Int> { (r * tokens / ranks)..<((r + 1) * tokens / ranks) }

    /// The tokens this rank combines.
    var myTokens: Range<Int> { Self.share(world.rank, of: tokens, ranks: world.size) }

    /// Groups this rank runs.
    func groupCount(_ groups: GroupTable) -> Int {
        var n = 0
        for g in 0..<groups.count where groups.worker(g) == world.rank { n += 1 }
        return n
    }

    /// A job running this rank's groups: chunk k is its k-th group. Run with
    /// `Parallel.forEachChunk(count: groupCount(groups), threads:, job:)`.
    func job(_ groups: GroupTable, _ body: @escaping @Sendable (Int) -> Void) -> ChunkJob {
        let rank = world.rank
        return ChunkJob { ks in
            var k = 0
            for g in 0..<groups.count where groups.worker(g) == rank {
                if ks.contains(k) { body(g) }
                k += 1
            }
        }
    }

    /// Step 2: each row of `ys` (`[rows, h]`, row r of token `perm[r]`) from the rank that
    /// computed it to the rank that combines its token. `staging` has room for all of `ys`.
    func sendRows(
        _ ys: UnsafeMutablePointer<Float>, perm: UnsafePointer<Int32>, groups: GroupTable, staging: UnsafeMutablePointer<Float>
    ) {
        let size = world.size, rank = world.rank, h = hidden
        let sendCounts = counts, sendStarts = counts + size, receiveCounts = counts + 2 * size, receiveStarts = counts + 3 * size
        counts.initialize(repeating: 0, count: 4 * size)
        for g in 0..<groups.count {
            let w = groups.worker(g)
            precondition(w < size, "group of worker \(w) in a job of \(size) ranks")
            for row in groups.rowBegin(g)..<(groups.rowBegin(g) + groups.rows(g)) {
                // A rank's rows of its own tokens are in place already: not sent.
                let to = Int(owner[Int(perm[row])])
                if w == rank && to != rank { sendCounts[to] += Int32(h) }
                if to == rank && w != rank { receiveCounts[w] += Int32(h) }
            }
        }
        for r in 1..<max(size, 1) {
            sendStarts[r] = sendStarts[r - 1] + sendCounts[r - 1]
            receiveStarts[r] = receiveStarts[r - 1] + receiveCounts[r - 1]
        }
        // Pack: for each destination, this rank's rows of its tokens, in group and row order.
        for to in 0..<size where to != rank {
            var at = Int(sendStarts[to])
            forEachRow(of: rank, to: to, perm: perm, groups: groups) { row in
                (staging + at).update(from: ys + row * h, count: h)
                at += h
            }
        }
        if let times {
            for g in 0..<groups.count where groups.worker(g) == rank { times.pairs += groups.rows(g) }
            for r in 0..<size { times.bytesSent += Int(sendCounts[r]) * MemoryLayout<Float>.size }
        }
        world.allToAll(
            staging, counts: sendCounts, displacements: sendStarts, into: received, counts: receiveCounts,
            displacements: receiveStarts)
        // Unpack in the same order the senders packed.
        for from in 0..<size where from != rank {
            var at = Int(receiveStarts[from])
            forEachRow(of: from, to: rank, perm: perm, groups: groups) { row in
                (ys + row * h).update(from: received + at, count: h)
                at += h
            }
        }
    }

    /// Rows computed by rank `from` whose tokens rank `to` combines, in group and row order.
    private func forEachRow(of from: Int, to: Int, perm: UnsafePointer<Int32>, groups: GroupTable, _ body: (Int) -> Void) {
        for g in 0..<groups.count where groups.worker(g) == from {
            for row in groups.rowBegin(g)..<(groups.rowBegin(g) + groups.rows(g)) where Int(owner[Int(perm[row])]) == to { body(row) }
        }
    }

    /// Step 3: every rank's combined tokens of `y` (`[tokens, h]`) on every rank.
    func gatherOutput(_ y: UnsafeMutablePointer<Float>) {
        let size = world.size, h = hidden
        for r in 0..<size {
            let share = Self.share(r, of: tokens, ranks: size)
            counts[r] = Int32(share.count * h)
            counts[size + r] = Int32(share.lowerBound * h)
        }
        world.allGatherInPlace(y, counts: counts, displacements: counts + size)
    }
}
