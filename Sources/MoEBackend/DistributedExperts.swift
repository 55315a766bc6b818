import MoEKernels

/// A placed MoE block across the ranks of an `mpirun` job (`ExecutionOptions.world`): rank r is
/// worker r of the placement and runs only the groups of its slots.
///
/// Every rank runs the whole graph on all tokens: the router, the permutation and the groups
/// (`ExpertPlacementRun.makeGroups`) are computed identically everywhere, so every rank knows
/// which rank computes which rows of `ys` without asking. Then:
///
/// 1. Each rank runs the groups of its worker (all phases per group, `--threads` inside the rank).
/// 2. `exchange`: each rank copies its groups' rows of `ys` into a staging buffer at its own
///    displacement (ranks in order, each rank's groups in group order), one `MPI_Allgatherv` in
///    place gives every rank every row, and the rows are copied back to their places in `ys`.
/// 3. The combine runs as in one process, on every rank.
///
/// Each row of `ys` is computed by the same kernel on the same packed operands as in one process
/// (an output element is one FMA chain over k, whatever the group's other rows), and the combine
/// sums in slot order, so every rank's output equals the single-process placed run bit for bit.
/// (The token-sharded version, each rank routing only its share of the tokens and exchanging
/// rows with `MPI_Alltoallv`, is the next step: it also needs the graph's other ops to be
/// per-token, which `expert_choice`, `route_capacity` and `sinkhorn` are not.)
final class DistributedExperts: @unchecked Sendable {
    let world: MPIWorld
    /// Per rank: floats of `ys` it computed, and where they go in the staging buffer.
    private let counts: UnsafeMutablePointer<Int32>
    private let displacements: UnsafeMutablePointer<Int32>

    init(_ world: MPIWorld) {
        self.world = world
        counts = .allocate(capacity: world.size)
        displacements = .allocate(capacity: world.size)
    }

    deinit {
        counts.deallocate()
        displacements.deallocate()
    }

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

    /// Gives every rank the rows of `ys` (`[rows, h]`) that the other ranks computed, through
    /// `staging` (room for all of `ys`). Every rank calls it once per run of the block.
    func exchange(_ ys: UnsafeMutablePointer<Float>, hidden h: Int, groups: GroupTable, staging: UnsafeMutablePointer<Float>) {
        let size = world.size, rank = world.rank
        counts.initialize(repeating: 0, count: size)
        for g in 0..<groups.count {
            let w = groups.worker(g)
            precondition(w < size, "group of worker \(w) in a job of \(size) ranks")
            counts[w] += Int32(groups.rows(g) * h)
        }
        var total: Int32 = 0
        for r in 0..<size {
            displacements[r] = total
            total += counts[r]
        }
        // Rank r's rows, group by group, from ys to staging (r == rank) or back.
        func copy(rank r: Int, toStaging: Bool) {
            var at = Int(displacements[r])
            for g in 0..<groups.count where groups.worker(g) == r {
                let rows = ys + groups.rowBegin(g) * h, n = groups.rows(g) * h
                if toStaging { (staging + at).update(from: rows, count: n) } else { rows.update(from: staging + at, count: n) }
                at += n
            }
        }
        copy(rank: rank, toStaging: true)
        world.allGatherInPlace(staging, counts: counts, displacements: displacements)
        for r in 0..<size where r != rank { copy(rank: r, toStaging: false) }
    }
}
