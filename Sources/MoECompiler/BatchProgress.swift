import Dispatch
import Foundation

/// Progress through batches (`moec profile`), as text for stderr: a bar redrawn in place on a
/// terminal; in a log (not a terminal) a plain line every `logInterval` seconds, so logs get no
/// carriage returns, escapes or bar glyphs.
///
/// - Terminal: an update draws `\r` + `LABEL ████░░░░ 53%  8/15 batches  4096 tokens  1.2 s` +
///   erase-to-end-of-line, with `barWidth · done / total` cells filled; not before
///   `firstDrawDelay` seconds (a quick run shows no flicker) nor within `redrawInterval` of the
///   previous draw, except for the last batch. `finish()` draws the final state and a newline,
///   so the bar stays on screen.
/// - Log: a line `LABEL: 8/15 batches, 4096 tokens, 12 s` when `logInterval` seconds have passed
///   since the start or the previous line (the last batch excepted); `finish()` writes the
///   final state as `LABEL: done, 15/15 batches, 7680 tokens in 14.2 s`.
///
/// The output goes to `write`, and time comes from `now` (seconds, any origin), so the drawing
/// can be tested without a terminal or a real clock.
public final class BatchProgress {
    public static let barWidth = 30
    public static let firstDrawDelay = 0.3
    public static let redrawInterval = 0.1
    public static let logInterval = 5.0

    let label: String
    let isTerminal: Bool
    let write: (String) -> Void
    let now: () -> Double
    let start: Double
    /// When the last bar or line was written.
    var lastWrite: Double
    var state: (done: Int, total: Int, tokens: Int)?
    var finished = false

    /// `now` defaults to a monotonic clock.
    public init(
        label: String, isTerminal: Bool, write: @escaping (String) -> Void,
        now: @escaping () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    ) {
        self.label = label
        self.isTerminal = isTerminal
        self.write = write
        self.now = now
        start = now()
        lastWrite = isTerminal ? -Double.infinity : start
    }

    /// After batch `done` of `total`, with `tokens` tokens done in all.
    public func update(_ done: Int, _ total: Int, _ tokens: Int) {
        guard !finished else { return }
        state = (done, total, tokens)
        let t = now()
        let last = done >= total
        if isTerminal {
            guard last || (t - start >= Self.firstDrawDelay && t - lastWrite >= Self.redrawInterval) else { return }
            lastWrite = t
            write(bar(done, total, tokens, elapsed: t - start))
        } else if !last && t - lastWrite >= Self.logInterval {
            lastWrite = t
            write(String(format: "%@: %d/%d batches, %d tokens, %.0f s\n", label, done, total, tokens, t - start))
        }
    }

    /// The end: the bar's final state and a newline on a terminal; a summary line in a log.
    /// Nothing when no batch was reported; only the first call writes.
    public func finish() {
        guard !finished, let s = state else { return }
        finished = true
        let elapsed = now() - start
        if isTerminal {
            write(bar(s.done, s.total, s.tokens, elapsed: elapsed) + "\n")
        } else {
            write(
                String(
                    format: "%@: %@, %d/%d batches, %d tokens in %.1f s\n", label, s.done >= s.total ? "done" : "stopped",
                    s.done, s.total, s.tokens, elapsed))
        }
    }

    /// `\r`, the bar line, and erase to the end of the line.
    func bar(_ done: Int, _ total: Int, _ tokens: Int, elapsed: Double) -> String {
        let filled = total > 0 ? min(done, total) * Self.barWidth / total : Self.barWidth
        let percent = total > 0 ? min(done, total) * 100 / total : 100
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: Self.barWidth - filled)
        return String(format: "\r%@ %@ %3d%%  %d/%d batches  %d tokens  %.1f s\u{1B}[K", label, bar, percent, done, total, tokens, elapsed)
    }
}
