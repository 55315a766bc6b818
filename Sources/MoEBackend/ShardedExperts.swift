import Dispatch
import MoEIR
import MoEKernels

/// Whether the ranks of an `mpirun` job can each run the graph on their share of the tokens
/// alone (`Executable.shardsTokens`): every op must give each token a result that depends on
/// that token only, and every value must be one row per token, so that slicing the inputs by
/// rows and stacking the outputs' rows is the same as running all tokens at once.
public enum TokenSharding {
    /// Why `g` must run on every token in every rank, or nil when it can be sharded by tokens.
    ///
    /// 1. An op that mixes tokens (`Op.mixesTokens`: `expert_choice`, `capacity`, Sinkhorn)
    ///    needs the whole batch.
    /// 2. A computed value, or an output, must have the token count as its first dimension and
    ///    nowhere else (inputs without a token dimension are given whole to every rank).
    /// 3. A reduction over the last axis (softmax, sparsemax, the norms) of a `[tokens]` value
    ///    reduces over the tokens.
    public static func obstacle(_ g: Graph) -> String? {
        let outputs = Set(g.outputs.map(\.value))
        for (i, n) in g.nodes.enumerated() {
            let what = n.name.map { "'\($0)' (\(n.op.surfaceName))" } ?? n.op.surfaceName
            if n.op.mixesTokens { return "\(what) gives a token a result that depends on the other tokens" }
            switch n.op {
            case .weight, .constant: if !outputs.contains(ValueID(i)) { continue }
            default: break
            }
            guard case .tensor(let t) = n.type else { continue }
            if n.op == .input && !t.shape.contains(.tokens) && !outputs.contains(ValueID(i)) { continue }
            if t.shape.first != .tokens || t.shape.dropFirst().contains(.tokens) {
                return "\(what) of shape \(OpSchema.format(t)) is not one row per token"
            }
            switch n.op {
            case .softmax, .sparsemax, .rmsnorm, .layernorm:
                if g[n.operands[0]].tensorType?.shape == [.tokens] { return "\(what) reduces over the tokens" }
            default: break
            }
        }
        return nil
    }
}

