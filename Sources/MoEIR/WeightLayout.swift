import MoEBasics

/// One step of a weight's layout: how a checkpoint tensor is rearranged, once, at load, into the
/// layout the graph declares. Steps apply in order to each tensor read (each expert's tensor when
/// the pattern has `{e}`, else the whole tensor), before experts are stacked.
///
/// "Rows" are the second-to-last dimension (a linear weight's outputs, `[out, in]`), or the only
/// dimension of a vector; fused gate/up tensors are split along them.
public enum WeightLayoutStep: Hashable, Sendable, CustomStringConvertible {
    /// Swaps the last two dimensions: `[…, a, b]` → `[…, b, a]` (input-first experts).
    case transpose
    /// Reads the same elements, row-major, as this shape (`[E·F, H]` → `[E, F, H]`).
    case reshape([Int])
    /// Drops dimension `dim`, which must be 1 (`[1, E]` → `[E]`).
    case squeeze(Int)
    /// Keeps block `part` of `of` equal blocks of rows (a fused `[gate; up]` split in halves).
    case split(part: Int, of: Int)
    /// Keeps rows `part`, `part + of`, `part + 2·of`, … (gate and up rows alternating).
    case deinterleave(part: Int, of: Int)
    /// Zeros appended to the rows (`cols` false) or the last dimension (`cols` true) up to `to`:
    /// experts of different widths stacked at the widest (`[F_e, H]` → `[F, H]`, `[H, F_e]` →
    /// `[H, F]`). A zero gate/up row and a zero down column add nothing to an expert's output,
    /// whatever runs between them; the padded experts cost the FLOPs of the widest.
    case pad(cols: Bool, to: Int)

    /// The step as written in `.moe` source and IR text.
    public var description: String {
        switch self {
        case .transpose: return "transpose"
        case .reshape(let s): return "reshape([\(s.map(String.init).joined(separator: ", "))])"
        case .squeeze(let d): return "squeeze(\(d))"
        case .split(let p, let n): return "split(\(p), of: \(n))"
        case .deinterleave(let p, let n): return "deinterleave(\(p), of: \(n))"
        case .pad(let cols, let n): return "pad(\(cols ? "cols" : "rows"): \(n))"
        }
    }

    /// The step names, for messages.
    public static let names = ["transpose", "reshape", "squeeze", "split", "deinterleave", "pad"]

    /// The dimension `pad` grows: the last (cols) or the rows dimension.
    static func padDimension(_ shape: [Int], cols: Bool) -> Int? {
        cols ? (shape.isEmpty ? nil : shape.count - 1) : rowsDimension(shape)
    }

    /// The shape the step makes of `shape`, or why it does not fit.
    public func apply(to shape: [Int]) -> Result<[Int], WeightLayoutError> {
        switch self {
        case .transpose:
            guard shape.count >= 2 else { return .failure(.init("transpose needs at least two dimensions, the tensor has \(shape.count)")) }
            var out = shape
            out.swapAt(shape.count - 1, shape.count - 2)
            return .success(out)
        case .reshape(let target):
            let have = Addressable.elementCount(shape), want = Addressable.elementCount(target)
            guard let have, have == want else {
                return .failure(.init("\(self) needs \(want.map(String.init) ?? "too many") elements, the tensor \(shape) has \(have.map(String.init) ?? "too many")"))
            }
            return .success(target)
        case .squeeze(let d):
            guard d >= 0, d < shape.count, shape[d] == 1 else {
                return .failure(.init("\(self) needs dimension \(d) of size 1, the tensor is \(shape)"))
            }
            var out = shape
            out.remove(at: d)
            return .success(out)
        case .split(let p, let n), .deinterleave(let p, let n):
            guard let r = Self.rowsDimension(shape) else { return .failure(.init("\(self) needs a tensor with rows, the tensor is a scalar")) }
            guard n >= 1, p >= 0, p < n else { return .failure(.init("\(self): the part must be in 0..<\(n)")) }
            guard shape[r] % n == 0 else {
                return .failure(.init("\(self) needs a number of rows divisible by \(n), the tensor \(shape) has \(shape[r])"))
            }
            var out = shape
            out[r] /= n
            return .success(out)
        case .pad(let cols, let n):
            guard let d = Self.padDimension(shape, cols: cols) else { return .failure(.init("\(self) needs a tensor with dimensions, the tensor is a scalar")) }
            guard shape[d] <= n else { return .failure(.init("\(self) cannot shrink the tensor \(shape): it has \(shape[d]) \(cols ? "columns" : "rows")")) }
            var out = shape
            out[d] = n
            return .success(out)
        }
    }

