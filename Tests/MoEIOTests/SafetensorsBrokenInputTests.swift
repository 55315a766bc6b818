import Foundation
import MoETestSupport
import Testing

@testable import MoEIO

/// Every way a safetensors file can be broken must be an error naming the file (and where it
/// applies the tensor and byte offset), never a crash or a read past the mapping.
@Suite struct SafetensorsBrokenInputTests {
    let dir = TemporaryDirectory("moeio-broken")

    /// Writes the bytes and returns the error opening them gives.
    func openError(_ data: Data, name: String = "model.safetensors") -> WeightFileError? {
        let path = dir.file(name)
        RawSafetensors.write(data, to: path)
        return weightError { _ = try SafetensorsFile(path: path) }
    }

    let gate = "model.layers.0.mlp.gate.weight"

    @Test func missingFile() {
        let e = weightError { _ = try SafetensorsFile(path: dir.file("nope.safetensors")) }
        #expect(e?.path == dir.file("nope.safetensors"))
        #expect(e?.message.contains("cannot open: No such file") == true)
    }

    @Test func emptyAndTinyFiles() {
        var e = openError(Data())
        #expect(e?.message.contains("file is 0 bytes, too short to hold the 8-byte header length") == true)
        e = openError(Data([1, 2, 3]))
        #expect(e?.message.contains("file is 3 bytes") == true)
        #expect(e?.byteOffset == 0)
    }

    @Test func headerLengthLargerThanFile() {
        let e = openError(RawSafetensors.bytes(header: "{}", headerLength: 500))
        #expect(e?.path == dir.file("model.safetensors"))
        #expect(e?.message.contains("header length 500 is larger than the file (10 bytes") == true)
        #expect(e?.byteOffset == 0)
    }

    @Test func absurdHeaderLength() {
        let e = openError(RawSafetensors.bytes(header: "{}", headerLength: 0xFFFF_FFFF_FFFF_FFF0))
        #expect(e?.message.contains("is absurd") == true)
        let e2 = openError(RawSafetensors.bytes(header: "{}", headerLength: 100_000_001))
        #expect(e2?.message.contains("header length 100000001 is absurd") == true)
    }

