import Foundation

/// libFuzzer entry point for the load statistics reader and the planner behind `moec place`
/// (built by scripts/fuzz.sh stats).
///
/// The first four bytes choose the planner's options (workers, replicas, nodes, groups, policy,
/// memory per worker), the rest is the statistics file `moec profile` / `run --stats` writes. The
/// text goes the way `moec place --load` reads it: `PlacementError.parseJSON`, then
/// `LoadStatistics(json:)`, which must accept it or throw a `PlacementError` that prints. Loads it
/// accepts must write back to the same loads, and a small enough problem is planned: the plan must
/// be produced or refused with a `PlacementError`, and a plan's placement must read back.
@_cdecl("LLVMFuzzerTestOneInput")
public func statsFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 4 else { return 0 }
    let knobs = (0..<4).map { Int(data[$0]) }
    guard let text = String(validating: UnsafeBufferPointer(start: data + 4, count: size - 4), as: UTF8.self) else { return 0 }
    let stats: LoadStatistics
    do {
        stats = try LoadStatistics(json: PlacementError.parseJSON(text, file: "fuzz.json"), file: "fuzz.json")
    } catch {
        _ = error.description
        return 0
    }
    do {
        let again = try LoadStatistics(json: JSON.parse(stats.json.compact), file: "again.json")
        if again != stats { fatalError("the loads change through their JSON form:\n\(stats.json.compact)") }
    } catch {
        fatalError("accepted loads do not read back (\(error)):\n\(stats.json.compact)")
    }
    let e = stats.expertCount
    guard e <= 256, stats.layerCount <= 32 else { return 0 }
    let workers = 1 + knobs[0] % 8
    var options = PlacementOptions(workers: workers)
    // Replicas: none (the planner may refuse), or enough slots in whole rows of `workers`.
    if knobs[1] % 4 != 0 { options.physicalSlots = (e + workers - 1) / workers * workers + (knobs[1] % 4 - 1) * workers }
    options.nodes = [1, 2, workers, 3][knobs[2] % 4]
    options.groups = [1, 2, 4, max(1, e)][(knobs[2] / 4) % 4]
    options.policy = knobs[2] & 16 == 0 ? .moec : .eplb
    if knobs[3] % 4 == 1 { options.memoryPerWorker = 1 << (knobs[3] / 4) }
    if knobs[3] % 4 == 2 { options.memoryPerWorker = Int.max - knobs[3]; options.expertBytes = Int.max / 3 }
    options.searchEvaluations = 30
    let plan: PlacementPlan
    do {
        plan = try PlacementPlanner.plan(stats, options)
    } catch {
        _ = error.description
        return 0
    }
    _ = plan.explanation()
    _ = plan.summaryLine
    do {
        let placement = try ExpertPlacement(json: JSON.parse(plan.json.compact), file: "plan.json")
        if placement != plan.placement { fatalError("a plan's placement changes through its JSON form:\n\(plan.json.pretty)") }
    } catch {
        fatalError("a plan's JSON does not read back as a placement (\(error)):\n\(plan.json.pretty)")
    }
    return 0
}