    /// The shape a tensor must have for the step to make `shape` of it; nil after a reshape,
    /// which many shapes fit.
    public func source(of shape: [Int]) -> Result<[Int]?, WeightLayoutError> {
        switch self {
        case .transpose:
            guard shape.count >= 2 else { return .failure(.init("transpose makes a tensor of at least two dimensions, but \(shape) is needed")) }
            var out = shape
            out.swapAt(shape.count - 1, shape.count - 2)
            return .success(out)
        case .reshape(let target):
            guard target == shape else { return .failure(.init("\(self) makes \(target), but \(shape) is needed")) }
            return .success(nil)
        case .squeeze(let d):
            guard d >= 0, d <= shape.count else { return .failure(.init("\(self): a tensor of \(shape.count + 1) dimensions has no dimension \(d)")) }
            var out = shape
            out.insert(1, at: d)
            return .success(out)
        case .split(let p, let n), .deinterleave(let p, let n):
            guard n >= 1, p >= 0, p < n else { return .failure(.init("\(self): the part must be in 0..<\(max(n, 1))")) }
            guard let r = Self.rowsDimension(shape) else { return .failure(.init("\(self) makes a tensor with rows, but a scalar is needed")) }
            var out = shape
            let (rows, overflow) = out[r].multipliedReportingOverflow(by: n)
            guard !overflow else { return .failure(.init("\(self): the tensor would have more rows than moec can address")) }
            out[r] = rows
            return .success(out)
        case .pad(let cols, let n):
            guard let d = Self.padDimension(shape, cols: cols), shape[d] == n else {
                return .failure(.init("\(self) makes \(cols ? "columns" : "rows") of \(n), but \(shape) is needed"))
            }
            // Any tensor with at most n there fits: checked against the tensor at binding.
            return .success(nil)
        }
    }

    /// Whether the step keeps the elements in their order (only the shape changes).
    public var keepsOrder: Bool {
        switch self {
        case .reshape, .squeeze: return true
        case .transpose, .split, .deinterleave, .pad: return false
        }
    }

    /// The second-to-last dimension, or the only one.
    static func rowsDimension(_ shape: [Int]) -> Int? {
        shape.isEmpty ? nil : max(0, shape.count - 2)
    }

