import MoEBasics

/// The tokens of one line of IR text, for `IRReader`: names, value references, literals, types
/// and source locations, each error at its column (`graph.ir:7:24: error: …`).
///
/// A line is scanned on its own: every construct of the IR text fits on one line.
struct IRLineScanner {
    let chars: [Unicode.Scalar]
    let file: String
    let line: Int
    private(set) var position = 0

    init(_ text: Substring, file: String, line: Int) {
        chars = Array(text.unicodeScalars)
        self.file = file
        self.line = line
    }

    // MARK: Positions

    /// The location of the character at `offset` (columns count Unicode scalars, from 1).
    func location(at offset: Int) -> SourceLocation {
        SourceLocation(file: file, line: line, column: offset + 1)
    }

    func range(from start: Int, to end: Int) -> SourceRange {
        SourceRange(location(at: start), length: max(1, end - start))
    }

    /// The whole line without its indentation and trailing spaces.
    var lineRange: SourceRange {
        let first = chars.firstIndex { !Self.isSpace($0) } ?? 0
        let last = (chars.lastIndex { !Self.isSpace($0) } ?? first) + 1
        return range(from: first, to: last)
    }

    func error(_ message: String, from start: Int, to end: Int? = nil) -> Diagnostic {
        .error(message, at: range(from: start, to: end ?? start + 1))
    }

    /// An error at the next token, naming what was found there.
    mutating func expected(_ what: String) -> Diagnostic {
        skipSpaces()
        guard position < chars.count else { return error("expected \(what) at the end of the line", from: position) }
        let found = peekToken()
        return error("expected \(what), found '\(found)'", from: position, to: position + found.unicodeScalars.count)
    }

    // MARK: Characters

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\r" }

