import Foundation
import MoECompiler
import Testing

/// `moec profile`'s progress: a bar redrawn in place on a terminal, plain lines at most every
/// few seconds in a log. The output and the clock are injected, so no terminal or waiting is
/// needed.
@Suite struct BatchProgressTests {
    /// What a progress wrote, one string per write, and a clock the test moves.
    final class Recorder {
        var writes: [String] = []
        var time = 100.0
        var text: String { writes.joined() }

        func progress(terminal: Bool) -> BatchProgress {
            BatchProgress(label: "profile", isTerminal: terminal, write: { self.writes.append($0) }, now: { self.time })
        }
    }

    /// The bar in a terminal write: its filled and empty cells.
    static func cells(_ write: String) -> (filled: Int, empty: Int) {
        (write.filter { $0 == "█" }.count, write.filter { $0 == "░" }.count)
    }

    @Test func terminalRedrawsABarThatFollowsTheBatches() throws {
        let r = Recorder()
        let p = r.progress(terminal: true)
        let total = 7
        for done in 1...total {
            r.time += 0.5
            p.update(done, total, done * 64)
            // Every update (half a second apart) redraws the line in place.
            try #require(r.writes.count == done, "\(r.writes)")
            let w = r.writes[done - 1]
            #expect(w.hasPrefix("\r") && !w.contains("\n"), "\(w.debugDescription)")
            let (filled, empty) = Self.cells(w)
            #expect(filled + empty == BatchProgress.barWidth)
            // The filled part is done/total of the bar, to within one cell.
            #expect(
                abs(Double(filled) / Double(BatchProgress.barWidth) - Double(done) / Double(total)) < 1 / Double(BatchProgress.barWidth),
                "\(done)/\(total): \(filled) of \(BatchProgress.barWidth)")
            #expect(w.contains("\(done * 100 / total)%") && w.contains("\(done)/\(total) batches") && w.contains("\(done * 64) tokens"), "\(w)")
        }
        p.finish()
        let last = try #require(r.writes.last)
        #expect(last.hasPrefix("\r") && last.hasSuffix("\n"), "\(last.debugDescription)")
        #expect(last.contains("100%") && last.contains("7/7 batches") && Self.cells(last) == (BatchProgress.barWidth, 0), "\(last)")
        // Nothing after the end.
        let count = r.writes.count
        p.update(7, 7, 448)
        p.finish()
        #expect(r.writes.count == count)
    }

    @Test func terminalDrawsNeitherTooEarlyNorTooOften() throws {
        let r = Recorder()
        let p = r.progress(terminal: true)
        // A quick first batch: no bar yet (no flicker for runs that end at once).
        r.time += BatchProgress.firstDrawDelay / 2
        p.update(1, 100, 10)
        #expect(r.writes.isEmpty)
        r.time += BatchProgress.firstDrawDelay
        p.update(2, 100, 20)
        #expect(r.writes.count == 1)
        // Updates closer together than the redraw interval are skipped …
        for done in 3...10 {
            r.time += BatchProgress.redrawInterval / 10
            p.update(done, 100, done * 10)
        }
        #expect(r.writes.count == 1, "\(r.writes)")
        r.time += BatchProgress.redrawInterval
        p.update(11, 100, 110)
        #expect(r.writes.count == 2 && r.writes[1].contains("11/100 batches"))
        // … but never the last batch.
        r.time += BatchProgress.redrawInterval / 10
        p.update(100, 100, 1000)
        #expect(r.writes.count == 3 && r.writes[2].contains("100%"))
    }

    /// A quick run still ends with its bar at 100% on its own line.
    @Test func terminalFinishDrawsTheFinalState() throws {
        let r = Recorder()
        let p = r.progress(terminal: true)
        p.update(1, 3, 5)
        p.update(2, 3, 10)
        #expect(r.writes.isEmpty)
        p.update(3, 3, 15)
        p.finish()
        #expect(r.text.hasSuffix("\n") && r.writes.last!.contains("100%") && r.writes.last!.contains("3/3 batches"))
        #expect(r.text.filter { $0 == "\n" }.count == 1)
    }

    @Test func logGetsAPlainLineAtMostEveryInterval() throws {
        let r = Recorder()
        let p = r.progress(terminal: false)
        let total = 60
        var lineTimes: [Double] = []
        for done in 1...total {
            r.time += 0.7
            let before = r.writes.count
            p.update(done, total, done * 32)
            if r.writes.count > before { lineTimes.append(r.time) }
        }
        // 42 s of batches: a line each 5 s at most, and at least one.
        #expect(!lineTimes.isEmpty && lineTimes.count <= Int(42 / BatchProgress.logInterval), "\(r.writes)")
        for (a, b) in zip([100.0] + lineTimes, lineTimes) {
            #expect(b - a >= BatchProgress.logInterval, "lines at \(lineTimes)")
        }
        p.finish()
        #expect(r.writes.count == lineTimes.count + 1)
        #expect(r.writes.last == "profile: done, 60/60 batches, 1920 tokens in 42.0 s\n", "\(r.writes.last!)")
        for w in r.writes {
            #expect(w.hasPrefix("profile: ") && w.hasSuffix("\n") && w.filter { $0 == "\n" }.count == 1, "\(w.debugDescription)")
            #expect(!w.contains("\r") && !w.contains("\u{1B}") && Self.cells(w) == (0, 0), "\(w.debugDescription)")
        }
        #expect(
            r.writes.first!.range(of: #"^profile: \d+/60 batches, \d+ tokens, \d+ s\n$"#, options: .regularExpression) != nil,
            "\(r.writes.first!)")
    }

    /// A quick run in a log: only the summary.
    @Test func quickLogRunWritesOnlyTheSummary() throws {
        let r = Recorder()
        let p = r.progress(terminal: false)
        for done in 1...4 {
            r.time += 0.01
            p.update(done, 4, done * 4)
        }
        p.finish()
        #expect(r.writes == ["profile: done, 4/4 batches, 16 tokens in 0.0 s\n"])
        // No batch reported: nothing to summarise.
        let empty = Recorder()
        empty.progress(terminal: false).finish()
        #expect(empty.writes.isEmpty)
    }
}