    /// Rearranges `data` (row-major, of `shape`, which the step fits) into the step's result.
    public func apply(_ data: [Float], shape: [Int]) -> [Float] {
        switch self {
        case .reshape, .squeeze:
            return data
        case .transpose:
            let rows = shape[shape.count - 2], cols = shape[shape.count - 1]
            let plane = rows * cols
            var out = [Float](repeating: 0, count: data.count)
            // In 32×32 tiles, so both sides of the copy stay in cache for large matrices.
            let tile = 32
            for b in 0..<(plane == 0 ? 0 : data.count / plane) {
                for r0 in stride(from: 0, to: rows, by: tile) {
                    for c0 in stride(from: 0, to: cols, by: tile) {
                        for r in r0..<min(r0 + tile, rows) {
                            for c in c0..<min(c0 + tile, cols) { out[b * plane + c * rows + r] = data[b * plane + r * cols + c] }
                        }
                    }
                }
            }
            return out
        case .split(let p, let n), .deinterleave(let p, let n):
            let r = Self.rowsDimension(shape)!
            let rows = shape[r]
            let rowLength = shape[(r + 1)...].reduce(1, *)
            let batches = shape[..<r].reduce(1, *)
            let keep = rows / n
            var out: [Float] = []
            out.reserveCapacity(batches * keep * rowLength)
            for b in 0..<batches {
                for i in 0..<keep {
                    let row: Int
                    if case .split = self { row = p * keep + i } else { row = i * n + p }
                    let from = (b * rows + row) * rowLength
                    out.append(contentsOf: data[from..<(from + rowLength)])
                }
            }
            return out
        case .pad(let cols, let n):
            let d = Self.padDimension(shape, cols: cols)!
            let have = shape[d], rowLength = shape[(d + 1)...].reduce(1, *), batches = shape[..<d].reduce(1, *)
            var out = [Float](repeating: 0, count: batches * n * rowLength)
            for b in 0..<batches {
                for i in 0..<(have * rowLength) { out[b * n * rowLength + i] = data[b * have * rowLength + i] }
            }
            return out
        }
    }

    /// Reads a step from its text form (`description`), as plan files and IR text store it.
    public init?(text: String) {
        let t = text.filter { $0 != " " }
        func ints(_ s: Substring) -> [Int]? {
            let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
            return parts.contains(nil) ? nil : parts.map { $0! }
        }
        func call(_ name: String) -> Substring? {
            guard t.hasPrefix(name + "("), t.hasSuffix(")") else { return nil }
            return t.dropFirst(name.count + 1).dropLast()
        }
        if t == "transpose" {
            self = .transpose
        } else if let a = call("reshape"), a.hasPrefix("["), a.hasSuffix("]"), let s = ints(a.dropFirst().dropLast()), !s.isEmpty {
            self = .reshape(s)
        } else if let a = call("squeeze"), let d = Int(a) {
            self = .squeeze(d)
        } else if let (name, a) = [("split", call("split")), ("deinterleave", call("deinterleave"))].first(where: { $0.1 != nil }).map({ ($0.0, $0.1!) }) {
            let parts = a.split(separator: ",")
            guard parts.count == 2, let p = Int(parts[0]), parts[1].hasPrefix("of:"), let n = Int(parts[1].dropFirst(3)) else { return nil }
            self = name == "split" ? .split(part: p, of: n) : .deinterleave(part: p, of: n)
        } else if let a = call("pad"), let colon = a.firstIndex(of: ":"), let n = Int(a[a.index(after: colon)...]),
            ["rows", "cols"].contains(String(a[..<colon]))
        {
            self = .pad(cols: a[..<colon] == "cols", to: n)
        } else {
            return nil
        }
    }
}

/// Why a layout step does not fit a tensor.
public struct WeightLayoutError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

extension [WeightLayoutStep] {
    /// The shape of a tensor after every step, or the first step that does not fit it.
    public func apply(to shape: [Int]) -> Result<[Int], WeightLayoutError> {
        var s = shape
        for step in self {
            switch step.apply(to: s) {
            case .success(let next): s = next
            case .failure(let e): return .failure(e)
            }
        }
        return .success(s)
    }

    /// The shape a tensor must have to become `shape`; nil when a reshape leaves it open
    /// (only its element count is fixed).
    public func source(of shape: [Int]) -> Result<[Int]?, WeightLayoutError> {
        var s = shape
        for step in reversed() {
            switch step.source(of: s) {
            case .success(let previous?): s = previous
            case .success(nil): return .success(nil)
            case .failure(let e): return .failure(e)
            }
        }
        return .success(s)
    }

    /// The steps as written: `reshape([4, 8, 16]) |> transpose`.
    public var text: String { map(\.description).joined(separator: " |> ") }
}
