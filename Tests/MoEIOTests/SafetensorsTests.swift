import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIO

@Suite struct SafetensorsTests {
    let dir = TemporaryDirectory("moeio")

    @Test func roundTripsF32F16BF16() throws {
        let path = dir.file("model.safetensors")
        let exactHalf: [Float] = [1.0, -2.5, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity, -0.0]
        let exactBF16: [Float] = [1.0, -2.5, Float(bitPattern: 0x7F7F_0000), Float(bitPattern: 0x0001_0000), -.infinity, 3.140625]
        let f32: [Float] = [0.1, -1e30, .leastNonzeroMagnitude, 7, 8, 9]
        try SafetensorsWriter.write(
            tensors: [
                .init(name: "w.f32", shape: [2, 3], dtype: .f32, values: f32),
                .init(name: "w.f16", shape: [3, 2], dtype: .f16, values: exactHalf),
                .init(name: "w.bf16", shape: [6], dtype: .bf16, values: exactBF16),
                .init(name: "scalar", shape: [], dtype: .f32, values: [42]),
                .init(name: "empty", shape: [0, 4], dtype: .f16, values: [])
            ], metadata: ["format": "pt", "note": "ünïcode"], to: path)

        let file = try SafetensorsFile(path: path)
        #expect(file.tensorNames == ["empty", "scalar", "w.bf16", "w.f16", "w.f32"])
        #expect(file.metadata == ["format": "pt", "note": "ünïcode"])
        #expect(try file.floats("w.f32") == f32)
        #expect(try file.floats("w.f16").map(\.bitPattern) == exactHalf.map(\.bitPattern))
        #expect(try file.floats("w.bf16") == exactBF16)
        #expect(try file.floats("scalar") == [42])
        #expect(try file.floats("empty") == [])
        let info = try file.info("w.f16")
        #expect(info.dtype == .f16 && info.shape == [3, 2] && info.elementCount == 6 && info.byteCount == 12)
        #expect(try file.info("scalar").shape == [] && file.info("scalar").elementCount == 1)
        // The reference layout: data starts 8-byte aligned and every tensor at a multiple of its size.
        #expect(file.dataStart % 8 == 0)
        for t in file.tensors.values { #expect(t.dataOffsets.lowerBound % t.dtype.size == 0) }
    }

    @Test func halfWritingRoundsToNearest() throws {
        let path = dir.file("r.safetensors")
        try SafetensorsWriter.write(tensors: [.init(name: "x", shape: [3], dtype: .f16, values: [0.1, 1e6, .nan])], to: path)
        let v = try SafetensorsFile(path: path).floats("x")
        #expect(v[0] == 0.0999755859375) // nearest half to 0.1
        #expect(v[1] == .infinity)
        #expect(v[2].isNaN)
    }

    @Test func copyFloatsIntoCallerMemory() throws {
        let path = dir.file("c.safetensors")
        try SafetensorsWriter.write(tensors: [.init(name: "a", shape: [2, 2], dtype: .bf16, values: [1, 2, 3, 4])], to: path)
        let file = try SafetensorsFile(path: path)
        var out = [Float](repeating: 0, count: 4)
        try out.withUnsafeMutableBufferPointer { try file.copyFloats("a", into: $0) }
        #expect(out == [1, 2, 3, 4])
        var small = [Float](repeating: 0, count: 3)
        let e = weightError { try small.withUnsafeMutableBufferPointer { try file.copyFloats("a", into: $0) } }
        #expect(e?.tensor == "a")
        #expect(e?.message.contains("destination holds 3 floats but the tensor has 4") == true)
        let missing = weightError { _ = try file.floats("b") }
        #expect(missing?.description == "\(path): tensor 'b': no such tensor in this file; did you mean 'a'?")
        #expect(weightError { _ = try file.floats("zzzzzz") }?.message == "no such tensor in this file")
    }

    @Test func zeroCopyOnlyForAlignedF32() throws {
        let path = dir.file("z.safetensors")
        try SafetensorsWriter.write(
            tensors: [
                .init(name: "f", shape: [3], dtype: .f32, values: [1, 2, 3]),
                .init(name: "h", shape: [1], dtype: .f16, values: [1])
            ], to: path)
        let file = try SafetensorsFile(path: path)
        let sum = try file.withFloat32Buffer("f") { $0.reduce(0, +) }
        #expect(sum == 6)
        #expect(try file.withFloat32Buffer("h") { _ in 1 } == nil)

        // An F32 tensor at an odd offset: no zero-copy, but copying still works.
        let odd = dir.file("odd.safetensors")
        let header = #"{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}"#
        let padded = header + String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        RawSafetensors.write(RawSafetensors.bytes(header: padded, data: [7] + RawSafetensors.f32([1.5, -2])), to: odd)
        let o = try SafetensorsFile(path: odd)
        #expect(try o.withFloat32Buffer("f") { _ in 1 } == nil)
        #expect(try o.floats("f") == [1.5, -2])
        #expect(try o.floats("b") == [7])
    }

    @Test func readsOtherDtypesAsFloat() throws {
        let path = dir.file("ints.safetensors")
        var data: [UInt8] = []
        data += withUnsafeBytes(of: (2.5 as Double).bitPattern.littleEndian) { Array($0) } // F64 [0, 8)
        data += withUnsafeBytes(of: Int64(-5).littleEndian) { Array($0) } // I64 [8, 16)
        data += withUnsafeBytes(of: Int32(-7).littleEndian) { Array($0) } // I32 [16, 20)
        data += withUnsafeBytes(of: Int16(-300).littleEndian) { Array($0) } // I16 [20, 22)
        data += [0xFF, 0x01] // I8 -1, BOOL true [22, 24)
        let header = """
            {"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"l":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},\
            "i":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},"s":{"dtype":"I16","shape":[1],"data_offsets":[20,22]},\
            "c":{"dtype":"I8","shape":[1],"data_offsets":[22,23]},"b":{"dtype":"BOOL","shape":[1],"data_offsets":[23,24]},\
            "q":{"dtype":"F8_E4M3","shape":[0],"data_offsets":[24,24]}}
            """
        RawSafetensors.write(RawSafetensors.bytes(header: header, data: data), to: path)
        let f = try SafetensorsFile(path: path)
        #expect(try f.floats("d") == [2.5])
        #expect(try f.floats("l") == [-5])
        #expect(try f.floats("i") == [-7])
        #expect(try f.floats("s") == [-300])
        #expect(try f.floats("c") == [-1])
        #expect(try f.floats("b") == [1])
        let e = weightError { _ = try f.floats("q") }
        #expect(e?.tensor == "q")
        #expect(e?.message.contains("dtype F8_E4M3 cannot be read as f32") == true)
    }

    @Test func writerHeaderIsPaddedWithSpaces() throws {
        let data = try SafetensorsWriter.encode(tensors: [.init(name: "a", shape: [1], values: [1])])
        let n = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        #expect(n % 8 == 0)
        let header = String(decoding: data[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasPrefix(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#))
        #expect(header.drop(while: { $0 != "}" }).dropFirst(2).allSatisfy { $0 == " " })
        #expect(data.count == 8 + n + 4)
    }

    @Test func writerRefusesInconsistentTensors() {
        let path = dir.file("bad.safetensors")
        var e = weightError { try SafetensorsWriter.write(tensors: [.init(name: "a", shape: [2, 2], values: [1, 2, 3])], to: path) }
        #expect(e?.description == "\(path): tensor 'a': shape [2, 2] has 4 elements but 3 values were given")
        e = weightError { try SafetensorsWriter.write(tensors: [.init(name: "a", shape: [1], values: [1]), .init(name: "a", shape: [1], values: [1])], to: path) }
        #expect(e?.message == "written twice")
        e = weightError { try SafetensorsWriter.write(tensors: [.init(name: "a", shape: [1], dtype: .i32, values: [1])], to: path) }
        #expect(e?.message.contains("cannot write dtype I32") == true)
        #expect(!FileManager.default.fileExists(atPath: path))
        e = weightError { try SafetensorsWriter.write(tensors: [], to: dir.file("no/such/folder/x.safetensors")) }
        #expect(e?.message.contains("does not exist") == true)
    }

    @Test func manyTensors() throws {
        // A DeepSeek-sized header has ~90k entries; opening must stay linear in the header size.
        let n = 20_000
        let path = dir.file("many.safetensors")
        try SafetensorsWriter.write(
            tensors: (0..<n).map {
                .init(name: "model.layers.\($0 / 256).mlp.experts.\($0 % 256).down_proj.weight", shape: [1], dtype: .bf16, values: [Float($0 % 100)])
            }, to: path)
        let clock = ContinuousClock()
        let start = clock.now
        let file = try SafetensorsFile(path: path)
        let elapsed = clock.now - start
        #expect(file.tensors.count == n)
        #expect(try file.floats("model.layers.3.mlp.experts.7.down_proj.weight") == [Float((3 * 256 + 7) % 100)])
        #expect(elapsed < .seconds(20), "opening took \(elapsed)")
    }
}
