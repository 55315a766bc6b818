import MoEBasics

/// Positions between moec's source locations (1-based lines, columns counting Unicode scalars)
/// and the Language Server Protocol's (0-based lines, characters counting UTF-16 code units, the
/// encoding every client supports).
struct TextPositions {
    /// The document's lines without terminators (a CR before an LF is dropped, as `SourceFile`
    /// does).
    let lines: [Substring]

    init(_ text: String) {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
    }

    /// The LSP position of moec's `line`:`column` (clamped to the document).
    func position(line: Int, column: Int) -> JSON {
        let l = max(0, min(line - 1, lines.count - 1))
        let text = lines.isEmpty ? "" : lines[l]
        var units = 0, scalars = 0
        for s in text.unicodeScalars {
            if scalars >= column - 1 { break }
            units += s.utf16.count
            scalars += 1
        }
        return JSON(["line": JSON(l), "character": JSON(units)])
    }

    /// The LSP range of a moec range: `length` scalars on the start line.
    func range(_ r: SourceRange) -> JSON {
        JSON(["start": position(line: r.start.line, column: r.start.column), "end": position(line: r.start.line, column: r.start.column + max(r.length, 1))])
    }

    /// moec's (line, column) for an LSP position (line 0-based, UTF-16 character), or nil
    /// outside the document.
    func location(line: Int, character: Int) -> (line: Int, column: Int)? {
        guard line >= 0, line < lines.count, character >= 0 else { return nil }
        var units = 0, column = 1
        for s in lines[line].unicodeScalars {
            if units >= character { break }
            units += s.utf16.count
            column += 1
        }
        return (line + 1, column)
    }

    /// The UTF-16 offset in the whole text of an LSP position (for ranged edits), clamped.
    static func offset(in text: String, line: Int, character: Int) -> String.Index {
        var current = 0
        var index = text.startIndex
        while current < line, let newline = text[index...].firstIndex(of: "\n") {
            index = text.index(after: newline)
            current += 1
        }
        if current < line { return text.endIndex }
        let lineEnd = text[index...].firstIndex(of: "\n") ?? text.endIndex
        let utf16 = text.utf16
        var i = index, units = 0
        while i < lineEnd, units < character {
            units += 1
            i = utf16.index(after: i)
        }
        return i
    }

    /// The identifier (letters, digits, `_`) under moec's `column` on `line`, with the column it
    /// starts at.
    func word(line: Int, column: Int) -> (name: String, column: Int)? {
        guard line >= 1, line <= lines.count else { return nil }
        let scalars = Array(lines[line - 1].unicodeScalars)
        func isWord(_ s: Unicode.Scalar) -> Bool { s == "_" || s.properties.isAlphabetic || ("0"..."9").contains(s) }
        var at = column - 1
        if at >= scalars.count || at < 0 || !isWord(scalars[at]) {
            // The cursor may sit just after the word.
            guard at - 1 >= 0, at - 1 < scalars.count, isWord(scalars[at - 1]) else { return nil }
            at -= 1
        }
        var start = at, end = at
        while start > 0, isWord(scalars[start - 1]) { start -= 1 }
        while end + 1 < scalars.count, isWord(scalars[end + 1]) { end += 1 }
        guard !("0"..."9").contains(scalars[start]) else { return nil }
        var name = ""
        name.unicodeScalars.append(contentsOf: scalars[start...end])
        return (name, start + 1)
    }
}
