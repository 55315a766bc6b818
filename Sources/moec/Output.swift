import Foundation
import MoEBasics

/// Printing for the terminal: results to stdout, diagnostics and progress to stderr.
enum Console {
    static let stderrIsTerminal = isatty(2) != 0
    static let useColor = stderrIsTerminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil

    static func out(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }

    static func err(_ s: String) {
        FileHandle.standardError.write(Data(ranked(s).utf8))
    }

    /// Under `mpirun`, every line starts with `[rank r] `, so that interleaved messages of the
    /// ranks say whose they are.
    static func ranked(_ s: String) -> String {
        guard let rank = MPIJob.launch?.rank, !s.isEmpty else { return s }
        var out = "", atLineStart = true
        for c in s {
            if atLineStart && c != "\r" { out += "[rank \(rank)] " }
            out.append(c)
            atLineStart = c == "\n"
        }
        return out
    }

    static func error(_ message: String) {
        err((useColor ? "\u{1B}[1;31merror:\u{1B}[0m " : "error: ") + message + "\n")
    }
}
