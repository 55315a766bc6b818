import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIO

/// Files written by NumPy 2.4 (`np.save`, or `np.lib.format.write_array` for versions 2 and 3), e.g.
/// `python3 -c "import numpy as np, io, base64; f = io.BytesIO(); np.save(f, np.array([1, -2, 3, 2147483647], dtype='<i4')); print(base64.b64encode(f.getvalue()).decode())"`
enum NumpyFiles {
    /// `np.arange(6, dtype='<f4').reshape(2, 3) * 0.5 - 1`
    static let f4_2x3 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAIC/AAAAvwAAAAAAAAA/AACAPwAAwD8="
    /// `np.array([1, -2, 3, 2147483647], dtype='<i4')`
    static let i4_4 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGk0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDQsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAAA/v///wMAAAD///9/"
    /// `np.array(-9000000000, dtype='<i8')`, 0-d
    static let i8_scalar =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoA5o7n/f///w=="
    /// `np.array([0.1, -1e300, 3.0], dtype='<f8')`
    static let f8_3 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGY4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAqamZmZmZm5P5x1AIg85Df+AAAAAAAACEA="
    /// `np.array([1.0, -2.5, 65504, 2**-24, np.inf, np.nan], dtype='<f2')`
    static let f2_6 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGYyJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDYsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAPADB/3sBAAB8AH4="
    /// `np.array([0, 200, 255], dtype='|u1')`
    static let u1_3 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnfHUxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAyP8="
    /// `np.array([-128, 0, 127], dtype='|i1')`
    static let i1_3 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnfGkxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAqAAH8="
    /// `np.array([[True, False], [False, True]])`
    static let b1_2x2 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnfGIxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDIpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAAB"
    /// `np.array([1.5, -3.0], dtype='>f4')`
    static let be_f4_2 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo/wAAAwEAAAA=="
    /// `np.asfortranarray(np.arange(4, dtype='<f4').reshape(2, 2))`
    static let fortran_2x2 =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMiksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAQAAAgD8AAEBA"
    /// `np.array([7.0, 8.0], dtype='<f4')`, version 2.0
    static let v2_f4_2 =
        "k05VTVBZAgB0AAAAeydkZXNjcic6ICc8ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAOBAAAAAQQ=="
    /// `np.zeros((1, 0), dtype='<i4')`, version 3.0
    static let v3_i4_1x0 =
        "k05VTVBZAwB0AAAAeydkZXNjcic6ICc8aTQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMSwgMCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo="
    /// `np.zeros((0,), dtype='<f4')`
    static let f4_empty =
        "k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDAsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo="

    /// `np.arange(2, dtype='<i4').reshape((2,) + (1,) * 14)`: here numpy's spare header space
    /// for growing the first dimension pushes the data from byte 128 to byte 192.
    static let i4_15d =
        "k05VTVBZAQC2AHsnZGVzY3InOiAnPGk0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEsIDEpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAAAAAAEAAAA="

    static func data(_ base64: String) -> Data { Data(base64Encoded: base64)! }
}

@Suite struct NpyTests {
    let dir = TemporaryDirectory("moeio-npy")

    func read(_ base64: String) throws -> NpyArray { try NpyArray(data: NumpyFiles.data(base64), path: "x.npy") }

    @Test func readsNumpyFiles() throws {
        var a = try read(NumpyFiles.f4_2x3)
        #expect(a.shape == [2, 3] && a.storage == .float32([-1, -0.5, 0, 0.5, 1, 1.5]))
        a = try read(NumpyFiles.i4_4)
        #expect(a.shape == [4] && a.storage == .int32([1, -2, 3, 2_147_483_647]))
        a = try read(NumpyFiles.i8_scalar)
        #expect(a.shape == [] && a.storage == .int64([-9_000_000_000]) && a.count == 1)
        a = try read(NumpyFiles.f8_3)
        #expect(a.storage == .float64([0.1, -1e300, 3.0]))
        a = try read(NumpyFiles.u1_3)
        #expect(a.storage == .uint8([0, 200, 255]))
        a = try read(NumpyFiles.i1_3)
        #expect(a.storage == .int8([-128, 0, 127]))
        a = try read(NumpyFiles.b1_2x2)
        #expect(a.shape == [2, 2] && a.storage == .bool([true, false, false, true]))
        a = try read(NumpyFiles.be_f4_2)
        #expect(a.storage == .float32([1.5, -3.0]))
        a = try read(NumpyFiles.v2_f4_2)
        #expect(a.shape == [2] && a.floats() == [7, 8])
        a = try read(NumpyFiles.v3_i4_1x0)
        #expect(a.shape == [1, 0] && a.storage == .int32([]))
        a = try read(NumpyFiles.f4_empty)
        #expect(a.shape == [0] && a.count == 0)
    }

    @Test func readsHalfAsFloat() throws {
        let v = try read(NumpyFiles.f2_6).floats()
        #expect(Array(v[0..<5]) == [1.0, -2.5, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        #expect(v[5].isNaN)
    }

