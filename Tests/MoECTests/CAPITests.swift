import Foundation
import MoEIO
import MoETestSupport
import Testing

/// libMoEC's C API, driven from C by `moec-capi-check` (Tests/CAPICheck/main.c): every kind of
/// bad input an error message, concurrent runs of two plans bit-identical to a serial one, and
/// the output equal to transformers' reference for the fixture's Mixtral block.
@Suite struct CAPITests {
    /// The C program, built by `swift build` / `swift test` beside the test bundle.
    static var checkProgram: String? {
        var folders: [String] = []
        for b in Bundle.allBundles where b.bundleURL.pathExtension == "xctest" {
            folders.append(b.bundleURL.deletingLastPathComponent().path)
        }
        folders += [RepoPaths.path(".build/debug"), RepoPaths.path(".build/release")]
        return folders.map { $0 + "/moec-capi-check" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `moec-capi-check` on a fixture; returns its printout and the output it wrote.
    static func check(_ mode: [String], graph: String, fixture: String, params: [String]) throws -> (text: String, y: [Float], status: Int32) {
        let program = try #require(Self.checkProgram, "moec-capi-check is not built: run 'swift build'")
        let x = try NpyArray(path: fixture + "/x.npy")
        let dir = TemporaryDirectory("moec-capi")
        try x.floats().withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir.file("x.f32"))) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = mode + [graph, fixture, dir.file("x.f32"), "\(x.shape[0])", "\(x.shape[1])", dir.file("y.f32")] + params
        p.environment = ProcessInfo.processInfo.environment.merging(["MOEC_BLAS": ""]) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit, "moec-capi-check crashed:\n\(text)")
        let y = (try? Data(contentsOf: URL(fileURLWithPath: dir.file("y.f32")))) ?? Data()
        return (text, y.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }, p.terminationStatus)
    }

    /// A decoder layer run as a sequence from C: a prompt, then a token at a time, matches
    /// transformers' layer over the whole sequence; every misuse of a sequence is an error.
    @Test func aCProgramDecodesASequence() throws {
        let fixture = RepoPaths.fixtures + "/decoder/mixtral-window"
        let (text, y, status) = try Self.check(["--sequence"], graph: RepoPaths.graphs + "/decoder/mixtral.moe", fixture: fixture, params: [])
        #expect(status == 0, "\(text)")
        let failed = text.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(failed.isEmpty, "\(failed.joined(separator: "\n"))")
        #expect(text.contains("two sequences decoded at once on two threads equal the first decode bit for bit"))
        let ref = try NpyArray(path: fixture + "/y.npy").floats()
        #expect(y.count == ref.count)
        #expect(relativeError(y, ref) <= 1e-5, "max |y - transformers| / max |y| = \(relativeError(y, ref))")
    }

    @Test func aCProgramGetsErrorsForBadInputAndTheReferenceOutput() throws {
        let fixture = RepoPaths.fixtures + "/mixtral-h16-f24-e16-k4-t33-s11"
        let reference = try NpyArray(path: fixture + "/y.npy")
        // The check compares outputs bit for bit between runs: `check` asks for moec's kernels (MOEC_BLAS empty).
        let (text, ys, status) = try Self.check([], graph: RepoPaths.graphs + "/mixtral.moe", fixture: fixture, params: ["layer=0"])
        #expect(status == 0, "\(text)")
        let failed = text.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(failed.isEmpty, "\(failed.joined(separator: "\n"))")
        #expect(text.contains("100 concurrent runs of two plans equal the serial run bit for bit"))

        let ref = reference.floats()
        #expect(ys.count == ref.count)
        let scale = ref.map(abs).max()!
        let worst = zip(ys, ref).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5 * scale, "max |y - transformers| = \(worst), max |y| = \(scale)")
    }
}