/// A placed MoE block when the ranks shard the tokens (`Executable.shardsTokens`): each rank
/// routes only its share of the tokens, sends each (token, expert) row of x to the rank that
/// holds the expert, runs the rows it receives through its experts, and sends the results back
/// to be combined where their token lives.
///
/// 1. **Owned groups.** The rank's local rows (its tokens' pairs, sorted by expert) are cut into
///    groups with `ExpertPlacementRun.makeGroups`, as one process cuts all rows: each replica of
///    an expert gets an equal contiguous share of this rank's rows of it. The group's worker is
///    the destination rank. Under `--llep`, which balances the whole batch, the ranks first
///    gather every rank's rows per expert and plan the same groups over all rows
///    (`planBalanced`); each rank keeps its own rows' part of them.
/// 2. **Counts.** `sendRows[d·E + e]`, the rows of expert e for rank d, go to every rank by one
///    `MPI_Alltoall` (E integers per rank), so every rank knows what it will receive.
/// 3. **Rows out.** Each row of x, with its routing weight as an (h+1)-th float, is packed per
///    destination, expert by expert (a group's rows in order), and exchanged by one
///    `MPI_Alltoallv` (a rank's rows to itself included: MPI copies them).
/// 4. **Held groups.** The received rows are grouped per expert, from rank 0's up; each group
///    runs all phases of the packed kernel (`runGroup`, `--threads` inside the rank), reading x
///    straight from the receive buffer (row stride h+1) and the weights from the received floats.
/// 5. **Results back.** The result rows are put back in the order they arrived and returned by a
///    second `MPI_Alltoallv`; they land in the order this rank sent its rows, and `rowOf` is
///    rewritten to point at them, so the combine (slot order, as in one process) reads them.
///
/// Each result row is computed by the same kernel on the same packed operands as in one
/// process (an output element is one FMA chain over k, whatever the group's other rows), its
/// routing weight is the same float, and the combine adds in slot order: the output equals the
/// single-process run bit for bit.
final class ShardedExperts: @unchecked Sendable {
    let world: MPIWorld
    let experts: Int
    let hidden: Int
    let ffn: Int
    /// Rows a rank can receive in one block: every rank's share is at most one token larger
    /// than this one's, and each of its pairs comes at most once.
    let capacity: Int
    /// The held groups' buffers (scratch indices 1, 2, 4–8 of `PackedExpertsKernel`, for
    /// `capacity` rows): the phases read and write these instead of the arena's.
    private let buffers: [AlignedBuffer]
    let perm: UnsafeMutablePointer<Int32>
    let permWeight: UnsafeMutablePointer<Float>
    let groupMemory: UnsafeMutableRawPointer
    let packedX: UnsafeMutablePointer<Float>
    let hiddenRows: UnsafeMutablePointer<Float>
    let packedH: UnsafeMutablePointer<Float>
    /// The held groups' result rows; after the exchange, this rank's own rows, returned.
    let ys: UnsafeMutablePointer<Float>
    /// Rows out (x and weight; then results back) and rows in, `capacity · (h + 1)` floats each.
    let outgoing: UnsafeMutablePointer<Float>
    let incoming: UnsafeMutablePointer<Float>
    /// Per local row: where it went in `outgoing`, and so where its result comes back in `ys`.
    private let placeOf: UnsafeMutablePointer<Int32>
    /// `[ranks, E]` rows sent and received per (rank, expert), and a cursor per (rank, expert).
    private let sendRows: UnsafeMutablePointer<Int32>
    private let receiveRows: UnsafeMutablePointer<Int32>
    private let cursor: UnsafeMutablePointer<Int32>
    /// Per rank, in rows: sent to it, where they start in `outgoing`, received from it, where
    /// they start in `incoming`; then the same in floats for `MPI_Alltoallv`.
    private let rows: UnsafeMutablePointer<Int32>
    private let floats: UnsafeMutablePointer<Int32>
    /// Under `--llep`: every rank's rows per expert together, and the groups LLEP makes of them.
    private let globalStarts: UnsafeMutablePointer<Int32>
    private let globalGroupMemory: UnsafeMutableRawPointer
    private let globalGroups: GroupTable
    let times: DistributedTimes?

    /// For one schedule of `z.tokens` tokens (this rank's share).
    init(_ world: MPIWorld, sizes z: MoEExpertsKernel.Sizes, firstWidth: Int, times: DistributedTimes?) {
        self.world = world
        self.times = times
        experts = z.experts
        hidden = z.hidden
        ffn = z.ffn
        let held = MoEExpertsKernel.Sizes(tokens: world.size * (z.tokens + 1), slots: z.slots, experts: z.experts, hidden: z.hidden, ffn: z.ffn)
        capacity = held.pairs
        precondition(capacity <= Int(Int32.max) / (z.hidden + 1), "an MPI exchange of \(capacity) rows of \(z.hidden + 1) floats exceeds MPI's 32-bit counts")
        let bytes: [Int]
        do { bytes = try PackedExpertsKernel.scratchBytes(held, firstWidth: firstWidth) } catch { preconditionFailure("\(error)") }
        // Pages are taken only as rows arrive: most blocks receive far fewer than `capacity`.
        let exchange = capacity * (z.hidden + 1) * 4
        buffers = [1, 2, 4, 5, 6, 7, 8].map { AlignedBuffer(untouchedZeros: bytes[$0]) } + [exchange, exchange].map { AlignedBuffer(untouchedZeros: $0) }
        perm = buffers[0].raw.assumingMemoryBound(to: Int32.self)
        permWeight = buffers[1].floats
        groupMemory = buffers[2].raw
        packedX = buffers[3].floats
        hiddenRows = buffers[4].floats
        packedH = buffers[5].floats
        ys = buffers[6].floats
        outgoing = buffers[7].floats
        incoming = buffers[8].floats
        placeOf = .allocate(capacity: max(z.pairs, 1))
        let cells = world.size * z.experts
        sendRows = .allocate(capacity: max(cells, 1))
        receiveRows = .allocate(capacity: max(cells, 1))
        cursor = .allocate(capacity: max(cells, 1))
        rows = .allocate(capacity: 4 * world.size)
        floats = .allocate(capacity: 4 * world.size)
        globalStarts = .allocate(capacity: z.experts + 1)
        let groupBytes: Int
        do { groupBytes = try GroupTable.bytes(groups: PackedExpertsKernel.maxGroups(experts: z.experts)) } catch { preconditionFailure("\(error)") }
        globalGroupMemory = .allocate(byteCount: groupBytes, alignment: 8)
        globalGroups = GroupTable(globalGroupMemory, capacity: PackedExpertsKernel.maxGroups(experts: z.experts))
    }

