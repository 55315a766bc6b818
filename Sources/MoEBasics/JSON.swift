import Foundation

/// A JSON value. Objects keep their keys in order, so what moec writes is deterministic and
/// reads the way it was written.
public enum JSON: Hashable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public subscript(index: Int) -> JSON? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var double: Double? { if case .number(let d) = self { return d }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }

    /// The number as an exact integer, or nil if it is not one (or out of range).
    public var int: Int? {
        guard case .number(let d) = self, d.isFinite, d == d.rounded(),
            d >= -9.007199254740992e15, d <= 9.007199254740992e15
        else { return nil }
        return Int(d)
    }

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public init(_ value: Int) { self = .number(Double(value)) }
    public init(_ value: Double) { self = .number(value) }
    public init(_ value: String) { self = .string(value) }
    public init(_ value: Bool) { self = .bool(value) }
    public init(_ values: [JSON]) { self = .array(values) }
    public init(_ pairs: KeyValuePairs<String, JSON>) {
        self = .object(JSONObject(pairs.map { ($0.key, $0.value) }))
    }
}

/// An ordered JSON object. Lookup is linear below a few dozen keys and hashed above.
public struct JSONObject: Hashable, Sendable, Sequence {
    public private(set) var pairs: [(key: String, value: JSON)]
    private var index: [String: Int]

    public init(_ pairs: [(String, JSON)] = []) {
        self.pairs = []
        self.index = [:]
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JSON? {
        get { index[key].map { pairs[$0].value } }
        set {
            if let i = index[key] {
                if let v = newValue {
                    pairs[i].value = v
                } else {
                    pairs.remove(at: i)
                    index = [:]
                    for (j, p) in pairs.enumerated() { index[p.key] = j }
                }
            } else if let v = newValue {
                index[key] = pairs.count
                pairs.append((key, v))
            }
        }
    }

    public var keys: [String] { pairs.map(\.key) }
    public var count: Int { pairs.count }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSON)]> {
        pairs.makeIterator()
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.pairs.count == b.pairs.count && zip(a.pairs, b.pairs).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into h: inout Hasher) {
        for p in pairs { h.combine(p.key); h.combine(p.value) }
    }
}

// MARK: - Parsing

/// A JSON syntax error with the place it was found: byte offset and 1-based line and column.
public struct JSONError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public var line: Int
    public var column: Int
    public var description: String { "\(line):\(column): \(message)" }
}

extension JSON {
    /// Parses RFC 8259 JSON. Nesting is limited to `maxDepth` so hostile input cannot
    /// exhaust the stack: the parser recurses once per level, and so do the printers, `==`,
    /// hashing and deallocation of the value; the error is at the first bracket too deep.
    /// Duplicate object keys are an error (they are ambiguous).
    public static func parse(_ text: String, maxDepth: Int = 256) throws(JSONError) -> JSON {
        try parse(bytes: Array(text.utf8), maxDepth: maxDepth)
    }

    public static func parse<C: Collection>(bytes: C, maxDepth: Int = 256) throws(JSONError) -> JSON where C.Element == UInt8 {
        var p = JSONParser(bytes: Array(bytes), maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.pos < p.bytes.count { throw p.error("unexpected text after the JSON value") }
        return v
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var pos = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func error(_ message: String, at offset: Int? = nil) -> JSONError {
        let off = min(offset ?? pos, bytes.count)
        var line = 1, col = 1
        var i = 0
        while i < off {
            if bytes[i] == 0x0A { line += 1; col = 1 } else if bytes[i] & 0xC0 != 0x80 { col += 1 }
            i += 1
        }
        return JSONError(message: message, offset: off, line: line, column: col)
    }

    mutating func skipWhitespace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
            pos += 1
        }
    }