    @Test func garbageHeaderJSON() {
        // The parser stops at the '1' (header offset 11, after the space), so byte 19 of the file.
        let e = openError(RawSafetensors.bytes(header: #"{"a": {"x" 1}}"#))
        #expect(e?.byteOffset == 19)
        #expect(e?.message.contains("header is not valid JSON at byte 19 (header line 1, column 12)") == true)
        #expect(e?.message.contains("expected ':'") == true)
        let e2 = openError(RawSafetensors.bytes(header: "\u{1}\u{2}garbage!"))
        #expect(e2?.byteOffset == 8)
        let e3 = openError(RawSafetensors.bytes(header: "[1, 2]"))
        #expect(e3?.message.contains("header is an array, expected a JSON object") == true)
        let e4 = openError(RawSafetensors.bytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{}}"#, data: [0, 0, 0, 0]))
        #expect(e4?.message.contains("duplicate key") == true)
    }

    @Test func entryMissingFields() {
        let data = [UInt8](repeating: 0, count: 16)
        var e = openError(RawSafetensors.bytes(header: #"{"t":{"shape":[4],"data_offsets":[0,16]}}"#, data: data))
        #expect(e?.description == "\(dir.file("model.safetensors")): tensor 't': header entry has no \"dtype\" (header entry at byte 9)")
        #expect(e?.byteOffset == 9)
        e = openError(RawSafetensors.bytes(header: #"{"t":{"dtype":"F32","data_offsets":[0,16]}}"#, data: data))
        #expect(e?.tensor == "t" && e?.message.hasPrefix("header entry has no \"shape\"") == true)
        e = openError(RawSafetensors.bytes(header: #"{"t":{"dtype":"F32","shape":[4]}}"#, data: data))
        #expect(e?.tensor == "t" && e?.message.hasPrefix("header entry has no \"data_offsets\"") == true)
        e = openError(RawSafetensors.bytes(header: #"{"t":[1,2]}"#, data: data))
        #expect(e?.message.hasPrefix("header entry is an array, expected an object") == true)
        e = openError(RawSafetensors.bytes(header: #"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0]}}"#, data: data))
        #expect(e?.message.hasPrefix("\"data_offsets\" is [0], expected [begin, end]") == true)
        e = openError(RawSafetensors.bytes(header: #"{"__metadata__":{"a":1}}"#))
        #expect(e?.message.contains("__metadata__ value for 'a' is a number, expected a string") == true)
    }

    @Test func unknownDtype() {
        let e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        #expect(e?.tensor == "w")
        #expect(e?.message.hasPrefix("unknown dtype \"F31\" (known: F64, F32, F16, BF16") == true)
    }

    @Test func badDimensions() {
        var e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}}"#))
        #expect(e?.tensor == "w" && e?.message.hasPrefix("shape dimension 1 is negative (-1)") == true)
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#))
        #expect(e?.message.hasPrefix("shape dimension 0 is 1.5, expected a non-negative integer") == true)
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":["3"],"data_offsets":[0,4]}}"#))
        #expect(e?.message.hasPrefix("shape dimension 0 is \"3\"") == true)
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#))
        #expect(e?.message.contains("too large") == true)
    }

    @Test func sizeDoesNotMatchShapeAndDtype() {
        // Lies about the dtype: BF16 [4] needs 8 bytes, the offsets give 16.
        let e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 0, count: 16)))
        #expect(e?.tensor == "w")
        #expect(e?.message == "data_offsets [0, 16] hold 16 bytes but shape [4] of BF16 needs 4 × 2 = 8 bytes")
        let n = #"{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}}"#.utf8.count
        #expect(e?.byteOffset == 8 + n)
    }

    @Test func offsetsBeyondTheFile() {
        // The example from the documentation: a tensor claiming bytes the file does not have.
        let prefix = #"{"\#(gate)":{"dtype":"F32","shape":[2048],"data_offsets":[1024,9216]}"#
        let header = prefix + String(repeating: " ", count: 119 - prefix.utf8.count) + "}" // 120 bytes → data at 128
        let e = openError(RawSafetensors.bytes(header: header, data: [UInt8](repeating: 0, count: 8000)))
        #expect(e?.description == "\(dir.file("model.safetensors")): tensor '\(gate)': data_offsets [1024, 9216] end beyond the data section (8000 bytes, data begins at byte 128)")
        #expect(e?.tensor == gate)
        #expect(e?.byteOffset == 128 + 1024)
    }

    @Test func offsetsBackwards() {
        let e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data: [UInt8](repeating: 0, count: 8)))
        #expect(e?.message == "data_offsets [8, 4] end before they begin")
        let e2 = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data: [UInt8](repeating: 0, count: 8)))
        #expect(e2?.message.hasPrefix("\"data_offsets\" [-4,0] are not non-negative integers") == true)
    }

    @Test func hugeNumbersInTheHeader() {
        let four = [UInt8](repeating: 0, count: 4)
        // The element count fits in 64 bits (2^62), its byte count as F64 does not.
        var e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F64","shape":[1099511627776,4194304],"data_offsets":[0,4]}}"#, data: four))
        #expect(e?.tensor == "w" && e?.message.hasPrefix("shape [1099511627776, 4194304] is too large (its byte count overflows) (header entry at byte 9)") == true)
        #expect(e?.byteOffset == 9)
        // Offsets that agree with a shape of 2^51 floats (2^53 bytes), in a file of 4 data bytes.
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[2251799813685248],"data_offsets":[0,9007199254740992]}}"#, data: four))
        let n = #"{"w":{"dtype":"F32","shape":[2251799813685248],"data_offsets":[0,9007199254740992]}}"#.utf8.count
        #expect(e?.message == "data_offsets [0, 9007199254740992] end beyond the data section (4 bytes, data begins at byte \(8 + n))")
        #expect(e?.byteOffset == 8 + n)
        // Beyond what a double holds exactly, and beyond what it holds at all.
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551616,18446744073709551620]}}"#, data: four))
        #expect(e?.message.hasPrefix("\"data_offsets\" [1.8446744073709552e+19,") == true && e?.message.contains("are not non-negative integers") == true)
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}"#, data: four))
        #expect(e?.message.hasPrefix("shape dimension 0 is 1e+300, expected a non-negative integer") == true)
        e = openError(RawSafetensors.bytes(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,1e999]}}"#, data: four))
        #expect(e?.message.contains("number '1e999' is out of range") == true)
    }

    @Test func emptyTensorPlacedBeyondTheData() {
        // Zero bytes, but at an offset the data section does not reach: still refused.
        let e = openError(RawSafetensors.bytes(header: #"{"z":{"dtype":"F32","shape":[0,5],"data_offsets":[100,100]}}"#, data: [0, 0, 0, 0]))
        #expect(e?.tensor == "z" && e?.message.hasPrefix("data_offsets [100, 100] end beyond the data section (4 bytes") == true)
    }

    @Test func truncatedAfterTheHeader() {
        // A good file cut right after its header, and one cut in the middle of its data.
        let good = try! SafetensorsWriter.encode(tensors: [.init(name: "a", shape: [4], values: [1, 2, 3, 4]), .init(name: "b", shape: [2], values: [5, 6])])
        let n = Int(good.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let e = openError(good.prefix(8 + n))
        #expect(e?.message.contains("end beyond the data section (0 bytes, data begins at byte \(8 + n)); the file ends right after the header") == true)
        let e2 = openError(good.prefix(8 + n + 10))
        #expect(e2?.tensor == "a" || e2?.tensor == "b")
        #expect(e2?.message.contains("end beyond the data section (10 bytes") == true)
        // Cut inside the header itself.
        let e3 = openError(good.prefix(8 + n / 2))
        #expect(e3?.message.contains("header length \(n) is larger than the file") == true)
    }

    @Test func overlappingTensors() {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        let e = openError(RawSafetensors.bytes(header: header, data: [UInt8](repeating: 0, count: 16)))
        #expect(e?.tensor == "b")
        #expect(e?.message.hasPrefix("data_offsets [8, 16] overlap tensor 'a' [0, 16]") == true)
        #expect(e?.byteOffset == 8 + header.utf8.count + 8)
        // Containment far from the neighbour: c is inside a, though b comes between them in start order.
        let header2 = #"{"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},"b":{"dtype":"U8","shape":[1],"data_offsets":[10,11]}}"#
        let e2 = openError(RawSafetensors.bytes(header: header2, data: [UInt8](repeating: 0, count: 100)))
        #expect(e2?.tensor == "b" && e2?.message.contains("overlap tensor 'a'") == true)
        // Same range twice.
        let header3 = #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#
        let e3 = openError(RawSafetensors.bytes(header: header3, data: [0, 0, 0, 0]))
        #expect(e3?.tensor == "y" && e3?.message.contains("overlap tensor 'x' [0, 4]") == true)
    }

    @Test func gapsAndZeroSizedTensorsAreFine() throws {
        let header =
            #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"z":{"dtype":"F32","shape":[0],"data_offsets":[1,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}}"#
        let path = dir.file("gaps.safetensors")
        RawSafetensors.write(RawSafetensors.bytes(header: header, data: [1, 2, 3, 4, 5, 6, 7]), to: path)
        let f = try SafetensorsFile(path: path)
        #expect(try f.floats("b") == [6])
        #expect(try f.floats("z") == [])
    }

    @Test func randomCorruptionNeverCrashes() throws {
        // Flip bytes of a valid file all over the header; every outcome must be a clean open or an error.
        let good = try SafetensorsWriter.encode(
            tensors: [
                .init(name: "a", shape: [3, 2], dtype: .f16, values: [1, 2, 3, 4, 5, 6]),
                .init(name: "b", shape: [2], values: [7, 8])
            ], metadata: ["k": "v"])
        var seed: UInt64 = 99
        var errors = 0
        for round in 0..<300 {
            var bytes = [UInt8](good)
            for _ in 0..<3 {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                let i = Int(seed >> 33) % min(bytes.count, 140)
                bytes[i] = UInt8(truncatingIfNeeded: seed >> 13)
            }
            if round % 7 == 0 { bytes.removeLast(Int(seed >> 40) % bytes.count) }
            let path = dir.file("fuzz.safetensors")
            RawSafetensors.write(Data(bytes), to: path)
            do {
                let f = try SafetensorsFile(path: path)
                for name in f.tensorNames where f.tensors[name]!.dtype.isReadableAsFloat {
                    _ = try f.floats(name)
                }
            } catch {
                #expect(error.path == path)
                errors += 1
            }
        }
        #expect(errors > 100)
    }
}
