import Foundation
import MoEBasics

/// A metadata value of a GGUF file.
public indirect enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case unsigned(UInt64)
    case signed(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The value as JSON, so that a graph's `param … from "qwen3moe.expert_count"` reads it as
    /// it reads config.json (JSON numbers are Doubles: exact up to 2^53).
    public var json: JSON {
        switch self {
        case .unsigned(let u): .number(Double(u))
        case .signed(let i): .number(Double(i))
        case .float(let d): .number(d)
        case .bool(let b): .bool(b)
        case .string(let s): .string(s)
        case .array(let a): .array(a.map(\.json))
        }
    }

    public var description: String {
        switch self {
        case .unsigned(let u): "\(u)"
        case .signed(let i): "\(i)"
        case .float(let d): "\(d)"
        case .bool(let b): "\(b)"
        case .string(let s): "\"\(s.prefix(40))\(s.count > 40 ? "…" : "")\""
        case .array(let a): "an array of \(a.count)"
        }
    }
}

/// One tensor of a GGUF file, as its directory describes it (already validated).
public struct GGUFTensorInfo: Sendable, Hashable {
    public let name: String
    public let type: GGMLType
    /// ggml's dimensions, fastest-varying first (`ne[0]` is a row's length).
    public let dims: [Int]
    /// The same shape in row-major order, as NumPy and safetensors write it: `dims` reversed.
    public var shape: [Int] { dims.reversed() }
    /// Absolute offsets of its bytes in the file.
    public let byteRange: Range<Int>

    public var elementCount: Int { dims.reduce(1, *) }
}

/// A GGUF file (llama.cpp's format, version 2 or 3), memory-mapped read-only, its header,
/// metadata and tensor directory validated when it is opened.
///
/// Layout (little-endian): magic "GGUF", u32 version, u64 tensor count, u64 metadata count;
/// metadata as (string key, u32 value type, value); tensor infos as (string name, u32 n_dims,
/// u64 dims[n_dims], u32 ggml type, u64 offset); padding to `general.alignment` (32 unless set);
/// the data section, which the offsets index (each a multiple of the alignment). A string is a
/// u64 byte count and UTF-8 bytes; an array a u32 item type, a u64 count and the items.
///
/// Opening checks, and reports with the file, the tensor or key and the byte offset: every count
/// and length against the bytes left (before anything is allocated by it), nesting of arrays
/// (at most `maxArrayDepth`), value and tensor types, dimensions (at most 4, products that fit),
/// row lengths that are whole blocks, alignment, that each tensor lies inside the data section and
/// that no two overlap or share a name. After that every read stays inside the mapping.
public final class GGUFFile: @unchecked Sendable {
    /// Arrays of arrays nest at most this deep (llama.cpp's files use one level).
    public static let maxArrayDepth = 8
    static let magic: UInt32 = 0x4655_4747 // "GGUF" read as a little-endian u32

    public let path: String
    public let version: Int
    /// Metadata keys in file order, and their values.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file order, and by name.
    public let tensorList: [GGUFTensorInfo]
    public let tensors: [String: GGUFTensorInfo]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataStart: Int

    private let file: MappedFile

    public init(path: String) throws(WeightFileError) {
        self.path = path
        file = try MappedFile(path: path)
        var r = GGUFReader(bytes: file.bytes, path: path)
        let parsed = try r.parse()
        version = parsed.version
        metadataKeys = parsed.keys
        metadata = parsed.metadata
        tensorList = parsed.tensors
        alignment = parsed.alignment
        dataStart = parsed.dataStart
        var byName: [String: GGUFTensorInfo] = [:]
        for t in parsed.tensors { byName[t.name] = t }
        tensors = byName
    }

