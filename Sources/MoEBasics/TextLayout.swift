import Foundation

/// The small pieces of text layout the printers and commands share: byte counts, padded
/// columns and progress bars, each written once.
public enum TextLayout {
    /// A byte count in decimal units, as benchmarks and plans report them: `1.23 GB`, `45.6 MB`,
    /// `7.8 kB`, `512 B`.
    public static func bytes(_ b: Double) -> String {
        if b >= 1e9 { return String(format: "%.2f GB", b / 1e9) }
        if b >= 1e6 { return String(format: "%.1f MB", b / 1e6) }
        if b >= 1e3 { return String(format: "%.1f kB", b / 1e3) }
        return String(format: "%.0f B", b)
    }

    public static func bytes(_ b: Int) -> String { bytes(Double(b)) }

    /// A byte count in binary units, as memory budgets are given (`80Gi`): `1.5 GiB`, `12 bytes`.
    public static func binaryBytes(_ b: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b), u = 0
        while v >= 1024 && u + 1 < units.count {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(b) bytes" : String(format: "%.1f", v) + " " + units[u]
    }

    /// `s` left-aligned in a column of `width` characters, with at least one space after it.
    public static func column(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }

    /// `s` right-aligned in a column of `width` characters (longer text is left as it is).
    public static func rightColumn(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    /// A progress bar of `width` cells, `done / total` of them filled: `████░░░░`.
    public static func progressBar(_ done: Int, of total: Int, width: Int) -> String {
        let filled = total > 0 ? min(max(done, 0), total) * width / total : width
        return String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
    }
}

extension String {
    /// This string left-aligned in a column of `width` characters, with at least one space after it.
    public func padded(to width: Int) -> String { TextLayout.column(self, width) }
}
