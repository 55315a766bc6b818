import Foundation
import MoELanguageServer

enum LSPCommand {
    static let spec = CommandSpec(
        name: "lsp",
        summary: "moec lsp: a Language Server Protocol server for .moe files, on stdin and stdout.",
        usage: ["moec lsp            (started by an editor; it reads and writes JSON-RPC)"],
        positionals: [],
        options: [],
        details: """
            Editors start it and talk JSON-RPC with it (Content-Length framing). It serves:
            diagnostics as you type (everything 'moec compile' reports: parse errors, unknown
            names, shape and type errors, pass checks, each at its source range, with notes as
            related locations); hover (a name's declaration, a param's value, a value's type,
            a weight's tensor and shape, a builtin's signature); completion of builtins,
            keywords and the file's names; go to definition; the document outline.

            Params read 'from' a checkpoint's config.json take their defaults unless the client
            sends initializationOptions {"model": "DIR or FILE.gguf", "params": {"layer": 3}}.
            Setup for VS Code, Neovim, Helix and Emacs: editors/README.md.
            """,
        examples: [
            "moec lsp                                       # what an editor runs",
            "nvim: vim.lsp.start({ name = 'moec', cmd = { 'moec', 'lsp' } })"
        ])

    static func run(_ args: [String]) throws -> Int32 {
        let a = try spec.parse(args)
        if a.helpRequested { Console.out(spec.help()); return 0 }
        if let extra = a.positionals.first { throw UsageError(message: "unexpected argument '\(extra)'", command: "lsp") }
        // A client that closes the pipe is an error to report, not a signal that kills the server.
        signal(SIGPIPE, SIG_IGN)
        return runLanguageServer(input: .standardInput, output: .standardOutput) { Console.err($0 + "\n") }
    }
}
