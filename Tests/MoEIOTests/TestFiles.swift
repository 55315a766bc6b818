import Foundation
import MoEIO

/// Builds safetensors bytes by hand, so tests can make files that lie.
enum RawSafetensors {
    /// `header` verbatim (no padding), then `data`. `headerLength` overrides the length prefix.
    static func bytes(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> Data {
        let h = Array(header.utf8)
        var out = Data()
        withUnsafeBytes(of: (headerLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    static func write(_ data: Data, to path: String) {
        precondition(FileManager.default.createFile(atPath: path, contents: data), "cannot create \(path)")
    }

    /// Little-endian f32 bytes.
    static func f32(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
    }
}

/// Runs `body` and returns the `WeightFileError` it throws, or nil if it threw none (or another type).
func weightError(_ body: () throws -> Void) -> WeightFileError? {
    do {
        try body()
        return nil
    } catch let e as WeightFileError {
        return e
    } catch {
        return nil
    }
}
