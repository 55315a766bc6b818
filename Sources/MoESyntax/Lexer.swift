import MoEBasics

/// Turns `.moe` source text into tokens.
///
/// Errors (an unknown character, an unterminated string, a malformed number) are reported to
/// the diagnostic engine and the offending text is skipped, so one run reports every lexical
/// error and the parser still sees a token stream.
public struct Lexer {
    private let file: SourceFile
    private let scalars: [Unicode.Scalar]
    private var pos = 0
    private var line = 1
    private var column = 1
    private let diagnostics: DiagnosticEngine

    public init(file: SourceFile, diagnostics: DiagnosticEngine) {
        self.file = file
        self.scalars = Array(file.text.unicodeScalars)
        self.diagnostics = diagnostics
        diagnostics.register(file)
    }

    /// All tokens of the file, ending with `.eof`.
    public mutating func tokenize() -> [Token] {
        var tokens: [Token] = []
        while true {
            let t = next()
            tokens.append(t)
            if t.kind == .eof { return tokens }
        }
    }

    private var location: SourceLocation { SourceLocation(file: file.path, line: line, column: column) }

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        pos + offset < scalars.count ? scalars[pos + offset] : nil
    }

    private mutating func advance() {
        if scalars[pos] == "\n" { line += 1; column = 1 } else { column += 1 }
        pos += 1
    }

    /// The next token. An unexpected character is reported and skipped; a run of them (binary
    /// junk) loops here rather than recursing once per character.
    private mutating func next() -> Token {
        while true {
            if let t = nextOrUnexpected() { return t }
        }
    }

    /// The next token, or nil after reporting and skipping one unexpected character.
    private mutating func nextOrUnexpected() -> Token? {
        skipTrivia()
        let start = location
        let startPos = pos
        guard let c = peek() else { return Token(kind: .eof, range: SourceRange(start, length: 1)) }
        func token(_ kind: Token.Kind) -> Token {
            Token(kind: kind, range: SourceRange(start, length: max(1, pos - startPos)))
        }
        if c.isIdentifierStart {
            var s = ""
            while let d = peek(), d.isIdentifierContinue { s.unicodeScalars.append(d); advance() }
            if let k = Keyword(rawValue: s) { return token(.keyword(k)) }
            return token(.identifier(s))
        }
        if c.isDigit || (c == "." && (peek(1)?.isDigit ?? false)) {
            return lexNumber(start: start, startPos: startPos)
        }
        if c == "\"" { return lexString(start: start, startPos: startPos) }
        if c == "|" && peek(1) == ">" { advance(); advance(); return token(.punct(.pipe)) }
        if c == "=" && peek(1) == "=" { advance(); advance(); return token(.punct(.equalEqual)) }
        if c == "!" && peek(1) == "=" { advance(); advance(); return token(.punct(.notEqual)) }
        if let p = Punct(rawValue: String(c)) { advance(); return token(.punct(p)) }
        advance()
        var notes: [Diagnostic.Note] = []
        if c == "|" { notes.append(.init("pipelines are written '|>'")) }
        if c == ";" { notes.append(.init("declarations need no separator; remove the ';'")) }
        if c == "/" && peek() == "/" { notes.append(.init("comments start with '#'")) }
        diagnostics.error("unexpected character '\(c.escaped(asASCII: false))'", at: SourceRange(start, length: 1), notes: notes)
        return nil
    }

    private mutating func skipTrivia() {
        while let c = peek() {
            if c == " " || c == "\t" || c == "\n" || c == "\r" {
                advance()
            } else if c == "#" {
                while let d = peek(), d != "\n" { advance() }
            } else {
                return
            }
        }
    }

    private mutating func lexNumber(start: SourceLocation, startPos: Int) -> Token {
        var text = ""
        var isFloat = false
        while let d = peek(), d.isDigit || d == "_" { if d != "_" { text.unicodeScalars.append(d) }; advance() }
        if peek() == ".", peek(1)?.isDigit ?? true, !(peek(1)?.isIdentifierStart ?? false) {
            isFloat = true
            text += "."
            advance()
            while let d = peek(), d.isDigit || d == "_" { if d != "_" { text.unicodeScalars.append(d) }; advance() }
        }
        if let e = peek(), e == "e" || e == "E" {
            let sign = peek(1)
            let digitAt = (sign == "+" || sign == "-") ? 2 : 1
            if peek(digitAt)?.isDigit ?? false {
                isFloat = true
                text += "e"
                advance()
                if digitAt == 2 { text.unicodeScalars.append(sign!); advance() }
                while let d = peek(), d.isDigit { text.unicodeScalars.append(d); advance() }
            }
        }
        let range = SourceRange(start, length: max(1, pos - startPos))
        if let d = peek(), d.isIdentifierStart {
            var rest = ""
            while let d = peek(), d.isIdentifierContinue { rest.unicodeScalars.append(d); advance() }
            diagnostics.error("invalid suffix '\(rest)' on number", at: SourceRange(start, length: pos - startPos))
        }
        if isFloat {
            guard let v = Double(text), v.isFinite else {
                diagnostics.error("number '\(text)' is out of range", at: range)
                return Token(kind: .float(0), range: range)
            }
            return Token(kind: .float(v), range: range)
        }
        guard let v = Int(text) else {
            diagnostics.error("integer '\(text)' is too large", at: range)
            return Token(kind: .int(0), range: range)
        }
        return Token(kind: .int(v), range: range)
    }

    private mutating func lexString(start: SourceLocation, startPos: Int) -> Token {
        advance() // opening quote
        var s = ""
        while true {
            guard let c = peek(), c != "\n" else {
                diagnostics.error(
                    "unterminated string", at: SourceRange(start, length: max(1, pos - startPos)),
                    notes: [.init("strings end on the line they start; add the closing '\"'")])
                return Token(kind: .string(s), range: SourceRange(start, length: max(1, pos - startPos)))
            }
            advance()
            if c == "\"" { break }
            if c == "\\" {
                let escLoc = location
                guard let e = peek(), e != "\n" else { continue }
                advance()
                switch e {
                case "\"": s += "\""
                case "\\": s += "\\"
                case "n": s += "\n"
                case "t": s += "\t"
                default:
                    diagnostics.error(
                        "unknown escape '\\\(e)' in string",
                        at: SourceRange(
                            SourceLocation(file: escLoc.file, line: escLoc.line, column: escLoc.column - 1), length: 2))
                }
                continue
            }
            s.unicodeScalars.append(c)
        }
        return Token(kind: .string(s), range: SourceRange(start, length: pos - startPos))
    }
}

extension Unicode.Scalar {
    var isDigit: Bool { ("0"..."9").contains(self) }
    var isIdentifierStart: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) || self == "_" }
    var isIdentifierContinue: Bool { isIdentifierStart || isDigit }
}
