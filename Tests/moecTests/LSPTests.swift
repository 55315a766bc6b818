import Foundation
import MoETestSupport
import Testing

/// `moec lsp` as an editor starts it: framed JSON-RPC on stdin, replies on stdout.
@Suite struct LSPTests {
    static func framed(_ messages: [String]) -> Data {
        var data = Data()
        for m in messages { data.append(Data("Content-Length: \(m.utf8.count)\r\n\r\n\(m)".utf8)) }
        return data
    }

    static let session = [
        #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}"#,
        #"{"jsonrpc":"2.0","method":"initialized","params":{}}"#,
        #"{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"file:///tmp/x.moe","languageId":"moe","version":1,"text":"model m\ninput x: [tokens, 4]\nlet y = frobnicate(x)\noutput y\n"}}}"#,
        #"not json"#,
        #"{"jsonrpc":"2.0","id":2,"method":"shutdown"}"#,
        #"{"jsonrpc":"2.0","method":"exit"}"#
    ]

    @Test func aSessionGetsDiagnosticsAndEndsCleanly() throws {
        let dir = TemporaryDirectory("moec-lsp")
        let r = try Moec.run(["lsp"], in: dir.path, stdin: Self.framed(Self.session))
        expectSuccess(r)
        #expect(r.stdout.contains(#""capabilities":"#))
        #expect(r.stdout.contains(#""method":"textDocument/publishDiagnostics""#))
        #expect(r.stdout.contains("unknown function 'frobnicate'"))
        #expect(r.stdout.contains(#""code":-32700"#), "a body that is not JSON gets a parse error, and the session goes on")
        #expect(r.stdout.contains(#""id":2,"result":null"#) || r.stdout.contains(#""result":null"#))
        #expect(r.stdout.hasPrefix("Content-Length: "))
    }

    @Test func brokenFramingOrAClientThatGoesAwayEndsWithStatus1() throws {
        let dir = TemporaryDirectory("moec-lsp")
        let garbage = try Moec.run(["lsp"], in: dir.path, stdin: Data("Hello: there\r\n\r\n{}".utf8))
        expectFailure(garbage, status: 1, ["moec lsp: header without Content-Length"])
        let gone = try Moec.run(["lsp"], in: dir.path, stdin: Self.framed(Array(Self.session.prefix(3))))
        expectFailure(gone, status: 1, [])
        #expect(gone.stdout.contains("unknown function 'frobnicate'"))
        // A client that closed its end of stdout: status 1 and a message, not SIGPIPE.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Moec.binary.get())
        process.arguments = ["lsp"]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        try output.fileHandleForReading.close()
        try input.fileHandleForWriting.write(contentsOf: Self.framed(Array(Self.session.prefix(1))))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit && process.terminationStatus == 1, "\(process.terminationReason) \(process.terminationStatus)")
        #expect(said.contains("cannot write to the client"), "\(said)")
        let extra = try Moec.run(["lsp", "file.moe"], in: dir.path)
        expectFailure(extra, status: 2, ["unexpected argument 'file.moe'"])
    }
}