    @Test func writesWhatNumpyWrites() throws {
        let cases: [(String, [Int], NpyArray.Storage)] = [
            (NumpyFiles.f4_2x3, [2, 3], .float32([-1, -0.5, 0, 0.5, 1, 1.5])),
            (NumpyFiles.i4_4, [4], .int32([1, -2, 3, 2_147_483_647])),
            (NumpyFiles.i8_scalar, [], .int64([-9_000_000_000])),
            (NumpyFiles.f8_3, [3], .float64([0.1, -1e300, 3.0])),
            (NumpyFiles.u1_3, [3], .uint8([0, 200, 255])),
            (NumpyFiles.i1_3, [3], .int8([-128, 0, 127])),
            (NumpyFiles.b1_2x2, [2, 2], .bool([true, false, false, true])),
            (NumpyFiles.f4_empty, [0], .float32([])),
            (NumpyFiles.i4_15d, [2] + Array(repeating: 1, count: 14), .int32([0, 1]))
        ]
        for (expected, shape, storage) in cases {
            let ours = try NpyArray(shape: shape, storage: storage).encoded()
            #expect(ours == NumpyFiles.data(expected), "\(storage.descr) \(shape)")
        }
    }

    @Test func roundTripsEveryStorageThroughAFile() throws {
        let arrays: [NpyArray] = try [
            NpyArray(shape: [2, 2], storage: .float32([1, -2, .infinity, .leastNonzeroMagnitude])),
            NpyArray(shape: [3], storage: .float64([1e-300, 2, -3])),
            NpyArray(shape: [2, 1, 2], storage: .int32([.min, -1, 0, .max])),
            NpyArray(shape: [1], storage: .int64([.min])),
            NpyArray(shape: [], storage: .int8([-5])),
            NpyArray(shape: [2], storage: .uint8([0, 255])),
            NpyArray(shape: [3], storage: .bool([true, false, true])),
            NpyArray(shape: [0, 5], storage: .int64([])),
            NpyArray(shape: [123_456_789_012, 0], storage: .float32([]))
        ]
        for (i, a) in arrays.enumerated() {
            let path = dir.file("a\(i).npy")
            try a.write(to: path)
            let back = try NpyArray(path: path)
            #expect(back == a)
            let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
            #expect((size - a.count * (a.storage.descr.last == "8" ? 8 : a.storage.descr.last == "4" ? 4 : 1)) % 64 == 0, "data 64-byte aligned")
        }
    }

    @Test func conversions() throws {
        #expect(try read(NumpyFiles.i8_scalar).floats() == [-9e9])
        #expect(try read(NumpyFiles.b1_2x2).floats() == [1, 0, 0, 1])
        #expect(try read(NumpyFiles.i4_4).int32s() == [1, -2, 3, 2_147_483_647])
        #expect(try NpyArray(shape: [2], storage: .float32([3, -4])).int32s() == [3, -4])
        #expect(try NpyArray(shape: [2], storage: .int64([7, 8])).int32s() == [7, 8])
        var e = weightError { _ = try read(NumpyFiles.i8_scalar).int32s() }
        #expect(e?.message == "element 0 (-9000000000) of a <i8 array is not an Int32")
        e = weightError { _ = try read(NumpyFiles.f4_2x3).int32s() }
        #expect(e?.message == "element 1 (-0.5) of a <f4 array is not an Int32")
        e = weightError { _ = try NpyArray(shape: [2, 2], storage: .float32([1])) }
        #expect(e?.message == "shape [2, 2] has 4 elements but 1 values were given")
    }

    // MARK: Broken files

    func decodeError(_ bytes: Data) -> WeightFileError? {
        weightError { _ = try NpyArray(data: bytes, path: "bad.npy") }
    }

