import Foundation

/// Locations in the repository, found from this file's path so tests run from any folder.
public enum RepoPaths {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    public static func path(_ relative: String) -> String { root + "/" + relative }
    public static var graphs: String { path("graphs") }
    public static var fixtures: String { path("Tests/Fixtures") }
}

/// A fresh temporary folder, removed when the value is deinitialised.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String
    public init(_ prefix: String = "moec-test") {
        let base = NSTemporaryDirectory() + "\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }
    public func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Golden files: compares `actual` with the file's contents, or rewrites the file when
/// `MOEC_BLESS=1` is set. Returns nil when they match, else a readable difference.
public enum Golden {
    public static var blessing: Bool { ProcessInfo.processInfo.environment["MOEC_BLESS"] == "1" }

    public static func check(_ actual: String, against path: String) -> String? {
        if blessing {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try? actual.write(toFile: path, atomically: true, encoding: .utf8)
            return nil
        }
        guard let expected = try? String(contentsOfFile: path, encoding: .utf8) else {
            return "golden file \(path) is missing (run with MOEC_BLESS=1 to record it)"
        }
        if expected == actual { return nil }
        let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
        let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
        for i in 0..<max(e.count, a.count) {
            let el = i < e.count ? String(e[i]) : "<end of file>"
            let al = i < a.count ? String(a[i]) : "<end of output>"
            if el != al {
                return "\(path):\(i + 1): differs\n  expected: \(el)\n  actual:   \(al)\n(re-record with MOEC_BLESS=1 and review the diff)"
            }
        }
        return "\(path): differs"
    }
}