    deinit {
        placeOf.deallocate()
        sendRows.deallocate()
        receiveRows.deallocate()
        cursor.deallocate()
        rows.deallocate()
        floats.deallocate()
        globalStarts.deallocate()
        globalGroupMemory.deallocate()
    }

    /// Steps 1–5 for one run of the block. `x` (`[tokens, h]`), `perm`, `weights`, `starts` and
    /// `rowOf` are this rank's permutation of its tokens (`MoEExpertsKernel.permute`); `owned`
    /// is scratch for its groups; `held` is the table over `groupMemory` that `runHeld` runs
    /// (all of its groups). On return `rowOf[p]` is the row of `ys` holding pair p's result.
    func exchange(
        x: UnsafePointer<Float>, perm localPerm: UnsafePointer<Int32>, weights localWeight: UnsafePointer<Float>,
        starts: UnsafePointer<Int32>, rowOf: UnsafeMutablePointer<Int32>, pairs: Int, placement: ExpertPlacementRun,
        owned: GroupTable, held: GroupTable, runHeld: () -> Void
    ) {
        var clock = DispatchTime.now().uptimeNanoseconds
        let size = world.size, rank = world.rank, e = experts, h = hidden, width = h + 1
        // 1. This rank's rows, in groups whose worker is the rank that holds their slot.
        if placement.dynamicThreshold != nil {
            planBalanced(starts: starts, placement: placement, owned: owned)
        } else {
            placement.makeGroups(owned, starts: starts, experts: e)
        }
        sendRows.initialize(repeating: 0, count: size * e)
        for g in 0..<owned.count {
            precondition(owned.worker(g) < size, "group of worker \(owned.worker(g)) in a job of \(size) ranks")
            sendRows[owned.worker(g) * e + owned.expert(g)] += Int32(owned.rows(g))
        }
        // 2. Every rank learns what it receives.
        world.allToAll(sendRows, countPerRank: e, into: receiveRows)
        let sentCount = rows, sentStart = rows + size, receivedCount = rows + 2 * size, receivedStart = rows + 3 * size
        var at: Int32 = 0
        for d in 0..<size {
            sentStart[d] = at
            for x in 0..<e {
                cursor[d * e + x] = at
                at += sendRows[d * e + x]
            }
            sentCount[d] = at - sentStart[d]
        }
        at = 0
        for s in 0..<size {
            receivedStart[s] = at
            for x in 0..<e { at += receiveRows[s * e + x] }
            receivedCount[s] = at - receivedStart[s]
        }
        let received = Int(at)
        precondition(received <= capacity, "rank \(rank) receives \(received) rows, more than the \(capacity) its buffers hold")
        // 3. Rows out: per destination, expert by expert; each x row, then its weight.
        for g in 0..<owned.count {
            let c = owned.worker(g) * e + owned.expert(g)
            for row in owned.rowBegin(g)..<(owned.rowBegin(g) + owned.rows(g)) {
                let q = Int(cursor[c])
                cursor[c] += 1
                let to = outgoing + q * width
                to.update(from: x + Int(localPerm[row]) * h, count: h)
                to[h] = localWeight[row]
                placeOf[row] = Int32(q)
            }
        }
        exchangeRows(width: width, send: (sentCount, sentStart), receive: (receivedCount, receivedStart), from: outgoing, into: incoming)
        // 4. Held groups: per expert, the rows of rank 0, 1, … in the order each sent them.
        for s in 0..<size {
            var a = receivedStart[s]
            for x in 0..<e {
                cursor[s * e + x] = a
                a += receiveRows[s * e + x]
            }
        }
        held.removeAll()
        var j = 0
        for x in 0..<e {
            let begin = j
            for s in 0..<size {
                var q = Int(cursor[s * e + x])
                for _ in 0..<Int(receiveRows[s * e + x]) {
                    perm[j] = Int32(q)
                    permWeight[j] = incoming[q * width + h]
                    q += 1
                    j += 1
                }
            }
            if j > begin { held.append(expert: x, rowBegin: begin, rows: j - begin, worker: rank) }
        }
        held.layOut(hidden: h, ffn: ffn)
        var dispatchSeconds = DistributedTimes.lap(&clock)
        runHeld()
        let expertSeconds = DistributedTimes.lap(&clock)
        // 5. Results back in the order the rows came, and each local pair pointed at its row.
        for j in 0..<received { (outgoing + Int(perm[j]) * h).update(from: ys + j * h, count: h) }
        exchangeRows(width: h, send: (receivedCount, receivedStart), receive: (sentCount, sentStart), from: outgoing, into: ys)
        for p in 0..<pairs where rowOf[p] >= 0 { rowOf[p] = placeOf[Int(rowOf[p])] }
        dispatchSeconds += DistributedTimes.lap(&clock)
        if let times {
            times.experts += expertSeconds
            times.dispatch += dispatchSeconds
            times.pairs += received
            for r in 0..<size where r != rank {
                times.bytesSent += (Int(sentCount[r]) * width + Int(receivedCount[r]) * h) * MemoryLayout<Float>.size
            }
        }
    }

