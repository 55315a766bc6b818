import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIO

/// The GGUF reader against files written by llama.cpp's gguf-py (scripts/make_gguf_fixtures.py):
/// metadata of every value type, and every tensor type's dequantization against gguf-py's.
@Suite struct GGUFTests {
    static let folder = RepoPaths.fixtures + "/gguf"
    let dir = TemporaryDirectory("moeio-gguf")

    func expected() throws -> JSON {
        try JSON.parse(bytes: try Data(contentsOf: URL(fileURLWithPath: Self.folder + "/expected.json")))
    }

    @Test func readsTheHeaderAndEveryMetadataType() throws {
        let f = try GGUFFile(path: Self.folder + "/types.gguf")
        #expect(f.version == 3)
        #expect(f.alignment == 32)
        #expect(f.dataStart % 32 == 0)
        #expect(f.metadata["general.architecture"] == .string("qwen3moe"))
        #expect(f.metadata["test.u8"] == .unsigned(200))
        #expect(f.metadata["test.i8"] == .signed(-100))
        #expect(f.metadata["test.u16"] == .unsigned(60000))
        #expect(f.metadata["test.i16"] == .signed(-30000))
        #expect(f.metadata["test.u32"] == .unsigned(4_000_000_000))
        #expect(f.metadata["test.i32"] == .signed(-2_000_000_000))
        #expect(f.metadata["test.f32"] == .float(0.5))
        #expect(f.metadata["test.bool"] == .bool(true))
        #expect(f.metadata["test.string"] == .string("héllo, gguf"))
        #expect(f.metadata["test.u64"] == .unsigned((1 << 63) + 5))
        #expect(f.metadata["test.i64"] == .signed(-(1 << 62)))
        #expect(f.metadata["test.f64"] == .float(1e300))
        #expect(f.metadata["test.array_i32"] == .array([.signed(1), .signed(-2), .signed(3)]))
        #expect(f.metadata["test.array_str"] == .array([.string("a"), .string("bc"), .string("")]))
        // As JSON, for params bound from GGUF keys.
        #expect(f.metadataJSON["qwen3moe.expert_count"]?.int == 4)
        #expect(f.metadataJSON["test.array_i32"] == .array([.number(1), .number(-2), .number(3)]))
    }

    @Test func everyTensorTypeDequantizesAsGGUFPyDoes() throws {
        let f = try GGUFFile(path: Self.folder + "/types.gguf")
        guard case .object(let files) = try expected()["files"], case .object(let tensors) = files["types.gguf"]?["tensors"] else {
            Issue.record("expected.json has no tensors")
            return
        }
        #expect(Set(f.tensors.keys) == Set(tensors.keys))
        var typesSeen: Set<String> = []
        for (name, want) in tensors {
            let t = try f.info(name)
            #expect(t.type.description == want["type"]?.string, "\(name)")
            #expect(t.dims == want["dims"]?.array?.compactMap(\.int), "\(name)")
            #expect(t.shape == want["shape"]?.array?.compactMap(\.int), "\(name)")
            let reference = try NpyArray(path: Self.folder + "/\(name).npy")
            #expect(reference.shape == t.shape)
            let ours = try f.floats(name)
            let theirs = reference.floats()
            #expect(ours.count == theirs.count)
            // Bit for bit: the same operations in the same order as ggml and gguf-py.
            let differing = zip(ours, theirs).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(name) (\(t.type)): \(differing) of \(ours.count) values differ")
            typesSeen.insert(t.type.description)
        }
        #expect(typesSeen == ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"])
        #expect(GGMLType.allCases.filter { $0.keptGroup == nil } == [.f32, .f16, .bf16])
    }

    /// The groups moec repacks a kept type into (`forEachGroup`, for its int8 and int4 panels):
    /// each value fma(u, S, M) equals gguf-py's dequantization (as numbers: Q6_K's zeros may be
    /// -0 there), every group of every row comes once, and u stays in the type's range (Q4: a
    /// nibble, Q5_K: 5 bits, Q6_K: q + 96 for q in 0…63; without offsets M is -centre·S).
    @Test(arguments: [("t.q8_0", 32, 0...255, 128), ("t.q4_0", 32, 0...15, 8), ("t.q4_k", 32, 0...15, nil), ("t.q5_k", 32, 0...31, nil), ("t.q6_k", 16, 32...159, 128)])
    func keptGroupsHoldTheDequantizedValues(_ name: String, group: Int, range: ClosedRange<Int>, centre: Int?) throws {
        let f = try GGUFFile(path: Self.folder + "/types.gguf")
        let t = try f.info(name)
        #expect(t.type.keptGroup == group)
        let reference = try NpyArray(path: Self.folder + "/\(name).npy").floats()
        let rows = t.shape[0], k = t.shape[1], rowBytes = k / t.type.blockSize * t.type.blockBytes
        var got = [Float](repeating: .nan, count: rows * k)
        var seen = [Int](repeating: 0, count: rows * (k / group))
        var outOfRange = 0, centred = true
        try f.withBytes(name) { bytes in
            for r in 0..<rows {
                t.type.forEachGroup(row: bytes.baseAddress! + r * rowBytes, k: k) { gi, s, m, u in
                    seen[r * (k / group) + gi] += 1
                    if let centre, m != -Float(centre) * s { centred = false }
                    for i in 0..<group {
                        if !range.contains(Int(u[i])) { outOfRange += 1 }
                        got[r * k + gi * group + i] = m.addingProduct(Float(u[i]), s)
                    }
                }
            }
        }
        #expect(seen.allSatisfy { $0 == 1 }, "\(name): groups seen \(seen)")
        #expect(outOfRange == 0 && centred, "\(name)")
        let differing = zip(got, reference).filter { $0 != $1 }.count
        #expect(differing == 0, "\(name): \(differing) of \(got.count) values differ")
        #expect(got.contains { $0 != 0 })
    }

