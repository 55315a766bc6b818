/// A position in a source file, 1-based line and column (columns count Unicode scalars).
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// A location for things that have no place in a source file (command-line values, configs).
    public static func unknown(_ what: String = "<unknown>") -> SourceLocation {
        SourceLocation(file: what, line: 0, column: 0)
    }

    public var isKnown: Bool { line > 0 }

    public var description: String {
        isKnown ? "\(file):\(line):\(column)" : file
    }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// A half-open range of source text; `end` may equal `start` for a point.
public struct SourceRange: Hashable, Sendable {
    public var start: SourceLocation
    /// Number of columns the range covers on the start line (at least 1 when printed).
    public var length: Int

    public init(_ start: SourceLocation, length: Int = 1) {
        self.start = start
        self.length = length
    }
}

/// The text of one source file, kept so diagnostics can quote the offending line.
public final class SourceFile: Sendable {
    public let path: String
    public let text: String
    /// Lines without their terminators.
    public let lines: [Substring]

    public init(path: String, text: String) {
        self.path = path
        self.text = text
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasSuffix("\r") ? line.dropLast() : line
        }
    }

    public func line(_ number: Int) -> Substring? {
        guard number >= 1, number <= lines.count else { return nil }
        return lines[number - 1]
    }
}