    /// Characters of names, numbers and words: anything but spaces and punctuation.
    static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        !isSpace(c) && !",:{}[]()=#\"@%".unicodeScalars.contains(c)
    }

    mutating func skip(to offset: Int) { position = min(offset, chars.count) }

    mutating func skipSpaces() {
        while position < chars.count, Self.isSpace(chars[position]) { position += 1 }
    }

    var atEnd: Bool {
        mutating get { skipSpaces(); return position >= chars.count }
    }

    mutating func peek() -> Unicode.Scalar? {
        skipSpaces()
        return position < chars.count ? chars[position] : nil
    }

    /// The next word, or the next character when it is punctuation (for messages).
    private func peekToken() -> String {
        var end = position
        while end < chars.count, Self.isWordCharacter(chars[end]) { end += 1 }
        if end == position { end = position + 1 }
        return String(String.UnicodeScalarView(chars[position..<end]))
    }

    /// Consumes `c` if it comes next.
    mutating func accept(_ c: Unicode.Scalar) -> Bool {
        guard peek() == c else { return false }
        position += 1
        return true
    }

    mutating func expect(_ c: Unicode.Scalar) throws(Diagnostic) {
        guard accept(c) else { throw expected("'\(c)'") }
    }

    /// Consumes the word `w` if it comes next (as a whole word).
    mutating func accept(word w: String) -> Bool {
        skipSpaces()
        let start = position
        guard let (text, _) = try? word(""), text == w else { position = start; return false }
        return true
    }

    mutating func expect(word w: String) throws(Diagnostic) {
        guard accept(word: w) else { throw expected("'\(w)'") }
    }

    // MARK: Tokens

    /// A run of word characters, and where it starts.
    mutating func word(_ what: String) throws(Diagnostic) -> (String, Int) {
        skipSpaces()
        let start = position
        while position < chars.count, Self.isWordCharacter(chars[position]) { position += 1 }
        guard position > start else { throw expected(what) }
        return (String(String.UnicodeScalarView(chars[start..<position])), start)
    }

    /// `%name`: a value reference or definition, without the `%`, and where the `%` is.
    mutating func value() throws(Diagnostic) -> (name: String, start: Int) {
        guard peek() == "%" else { throw expected("a value ('%name')") }
        let start = position
        position += 1
        guard position < chars.count, Self.isWordCharacter(chars[position]) else { throw error("expected a value name after '%'", from: start) }
        let (name, _) = try word("a value name")
        return (name, start)
    }

    /// A non-negative integer.
    mutating func count(_ what: String) throws(Diagnostic) -> Int {
        let (text, start) = try word(what)
        guard text.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) else {
            throw error("expected \(what), found '\(text)'", from: start, to: position)
        }
        guard let n = Int(text) else { throw error("\(text) is too large", from: start, to: position) }
        return n
    }

    /// `[n, n, …]` of non-negative integers (`ints` may be negative when `signed`).
    mutating func intList(_ what: String, signed: Bool = false) throws(Diagnostic) -> [Int] {
        try expect("[")
        var out: [Int] = []
        if accept("]") { return out }
        repeat {
            if signed {
                skipSpaces()
                let start = position
                guard case .int(let v) = try scalar() else { throw error("expected an integer in \(what)", from: start, to: position) }
                out.append(v)
            } else {
                out.append(try count("an integer in \(what)"))
            }
        } while accept(",")
        try expect("]")
        return out
    }

    /// A string literal with the printer's escapes (`\"`, `\\`, `\n`, `\r`, `\t`).
    mutating func string() throws(Diagnostic) -> String {
        guard peek() == "\"" else { throw expected("a string") }
        let start = position
        position += 1
        var out = String.UnicodeScalarView()
        while position < chars.count {
            let c = chars[position]
            position += 1
            if c == "\"" { return String(out) }
            if c == "\\" {
                guard position < chars.count else { break }
                let e = chars[position]
                position += 1
                switch e {
                case "\"", "\\": out.append(e)
                case "n": out.append("\n")
                case "r": out.append("\r")
                case "t": out.append("\t")
                default: throw error("unknown escape '\\\(e)' in a string", from: position - 2, to: position)
                }
            } else {
                out.append(c)
            }
        }
        throw error("unterminated string", from: start, to: chars.count)
    }

    /// An integer, float (with `inf`, `-inf`, `nan`) or boolean. A float has a `.` or an
    /// exponent, as Swift prints every Double, so `2` is an int and `2.0` a float.
    mutating func scalar() throws(Diagnostic) -> Attribute {
        let (text, start) = try word("a value")
        switch text {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan": return .float(.nan)
        default: break
        }
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard let first = digits.unicodeScalars.first, ("0"..."9").contains(first) else {
            throw error("expected a number, true, false or a string, found '\(text)'", from: start, to: position)
        }
        if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
            guard let d = Double(text) else { throw error("malformed number '\(text)'", from: start, to: position) }
            return .float(d)
        }
        guard digits.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) else {
            throw error("malformed number '\(text)'", from: start, to: position)
        }
        guard let i = Int(text) else { throw error("the integer \(text) does not fit in 64 bits", from: start, to: position) }
        return .int(i)
    }

    /// An attribute value: a scalar, a string or a list of integers.
    mutating func attribute() throws(Diagnostic) -> Attribute {
        switch peek() {
        case "\"": return .string(try string())
        case "[": return .ints(try intList("the list", signed: true))
        default: return try scalar()
        }
    }

    /// `f32[…]`, `i32[…]` or `route[TOKENS, slots of experts]`. The one symbolic dimension is
    /// the token count: `tokens` holds its name once one was seen, and another name is an error.
    mutating func type(tokens: inout String?) throws(Diagnostic) -> IRType {
        let (kind, start) = try word("a type (f32[…], i32[…] or route[…])")
        func symbol(_ name: String, at p: Int, _ scanner: IRLineScanner) throws(Diagnostic) {
            if let t = tokens, t != name {
                throw scanner.error("a second dimension symbol '\(name)': the token count is already called '\(t)'", from: p, to: p + name.unicodeScalars.count)
            }
            tokens = name
        }
        switch kind {
        case "route":
            try expect("[")
            let (t, p) = try word("the token dimension")
            try symbol(t, at: p, self)
            try expect(",")
            let slots = try count("the number of slots")
            try expect(word: "of")
            let experts = try count("the number of experts")
            try expect("]")
            guard slots > 0, experts > 0 else { throw error("a routing needs at least one slot and one expert", from: start, to: position) }
            return .routing(RoutingType(slots: slots, experts: experts))
        case "f32", "i32":
            try expect("[")
            var dims: [Dim] = []
            if !accept("]") {
                repeat {
                    let (d, p) = try word("a dimension")
                    if let first = d.unicodeScalars.first, ("0"..."9").contains(first) {
                        position = p
                        dims.append(.fixed(try count("a dimension")))
                    } else {
                        try symbol(d, at: p, self)
                        dims.append(.tokens)
                    }
                } while accept(",")
                try expect("]")
            }
            return .tensor(TensorType(DType(rawValue: kind)!, dims))
        default:
            throw error("unknown type '\(kind)' (expected f32[…], i32[…] or route[…])", from: start, to: position)
        }
    }

    /// The rest of the line after `#` and one space, and where it starts; nil at the end of the line.
    mutating func comment() throws(Diagnostic) -> (text: String, start: Int)? {
        if atEnd { return nil }
        guard chars[position] == "#" else { throw expected("'#' or the end of the line") }
        position += 1
        if position < chars.count, chars[position] == " " { position += 1 }
        let start = position
        var end = chars.count
        while end > start, Self.isSpace(chars[end - 1]) { end -= 1 }
        position = chars.count
        return (String(String.UnicodeScalarView(chars[start..<end])), start)
    }

    /// `FILE:LINE:COLUMN-END, …` (as `IRPrinter` writes locations) after a `#`; `files` maps
    /// the header's shortened file names back to their paths. A file name may hold `, ` and `:`:
    /// a location ends at the first `, ` (or the line's end) before which one is complete.
    mutating func locations(files: [String: String]) throws(Diagnostic) -> [SourceRange] {
        guard let (text, start) = try comment() else { return [] }
        let pieces = text.components(separatedBy: ", ")
        var out: [SourceRange] = []
        var offset = start
        var first = 0
        while first < pieces.count {
            var found: SourceRange?
            var last = first
            while last < pieces.count {
                if let r = Self.location(pieces[first...last].joined(separator: ", "), files: files) { found = r; break }
                last += 1
            }
            guard let found else {
                let piece = pieces[first]
                throw error("expected a source location 'file:line:column-end', found '\(piece)'", from: offset, to: offset + piece.unicodeScalars.count)
            }
            out.append(found)
            offset += pieces[first...last].reduce(0) { $0 + $1.unicodeScalars.count + 2 }
            first = last + 1
        }
        return out
    }

    /// `FILE:LINE:COLUMN-END`, or nil.
    static func location(_ text: String, files: [String: String]) -> SourceRange? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return nil }
        let columns = parts[parts.count - 1].split(separator: "-", omittingEmptySubsequences: false)
        func number(_ s: Substring) -> Int? { s.unicodeScalars.allSatisfy { ("0"..."9").contains($0) } ? Int(s) : nil }
        guard columns.count == 2, let line = number(parts[parts.count - 2]), let column = number(columns[0]),
            let end = number(columns[1]), end >= column
        else { return nil }
        let name = parts[0..<(parts.count - 2)].joined(separator: ":")
        guard !name.isEmpty else { return nil }
        return SourceRange(SourceLocation(file: files[name] ?? name, line: line, column: column), length: end - column)
    }
}
