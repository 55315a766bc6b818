import Foundation
import MoEBasics

/// Where one tensor lives in a safetensors file, as its header describes it (already validated).
public struct TensorInfo: Sendable, Hashable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// `data_offsets` as written in the header: relative to the first byte after the header.
    public let dataOffsets: Range<Int>
    /// The same bytes as absolute offsets in the file.
    public let byteRange: Range<Int>
    /// For a tensor of a GGUF file: its ggml type (`dtype` is then `.f32`, what reading gives).
    public var ggmlType: GGMLType? = nil
    /// For the linear weight `X.weight` of a GPTQ or AWQ checkpoint, which stores `X.qweight`,
    /// `X.qzeros` and `X.scales` instead: its group size (`dtype` is then `.f32`, what reading
    /// gives; `Checkpoint.copyInt4Rows` reads it as 4-bit groups with zero points, and the byte
    /// ranges are `X.qweight`'s).
    public var int4Group: Int? = nil

    /// Number of elements: the product of `shape` (1 for a 0-d tensor).
    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { byteRange.count }
}

/// A safetensors file, memory-mapped read-only, its header fully validated when it is opened.
///
/// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// `{"__metadata__": {str: str}?, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}`,
/// then the data section, which the offsets index. Opening checks, and reports with the file,
/// tensor and byte offset: the header length against the file size, the JSON, every entry's
/// dtype, shape and offsets, that each tensor's byte count matches its shape and dtype, that it
/// lies inside the data section, and that no two tensors overlap. Gaps between tensors and
/// bytes after the last are allowed. After that every read stays inside the mapping.
public final class SafetensorsFile: @unchecked Sendable {
    /// Headers larger than this are refused: real ones are a few MB at most.
    public static let maxHeaderLength = 100_000_000

    public let path: String
    public let tensors: [String: TensorInfo]
    /// The optional `__metadata__` object.
    public let metadata: [String: String]
    /// N, the length of the JSON header in bytes.
    public let headerLength: Int
    /// Absolute offset of the data section (8 + N).
    public var dataStart: Int { 8 + headerLength }
    /// Tensor names, sorted.
    public var tensorNames: [String] { tensors.keys.sorted() }

    private let file: MappedFile

    public init(path: String) throws(WeightFileError) {
        self.path = path
        file = try MappedFile(path: path)
        let header = try SafetensorsHeader.parse(file.bytes, path: path)
        headerLength = header.length
        tensors = header.tensors
        metadata = header.metadata
    }

    /// The tensor's description, or an error naming the file and the tensor.
    public func info(_ name: String) throws(WeightFileError) -> TensorInfo {
        guard let t = tensors[name] else { throw WeightFileError.noSuchTensor(name, in: tensors.keys, path: path) }
        return t
    }

    /// The tensor's values converted to `Float`.
    public func floats(_ name: String) throws(WeightFileError) -> [Float] {
        let t = try info(name)
        try checkReadable(t)
        return [Float](unsafeUninitializedCapacity: t.elementCount) { buffer, initialized in
            TensorConversion.toFloat(
                t.dtype, from: file.bytes.baseAddress! + t.byteRange.lowerBound,
                count: t.elementCount, into: buffer.baseAddress!)
            initialized = t.elementCount
        }
    }

