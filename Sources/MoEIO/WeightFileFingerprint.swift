import Foundation
import MoEBasics

#if canImport(Darwin)
    import Darwin
#elseif canImport(Glibc)
    import Glibc
#endif

/// What a compiled plan remembers about a weight file, so it can tell when the weights changed
/// or vanished since it was compiled: the absolute path, size, modification time and a hash of
/// the header.
///
/// The header hash is 64-bit FNV-1a over the first 8 + N bytes for a safetensors file (the
/// length and the JSON header, which covers every tensor's name, dtype, shape and offsets), and
/// over the first 64 KiB for any other file (an index, `config.json`, `.npy`).
public struct WeightFileFingerprint: Codable, Hashable, Sendable {
    public var path: String
    public var size: Int
    /// Modification time in nanoseconds since 1970.
    public var modificationTimeNs: Int64
    public var headerHash: UInt64

    public init(path: String, size: Int, modificationTimeNs: Int64, headerHash: UInt64) {
        self.path = path
        self.size = size
        self.modificationTimeNs = modificationTimeNs
        self.headerHash = headerHash
    }

    /// Fingerprints the file now. `path` is made absolute.
    public static func of(path: String) throws(WeightFileError) -> WeightFileFingerprint {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        guard let st = FileStatus(absolute) else {
            throw WeightFileError(path: absolute, message: "cannot fingerprint: \(String(cString: strerror(errno)))")
        }
        let hash = try headerHash(of: absolute)
        return WeightFileFingerprint(path: absolute, size: st.size, modificationTimeNs: st.modificationTimeNs, headerHash: hash)
    }

    /// Throws, saying what changed, unless the file is still as it was fingerprinted.
    public func check() throws(WeightFileError) {
        guard let st = FileStatus(path) else {
            throw WeightFileError(path: path, message: "weight file is missing (\(String(cString: strerror(errno)))); it existed when the plan was compiled")
        }
        if st.size != size {
            throw WeightFileError(path: path, message: "weight file changed since the plan was compiled: size was \(size) bytes, now \(st.size)")
        }
        let hash = try Self.headerHash(of: path)
        if hash != headerHash {
            throw WeightFileError(
                path: path, message: "weight file changed since the plan was compiled: its header is different (hash \(Self.hex(headerHash)), now \(Self.hex(hash)))")
        }
        if st.modificationTimeNs != modificationTimeNs {
            throw WeightFileError(
                path: path,
                message: "weight file was modified since the plan was compiled (same size and header, modification time \(modificationTimeNs) ns, now \(st.modificationTimeNs) ns)")
        }
    }

    /// `{"path": ..., "size": ..., "modified_ns": "...", "header_fnv1a": "0123456789abcdef"}`.
    /// The 64-bit values are strings because JSON numbers are doubles.
    public func toJSON() -> JSON {
        JSON([
            "path": .string(path),
            "size": JSON(size),
            "modified_ns": .string(String(modificationTimeNs)),
            "header_fnv1a": .string(Self.hex(headerHash))
        ])
    }

    public init(json: JSON) throws(WeightFileError) {
        let where_ = json["path"]?.string ?? "<fingerprint>"
        func fail(_ key: String, _ expected: String) -> WeightFileError {
            WeightFileError(path: where_, message: "fingerprint JSON: \"\(key)\" is \(json[key].map(\.typeName) ?? "missing"), expected \(expected)")
        }
        guard let p = json["path"]?.string else { throw fail("path", "a string") }
        guard let s = json["size"]?.int, s >= 0 else { throw fail("size", "a non-negative integer") }
        guard let m = json["modified_ns"]?.string.flatMap({ Int64($0) }) else { throw fail("modified_ns", "a string of decimal digits") }
        guard let h = json["header_fnv1a"]?.string.flatMap({ UInt64($0, radix: 16) }) else { throw fail("header_fnv1a", "a string of hex digits") }
        self.init(path: p, size: s, modificationTimeNs: m, headerHash: h)
    }

    static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// FNV-1a (64-bit) of bytes.
    public static func fnv1a(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }

    private static func headerHash(of path: String) throws(WeightFileError) -> UInt64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw WeightFileError(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        func read(_ count: Int) -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, count - got, off_t(got)) }
                if n <= 0 { break }
                got += n
            }
            return Array(buffer.prefix(got))
        }
        let first = read(8)
        var length = 65536
        if first.count == 8 {
            let n = first.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            if n <= UInt64(SafetensorsFile.maxHeaderLength) { length = 8 + Int(n) }
        }
        return read(length).withUnsafeBytes { fnv1a($0) }
    }
}

/// The parts of `stat` a fingerprint uses; nil (with `errno` set) when the file cannot be stat'ed.
struct FileStatus {
    var size: Int
    var modificationTimeNs: Int64

    init?(_ path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        size = Int(st.st_size)
        #if canImport(Darwin)
            let t = st.st_mtimespec
        #else
            let t = st.st_mtim
        #endif
        modificationTimeNs = Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }
}