    /// Step 1 under `--llep`: LLEP balances the whole batch, so every rank learns every rank's
    /// rows per expert (one `MPI_Allgatherv` of E integers a rank) and plans the same groups over
    /// all of them, the rows of expert e in rank order (rank 0's tokens first, as in one
    /// process). This rank's groups are those groups cut to its own rows of each expert.
    private func planBalanced(starts: UnsafePointer<Int32>, placement: ExpertPlacementRun, owned: GroupTable) {
        let size = world.size, rank = world.rank, e = experts
        let all = cursor // [ranks, E]: rows per (rank, expert)
        for x in 0..<e { all[rank * e + x] = starts[x + 1] - starts[x] }
        for r in 0..<size {
            floats[r] = Int32(e)
            floats[size + r] = Int32(r * e)
        }
        world.allGatherInPlace(all, counts: floats, displacements: floats + size)
        var at: Int32 = 0
        for x in 0..<e {
            globalStarts[x] = at
            for r in 0..<size { at += all[r * e + x] }
        }
        globalStarts[e] = at
        placement.makeGroups(globalGroups, starts: globalStarts, experts: e)
        owned.removeAll()
        for g in 0..<globalGroups.count {
            let x = globalGroups.expert(g)
            // This rank's rows of expert x among all ranks'.
            var mine = Int(globalStarts[x])
            for r in 0..<rank { mine += Int(all[r * e + x]) }
            let lo = max(globalGroups.rowBegin(g), mine)
            let hi = min(globalGroups.rowBegin(g) + globalGroups.rows(g), mine + Int(all[rank * e + x]))
            if hi > lo { owned.append(expert: x, rowBegin: Int(starts[x]) + lo - mine, rows: hi - lo, worker: globalGroups.worker(g)) }
        }
    }

    /// One `MPI_Alltoallv` of rows of `width` floats: `send.count[r]` rows from row
    /// `send.start[r]` of `from` to rank r, rank r's `receive.count[r]` rows to row
    /// `receive.start[r]` of `into`.
    private func exchangeRows(
        width: Int, send: (count: UnsafeMutablePointer<Int32>, start: UnsafeMutablePointer<Int32>),
        receive: (count: UnsafeMutablePointer<Int32>, start: UnsafeMutablePointer<Int32>), from: UnsafePointer<Float>,
        into: UnsafeMutablePointer<Float>
    ) {
        let size = world.size, w = Int32(width)
        for r in 0..<size {
            floats[r] = send.count[r] * w
            floats[size + r] = send.start[r] * w
            floats[2 * size + r] = receive.count[r] * w
            floats[3 * size + r] = receive.start[r] * w
        }
        world.allToAll(from, counts: floats, displacements: floats + size, into: into, counts: floats + 2 * size, displacements: floats + 3 * size)
    }
}
