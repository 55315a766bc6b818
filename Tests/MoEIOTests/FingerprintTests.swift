import Foundation
import MoEBasics
import MoETestSupport
import Testing

@testable import MoEIO

@Suite struct FingerprintTests {
    let dir = TemporaryDirectory("moeio-fp")

    func write(_ values: [Float], name: String = "w", to path: String) throws {
        try SafetensorsWriter.write(tensors: [.init(name: name, shape: [values.count], values: values)], to: path)
    }

    /// Sets the file's modification time (seconds since 1970), so tests need not sleep.
    func setModified(_ path: String, _ seconds: Int) {
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        precondition(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    @Test func unchangedFilePasses() throws {
        let path = dir.file("a.safetensors")
        try write([1, 2], to: path)
        let fp = try WeightFileFingerprint.of(path: path)
        #expect(fp.path.hasPrefix("/") && fp.size > 8 && fp.modificationTimeNs > 0)
        try fp.check()
    }

    @Test func pathIsStandardised() throws {
        // (Changing the working directory to test a relative path would disturb parallel tests.)
        try FileManager.default.createDirectory(atPath: dir.file("sub"), withIntermediateDirectories: true)
        let path = dir.file("rel.safetensors")
        try write([1], to: path)
        let fp = try WeightFileFingerprint.of(path: dir.path + "/sub/../rel.safetensors")
        #expect(fp.path == URL(fileURLWithPath: path).standardizedFileURL.path)
        #expect(!fp.path.contains(".."))
    }

    @Test func detectsMissingFile() throws {
        let path = dir.file("gone.safetensors")
        try write([1], to: path)
        let fp = try WeightFileFingerprint.of(path: path)
        try FileManager.default.removeItem(atPath: path)
        let e = weightError { try fp.check() }
        #expect(e?.path == fp.path)
        #expect(e?.message.hasPrefix("weight file is missing") == true)
    }

    @Test func detectsSizeChange() throws {
        let path = dir.file("s.safetensors")
        try write([1, 2], to: path)
        let fp = try WeightFileFingerprint.of(path: path)
        try write([1, 2, 3], to: path)
        let e = weightError { try fp.check() }
        #expect(e?.message.contains("size was \(fp.size) bytes, now \(fp.size + 4)") == true)
    }

    @Test func detectsHeaderChangeOfTheSameSize() throws {
        let path = dir.file("h.safetensors")
        try write([1, 2], name: "a", to: path)
        setModified(path, 1_000_000)
        let fp = try WeightFileFingerprint.of(path: path)
        try write([1, 2], name: "b", to: path) // same size, different name
        setModified(path, 1_000_000)
        let e = weightError { try fp.check() }
        #expect(e?.message.contains("its header is different") == true)
    }

    @Test func detectsModificationOnly() throws {
        let path = dir.file("m.safetensors")
        try write([1, 2], to: path)
        setModified(path, 1_000_000)
        let fp = try WeightFileFingerprint.of(path: path)
        #expect(fp.modificationTimeNs == 1_000_000_000_000_000)
        try write([3, 4], to: path) // same header, different data
        setModified(path, 1_000_050)
        let e = weightError { try fp.check() }
        #expect(e?.message.contains("modified since the plan was compiled (same size and header, modification time 1000000000000000 ns, now 1000050000000000 ns)") == true)
    }

    @Test func jsonRoundTrip() throws {
        let fp = WeightFileFingerprint(path: "/w/model.safetensors", size: 123, modificationTimeNs: 1_712_345_678_123_456_789, headerHash: 0xFEDC_BA98_7654_3210)
        let json = fp.toJSON()
        #expect(json.compact == #"{"path":"/w/model.safetensors","size":123,"modified_ns":"1712345678123456789","header_fnv1a":"fedcba9876543210"}"#)
        #expect(try WeightFileFingerprint(json: JSON.parse(json.compact)) == fp)
        let e = weightError { _ = try WeightFileFingerprint(json: JSON.parse(#"{"path":"/x","size":1,"modified_ns":5,"header_fnv1a":"00"}"#)) }
        #expect(e?.description == #"/x: fingerprint JSON: "modified_ns" is a number, expected a string of decimal digits"#)
        // Codable as well, for plans stored with JSONEncoder.
        let data = try JSONEncoder().encode(fp)
        #expect(try JSONDecoder().decode(WeightFileFingerprint.self, from: data) == fp)
    }

    @Test func fnv1aKnownValues() {
        // Reference values of 64-bit FNV-1a.
        #expect(Array("".utf8).withUnsafeBytes { WeightFileFingerprint.fnv1a($0) } == 0xcbf2_9ce4_8422_2325)
        #expect(Array("a".utf8).withUnsafeBytes { WeightFileFingerprint.fnv1a($0) } == 0xaf63_dc4c_8601_ec8c)
        #expect(Array("foobar".utf8).withUnsafeBytes { WeightFileFingerprint.fnv1a($0) } == 0x8594_4171_f739_67e8)
    }

    @Test func hashesOnlyTheHeaderOfSafetensors() throws {
        let a = dir.file("x.safetensors"), b = dir.file("y.safetensors")
        try write([1, 2], to: a)
        try write([5, 6], to: b)
        #expect(try WeightFileFingerprint.of(path: a).headerHash == WeightFileFingerprint.of(path: b).headerHash)
        // Other files hash their beginning, so a changed config.json is caught.
        let c = dir.file("config.json"), d = dir.file("config2.json")
        try #"{"hidden_size": 64}"#.write(toFile: c, atomically: true, encoding: .utf8)
        try #"{"hidden_size": 65}"#.write(toFile: d, atomically: true, encoding: .utf8)
        #expect(try WeightFileFingerprint.of(path: c).headerHash != WeightFileFingerprint.of(path: d).headerHash)
    }
}