    mutating func parseValue(depth: Int) throws(JSONError) -> JSON {
        guard pos < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default:
            throw error("unexpected character '\(printable(bytes[pos]))', expected a value")
        }
    }

    func printable(_ b: UInt8) -> String {
        (0x20..<0x7F).contains(b) ? String(UnicodeScalar(b)) : String(format: "\\x%02X", b)
    }

    mutating func expectWord(_ word: String) throws(JSONError) {
        for c in word.utf8 {
            guard pos < bytes.count, bytes[pos] == c else { throw error("invalid literal, expected '\(word)'") }
            pos += 1
        }
    }

    mutating func parseObject(depth: Int) throws(JSONError) -> JSON {
        if depth > maxDepth { throw error("arrays and objects nested deeper than \(maxDepth) levels") }
        pos += 1
        var obj = JSONObject()
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(obj) }
        while true {
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an object") }
            guard bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a string key in object") }
            let keyStart = pos
            let key = try parseString()
            if obj[key] != nil { throw error("duplicate key \"\(key)\"", at: keyStart) }
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':' after object key") }
            pos += 1
            skipWhitespace()
            obj[key] = try parseValue(depth: depth)
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(obj) }
            throw error("expected ',' or '}' in object")
        }
    }

    mutating func parseArray(depth: Int) throws(JSONError) -> JSON {
        if depth > maxDepth { throw error("arrays and objects nested deeper than \(maxDepth) levels") }
        pos += 1
        var items: [JSON] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw error("expected ',' or ']' in array")
        }
    }

    mutating func parseString() throws(JSONError) -> String {
        let start = pos
        pos += 1
        var scalars = String.UnicodeScalarView()
        var runStart = pos
        func flushRun(_ p: JSONParser, _ end: Int, into s: inout String.UnicodeScalarView) throws(JSONError) {
            if end > runStart {
                guard let chunk = String(validating: p.bytes[runStart..<end], as: UTF8.self) else {
                    throw p.error("invalid UTF-8 in string", at: runStart)
                }
                s.append(contentsOf: chunk.unicodeScalars)
            }
        }
        while true {
            guard pos < bytes.count else { throw error("unterminated string", at: start) }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                try flushRun(self, pos, into: &scalars)
                pos += 1
                return String(scalars)
            }
            if b < 0x20 { throw error("control character in string (escape it as \\u00\(String(format: "%02X", b)))") }
            if b == UInt8(ascii: "\\") {
                try flushRun(self, pos, into: &scalars)
                pos += 1
                guard pos < bytes.count else { throw error("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in \\u escape")
                        }
                        pos += 2
                        let low = try parseHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("invalid low surrogate in \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    guard let s = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                    scalars.append(s)
                default:
                    throw error("invalid escape '\\\(printable(e))'", at: pos - 2)
                }
                runStart = pos
                continue
            }
            pos += 1
        }
    }

    mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[pos]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            v = v * 16 + d
            pos += 1
        }
        return v
    }

    mutating func parseNumber() throws(JSONError) -> JSON {
        let start = pos
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.pos
            while p.pos < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.pos]) { p.pos += 1 }
            return p.pos - s
        }
        guard pos < bytes.count else { throw error("truncated number", at: start) }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) {
                throw error("numbers may not have leading zeros", at: start)
            }
        } else if digits(&self) == 0 {
            throw error("invalid number", at: start)
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            if digits(&self) == 0 { throw error("expected digits after '.' in number") }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            if digits(&self) == 0 { throw error("expected digits in number exponent") }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number '\(text)'", at: start) }
        if !d.isFinite { throw error("number '\(text)' is out of range", at: start) }
        return .number(d)
    }
}

// MARK: - Writing

extension JSON {
    /// Compact JSON on one line.
    public var compact: String {
        var out = ""
        write(to: &out, indent: nil, level: 0)
        return out
    }

    /// JSON with two-space indentation; arrays of numbers stay on one line so tables stay readable.
    public var pretty: String {
        var out = ""
        write(to: &out, indent: "  ", level: 0)
        return out
    }

    private func write(to out: inout String, indent: String?, level: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d): out += JSON.format(d)
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            let scalarOnly = items.allSatisfy {
                if case .array = $0 { return false }; if case .object = $0 { return false }; return true
            }
            if indent == nil || scalarOnly {
                out += "["
                for (i, v) in items.enumerated() {
                    if i > 0 { out += indent == nil ? "," : ", " }
                    v.write(to: &out, indent: indent, level: level + 1)
                }
                out += "]"
            } else {
                out += "[\n"
                for (i, v) in items.enumerated() {
                    out += String(repeating: indent!, count: level + 1)
                    v.write(to: &out, indent: indent, level: level + 1)
                    out += i + 1 < items.count ? ",\n" : "\n"
                }
                out += String(repeating: indent!, count: level) + "]"
            }
        case .object(let o):
            if o.count == 0 { out += "{}"; return }
            out += indent == nil ? "{" : "{\n"
            for (i, p) in o.pairs.enumerated() {
                if let ind = indent { out += String(repeating: ind, count: level + 1) }
                JSON.writeString(p.key, to: &out)
                out += indent == nil ? ":" : ": "
                p.value.write(to: &out, indent: indent, level: level + 1)
                if i + 1 < o.count { out += "," }
                if indent != nil { out += "\n" }
            }
            if let ind = indent { out += String(repeating: ind, count: level) }
            out += "}"
        }
    }

    /// Integers print without a fraction; other numbers print with the shortest text that
    /// reads back to the same Double. Non-finite numbers have no JSON form and print as null.
    public static func format(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