    /// A version 1.0 file with the given header text (padded like numpy) and data.
    func npy(_ header: String, data: [UInt8] = []) -> Data {
        var h = header
        while (10 + h.utf8.count + 1) % 64 != 0 { h += " " }
        h += "\n"
        var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(h.utf8.count & 0xFF), UInt8(h.utf8.count >> 8)])
        out.append(contentsOf: Array(h.utf8))
        out.append(contentsOf: data)
        return out
    }

    @Test func truncatedData() {
        let full = NumpyFiles.data(NumpyFiles.f4_2x3)
        let e = decodeError(full.prefix(full.count - 5))
        #expect(e?.path == "bad.npy")
        #expect(e?.message == "truncated data: shape (2, 3) of '<f4' needs 24 bytes after the header (data begins at byte 128), found 19")
        #expect(e?.byteOffset == 147)
        let extra = decodeError(full + Data([1, 2]))
        #expect(extra?.message.hasPrefix("2 unexpected bytes after the data") == true)
    }

    @Test func truncatedHeader() {
        let full = NumpyFiles.data(NumpyFiles.f4_2x3)
        #expect(decodeError(full.prefix(60))?.message == "header length 118 runs past the end of the file (60 bytes): truncated")
        #expect(decodeError(full.prefix(7))?.message == "file is 7 bytes, too short for a .npy header")
        #expect(decodeError(Data())?.message == "file is 0 bytes, too short for a .npy header")
    }

    @Test func truncatedVersion2Header() {
        let v2 = NumpyFiles.data(NumpyFiles.v2_f4_2)
        #expect(decodeError(v2.prefix(11))?.message == "file is 11 bytes, too short for a version 2.0 header")
        #expect(decodeError(v2.prefix(11))?.byteOffset == 0)
        // A 4-byte header length of 4 GB.
        var huge = v2
        huge.replaceSubrange(8..<12, with: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(decodeError(huge)?.message == "header length 4294967295 runs past the end of the file (\(v2.count) bytes): truncated")
        #expect(decodeError(huge)?.byteOffset == 8)
    }

    @Test func shapeWhoseByteCountOverflows() {
        // 2^62 elements fit in an Int; 2^62 × 8 bytes do not.
        let e = decodeError(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 4194304), }"))
        #expect(e?.message == "shape (1099511627776, 4194304) is too large")
        #expect(e?.byteOffset == 10 + 41)
        // A zero dimension makes any other one harmless: an empty array, and no data.
        let empty = try? NpyArray(data: npy("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 9223372036854775807), }"))
        #expect(empty?.shape == [0, 9223372036854775807] && empty?.count == 0)
        // An array built in memory with such a shape is an error too, not an overflow trap.
        let built = weightError { _ = try NpyArray(shape: [1 << 40, 1 << 40], storage: .float32([])) }
        #expect(built?.message == "shape [1099511627776, 1099511627776] has more elements than an array can hold")
    }

    @Test func fortranOrderIsRefused() {
        let e = decodeError(NumpyFiles.data(NumpyFiles.fortran_2x2))
        #expect(e?.message.hasPrefix("array is stored in Fortran (column-major) order, which is not supported") == true)
        #expect(e?.byteOffset == 10 + 17) // the 'fortran_order' key
    }

    @Test func badMagicAndVersion() {
        var bytes = NumpyFiles.data(NumpyFiles.i4_4)
        bytes[0] = 0x94
        #expect(decodeError(bytes)?.message == "not a .npy file (no \\x93NUMPY magic)")
        bytes = NumpyFiles.data(NumpyFiles.i4_4)
        bytes[6] = 4
        #expect(decodeError(bytes)?.message == "unsupported .npy version 4.0 (1.0, 2.0 and 3.0 are supported)")
        #expect(decodeError(bytes)?.byteOffset == 6)
    }

    @Test func badHeaderTextSaysWhere() {
        // 'shape' value "(2 3)": the parser stops at the '3', header column 54, byte 10 + 53.
        var e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }"))
        #expect(e?.byteOffset == 63)
        #expect(e?.message.hasPrefix("bad .npy header at byte 63 (header column 54): expected ',' or ')' in the shape, found '3'; header: {'descr'") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }"))
        #expect(e?.message.contains("expected a string, True, False or a tuple, found 'M'") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }"))
        #expect(e?.message.contains("negative dimension") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, }"))
        #expect(e?.message == "header has no 'shape' key")
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1, }"))
        #expect(e?.message.contains("expected a string, True, False or a tuple, found '1'") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': True, }"))
        #expect(e?.message.hasPrefix("unexpected key 'extra' in the header at byte 64") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'descr': '<f4'}"))
        #expect(e?.message.contains("duplicate key 'descr'") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)"))
        #expect(e?.message.contains("expected ',' or '}', found the end of the header") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }"))
        #expect(e?.message.contains("dimension too large") == true)
        e = decodeError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"))
        #expect(e?.message == "shape (4294967296, 4294967296) is too large")
    }

    @Test func unsupportedDtypes() {
        var e = decodeError(npy("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", data: [0, 0]))
        #expect(e?.message.hasPrefix("unsupported dtype '<u2'") == true)
        #expect(e?.byteOffset == 11)
        e = decodeError(npy("{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }"))
        #expect(e?.message.contains("is not a simple type string (structured dtypes are not supported)") == true)
        e = decodeError(npy("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", data: [0, 0, 0, 0]))
        #expect(e?.message.hasPrefix("unsupported dtype '|f4'") == true)
    }

    @Test func pythonTwoLongsAndDoubleQuotesAreAccepted() throws {
        let a = try NpyArray(data: npy(#"{"descr": "<i4", "fortran_order": False, "shape": (1L, 2L)}"#, data: [1, 0, 0, 0, 2, 0, 0, 0]))
        #expect(a.shape == [1, 2] && a.storage == .int32([1, 2]))
    }

    @Test func randomCorruptionNeverCrashes() throws {
        let good = NumpyFiles.data(NumpyFiles.f4_2x3)
        var seed: UInt64 = 7
        var errors = 0
        for round in 0..<300 {
            var bytes = good
            for _ in 0..<2 {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                bytes[Int(seed >> 33) % bytes.count] = UInt8(truncatingIfNeeded: seed >> 13)
            }
            if round % 5 == 0 { bytes = bytes.prefix(Int(seed >> 40) % bytes.count) }
            if decodeError(bytes) != nil { errors += 1 }
        }
        #expect(errors > 50)
    }
}
