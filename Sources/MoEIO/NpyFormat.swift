import Foundation

/// The NumPy `.npy` format, versions 1.0, 2.0 and 3.0:
///
///     "\x93NUMPY" major minor  header-length  header                         data
///     6 bytes     1     1      u16 LE (v1)    ASCII Python dict literal,     C-order elements
///                              u32 LE (v2, 3) padded with spaces, ending '\n'
///
/// The header is `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`. Supported
/// `descr`s: `f2 f4 f8 i4 i8` in either byte order (`<`, `>`, `=`) and `i1 u1 b1`. Fortran order
/// is refused: nothing in moec needs it and silently transposing would be worse. The data must
/// be exactly the size the shape and type say.
enum NpyFormat {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] // \x93NUMPY

    private enum Kind { case float16, float32, float64, int8, uint8, int32, int64, bool }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws(WeightFileError) -> NpyArray {
        func fail(_ message: String, at offset: Int? = nil) -> WeightFileError {
            WeightFileError(path: path, byteOffset: offset, message: message)
        }
        let size = bytes.count
        guard size >= 10, magic.indices.allSatisfy({ bytes[$0] == magic[$0] }) else {
            throw fail(size < 10 ? "file is \(size) bytes, too short for a .npy header" : "not a .npy file (no \\x93NUMPY magic)", at: 0)
        }
        let major = bytes[6], minor = bytes[7]
        let headerLength: Int, headerStart: Int
        switch (major, minor) {
        case (1, 0):
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case (2, 0), (3, 0):
            guard size >= 12 else { throw fail("file is \(size) bytes, too short for a version \(major).0 header", at: 0) }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw fail("unsupported .npy version \(major).\(minor) (1.0, 2.0 and 3.0 are supported)", at: 6)
        }
        let dataStart = headerStart + headerLength
        guard dataStart <= size else {
            throw fail("header length \(headerLength) runs past the end of the file (\(size) bytes): truncated", at: headerStart - (major == 1 ? 2 : 4))
        }

        var parser = HeaderParser(bytes: UnsafeRawBufferPointer(rebasing: bytes[headerStart..<dataStart]), fileOffset: headerStart, path: path)
        let dict = try parser.parseHeader()

        for key in dict.keys where !["descr", "fortran_order", "shape"].contains(key.name) {
            throw fail("unexpected key '\(key.name)' in the header at byte \(key.offset)", at: key.offset)
        }
        func entry(_ name: String) throws(WeightFileError) -> (value: HeaderParser.Value, offset: Int) {
            guard let k = dict.keys.first(where: { $0.name == name }), let v = dict.values[name] else {
                throw fail("header has no '\(name)' key", at: headerStart)
            }
            return (v, k.offset)
        }
        let descr = try entry("descr")
        guard case .string(let descrText) = descr.value else {
            throw fail("'descr' at byte \(descr.offset) is not a simple type string (structured dtypes are not supported)", at: descr.offset)
        }
        let fortran = try entry("fortran_order")
        guard case .bool(let isFortran) = fortran.value else {
            throw fail("'fortran_order' at byte \(fortran.offset) is not True or False", at: fortran.offset)
        }
        if isFortran {
            throw fail("array is stored in Fortran (column-major) order, which is not supported; save it with numpy.ascontiguousarray first", at: fortran.offset)
        }
        let shapeEntry = try entry("shape")
        guard case .tuple(let shape) = shapeEntry.value else {
            throw fail("'shape' at byte \(shapeEntry.offset) is not a tuple of integers", at: shapeEntry.offset)
        }

        guard let (kind, itemSize, bigEndian) = parseDescr(descrText) else {
            throw fail("unsupported dtype '\(descrText)' (supported: <f2 <f4 <f8 <i4 <i8 |i1 |u1 |b1, and big-endian >f2 >f4 >f8 >i4 >i8)", at: descr.offset)
        }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw fail("shape \(shapeText(shape)) is too large", at: shapeEntry.offset) }
            count = p
        }
        let (needed, o) = count.multipliedReportingOverflow(by: itemSize)
        guard !o else { throw fail("shape \(shapeText(shape)) is too large", at: shapeEntry.offset) }
        let found = size - dataStart
        if found < needed {
            throw fail(
                "truncated data: shape \(shapeText(shape)) of '\(descrText)' needs \(needed) bytes after the header (data begins at byte \(dataStart)), found \(found)", at: size)
        }
        if found > needed {
            throw fail(
                "\(found - needed) unexpected bytes after the data: shape \(shapeText(shape)) of '\(descrText)' needs \(needed) bytes (data begins at byte \(dataStart)), found \(found)",
                at: dataStart + needed)
        }

        let data = bytes.baseAddress.map { UnsafeRawPointer($0) + dataStart }
        func load<T: FixedWidthInteger>(_: T.Type, _ i: Int) -> T {
            let raw = data!.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)
            return bigEndian ? T(bigEndian: raw) : T(littleEndian: raw)
        }
        let storage: NpyArray.Storage
        switch kind {
        case .float16: storage = .float32((0..<count).map { HalfPrecision.halfToFloat(load(UInt16.self, $0)) })
        case .float32: storage = .float32((0..<count).map { Float(bitPattern: load(UInt32.self, $0)) })
        case .float64: storage = .float64((0..<count).map { Double(bitPattern: load(UInt64.self, $0)) })
        case .int8: storage = .int8((0..<count).map { load(Int8.self, $0) })
        case .uint8: storage = .uint8((0..<count).map { load(UInt8.self, $0) })
        case .int32: storage = .int32((0..<count).map { load(Int32.self, $0) })
        case .int64: storage = .int64((0..<count).map { load(Int64.self, $0) })
        case .bool: storage = .bool((0..<count).map { load(UInt8.self, $0) != 0 })
        }
        return NpyArray(checkedShape: shape, storage: storage)
    }

    private static func parseDescr(_ d: String) -> (Kind, Int, Bool)? {
        guard d.count == 3, let order = d.first else { return nil }
        let bigEndian: Bool
        switch order {
        case "<", "=": bigEndian = false // '=' is native order, little-endian on every host moec runs on
        case ">": bigEndian = true
        case "|": bigEndian = false
        default: return nil
        }
        switch d.dropFirst() {
        case "f2": return order == "|" ? nil : (.float16, 2, bigEndian)
        case "f4": return order == "|" ? nil : (.float32, 4, bigEndian)
        case "f8": return order == "|" ? nil : (.float64, 8, bigEndian)
        case "i4": return order == "|" ? nil : (.int32, 4, bigEndian)
        case "i8": return order == "|" ? nil : (.int64, 8, bigEndian)
        case "i1": return (.int8, 1, false)
        case "u1": return (.uint8, 1, false)
        case "b1": return (.bool, 1, false)
        default: return nil
        }
    }

    /// Python's `repr` of a tuple of ints: `()`, `(3,)`, `(3, 4)`.
    static func shapeText(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    // MARK: Writing

    /// Version 1.0, byte for byte what `numpy.save` writes: keys sorted, spare spaces after the
    /// dict so the first dimension can grow to 21 digits in place, then spaces and a newline
    /// padding the data start to a multiple of 64.
    static func encode(_ array: NpyArray) -> Data {
        var header = "{'descr': '\(array.storage.descr)', 'fortran_order': False, 'shape': \(shapeText(array.shape)), }"
        if let first = array.shape.first { header += String(repeating: " ", count: max(0, 21 - String(first).count)) }
        let withNewline = header.utf8.count + 1
        let padding = 64 - (10 + withNewline) % 64
        header += String(repeating: " ", count: padding) + "\n"
        let headerLength = header.utf8.count

        var out = Data(magic)
        if headerLength <= Int(UInt16.max) {
            out.append(contentsOf: [1, 0, UInt8(headerLength & 0xFF), UInt8(headerLength >> 8)])
        } else {
            // Only shapes with thousands of dimensions get here; numpy switches to 2.0 the same way.
            return encodeVersion2(array)
        }
        out.append(contentsOf: Array(header.utf8))
        appendData(array.storage, to: &out)
        return out
    }

    private static func encodeVersion2(_ array: NpyArray) -> Data {
        var header = "{'descr': '\(array.storage.descr)', 'fortran_order': False, 'shape': \(shapeText(array.shape)), }"
        let padding = 64 - (12 + header.utf8.count + 1) % 64
        header += String(repeating: " ", count: padding) + "\n"
        let n = UInt32(header.utf8.count)
        var out = Data(magic)
        out.append(contentsOf: [2, 0, UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)])
        out.append(contentsOf: Array(header.utf8))
        appendData(array.storage, to: &out)
        return out
    }

    private static func appendData(_ storage: NpyArray.Storage, to out: inout Data) {
        func append<T>(_ values: [T]) { values.withUnsafeBytes { out.append(contentsOf: $0) } }
        switch storage {
        case .float32(let v): append(v.map { $0.bitPattern.littleEndian })
        case .float64(let v): append(v.map { $0.bitPattern.littleEndian })
        case .int8(let v): append(v)
        case .uint8(let v): append(v)
        case .int32(let v): append(v.map { $0.littleEndian })
        case .int64(let v): append(v.map { $0.littleEndian })
        case .bool(let v): append(v.map { UInt8($0 ? 1 : 0) })
        }
    }
}

