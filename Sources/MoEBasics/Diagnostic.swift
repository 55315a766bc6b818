/// One message for a person: an error, warning or note, optionally tied to a place in a source file.
public struct Diagnostic: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable, Comparable {
        case note, warning, error
        public static func < (a: Severity, b: Severity) -> Bool {
            let order: [Severity] = [.note, .warning, .error]
            return order.firstIndex(of: a)! < order.firstIndex(of: b)!
        }
    }

    public struct Note: Hashable, Sendable {
        public var message: String
        public var range: SourceRange?
        public init(_ message: String, at range: SourceRange? = nil) {
            self.message = message
            self.range = range
        }
    }

    public var severity: Severity
    public var message: String
    public var range: SourceRange?
    public var notes: [Note]

    public init(_ severity: Severity, _ message: String, at range: SourceRange? = nil, notes: [Note] = []) {
        self.severity = severity
        self.message = message
        self.range = range
        self.notes = notes
    }

    public static func error(_ message: String, at range: SourceRange? = nil, notes: [Note] = []) -> Diagnostic {
        Diagnostic(.error, message, at: range, notes: notes)
    }

    public static func error(_ message: String, at location: SourceLocation, length: Int = 1, notes: [Note] = []) -> Diagnostic {
        Diagnostic(.error, message, at: SourceRange(location, length: length), notes: notes)
    }

    public static func warning(_ message: String, at range: SourceRange? = nil, notes: [Note] = []) -> Diagnostic {
        Diagnostic(.warning, message, at: range, notes: notes)
    }

    public var location: SourceLocation? { range?.start }

    /// One line, `file:line:col: error: message`, without the quoted source.
    public var description: String {
        var s = ""
        if let loc = range?.start { s += "\(loc): " }
        s += "\(severity.rawValue): \(message)"
        return s
    }
}

/// An error carrying several diagnostics: thrown when a stage found errors it has already collected.
public struct DiagnosticError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    public init(_ diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
    public init(_ diagnostic: Diagnostic) { self.diagnostics = [diagnostic] }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Collects diagnostics from one compilation and renders them for a terminal or a golden file.
public final class DiagnosticEngine: @unchecked Sendable {
    public private(set) var diagnostics: [Diagnostic] = []
    private var sources: [String: SourceFile] = [:]
    /// Stop collecting after this many errors: later ones are usually consequences.
    public var errorLimit = 20

    public init() {}

    public func register(_ file: SourceFile) { sources[file.path] = file }

    public func emit(_ d: Diagnostic) {
        if d.severity == .error && errorCount >= errorLimit { return }
        if diagnostics.contains(d) { return }
        diagnostics.append(d)
    }

    public func error(_ message: String, at range: SourceRange?, notes: [Diagnostic.Note] = []) {
        emit(.error(message, at: range, notes: notes))
    }

    public var errorCount: Int { diagnostics.filter { $0.severity == .error }.count }
    public var hasErrors: Bool { errorCount > 0 }

    /// Throws a `DiagnosticError` with everything collected if any error was reported.
    public func throwIfErrors() throws {
        if hasErrors { throw DiagnosticError(diagnostics) }
    }

    /// Renders diagnostics like clang and swiftc: the header line, the source line, a caret
    /// under the range, then the notes. `color` adds ANSI colours for terminals.
    /// Diagnostics print in source order (file, line, column); those without a location first.
    public func render(_ list: [Diagnostic]? = nil, color: Bool = false) -> String {
        var out = ""
        let sorted = (list ?? diagnostics).enumerated().sorted { a, b in
            switch (a.element.location, b.element.location) {
            case (nil, nil): return a.offset < b.offset
            case (nil, _): return true
            case (_, nil): return false
            case (let x?, let y?): return x == y ? a.offset < b.offset : x < y
            }
        }.map(\.element)
        for d in sorted {
            out += render(d, color: color)
        }
        let errors = (list ?? diagnostics).filter { $0.severity == .error }.count
        if errors > 1 { out += "\(errors) errors generated.\n" }
        return out
    }

    public func render(_ d: Diagnostic, color: Bool = false) -> String {
        var out = renderOne(severity: d.severity.rawValue, message: d.message, range: d.range, color: color)
        for n in d.notes {
            out += renderOne(severity: "note", message: n.message, range: n.range, color: color)
        }
        return out
    }

    private func renderOne(severity: String, message: String, range: SourceRange?, color: Bool) -> String {
        let bold = color ? "\u{1B}[1m" : "", reset = color ? "\u{1B}[0m" : ""
        let sevColor: String
        switch severity {
        case "error": sevColor = color ? "\u{1B}[1;31m" : ""
        case "warning": sevColor = color ? "\u{1B}[1;35m" : ""
        default: sevColor = color ? "\u{1B}[1;36m" : ""
        }
        var out = ""
        if let r = range { out += "\(bold)\(r.start): \(reset)" }
        out += "\(sevColor)\(severity):\(reset) \(bold)\(message)\(reset)\n"
        if let r = range, r.start.isKnown, let file = sources[r.start.file], let line = file.line(r.start.line) {
            let (text, col) = Self.quoted(String(line).replacingTabs(), column: max(1, r.start.column))
            out += "\(text)\n"
            let caretLen = max(1, min(r.length, max(1, text.count - col + 1)))
            out += String(repeating: " ", count: col - 1)
            out += (color ? "\u{1B}[1;32m" : "") + "^" + String(repeating: "~", count: caretLen - 1) + reset + "\n"
        }
        return out
    }

    /// The most characters of a source line a diagnostic quotes. A longer line (generated or junk
    /// input can put megabytes on one line) is cut to a window around the caret, each cut end
    /// marked with "…", so an error never prints more than about this much source.
    public static let quotedLineLimit = 160

    /// `line` as quoted, and the caret's column in the quote.
    static func quoted(_ line: String, column: Int) -> (text: String, column: Int) {
        guard line.count > quotedLineLimit else { return (line, column) }
        let chars = Array(line)
        let start = max(0, min(column - 1 - quotedLineLimit / 3, chars.count - quotedLineLimit))
        let end = min(chars.count, start + quotedLineLimit)
        let head = start > 0 ? "…" : "", tail = end < chars.count ? "…" : ""
        return (head + String(chars[start..<end]) + tail, column - start + head.count)
    }
}

extension String {
    /// Tabs become single spaces so the caret column lines up with the column numbers we report.
    fileprivate func replacingTabs() -> String {
        String(self.map { $0 == "\t" ? " " : $0 })
    }
}