    /// Converts the tensor's values to `Float` into caller memory, whose count must equal the
    /// tensor's element count. The main path the runtime uses to fill its arenas.
    public func copyFloats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        let t = try info(name)
        try checkReadable(t)
        guard buffer.count == t.elementCount else {
            throw WeightFileError(
                path: path, tensor: name,
                message:
                    "destination holds \(buffer.count) floats but the tensor has \(t.elementCount) (shape \(t.shape))")
        }
        if t.elementCount == 0 { return }
        TensorConversion.toFloat(
            t.dtype, from: file.bytes.baseAddress! + t.byteRange.lowerBound,
            count: t.elementCount, into: buffer.baseAddress!)
        file.releasePages(t.byteRange)
    }

    /// Converts elements `elements` of the tensor (in its row-major order) to `Float` into caller
    /// memory, whose count must equal the range's; the file's other bytes are not read. (An MPI
    /// rank reads only its experts' slices of a stacked expert tensor.)
    public func copyFloats(_ name: String, elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        let t = try info(name)
        try checkReadable(t)
        guard elements.lowerBound >= 0, elements.upperBound <= t.elementCount, buffer.count == elements.count else {
            throw WeightFileError(
                path: path, tensor: name,
                message: "elements \(elements) into \(buffer.count) floats, but the tensor has \(t.elementCount) (shape \(t.shape))")
        }
        if elements.isEmpty { return }
        let start = t.byteRange.lowerBound + elements.lowerBound * t.dtype.size
        TensorConversion.toFloat(t.dtype, from: file.bytes.baseAddress! + start, count: elements.count, into: buffer.baseAddress!)
        file.releasePages(start..<(start + elements.count * t.dtype.size))
    }

    /// Drops the tensor's whole pages of the mapping from memory (read again if touched), once
    /// its values have been copied out.
    public func releasePages(of name: String) {
        guard let t = tensors[name] else { return }
        file.releasePages(t.byteRange)
    }

    /// Calls `body` with the tensor's bytes as stored (little-endian elements of its dtype), in
    /// place; valid only during the call.
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let t = try info(name)
        return try body(UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange]))
    }

    /// Calls `body` with the tensor's bytes seen as `Float`s in place, without copying, when the
    /// tensor is F32 and 4-byte aligned in memory; returns nil (without calling it) otherwise.
    /// The buffer is valid only during the call.
    public func withFloat32Buffer<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R? {
        let t = try info(name)
        #if _endian(little)
            guard t.dtype == .f32 else { return nil }
            if t.elementCount == 0 { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
            let start = file.bytes.baseAddress! + t.byteRange.lowerBound
            guard Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 else { return nil }
            return try body(UnsafeBufferPointer(start: start.assumingMemoryBound(to: Float.self), count: t.elementCount))
        #else
            return nil
        #endif
    }

    private func checkReadable(_ t: TensorInfo) throws(WeightFileError) {
        guard t.dtype.isReadableAsFloat else {
            throw WeightFileError(
                path: path, tensor: t.name, byteOffset: t.byteRange.lowerBound,
                message: "dtype \(t.dtype.rawValue) cannot be read as f32 (supported: F32, F16, BF16, F64 and integer types)")
        }
    }
}

/// Reading and validating a safetensors header.
enum SafetensorsHeader {
    struct Parsed {
        var length: Int
        var tensors: [String: TensorInfo]
        var metadata: [String: String]
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws(WeightFileError) -> Parsed {
        func fail(_ message: String, tensor: String? = nil, at offset: Int? = nil) -> WeightFileError {
            WeightFileError(path: path, tensor: tensor, byteOffset: offset, message: message)
        }
        let size = bytes.count
        guard size >= 8 else {
            throw fail("file is \(size) bytes, too short to hold the 8-byte header length (truncated, or not a safetensors file)", at: 0)
        }
        let n = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(SafetensorsFile.maxHeaderLength) else {
            throw fail("header length \(n) is absurd (more than \(SafetensorsFile.maxHeaderLength) bytes); not a safetensors file?", at: 0)
        }
        let length = Int(n)
        guard 8 + length <= size else {
            throw fail(
                "header length \(length) is larger than the file (\(size) bytes, so at most \(size - 8) bytes of header); the file is truncated or not a safetensors file", at: 0)
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + length)])
        let dataStart = 8 + length
        let dataSize = size - dataStart

        let json: JSON
        do {
            json = try JSON.parse(bytes: headerBytes)
        } catch {
            throw fail(
                "header is not valid JSON at byte \(8 + error.offset) (header line \(error.line), column \(error.column)): \(error.message)",
                at: 8 + error.offset)
        }
        guard case .object(let root) = json else {
            throw fail("header is \(json.typeName), expected a JSON object of tensors", at: 8)
        }

