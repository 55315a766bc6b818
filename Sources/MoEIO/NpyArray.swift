import Foundation
import MoEBasics

/// An n-dimensional array read from or written to a NumPy `.npy` file, in C (row-major) order.
///
/// `<f2` data is widened to `.float32` when read (so it writes back as `<f4`); every other
/// supported type keeps its own storage. See `NpyFormat` for the file format.
public struct NpyArray: Sendable, Equatable {
    public enum Storage: Sendable, Equatable {
        case float32([Float])
        case float64([Double])
        case int8([Int8])
        case uint8([UInt8])
        case int32([Int32])
        case int64([Int64])
        case bool([Bool])

        public var count: Int {
            switch self {
            case .float32(let v): return v.count
            case .float64(let v): return v.count
            case .int8(let v): return v.count
            case .uint8(let v): return v.count
            case .int32(let v): return v.count
            case .int64(let v): return v.count
            case .bool(let v): return v.count
            }
        }

        /// The `descr` this storage is written with.
        public var descr: String {
            switch self {
            case .float32: return "<f4"
            case .float64: return "<f8"
            case .int8: return "|i1"
            case .uint8: return "|u1"
            case .int32: return "<i4"
            case .int64: return "<i8"
            case .bool: return "|b1"
            }
        }
    }

    /// Dimensions; `[]` for a 0-d array (one element).
    public let shape: [Int]
    public let storage: Storage

    /// Fails unless the storage holds exactly the product of `shape` elements.
    public init(shape: [Int], storage: Storage) throws(WeightFileError) {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw WeightFileError(path: "<npy>", message: "shape \(shape) has a negative dimension")
        }
        // Overflow-checked: a shape whose product does not fit cannot match any storage.
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw WeightFileError(path: "<npy>", message: "shape \(shape) has more elements than an array can hold")
            }
            count = p
        }
        guard count == storage.count else {
            throw WeightFileError(path: "<npy>", message: "shape \(shape) has \(count) elements but \(storage.count) values were given")
        }
        self.shape = shape
        self.storage = storage
    }

    /// An array that is already known to be consistent (the reader checks before calling this).
    init(checkedShape shape: [Int], storage: Storage) {
        self.shape = shape
        self.storage = storage
    }

    public var count: Int { storage.count }

    /// The values as `Float` (doubles and 64-bit integers are rounded; bools are 0 and 1).
    public func floats() -> [Float] {
        switch storage {
        case .float32(let v): return v
        case .float64(let v): return v.map { Float($0) }
        case .int8(let v): return v.map { Float($0) }
        case .uint8(let v): return v.map { Float($0) }
        case .int32(let v): return v.map { Float($0) }
        case .int64(let v): return v.map { Float($0) }
        case .bool(let v): return v.map { $0 ? 1 : 0 }
        }
    }

    /// `v` as Int32s, or the error for the first element that is not one exactly.
    private func exact<T>(_ v: [T], _ fail: (Int, String) -> WeightFileError, _ convert: (T) -> Int32?) throws(WeightFileError) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(v.count)
        for (i, x) in v.enumerated() {
            guard let y = convert(x) else { throw fail(i, "\(x)") }
            out.append(y)
        }
        return out
    }

    /// The values as `Int32`: exact, or an error naming the first element that is not an
    /// integer in range (floats must hold whole numbers).
    public func int32s() throws(WeightFileError) -> [Int32] {
        func fail(_ i: Int, _ text: String) -> WeightFileError {
            WeightFileError(path: "<npy>", message: "element \(i) (\(text)) of a \(storage.descr) array is not an Int32")
        }
        switch storage {
        case .int32(let v): return v
        case .int8(let v): return v.map { Int32($0) }
        case .uint8(let v): return v.map { Int32($0) }
        case .bool(let v): return v.map { $0 ? 1 : 0 }
        case .int64(let v): return try exact(v, fail) { Int32(exactly: $0) }
        case .float32(let v): return try exact(v, fail) { Int32(exactly: $0) }
        case .float64(let v): return try exact(v, fail) { Int32(exactly: $0) }
        }
    }

    // MARK: Reading and writing

    /// Reads a `.npy` file (memory-mapped while it is parsed).
    public init(path: String) throws(WeightFileError) {
        let file = try MappedFile(path: path)
        self = try NpyFormat.decode(file.bytes, path: path)
    }

    /// Parses the bytes of a `.npy` file; `path` is used only in error messages.
    public init(data: Data, path: String = "<memory>") throws(WeightFileError) {
        let result: Result<NpyArray, WeightFileError> = data.withUnsafeBytes { raw in
            do throws(WeightFileError) { return .success(try NpyFormat.decode(raw, path: path)) } catch { return .failure(error) }
        }
        self = try result.get()
    }

    /// The bytes of a version 1.0 `.npy` file, header laid out exactly as NumPy writes it.
    public func encoded() -> Data { NpyFormat.encode(self) }

    /// Writes a version 1.0 `.npy` file atomically.
    public func write(to path: String) throws(WeightFileError) {
        do {
            try AtomicFile.write(encoded(), to: path)
        } catch {
            throw WeightFileError(path: path, message: error.reason)
        }
    }
}