    /// Whether the file starts with GGUF's magic (how `--model` tells a GGUF file).
    public static func looksLikeGGUF(path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        guard let d = try? h.read(upToCount: 4), d.count == 4 else { return false }
        return d.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } == magic
    }

    /// The tensor's description, or an error naming the file and the tensor.
    public func info(_ name: String) throws(WeightFileError) -> GGUFTensorInfo {
        guard let t = tensors[name] else { throw WeightFileError.noSuchTensor(name, in: tensors.keys, path: path) }
        return t
    }

    /// The tensor's values dequantized to `Float`, in row-major order (`shape`).
    public func floats(_ name: String) throws(WeightFileError) -> [Float] {
        let t = try info(name)
        var values = [Float](repeating: 0, count: t.elementCount)
        try values.withUnsafeMutableBufferPointer { (buffer) throws(WeightFileError) in
            try copyFloats(t, elements: 0..<t.elementCount, into: buffer)
        }
        return values
    }

    /// Dequantizes elements `elements` of the tensor (row-major order) into caller memory, whose
    /// count must equal the range's. The range must start and end on block boundaries (whole
    /// rows always do); the file's other bytes are not read.
    public func copyFloats(_ name: String, elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        try copyFloats(try info(name), elements: elements, into: buffer)
    }

    private func copyFloats(_ t: GGUFTensorInfo, elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        let block = t.type.blockSize
        guard elements.lowerBound >= 0, elements.upperBound <= t.elementCount, buffer.count == elements.count,
            elements.lowerBound % block == 0, elements.count % block == 0
        else {
            throw WeightFileError(
                path: path, tensor: t.name,
                message:
                    "elements \(elements) into \(buffer.count) floats, but the tensor has \(t.elementCount) (shape \(t.shape)) in blocks of \(block)")
        }
        if elements.isEmpty { return }
        let start = t.byteRange.lowerBound + elements.lowerBound / block * t.type.blockBytes
        let blocks = elements.count / block
        t.type.dequantize(blocks: blocks, from: file.bytes.baseAddress! + start, into: buffer.baseAddress!)
        file.releasePages(start..<(start + blocks * t.type.blockBytes))
    }

    /// Copies the tensor's bytes as stored (blocks of its type) to `destination`, then drops
    /// their pages of the mapping from memory (as `copyFloats` does): a plan repacking a file's
    /// blocks otherwise held the file's pages, the copy and the packed weights at once (a
    /// Mixtral-shaped Q6_K layer at 512 tokens: 291 MB peak, against 224 MB after).
    public func copyBytes(_ name: String, into destination: UnsafeMutableRawPointer) throws(WeightFileError) {
        let t = try info(name)
        destination.copyMemory(from: file.bytes.baseAddress! + t.byteRange.lowerBound, byteCount: t.byteRange.count)
        file.releasePages(t.byteRange)
    }

    /// The tensor's bytes as stored (blocks of its type), valid only during the call.
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let t = try info(name)
        return try body(UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange]))
    }

    /// The metadata as a JSON object (for params bound `from` GGUF keys).
    public var metadataJSON: JSONObject {
        var o = JSONObject()
        for k in metadataKeys { o[k] = metadata[k]!.json }
        return o
    }
}

