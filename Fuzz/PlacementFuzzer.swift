import Foundation

/// libFuzzer entry point for the placement reader (built by scripts/fuzz.sh placement): the file
/// `moec place -o` writes and `moec run --placement` / `moec place --previous` read.
///
/// The input goes the way those commands read it: `PlacementError.parseJSON`, then
/// `ExpertPlacement(json:)`, which must accept it or throw a `PlacementError` that prints. A
/// placement it accepts must hold what the executor relies on (every slot names an expert in
/// range, every expert has a slot, `log2phy` inverts `phy2log`) and write back to itself. A small
/// one is then given to the planner as the previous placement (`--previous`), as `moec place`
/// does, with loads made up from its shape: the planner must plan or refuse with a
/// `PlacementError`.
@_cdecl("LLVMFuzzerTestOneInput")
public func placementFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    let placement: ExpertPlacement
    do {
        placement = try ExpertPlacement(json: PlacementError.parseJSON(text, file: "fuzz.json"), file: "fuzz.json")
    } catch {
        _ = error.description
        return 0
    }
    let p = placement
    guard p.workers > 0, p.nodes > 0, p.workers % p.nodes == 0, p.slotsPerWorker > 0, p.experts > 0 else {
        fatalError("accepted a placement of \(p.workers) workers, \(p.nodes) nodes, \(p.slotsPerWorker) slots, \(p.experts) experts")
    }
    for (l, layer) in p.layers.enumerated() {
        guard layer.phy2log.count == p.physicalSlots, layer.log2phy.count == p.experts else {
            fatalError("layer \(l): \(layer.phy2log.count) slots and \(layer.log2phy.count) experts accepted")
        }
        for (s, e) in layer.phy2log.enumerated() {
            guard (0..<p.experts).contains(e), layer.log2phy[e].contains(s) else { fatalError("layer \(l) slot \(s): expert \(e) accepted") }
        }
        for (e, slots) in layer.log2phy.enumerated() where slots.isEmpty { fatalError("layer \(l): expert \(e) has no slot") }
    }
    do {
        let again = try ExpertPlacement(json: JSON.parse(p.json.compact), file: "again.json")
        if again != p { fatalError("the placement changes through its JSON form:\n\(p.json.compact)") }
    } catch {
        fatalError("an accepted placement does not read back (\(error)):\n\(p.json.compact)")
    }
    guard !p.layers.isEmpty, p.layers.count <= 16, p.experts <= 128, p.physicalSlots <= 256 else { return 0 }
    // Loads skewed by a fixed rule, one row per layer of the previous placement.
    var loads: [[Double]] = []
    for l in 0..<p.layers.count {
        let row: [Double] = (0..<p.experts).map { (e: Int) -> Double in Double((e * 7 + l * 3) % 11 + 1) }
        loads.append(row)
    }
    do throws(PlacementError) {
        let stats = try LoadStatistics(layers: loads)
        var options = PlacementOptions(workers: p.workers, physicalSlots: p.physicalSlots, nodes: p.nodes, previous: p)
        options.searchEvaluations = 30
        let plan = try PlacementPlanner.plan(stats, options)
        _ = plan.explanation()
        _ = plan.summaryLine
    } catch {
        _ = error.description
    }
    return 0
}
