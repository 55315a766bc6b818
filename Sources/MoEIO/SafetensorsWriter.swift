import Foundation
import MoEBasics

/// Writes safetensors files the way the reference implementation lays them out: tensors ordered
/// by element size (largest first) then name, so every tensor starts aligned to its element size;
/// the JSON header padded with spaces to a multiple of 8 bytes; the file written atomically.
public enum SafetensorsWriter {
    /// One tensor to write: `values` are converted to `dtype` (F32, F16 or BF16; round to nearest even).
    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var dtype: SafetensorsDType
        public var values: [Float]
        public init(name: String, shape: [Int], dtype: SafetensorsDType = .f32, values: [Float]) {
            self.name = name
            self.shape = shape
            self.dtype = dtype
            self.values = values
        }
    }

    public static func write(tensors: [Tensor], metadata: [String: String] = [:], to path: String) throws(WeightFileError) {
        let data = try encode(tensors: tensors, metadata: metadata, path: path)
        do {
            try AtomicFile.write(data, to: path)
        } catch {
            throw WeightFileError(path: path, message: error.reason)
        }
    }

    /// The file's bytes. `path` is used only in error messages.
    public static func encode(tensors: [Tensor], metadata: [String: String] = [:], path: String = "<memory>") throws(WeightFileError) -> Data {
        var seen = Set<String>()
        for t in tensors {
            func fail(_ m: String) -> WeightFileError { WeightFileError(path: path, tensor: t.name, message: m) }
            guard t.name != "__metadata__" else { throw fail("the name __metadata__ is reserved") }
            guard seen.insert(t.name).inserted else { throw fail("written twice") }
            guard t.dtype.isWritable else { throw fail("cannot write dtype \(t.dtype.rawValue) (F32, F16 and BF16 only)") }
            guard t.shape.allSatisfy({ $0 >= 0 }) else { throw fail("shape \(t.shape) has a negative dimension") }
            let count = t.shape.reduce(1, *)
            guard count == t.values.count else {
                throw fail("shape \(t.shape) has \(count) elements but \(t.values.count) values were given")
            }
        }
        let ordered = tensors.sorted { ($0.dtype.size, $1.name) > ($1.dtype.size, $0.name) }

        var header = JSONObject()
        if !metadata.isEmpty {
            header["__metadata__"] = .object(JSONObject(metadata.sorted { $0.key < $1.key }.map { ($0.key, JSON.string($0.value)) }))
        }
        var offset = 0
        for t in ordered {
            let size = t.values.count * t.dtype.size
            header[t.name] = JSON([
                "dtype": .string(t.dtype.rawValue),
                "shape": .array(t.shape.map { JSON($0) }),
                "data_offsets": .array([JSON(offset), JSON(offset + size)])
            ])
            offset += size
        }
        var headerBytes = Array(JSON.object(header).compact.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        var out = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in ordered {
            switch t.dtype {
            case .f16:
                let bits = t.values.map { HalfPrecision.floatToHalf($0).littleEndian }
                bits.withUnsafeBytes { out.append(contentsOf: $0) }
            case .bf16:
                let bits = t.values.map { HalfPrecision.floatToBfloat16($0).littleEndian }
                bits.withUnsafeBytes { out.append(contentsOf: $0) }
            default:
                let bits = t.values.map { $0.bitPattern.littleEndian }
                bits.withUnsafeBytes { out.append(contentsOf: $0) }
            }
        }
        return out
    }
}
