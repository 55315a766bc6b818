// MoEPlacement: expert load statistics and placement planning (`moec place`).
//
// Data flow, one file per step:
//
//   LoadStatistics.swift         "expert_load" JSON → [[Double]] (layer × expert), every problem named
//   PlacementOptions.swift       what was asked: workers, slots, nodes, groups, memory, previous, …
//   PlacementPlanner.swift       the pipeline, per layer: EPLB baseline, moec candidates, choice, moves
//     EPLB.swift                 DeepSeek's EPLB, ported step for step (the baseline)
//     Replication.swift          replica counts (divisor rules) and the replication lower bound
//     SlotPacking.swift          replicas → workers with equal slot counts; LPT + swap local search
//     BalancedPlanner.swift      moec's flat planner: several allocations, then replica-count search
//     NodeSpreading.swift        fewer cross-node tokens at the same largest load
//     MoveMinimizer.swift        stay close to a previous placement (relabel, adapt, repair, swaps)
//     Hungarian.swift            assignment problem, for relabelling workers
//   PlacementPlan.swift          the result: placement + per-layer report; its JSON form
//   PlacementPlan+Explain.swift  `--explain`: per-layer tables and bar charts
//   PlacementMetrics.swift       load model, traffic model, lower bound
//   ExpertPlacement.swift        the runtime-facing placement; reads and validates placement JSON
//   ExpertPlacement+Dispatch.swift  token ranges per replica; LLEP-style spilling
//   ClusterSimulation.swift      `--simulate`: predicted step time of static / EPLB / moec placements
//   PlaceCommand.swift           argument parsing and running for the CLI
//   PlacementBenchmark.swift     the acceptance sweep against EPLB
//   SyntheticLoads.swift, MinHeap.swift  seeded Zipf loads; a heap with index tie-breaks
//
// Public API in one breath: `PlaceCommand.parse(args).run()` for the CLI; underneath,
// `LoadStatistics.read(from:)` → `PlacementPlanner.plan(_:_:)` → `PlacementPlan.json` /
// `.explanation()`; at run time `ExpertPlacement(json:)` with `replicaRanges(tokenCounts:)` and
// `leastLoadedDispatch(tokenCounts:threshold:…)`; `ClusterSimulator.simulate(_:loads:)`.
//
// Everything is deterministic: no unseeded randomness, no dictionary-order dependence, ties broken
// by index. Layers are planned in parallel, each independently.