    @Test func rowsOfAStackedExpertTensor() throws {
        let f = try GGUFFile(path: Self.folder + "/types.gguf")
        let name = "blk.0.ffn_gate_exps.weight"
        let all = try f.floats(name)
        #expect(try f.info(name).shape == [4, 8, 256])
        // Expert 2's rows, read alone: the same values as in the whole tensor.
        var expert = [Float](repeating: .nan, count: 8 * 256)
        try expert.withUnsafeMutableBufferPointer { try f.copyFloats(name, elements: (2 * 2048)..<(3 * 2048), into: $0) }
        #expect(expert == Array(all[(2 * 2048)..<(3 * 2048)]))
        // Not on a block boundary: an error, not a partial read.
        var few = [Float](repeating: 0, count: 100)
        let e = weightError { try few.withUnsafeMutableBufferPointer { try f.copyFloats(name, elements: 0..<100, into: $0) } }
        #expect(e?.message.contains("in blocks of 256") == true)
    }

    @Test func customAlignment() throws {
        let f = try GGUFFile(path: Self.folder + "/aligned64.gguf")
        #expect(f.alignment == 64)
        #expect(f.dataStart % 64 == 0)
        for t in f.tensorList { #expect((t.byteRange.lowerBound - f.dataStart) % 64 == 0) }
        #expect(GGUFFile.looksLikeGGUF(path: Self.folder + "/aligned64.gguf"))
        #expect(!GGUFFile.looksLikeGGUF(path: RepoPaths.fixtures + "/qwen3_moe-tiny/model.safetensors"))
    }

    // MARK: - Broken files: each a precise error with the byte offset, never a crash

    /// A GGUF file built by hand: header, key-values, tensor infos, padding, data.
    struct Builder {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            bytes += Array(s.utf8)
        }
        static func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) -> Builder {
            var b = Builder()
            b.bytes = Array("GGUF".utf8)
            b.u32(version)
            b.u64(tensors)
            b.u64(kvs)
            return b
        }
        mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
            string(name)
            u32(UInt32(dims.count))
            for d in dims { u64(d) }
            u32(type)
            u64(offset)
        }
        mutating func pad(_ alignment: Int = 32) { while bytes.count % alignment != 0 { bytes.append(0) } }
    }

    func open(_ b: Builder) throws -> GGUFFile {
        let path = dir.path + "/f.gguf"
        try Data(b.bytes).write(to: URL(fileURLWithPath: path))
        return try GGUFFile(path: path)
    }

    func error(_ b: Builder) -> WeightFileError? { weightError { _ = try open(b) } }

    @Test func aValidHandBuiltFile() throws {
        var b = Builder.header(tensors: 1, kvs: 1)
        b.string("general.architecture")
        b.u32(8)
        b.string("llama")
        b.tensor("w", dims: [2, 3], type: 0, offset: 0)
        b.pad()
        for i in 0..<6 { b.u32(Float(i).bitPattern) }
        let f = try open(b)
        #expect(try f.info("w").shape == [3, 2])
        #expect(try f.floats("w") == [0, 1, 2, 3, 4, 5])
    }

    @Test func brokenHeaders() throws {
        var b = Builder()
        b.bytes = Array("GGML".utf8) + [3, 0, 0, 0]
        #expect(error(b)?.message.hasPrefix("not a GGUF file") == true)
        #expect(error(Builder.header(version: 1, tensors: 0, kvs: 0))?.message.hasPrefix("GGUF version 1 is not supported") == true)
        b = Builder.header(tensors: 0, kvs: 0)
        b.bytes.removeLast(3)
        #expect(error(b)?.message.hasPrefix("file ends inside the metadata count") == true)
        // Counts that the file cannot hold are refused before anything is allocated.
        #expect(error(Builder.header(tensors: UInt64.max, kvs: 0))?.message.contains("more than the") == true)
        let e = error(Builder.header(tensors: 0, kvs: 1 << 60))
        #expect(e?.message.hasPrefix("the metadata count is 1152921504606846976, more than the 0 bytes left") == true)
        #expect(e?.byteOffset == 16)
    }

    @Test func brokenMetadata() throws {
        // A string longer than the file.
        var b = Builder.header(tensors: 0, kvs: 1)
        b.u64(1 << 40)
        b.bytes += [UInt8](repeating: 0, count: 16)
        #expect(error(b)?.message.hasPrefix("the length of a metadata key is 1099511627776") == true)
        // An unknown value type, a bool that is not 0 or 1, invalid UTF-8, a key twice.
        b = Builder.header(tensors: 0, kvs: 1)
        b.string("k")
        b.u32(13)
        #expect(error(b)?.message == "'k' has unknown value type 13 (GGUF knows 0–12) (at byte 33)")
        b = Builder.header(tensors: 0, kvs: 1)
        b.string("k")
        b.u32(7)
        b.bytes.append(2)
        #expect(error(b)?.message.hasPrefix("'k' is a bool of value 2") == true)
        b = Builder.header(tensors: 0, kvs: 1)
        b.u64(2)
        b.bytes += [0xC3, 0x28]
        b.bytes += [UInt8](repeating: 0, count: 16)
        #expect(error(b)?.message.hasPrefix("a metadata key is not valid UTF-8") == true)
        b = Builder.header(tensors: 0, kvs: 2)
        for _ in 0..<2 {
            b.string("k")
            b.u32(4)
            b.u32(1)
        }
        #expect(error(b)?.message.hasPrefix("metadata key 'k' appears twice") == true)
        // Arrays of arrays 100,000 deep: an error, no deep recursion.
        b = Builder.header(tensors: 0, kvs: 1)
        b.string("deep")
        b.u32(9)
        for _ in 0..<100_000 {
            b.u32(9)
            b.u64(1)
        }
        #expect(error(b)?.message.hasPrefix("'deep': arrays nested more than 8 deep") == true)
        // An array whose count the file cannot hold.
        b = Builder.header(tensors: 0, kvs: 1)
        b.string("a")
        b.u32(9)
        b.u32(6)
        b.u64(1 << 62)
        #expect(error(b)?.message.hasPrefix("the item count of 'a' is 4611686018427387904, more than the") == true)
        // An alignment that is not a power of two.
        b = Builder.header(tensors: 0, kvs: 1)
        b.string("general.alignment")
        b.u32(4)
        b.u32(48)
        #expect(error(b)?.message.hasPrefix("general.alignment is 48, expected a power of two") == true)
    }

    @Test func brokenTensorInfos() throws {
        func file(_ dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, data: Int = 64, second: (String, UInt64)? = nil) -> Builder {
            var b = Builder.header(tensors: second == nil ? 1 : 2, kvs: 0)
            b.tensor("w", dims: dims, type: type, offset: offset)
            if let (name, off) = second { b.tensor(name, dims: [4], type: 0, offset: off) }
            b.pad()
            b.bytes += [UInt8](repeating: 0, count: data)
            return b
        }
        #expect(error(file([2, 3], data: 20))?.message.hasPrefix("its 24 bytes (F32 [2, 3]) at data offset 0 end past the end of the file") == true)
        #expect(error(file([2, 3], data: 20))?.tensor == "w")
        #expect(error(file([1, 1, 1, 1, 1]))?.message.hasPrefix("5 dimensions, expected 1 to 4") == true)
        #expect(error(file([1 << 40, 1 << 40]))?.message.hasPrefix("dimensions [1099511627776, 1099511627776] hold more than 2^48 values") == true)
        #expect(error(file([UInt64.max]))?.message.hasPrefix("dimension 0 is 18446744073709551615, too large") == true)
        #expect(error(file([32], type: 3))?.message.hasPrefix("type Q4_1 is not supported (moec reads F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16)") == true)
        #expect(error(file([32], type: 99))?.message.hasPrefix("unknown ggml type 99") == true)
        #expect(error(file([100], type: 12))?.message.hasPrefix("rows of 100 values are not whole Q4_K blocks of 256") == true)
        #expect(error(file([4], offset: 8))?.message.hasPrefix("data offset 8 is not a multiple of the alignment 32") == true)
        #expect(error(file([4], offset: UInt64.max - 31))?.message.contains("is past any file") == true)
        #expect(error(file([16], data: 96, second: ("v", 64))) == nil)
        let e = error(file([16], data: 96, second: ("v", 32)))
        #expect(e?.message.hasPrefix("its bytes") == true && e?.message.contains("overlap tensor") == true)
        let twice = error(file([4], second: ("w", 32)))
        #expect(twice?.message.hasPrefix("two tensors are named 'w'") == true)
    }
}
