/// What `moec place` was asked for; the CLI fills this from its flags and hands it to
/// `PlacementPlanner.plan`.
public struct PlacementOptions: Sendable, Equatable {
    /// Which planner produces the placement.
    public enum Policy: String, Sendable, CaseIterable {
        /// moec's planner (never worse than EPLB on the same input: it compares and keeps the better).
        case moec
        /// DeepSeek's EPLB, as ported in `EPLB` (useful as a baseline from the command line).
        case eplb
    }

    /// `--workers W`: devices sharing the experts of each layer.
    public var workers: Int
    /// `--replicas P`: physical expert slots per layer (default: the number of experts, no replicas).
    public var physicalSlots: Int?
    /// `--nodes N`: workers are grouped into `N` nodes of `W / N` workers (fast links inside a node).
    public var nodes: Int = 1
    /// `--groups G`: experts form `G` contiguous groups of `E / G` (DeepSeek-V3's group-limited routing).
    public var groups: Int = 1
    /// `--memory-per-worker BYTES`: bytes a worker may spend on expert weights, over all layers.
    public var memoryPerWorker: Int?
    /// `--expert-bytes BYTES`: bytes of one expert's weights (else the load file's `"expert_bytes"`).
    public var expertBytes: Int?
    /// `--link-cost C`: how much one token crossing nodes (as a fraction of all tokens) weighs against
    /// imbalance (max/mean) when choosing between candidate placements. Only matters with `--nodes`.
    public var linkCost: Double = 1
    /// `--previous FILE`: the placement in use now; the new plan moves as few expert weights as it
    /// can without giving up balance.
    public var previous: ExpertPlacement?
    /// `--move-tolerance T`: with `previous`, a placement whose largest worker load is at most
    /// `T · mean` above the best balance found (and cross-node tokens at most `T · total` above)
    /// counts as "the same balance" when choosing the one with the fewest moves. 0 is strict; the
    /// default 0.001 (0.1 % of the mean load, below the noise of any load statistics) avoids moving
    /// dozens of experts for an invisible gain. Never allows more than EPLB's largest load.
    public var moveTolerance: Double = 0.001
    /// `--policy moec|eplb`.
    public var policy: Policy = .moec
    /// How many packings moec's replica-count search may try per layer (per node when hierarchical).
    public var searchEvaluations: Int = 300

    public init(
        workers: Int, physicalSlots: Int? = nil, nodes: Int = 1, groups: Int = 1,
        memoryPerWorker: Int? = nil, expertBytes: Int? = nil, linkCost: Double = 1,
        previous: ExpertPlacement? = nil, moveTolerance: Double = 0.001, policy: Policy = .moec
    ) {
        self.workers = workers
        self.physicalSlots = physicalSlots
        self.nodes = nodes
        self.groups = groups
        self.memoryPerWorker = memoryPerWorker
        self.expertBytes = expertBytes
        self.linkCost = linkCost
        self.previous = previous
        self.moveTolerance = moveTolerance
        self.policy = policy
    }
}
