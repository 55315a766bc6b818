import Foundation
import MoEIO
import MoETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `moec run` with bad inputs and outputs: a message, exit 1, and no output file.
@Suite struct RunInputTests {
    /// A folder holding p.json, a plan compiled from the example.
    static func planFolder() throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        let r = try Moec.run(["compile", Files.mixtralGraph, "--model", Files.example, "-o", "p.json"], in: dir.path)
        expectSuccess(r)
        return dir
    }

    static let x = Files.example + "/x.npy"

    /// `run p.json ARGS --output y=y.npy` fails with `messages` and leaves the folder as it was.
    static func expectRunFails(
        _ dir: TemporaryDirectory, _ args: [String], output: String = "y.npy", status: Int32 = 1, _ messages: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let before = folderEntries(dir.path)
        let r = try Moec.run(["run", "p.json"] + args + ["--output", "y=\(output)"], in: dir.path)
        expectFailure(r, status: status, messages, sourceLocation: sourceLocation)
        expectFolder(dir.path, holds: before, after: r, sourceLocation: sourceLocation)
    }

    @Test func missingOrUnknownInput() throws {
        let dir = try Self.planFolder()
        try Self.expectRunFails(dir, [], ["missing input 'x' (f32[tokens, 32])"])
        try Self.expectRunFails(dir, ["--input", "z=\(Self.x)"], ["--input z=…: the graph has no input 'z' (inputs: x)"])
        try Self.expectRunFails(dir, ["--input", "x=\(Self.x)", "--input", "x=\(Self.x)"], status: 2, ["--input x is given twice"])
        try Self.expectRunFails(dir, ["--input", "x=nothere.npy"], ["nothere.npy: cannot open: No such file or directory"])
        try Self.expectRunFails(dir, ["--input", "x=\(dir.path)"], ["not a regular file"])
    }

    @Test func unknownOutputIsRefusedBeforeRunning() throws {
        let dir = try Self.planFolder()
        let r = try Moec.run(["run", "p.json", "--input", "x=\(Self.x)", "--output", "z=z.npy"], in: dir.path)
        expectFailure(r, ["--output z=…: the graph has no output 'z' (outputs: y)"])
        #expect(!r.stderr.contains("ran mixtral"), "\(r)")
        expectFolder(dir.path, holds: ["p.json"])
    }

    @Test func wrongInputShape() throws {
        let dir = try Self.planFolder()
        try NpyArray(shape: [16, 31], storage: .float32(Array(repeating: 0.5, count: 16 * 31))).write(to: dir.file("x31.npy"))
        try Self.expectRunFails(dir, ["--input", "x=x31.npy"], ["input 'x' dimension 2 must be 32, got 31 (shape [16, 31], expected f32[tokens, 32])"])
        try NpyArray(shape: [32], storage: .float32(Array(repeating: 0.5, count: 32))).write(to: dir.file("x1d.npy"))
        try Self.expectRunFails(dir, ["--input", "x=x1d.npy"], ["input 'x' must have 2 dimensions f32[tokens, 32], got shape [32]"])
        try NpyArray(shape: [0, 32], storage: .float32([])).write(to: dir.file("x0.npy"))
        try Self.expectRunFails(dir, ["--input", "x=x0.npy"], ["tokens must be at least 1, got 0"])
    }

    @Test func wrongInputDtype() throws {
        let dir = try Self.planFolder()
        try NpyArray(shape: [4, 32], storage: .int32(Array(repeating: 1, count: 128))).write(to: dir.file("xi.npy"))
        try Self.expectRunFails(dir, ["--input", "x=xi.npy"], ["xi.npy: input 'x' is f32, but the file holds <i4 values"])
        try NpyArray(shape: [4, 32], storage: .bool(Array(repeating: true, count: 128))).write(to: dir.file("xb.npy"))
        try Self.expectRunFails(dir, ["--input", "x=xb.npy"], ["xb.npy: input 'x' is f32, but the file holds |b1 values"])
        // An unsupported dtype: complex numbers.
        var complex = try Files.read(Self.x)
        let descr = try #require(complex.range(of: Data("'<f4'".utf8)))
        complex.replaceSubrange(descr, with: Data("'<c8'".utf8))
        try Files.write(complex, to: dir.file("xc.npy"))
        try Self.expectRunFails(dir, ["--input", "x=xc.npy"], ["xc.npy: unsupported dtype '<c8'"])
    }

    @Test func float64InputIsConverted() throws {
        let dir = try Self.planFolder()
        let x = try NpyArray(path: Self.x)
        try NpyArray(shape: x.shape, storage: .float64(x.floats().map(Double.init))).write(to: dir.file("x64.npy"))
        let r = try Moec.run(["run", "p.json", "--input", "x=x64.npy", "--output", "y=y.npy", "--check", "y=\(Files.example)/y_transformers.npy"], in: dir.path)
        expectSuccess(r)
    }

    @Test func truncatedOrGarbledInputFile() throws {
        let dir = try Self.planFolder()
        let data = try Files.read(Self.x)
        try Files.write(data.prefix(1000), to: dir.file("cut.npy"))
        try Self.expectRunFails(
            dir, ["--input", "x=cut.npy"], ["cut.npy: truncated data: shape (16, 32) of '<f4' needs 2048 bytes after the header (data begins at byte 128), found 872"])
        try Files.write(data.prefix(50), to: dir.file("cut2.npy"))
        try Self.expectRunFails(dir, ["--input", "x=cut2.npy"], ["cut2.npy: header length 118 runs past the end of the file (50 bytes): truncated"])
        try Files.write(Data(), to: dir.file("empty.npy"))
        try Self.expectRunFails(dir, ["--input", "x=empty.npy"], ["empty.npy"])
        try Files.write(Data("just some text, not an array\n".utf8), to: dir.file("text.npy"))
        try Self.expectRunFails(dir, ["--input", "x=text.npy"], ["text.npy"])
        var huge = data
        let shape = try #require(huge.range(of: Data(("(16, 32), }" + String(repeating: " ", count: 11)).utf8)))
        huge.replaceSubrange(shape, with: Data("(1099511627776, 32), }".utf8))
        try Files.write(huge, to: dir.file("huge.npy"))
        try Self.expectRunFails(dir, ["--input", "x=huge.npy"], ["huge.npy: "])
    }

    @Test func outputFolderThatDoesNotExist() throws {
        let dir = try Self.planFolder()
        try Self.expectRunFails(dir, ["--input", "x=\(Self.x)"], output: "nowhere/y.npy", ["nowhere/y.npy", "does not exist"])
        #expect(!FileManager.default.fileExists(atPath: dir.file("nowhere")))
    }

    @Test func outputThatIsAFolderOrNotARegularFile() throws {
        let dir = try Self.planFolder()
        try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: false)
        try Self.expectRunFails(dir, ["--input", "x=\(Self.x)"], output: "out", ["out", "is a folder"])
        #expect(folderEntries(dir.file("out")).isEmpty)
        // A FIFO stands for any special file (/dev/null, a device): moec must not rename over it.
        #expect(mkfifo(dir.file("fifo"), 0o644) == 0)
        try Self.expectRunFails(dir, ["--input", "x=\(Self.x)"], output: "fifo", ["fifo", "not a regular file"])
        var st = stat()
        #expect(lstat(dir.file("fifo"), &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO, "the FIFO was replaced")
    }

    @Test func failingRunKeepsAnExistingOutputAsItWas() throws {
        let dir = try Self.planFolder()
        try Files.write("old contents", to: dir.file("y.npy"))
        try Self.expectRunFails(dir, [], ["missing input 'x'"])
        #expect(try String(contentsOfFile: dir.file("y.npy"), encoding: .utf8) == "old contents")
    }

    @Test func missingCheckReferenceWritesNothing() throws {
        let dir = try Self.planFolder()
        try Self.expectRunFails(dir, ["--input", "x=\(Self.x)", "--check", "y=noref.npy"], ["noref.npy"])
        try NpyArray(shape: [3], storage: .float32([1, 2, 3])).write(to: dir.file("small.npy"))
        try Self.expectRunFails(dir, ["--input", "x=\(Self.x)", "--check", "y=small.npy"], ["--check y: the reference has shape [3], the output [16, 32]"])
    }

    @Test func severalOutputsAreAllOrNothing() throws {
        // A graph with two outputs: when one of them cannot be written, neither is.
        let dir = TemporaryDirectory()
        let source = try String(contentsOfFile: Files.mixtralGraph, encoding: .utf8)
        try Files.write(source + "output z = y + x\n", to: dir.file("two.moe"))
        let args = ["run", "two.moe", "--model", Files.example, "--input", "x=\(Self.x)"]
        let ok = try Moec.run(args + ["--output", "y=y.npy", "--output", "z=z.npy"], in: dir.path)
        expectSuccess(ok)
        expectFolder(dir.path, holds: ["two.moe", "y.npy", "z.npy"], after: ok)
        try FileManager.default.removeItem(atPath: dir.file("y.npy"))
        try FileManager.default.removeItem(atPath: dir.file("z.npy"))
        let same = try Moec.run(args + ["--output", "y=y.npy", "--output", "z=./y.npy"], in: dir.path)
        expectFailure(same, status: 2, ["--output y=y.npy and z=./y.npy write the same file"])
        let bad = try Moec.run(args + ["--output", "y=y.npy", "--output", "z=nowhere/z.npy"], in: dir.path)
        expectFailure(bad, ["nowhere/z.npy", "does not exist"])
        expectFolder(dir.path, holds: ["two.moe"], after: bad)
    }
}