        /// Best-effort place of a key in the header, for error offsets (the JSON value has none).
        func offsetOfKey(_ name: String) -> Int? {
            let needle = Array(("\"" + name + "\"").utf8)
            guard needle.count <= headerBytes.count else { return nil }
            var i = 0
            while i + needle.count <= headerBytes.count {
                if headerBytes[i] == needle[0], needle.indices.allSatisfy({ headerBytes[i + $0] == needle[$0] }) {
                    return 8 + i
                }
                i += 1
            }
            return nil
        }

        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
        for (name, entry) in root {
            // Searching the header for the key is linear, so only errors do it.
            func keyOffset() -> Int { offsetOfKey(name) ?? 8 }
            if name == "__metadata__" {
                guard case .object(let m) = entry else {
                    throw fail("__metadata__ is \(entry.typeName), expected an object of strings", at: keyOffset())
                }
                for (k, v) in m {
                    guard let s = v.string else {
                        throw fail("__metadata__ value for '\(k)' is \(v.typeName), expected a string", at: offsetOfKey(k) ?? keyOffset())
                    }
                    metadata[k] = s
                }
                continue
            }
            func bad(_ message: String) -> WeightFileError {
                let at = keyOffset()
                return fail(message + " (header entry at byte \(at))", tensor: name, at: at)
            }
            guard case .object(let e) = entry else { throw bad("header entry is \(entry.typeName), expected an object") }
            guard let dtypeValue = e["dtype"] else { throw bad("header entry has no \"dtype\"") }
            guard let dtypeText = dtypeValue.string else { throw bad("\"dtype\" is \(dtypeValue.typeName), expected a string") }
            guard let dtype = SafetensorsDType(rawValue: dtypeText) else {
                throw bad("unknown dtype \"\(dtypeText)\" (known: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shapeValue = e["shape"] else { throw bad("header entry has no \"shape\"") }
            guard let dims = shapeValue.array else { throw bad("\"shape\" is \(shapeValue.typeName), expected an array of integers") }
            var shape: [Int] = []
            var elements = 1
            var overflow = false
            for (i, d) in dims.enumerated() {
                guard let v = d.int else {
                    throw bad("shape dimension \(i) is \(d.compact), expected a non-negative integer")
                }
                guard v >= 0 else { throw bad("shape dimension \(i) is negative (\(v))") }
                shape.append(v)
                let (p, o) = elements.multipliedReportingOverflow(by: v)
                elements = p
                overflow = overflow || o
            }
            guard let offsetsValue = e["data_offsets"] else { throw bad("header entry has no \"data_offsets\"") }
            guard let offsets = offsetsValue.array, offsets.count == 2 else {
                throw bad("\"data_offsets\" is \(offsetsValue.compact), expected [begin, end]")
            }
            guard let begin = offsets[0].int, let end = offsets[1].int, begin >= 0, end >= 0 else {
                throw bad("\"data_offsets\" \(offsetsValue.compact) are not non-negative integers")
            }
            guard begin <= end else {
                throw fail("data_offsets [\(begin), \(end)] end before they begin", tensor: name, at: keyOffset())
            }
            let (bytesNeeded, o2) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, !o2 else {
                throw bad("shape \(shape) is too large (its byte count overflows)")
            }
            guard end - begin == bytesNeeded else {
                throw fail(
                    "data_offsets [\(begin), \(end)] hold \(end - begin) bytes but shape \(shape) of \(dtype.rawValue) needs \(elements) × \(dtype.size) = \(bytesNeeded) bytes",
                    tensor: name, at: dataStart + begin)
            }
            guard end <= dataSize else {
                let hint = dataSize == 0 ? "; the file ends right after the header (truncated?)" : ""
                throw fail(
                    "data_offsets [\(begin), \(end)] end beyond the data section (\(dataSize) bytes, data begins at byte \(dataStart))\(hint)",
                    tensor: name, at: dataStart + begin)
            }
            tensors[name] = TensorInfo(
                name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end,
                byteRange: (dataStart + begin)..<(dataStart + end))
        }

        // Overlaps: sweep in order of start, remembering the tensor reaching furthest so far.
        let ordered = tensors.values.filter { !$0.dataOffsets.isEmpty }
            .sorted { ($0.dataOffsets.lowerBound, $0.name) < ($1.dataOffsets.lowerBound, $1.name) }
        var furthest: TensorInfo?
        for t in ordered {
            if let f = furthest, t.dataOffsets.lowerBound < f.dataOffsets.upperBound {
                throw fail(
                    "data_offsets [\(t.dataOffsets.lowerBound), \(t.dataOffsets.upperBound)] overlap tensor '\(f.name)' [\(f.dataOffsets.lowerBound), \(f.dataOffsets.upperBound)] (starting at byte \(t.byteRange.lowerBound))",
                    tensor: t.name, at: t.byteRange.lowerBound)
            }
            if furthest == nil || t.dataOffsets.upperBound > furthest!.dataOffsets.upperBound { furthest = t }
        }
        return Parsed(length: length, tensors: tensors, metadata: metadata)
    }
}