/// Reads a GGUF file's header, metadata and tensor directory from its bytes, checking each read.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var at = 0

    struct Parsed {
        var version: Int
        var keys: [String]
        var metadata: [String: GGUFValue]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataStart: Int
    }

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    func fail(_ message: String, tensor: String? = nil, at offset: Int? = nil) -> WeightFileError {
        WeightFileError(path: path, tensor: tensor, byteOffset: offset ?? at, message: message + " (at byte \(offset ?? at))")
    }

    var left: Int { bytes.count - at }

    mutating func u32(_ what: @autoclosure () -> String) throws(WeightFileError) -> UInt32 {
        guard left >= 4 else { throw fail("file ends inside \(what()) (a 4-byte value; \(left) bytes left): truncated") }
        defer { at += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws(WeightFileError) -> UInt64 {
        guard left >= 8 else { throw fail("file ends inside \(what()) (an 8-byte value; \(left) bytes left): truncated") }
        defer { at += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }

    /// A count that must fit what is left of the file at `minBytes` bytes per item.
    mutating func count(_ what: @autoclosure () -> String, minBytes: Int) throws(WeightFileError) -> Int {
        let start = at
        let n = try u64(what())
        guard n <= UInt64(left / max(minBytes, 1)) else {
            throw fail("\(what()) is \(n), more than the \(left) bytes left in the file can hold: corrupt or truncated", at: start)
        }
        return Int(n)
    }

    mutating func string(_ what: @autoclosure () -> String) throws(WeightFileError) -> String {
        let start = at
        let n = try count("the length of \(what())", minBytes: 1)
        guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]), as: UTF8.self) else {
            throw fail("\(what()) is not valid UTF-8", at: start)
        }
        at += n
        return s
    }

    /// Bytes a value of type `type` takes at least (a string or an array at least its count).
    static func minimumBytes(_ type: UInt32) -> Int {
        switch type {
        case 0, 1, 7: 1
        case 2, 3: 2
        case 4, 5, 6: 4
        case 8, 10, 11, 12: 8
        case 9: 12
        default: 1
        }
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws(WeightFileError) -> GGUFValue {
        func fixed<T: FixedWidthInteger>(_: T.Type, _ r: inout GGUFReader) throws(WeightFileError) -> T {
            let size = MemoryLayout<T>.size
            guard r.left >= size else { throw r.fail("file ends inside the value of '\(key)': truncated") }
            defer { r.at += size }
            return T(littleEndian: r.bytes.loadUnaligned(fromByteOffset: r.at, as: T.self))
        }
        switch type {
        case 0: return .unsigned(UInt64(try fixed(UInt8.self, &self)))
        case 1: return .signed(Int64(try fixed(Int8.self, &self)))
        case 2: return .unsigned(UInt64(try fixed(UInt16.self, &self)))
        case 3: return .signed(Int64(try fixed(Int16.self, &self)))
        case 4: return .unsigned(UInt64(try fixed(UInt32.self, &self)))
        case 5: return .signed(Int64(try fixed(Int32.self, &self)))
        case 6: return .float(Double(Float(bitPattern: try fixed(UInt32.self, &self))))
        case 7:
            let start = at
            let b = try fixed(UInt8.self, &self)
            guard b <= 1 else { throw fail("'\(key)' is a bool of value \(b), expected 0 or 1", at: start) }
            return .bool(b == 1)
        case 8: return .string(try string("the value of '\(key)'"))
        case 9:
            let start = at
            guard depth < GGUFFile.maxArrayDepth else {
                throw fail("'\(key)': arrays nested more than \(GGUFFile.maxArrayDepth) deep", at: start)
            }
            let itemType = try u32("the item type of '\(key)'")
            guard itemType <= 12 else { throw fail("'\(key)': unknown array item type \(itemType)", at: start) }
            let n = try count("the item count of '\(key)'", minBytes: Self.minimumBytes(itemType))
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(type: itemType, key: key, depth: depth + 1)) }
            return .array(items)
        case 10: return .unsigned(try fixed(UInt64.self, &self))
        case 11: return .signed(try fixed(Int64.self, &self))
        case 12: return .float(Double(bitPattern: try fixed(UInt64.self, &self)))
        default: throw fail("'\(key)' has unknown value type \(type) (GGUF knows 0–12)", at: at - 4)
        }
    }

    mutating func parse() throws(WeightFileError) -> Parsed {
        guard bytes.count >= 4, bytes.loadUnaligned(as: UInt32.self) == GGUFFile.magic.littleEndian else {
            throw fail("not a GGUF file: it does not start with \"GGUF\"", at: 0)
        }
        at = 4
        let version = try u32("the version")
        guard version == 2 || version == 3 else {
            throw fail("GGUF version \(version) is not supported (moec reads versions 2 and 3)", at: 4)
        }
        // A tensor info is at least 8 (name) + 4 + 8 (one dim) + 4 + 8 bytes; a key-value 8 + 4 + 1.
        let tensorCount = try count("the tensor count", minBytes: 32)
        let kvCount = try count("the metadata count", minBytes: 13)
        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let start = at
            let key = try string("a metadata key")
            guard metadata[key] == nil else { throw fail("metadata key '\(key)' appears twice", at: start) }
            let type = try u32("the value type of '\(key)'")
            metadata[key] = try value(type: type, key: key, depth: 0)
            keys.append(key)
        }
        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard case .unsigned(let u) = a, u > 0, u <= 1 << 20, u & (u - 1) == 0 else {
                throw fail("general.alignment is \(a), expected a power of two up to 1 MiB (as a u32)")
            }
            alignment = Int(u)
        }
        struct Entry {
            var name: String
            var type: GGMLType
            var dims: [Int]
            var offset: Int
            var bytes: Int
            var infoAt: Int
        }
        var entries: [Entry] = []
        var seen: Set<String> = []
        for _ in 0..<tensorCount {
            let infoAt = at
            let name = try string("a tensor name")
            guard seen.insert(name).inserted else { throw fail("two tensors are named '\(name)'", tensor: name, at: infoAt) }
            let nDims = try u32("the dimension count of '\(name)'")
            guard (1...4).contains(nDims) else {
                throw fail("\(nDims) dimensions, expected 1 to 4", tensor: name, at: at - 4)
            }
            var dims: [Int] = []
            var elements = 1
            for i in 0..<Int(nDims) {
                let d = try u64("dimension \(i) of '\(name)'")
                guard d <= UInt64(Int.max) else { throw fail("dimension \(i) is \(d), too large", tensor: name, at: at - 8) }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(d))
                guard !overflow, product <= 1 << 48 else {
                    throw fail("dimensions \(dims + [Int(d)]) hold more than 2^48 values", tensor: name, at: at - 8)
                }
                elements = product
                dims.append(Int(d))
            }
            let typeAt = at
            let rawType = try u32("the type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                let known = GGMLType.allCases.map(\.description).joined(separator: ", ")
                if let other = GGMLType.nameOfUnsupported(rawType) {
                    throw fail("type \(other) is not supported (moec reads \(known))", tensor: name, at: typeAt)
                }
                throw fail("unknown ggml type \(rawType) (moec reads \(known))", tensor: name, at: typeAt)
            }
            guard dims[0] % type.blockSize == 0 else {
                throw fail("rows of \(dims[0]) values are not whole \(type) blocks of \(type.blockSize)", tensor: name, at: infoAt)
            }
            let offsetAt = at
            let offset = try u64("the data offset of '\(name)'")
            guard offset <= UInt64(Int.max / 2) else { throw fail("data offset \(offset) is past any file", tensor: name, at: offsetAt) }
            guard Int(offset) % alignment == 0 else {
                throw fail("data offset \(offset) is not a multiple of the alignment \(alignment)", tensor: name, at: offsetAt)
            }
            entries.append(
                Entry(name: name, type: type, dims: dims, offset: Int(offset), bytes: elements / type.blockSize * type.blockBytes, infoAt: infoAt))
        }
        let dataStart = (at + alignment - 1) / alignment * alignment
        guard dataStart <= bytes.count || entries.isEmpty else {
            throw fail("the data section would start at byte \(dataStart), past the end of the file (\(bytes.count) bytes): truncated")
        }
        var tensors: [GGUFTensorInfo] = []
        for e in entries {
            let begin = dataStart + e.offset
            guard begin <= bytes.count, e.bytes <= bytes.count - begin else {
                throw fail(
                    "its \(e.bytes) bytes (\(e.type) \(e.dims)) at data offset \(e.offset) end past the end of the file (\(bytes.count) bytes; data begins at byte \(dataStart)): truncated",
                    tensor: e.name, at: e.infoAt)
            }
            tensors.append(GGUFTensorInfo(name: e.name, type: e.type, dims: e.dims, byteRange: begin..<(begin + e.bytes)))
        }
        let byStart = tensors.filter { !$0.byteRange.isEmpty }.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
        for (a, b) in zip(byStart, byStart.dropFirst()) where b.byteRange.lowerBound < a.byteRange.upperBound {
            throw fail(
                "its bytes \(b.byteRange) overlap tensor '\(a.name)' \(a.byteRange)", tensor: b.name, at: b.byteRange.lowerBound)
        }
        return Parsed(version: Int(version), keys: keys, metadata: metadata, tensors: tensors, alignment: alignment, dataStart: dataStart)
    }
}