/// Parses the header's Python literal, the subset numpy writes:
///
///     header ::= '{' (key ':' value (',' key ':' value)* ','?)? '}' ' '* '\n'?
///     key    ::= string
///     value  ::= string | 'True' | 'False' | tuple | '[' ... ']'   (a list: a structured dtype)
///     tuple  ::= '(' (int (',' int)* ','?)? ')'           ints may carry Python 2's 'L'
///     string ::= "'" chars "'" | '"' chars '"'
///
/// Errors give the absolute byte offset in the file and quote the header.
private struct HeaderParser {
    enum Value: Equatable { case string(String), bool(Bool), tuple([Int]), list }

    let bytes: UnsafeRawBufferPointer
    let fileOffset: Int
    let path: String
    var pos = 0

    init(bytes: UnsafeRawBufferPointer, fileOffset: Int, path: String) {
        self.bytes = bytes
        self.fileOffset = fileOffset
        self.path = path
    }

    func error(_ message: String) -> WeightFileError {
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let shown = text.count > 200 ? String(text.prefix(200)) + "…" : text
        return WeightFileError(
            path: path, byteOffset: fileOffset + pos,
            message: "bad .npy header at byte \(fileOffset + pos) (header column \(pos + 1)): \(message); header: \(shown)")
    }

