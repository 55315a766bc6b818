import Foundation
import MoEBasics

/// Everything that can go wrong while reading load statistics, planning a placement or reading one
/// back. Each case prints as one clear sentence (plus one line per issue when issues were collected),
/// so the CLI only has to print `error: \(error)`.
public enum PlacementError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One problem found in a load statistics or placement file; problems are collected, not thrown
    /// one at a time, so a user sees all of them in one run.
    public struct Issue: Sendable, Equatable, CustomStringConvertible {
        public var layer: Int?
        public var expert: Int?
        public var message: String
        public init(layer: Int? = nil, expert: Int? = nil, _ message: String) {
            self.layer = layer
            self.expert = expert
            self.message = message
        }
        public var description: String {
            var s = ""
            if let l = layer { s += "layer \(l)" }
            if let e = expert { s += (s.isEmpty ? "" : ", ") + "expert \(e)" }
            return s.isEmpty ? message : s + ": " + message
        }
    }

    case cannotRead(file: String, reason: String)
    case cannotWrite(file: String, reason: String)
    case invalidJSON(file: String, line: Int, column: Int, message: String)
    case invalidLoads(file: String, issues: [Issue])
    case invalidPlacement(file: String, issues: [Issue])
    case invalidOption(name: String, message: String)
    case slotsNotMultipleOfWorkers(slots: Int, workers: Int)
    case tooFewSlots(slots: Int, experts: Int)
    case nodesDoNotDivideWorkers(nodes: Int, workers: Int)
    case groupsDoNotDivideExperts(groups: Int, experts: Int)
    case memoryExceeded(needed: Int, available: Int, detail: String)
    case previousMismatch(message: String)
    case invalidCluster(file: String, message: String)

    /// At most this many collected issues are printed; the rest are counted.
    static let printedIssues = 20

    public var description: String {
        switch self {
        case .cannotRead(let file, let reason):
            return "cannot read '\(file)': \(reason)"
        case .cannotWrite(let file, let reason):
            return "cannot write '\(file)': \(reason)"
        case .invalidJSON(let file, let line, let column, let message):
            return "\(file):\(line):\(column): \(message)"
        case .invalidLoads(let file, let issues):
            return Self.list("invalid load statistics in '\(file)'", issues)
        case .invalidPlacement(let file, let issues):
            return Self.list("invalid placement in '\(file)'", issues)
        case .invalidOption(let name, let message):
            return "\(name): \(message)"
        case .slotsNotMultipleOfWorkers(let slots, let workers):
            let lower = slots / workers * workers, upper = lower + workers
            return "--replicas \(slots) is not a multiple of --workers \(workers): every worker must hold the same number of slots (try \(lower > 0 ? "\(lower) or " : "")\(upper))"
        case .tooFewSlots(let slots, let experts):
            return "--replicas \(slots) is less than the number of experts (\(experts)): every expert needs at least one slot"
        case .nodesDoNotDivideWorkers(let nodes, let workers):
            return "--nodes \(nodes) does not divide --workers \(workers): every node must hold the same number of workers"
        case .groupsDoNotDivideExperts(let groups, let experts):
            return "--groups \(groups) does not divide the number of experts (\(experts)): every group must hold the same number of experts"
        case .memoryExceeded(let needed, let available, let detail):
            return "placement needs \(needed) bytes per worker (\(detail)) but --memory-per-worker is \(available)"
        case .previousMismatch(let message):
            return "--previous placement does not match: \(message)"
        case .invalidCluster(let file, let message):
            return "invalid cluster description in '\(file)': \(message)"
        }
    }

    private static func list(_ head: String, _ issues: [Issue]) -> String {
        var s = head + ":"
        for i in issues.prefix(printedIssues) { s += "\n  " + i.description }
        if issues.count > printedIssues { s += "\n  … and \(issues.count - printedIssues) more" }
        return s
    }

    /// Reads and parses a JSON file, turning both failures into `PlacementError`s naming the file.
    static func readJSON(_ path: String) throws(PlacementError) -> JSON {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw .cannotRead(file: path, reason: "no such file") }
        if isFolder.boolValue { throw .cannotRead(file: path, reason: "it is a folder") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .cannotRead(file: path, reason: (error as NSError).localizedDescription)
        }
        return try parseJSON(text, file: path)
    }

    static func parseJSON(_ text: String, file: String) throws(PlacementError) -> JSON {
        do { return try JSON.parse(text) } catch {
            throw .invalidJSON(
                file: file, line: error.line, column: error.column,
                message: nonFiniteNumber(in: text, at: error.offset) ?? error.message)
        }
    }

    /// `NaN`, `Infinity` and `-Infinity` are not JSON, but Python's `json.dump` writes them for
    /// non-finite floats: say what they are instead of "unexpected character 'N'".
    static func nonFiniteNumber(in text: String, at offset: Int) -> String? {
        let rest = text.utf8.dropFirst(offset)
        for word in ["NaN", "-NaN", "Infinity", "-Infinity"] where rest.starts(with: word.utf8) {
            return "\(word) is not a number JSON allows (values must be finite; Python's json.dump writes NaN and Infinity for non-finite floats)"
        }
        return nil
    }
}