    var current: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    mutating func skipSpaces() {
        while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { pos += 1 }
    }

    func describeCurrent() -> String {
        guard let c = current else { return "the end of the header" }
        return (0x20..<0x7F).contains(c) ? "'\(Character(UnicodeScalar(c)))'" : String(format: "byte 0x%02X", c)
    }

    mutating func expect(_ char: Character) throws(WeightFileError) {
        skipSpaces()
        guard current == char.asciiValue else { throw error("expected '\(char)', found \(describeCurrent())") }
        pos += 1
    }

    mutating func parseHeader() throws(WeightFileError) -> (keys: [(name: String, offset: Int)], values: [String: Value]) {
        var keys: [(name: String, offset: Int)] = []
        var values: [String: Value] = [:]
        try expect("{")
        while true {
            skipSpaces()
            if current == UInt8(ascii: "}") { pos += 1; break }
            let keyOffset = fileOffset + pos
            guard current == UInt8(ascii: "'") || current == UInt8(ascii: "\"") else {
                throw error("expected a quoted key or '}', found \(describeCurrent())")
            }
            let key = try parseString()
            if values[key] != nil {
                pos = keyOffset - fileOffset
                throw error("duplicate key '\(key)'")
            }
            try expect(":")
            values[key] = try parseValue()
            keys.append((key, keyOffset))
            skipSpaces()
            if current == UInt8(ascii: ",") { pos += 1; continue }
            if current == UInt8(ascii: "}") { pos += 1; break }
            throw error("expected ',' or '}', found \(describeCurrent())")
        }
        skipSpaces()
        if pos < bytes.count { throw error("unexpected text after the dictionary") }
        return (keys, values)
    }

    mutating func parseValue() throws(WeightFileError) -> Value {
        skipSpaces()
        guard let c = current else { throw error("expected a value, found the end of the header") }
        switch c {
        case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "T"): try word("True"); return .bool(true)
        case UInt8(ascii: "F"): try word("False"); return .bool(false)
        case UInt8(ascii: "("): return .tuple(try parseTuple())
        case UInt8(ascii: "["):
            // A structured dtype's field list: skip it so the caller can say so.
            var depth = 0
            repeat {
                guard let d = current else { throw error("unterminated list") }
                if d == UInt8(ascii: "[") { depth += 1 } else if d == UInt8(ascii: "]") { depth -= 1 }
                pos += 1
            } while depth > 0
            return .list
        default: throw error("expected a string, True, False or a tuple, found \(describeCurrent())")
        }
    }

    mutating func word(_ w: String) throws(WeightFileError) {
        let start = pos
        for c in w.utf8 {
            guard current == c else { pos = start; throw error("expected \(w)") }
            pos += 1
        }
    }

    mutating func parseString() throws(WeightFileError) -> String {
        let quote = current!
        let start = pos
        pos += 1
        var out: [UInt8] = []
        while let c = current, c != quote {
            if c == UInt8(ascii: "\\") { throw error("escapes in header strings are not supported") }
            out.append(c)
            pos += 1
        }
        guard current == quote else { pos = start; throw error("unterminated string") }
        pos += 1
        return String(decoding: out, as: UTF8.self)
    }

    mutating func parseTuple() throws(WeightFileError) -> [Int] {
        try expect("(")
        var items: [Int] = []
        while true {
            skipSpaces()
            if current == UInt8(ascii: ")") { pos += 1; return items }
            let start = pos
            var value = 0
            var digits = 0
            while let c = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) {
                let (v1, o1) = value.multipliedReportingOverflow(by: 10)
                let (v2, o2) = v1.addingReportingOverflow(Int(c - UInt8(ascii: "0")))
                if o1 || o2 { pos = start; throw error("dimension too large") }
                value = v2
                digits += 1
                pos += 1
            }
            if digits == 0 {
                throw error(current == UInt8(ascii: "-") ? "negative dimension" : "expected a dimension (a non-negative integer) or ')', found \(describeCurrent())")
            }
            if current == UInt8(ascii: "L") { pos += 1 }
            items.append(value)
            skipSpaces()
            if current == UInt8(ascii: ",") { pos += 1; continue }
            if current == UInt8(ascii: ")") { pos += 1; return items }
            throw error("expected ',' or ')' in the shape, found \(describeCurrent())")
        }
    }
}
