import Foundation

/// A weight matrix W `[N, K]` (row-major, Hugging Face `nn.Linear` layout: N outputs, K inputs)
/// copied once into the panel layout the GEMM micro-kernels stream.
///
/// Layout: `panels = ⌈N/16⌉` panels of 16 output columns; panel `p` is `K` steps of 16 floats,
/// `data[p*K*16 + k*16 + j] = W[p*16 + j, k]`, with zeros for columns past N. With `format`
/// `.bf16` the layout is the same with 16-bit bfloat16 elements (half the bytes); the kernels
/// widen them to fp32 in registers and accumulate in fp32. The buffer is
/// 64-byte aligned, in huge pages (`StreamedMemory`), and owned by this object, except for one made over
/// caller storage (`init(n:k:storage:)`, a per-call scratch that `repack` refills). The same
/// layout serves the AVX2 and the portable kernels, and any K-blocking is done by the kernels (a
/// K-block of a panel is contiguous).
///
/// Not changed after `init` except by `repack`, which its one user calls between products on the
/// same thread, so sharing it between the threads of a product is safe (`@unchecked Sendable`
/// because the storage is a raw pointer).
public final class PackedWeight: @unchecked Sendable {
    /// How the panel elements are stored.
    public enum Format: Hashable, Sendable, CustomStringConvertible {
        /// 32-bit floats.
        case f32
        /// bfloat16: the top 16 bits of a Float (rounded to nearest even when packed from fp32).
        case bf16
        /// IEEE binary16 (rounded to nearest even when packed from fp32; an f16 checkpoint's
        /// values are kept exactly), widened with F16C.
        case f16
        /// 8-bit integers in groups of `group` steps of k, one fp32 scale per column and group
        /// (and an fp32 offset with `offsets`): w = fma(u, S, M), u = q + 128 stored unsigned.
        /// Packed from fp32 like llama.cpp's Q8_0 (S = max|w| / 127, q = round(w / S)).
        case int8(group: Int, offsets: Bool = false)
        /// 4-bit integers in groups: w = fma(u, S, M) with u in 0…15; without stored offsets
        /// M = -8·S (packed from fp32 like llama.cpp's Q4_0), with them any M (Q4_1, Q4_K).
        case int4(group: Int, offsets: Bool = false)
        /// 6-bit integers in groups, w = fma(u, S, -32·S) with u in 0…63: a GGUF file's Q6_K
        /// values as stored (packed from fp32 like Q4_0 with 64 levels). Stored as int4's
        /// nibbles plus the two high bits of each value in a plane after each oct (see
        /// QuantizedPanels.swift).
        case int6(group: Int)
        /// 5-bit integers in groups, w = fma(u, S, M) with u in 0…31 (M = -16·S without stored
        /// offsets): a GGUF file's Q5_K values as stored, with their offsets. Stored as int4's
        /// nibbles, each pair of octs followed by a plane of the values' fifth bits.
        case int5(group: Int, offsets: Bool = false)

        /// Bits of one stored value (scales and offsets not counted).
        public var bits: Int {
            switch self {
            case .f32: return 32
            case .bf16, .f16: return 16
            case .int8: return 8
            case .int4: return 4
            case .int6: return 6
            case .int5: return 5
            }
        }

        /// Steps of k per scale (nil for the float formats).
        public var group: Int? {
            switch self {
            case .f32, .bf16, .f16: return nil
            case .int8(let g, _), .int4(let g, _), .int6(let g), .int5(let g, _): return g
            }
        }

        /// Whether each group stores offsets.
        public var offsets: Bool {
            switch self {
            case .f32, .bf16, .f16: return false
            case .int8(_, let o), .int4(_, let o), .int5(_, let o): return o
            case .int6: return false
            }
        }

        public var isQuantized: Bool { group != nil }

        /// The stored value that means 0 without stored offsets (M = -centre·S): 128 for int8
        /// (values are kept as q + 128), 32 for int6, 16 for int5, 8 for int4.
        public var centre: Int { 1 << (bits - 1) }

        /// Whether values come in octs of 8 steps with the low 4 bits in nibbles (int4, int5,
        /// int6) rather than in quads of 4 bytes (int8).
        public var nibbleOcts: Bool { bits < 8 }

        /// Bytes of one group of one panel: its scales, offsets, and `group` steps of 16 values.
        var groupBytes: Int { group.map { (offsets ? 128 : 64) + $0 * 2 * bits } ?? 0 }

        public var description: String {
            switch self {
            case .f32: return "f32"
            case .bf16: return "bf16"
            case .f16: return "f16"
            case .int8(let g, let o): return "int8 (groups of \(g)\(o ? ", offsets" : ""))"
            case .int4(let g, let o): return "int4 (groups of \(g)\(o ? ", offsets" : ""))"
            case .int6(let g): return "int6 (groups of \(g))"
            case .int5(let g, let o): return "int5 (groups of \(g)\(o ? ", offsets" : ""))"
            }
        }

        /// Whether a [*, k] weight can be stored this way: a quantized format's group must divide
        /// k and 128 (the kernels' K-blocks are multiples of 128).
        public func fits(k: Int) -> Bool {
            guard let g = group else { return true }
            // int8 comes in quads of 4 steps, int4 and int6 in octs of 8, int5 in pairs of octs.
            let steps = bits == 8 ? 4 : bits == 5 ? 16 : 8
            return g >= steps && g % steps == 0 && 128 % g == 0 && k % g == 0
        }
    }

    /// Columns per panel.
    public static let panelWidth = 16

    /// Output features (rows of W).
    public let n: Int
    /// Input features (columns of W).
    public let k: Int
    /// Number of 16-column panels.
    public let panels: Int
    /// Element format of the panels.
    public let format: Format
    /// The panels: `Float`s for `.f32`, bfloat16 bits (`UInt16`) for `.bf16`.
    let storage: UnsafeMutableRawPointer
    /// The quantized panels (only for `.int8` and `.int4`; see `Format`).
    var quantizedData: UnsafeMutableRawPointer {
        precondition(format.isQuantized, "PackedWeight: quantized panels asked of a \(format) weight")
        return storage
    }
    /// The fp32 panels (only for `.f32`).
    var data: UnsafeMutablePointer<Float> {
        precondition(format == .f32, "PackedWeight: fp32 panels asked of a \(format) weight")
        return storage.assumingMemoryBound(to: Float.self)
    }
    /// The 16-bit panels (only for `.bf16` and `.f16`).
    var bf16Data: UnsafeMutablePointer<UInt16> {
        precondition(format == .bf16 || format == .f16, "PackedWeight: 16-bit panels asked of a \(format) weight")
        return storage.assumingMemoryBound(to: UInt16.self)
    }
    /// Whether `data` was allocated here (and is freed with this object).
    private let ownsData: Bool

    /// Packs W `[n, k]` row-major, in `format` (`.bf16` rounds each value to nearest even).
    /// `threads` > 1 packs panels concurrently.
    public convenience init(weight: UnsafePointer<Float>, n: Int, k: Int, threads: Int = 1, format: Format = .f32) {
        self.init(n: n, k: k, format: format)
        fill(from: weight, strideN: k, strideK: 1, threads: threads)
    }

    /// Packs W `[n, k]` row-major from an array, in `format`.
    public convenience init(weight: [Float], n: Int, k: Int, threads: Int = 1, format: Format = .f32) {
        precondition(weight.count == n * k, "PackedWeight: \(weight.count) values for [\(n), \(k)]")
        self.init(n: n, k: k, format: format)
        weight.withUnsafeBufferPointer { fill(from: $0.baseAddress!, strideN: k, strideK: 1, threads: threads) }
    }

    /// Packs W `[n, k]` row-major given as bfloat16 bits (a bf16 checkpoint's tensor) into a
    /// `.bf16` weight, copying the bits as they are.
    public convenience init(bf16Weight weight: UnsafePointer<UInt16>, n: Int, k: Int, threads: Int = 1) {
        self.init(n: n, k: k, format: .bf16)
        let src = SendablePointer(weight), dst = SendablePointer(bf16Data)
        Parallel.forEachChunk(count: panels, threads: threads) { range in
            packPanels(src.pointer, n: n, k: k, strideN: k, strideK: 1, panels: range, into: dst.pointer) { $0 }
        }
    }

    /// A quantized weight filled group by group by the caller (repacking another format's
    /// values exactly, e.g. a GGUF file's blocks): `rows(r, set)` calls `set(group, S, M, u)` for
    /// every group of row r, u being the group's `format.group` values (unsigned), each meaning
    /// fma(u, S, M). With stored offsets they are kept as given. Without, M must be -c·S for an
    /// integer c (the caller's centre), and u - c + `format.centre` is stored: Q6_K's values come
    /// as q + 96 with c = 128 (int8's convention) and go into int6 panels as q. Rows past n are
    /// zero.
    public convenience init(
        n: Int, k: Int, format: Format, rows: (Int, (Int, Float, Float, UnsafePointer<UInt8>) -> Void) -> Void
    ) {
        precondition(format.isQuantized, "PackedWeight: groups of a \(format) weight")
        self.init(n: n, k: k, format: format)
        let g = format.group!, bytes = format.groupBytes, groups = k / g
        let total = Self.bytes(n: n, k: k, format: format)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: total)
        let header = format.offsets ? 128 : 64, top = (1 << format.bits) - 1
        for r in 0..<n {
            let p = r / Self.panelWidth, j = r % Self.panelWidth
            rows(r) { gi, scale, offset, u in
                precondition(gi >= 0 && gi < groups, "PackedWeight: group \(gi) of \(groups)")
                let group = self.storage + (p * groups + gi) * bytes
                group.storeBytes(of: scale, toByteOffset: 4 * j, as: Float.self)
                if format.offsets { group.storeBytes(of: offset, toByteOffset: 64 + 4 * j, as: Float.self) }
                // The caller's centre, where S says it. With S = 0 or not finite any stored
                // value gives the same weights (0, or NaN), so those are clamped to fit.
                var shift = 0, known = true
                if !format.offsets && scale.isFinite && scale != 0 {
                    let c = (-offset / scale).rounded()
                    precondition(c * -scale == offset && abs(c) <= 256, "PackedWeight: M = \(offset) is not an integer multiple of -S = \(-scale)")
                    shift = format.centre - Int(c)
                } else if !format.offsets {
                    known = false
                }
                for s in 0..<g {
                    let v = known ? Int(u[s]) + shift : min(Int(u[s]), top)
                    precondition(v >= 0 && v <= top, "PackedWeight: value \(u[s]) (centre shifted by \(shift)) does not fit \(format)")
                    storeQuantizedValue(UInt8(v), group + header, format: format, step: s, column: j)
                }
            }
        }
    }

    /// Allocates the packed storage (uninitialised until `fill`).
    init(n: Int, k: Int, format: Format = .f32) {
        precondition(n > 0 && k > 0, "PackedWeight: empty shape [\(n), \(k)]")
        precondition(format.fits(k: k), "PackedWeight: \(format) does not fit k = \(k)")
        self.n = n
        self.k = k
        self.format = format
        panels = (n + Self.panelWidth - 1) / Self.panelWidth
        storage = Self.allocateStreamed(bytes: Self.bytes(n: n, k: k, format: format))
        ownsData = true
    }

    /// Storage the kernels stream from (`StreamedMemory`: 64-byte aligned, in huge pages).
    static func allocateStreamed(bytes: Int) -> UnsafeMutableRawPointer { StreamedMemory.allocate(bytes: bytes) }

    /// A packed matrix in storage the caller owns (`bytes(n:k:format:)` bytes, kept alive as
    /// long as this object is used), filled by `repack`: for weights packed per call into a
    /// scratch buffer rather than once at load time.
    public init(n: Int, k: Int, storage: UnsafeMutableRawPointer, format: Format = .f32) {
        precondition(n > 0 && k > 0, "PackedWeight: empty shape [\(n), \(k)]")
        self.n = n
        self.k = k
        self.format = format
        panels = (n + Self.panelWidth - 1) / Self.panelWidth
        let count = panels * k * Self.panelWidth
        switch format {
        case .f32: storage.bindMemory(to: Float.self, capacity: count)
        case .bf16, .f16: storage.bindMemory(to: UInt16.self, capacity: count)
        case .int8, .int4, .int6, .int5: precondition(format.fits(k: k), "PackedWeight: \(format) does not fit k = \(k)")
        }
        self.storage = storage
        ownsData = false
    }

    /// Bytes of packed storage for W `[n, k]` in `format`.
    public static func bytes(n: Int, k: Int, format: Format = .f32) -> Int {
        let panels = (n + panelWidth - 1) / panelWidth
        if let g = format.group { return panels * (k / g) * format.groupBytes }
        return panels * panelWidth * k * format.bits / 8
    }

    /// Packs W `[n, k]` row-major (this object's shape) into this object's storage, replacing
    /// what it held (rounded to bfloat16 for a `.bf16` weight). `threads` > 1 packs panels
    /// concurrently.
    public func repack(from weight: UnsafePointer<Float>, threads: Int = 1) {
        fill(from: weight, strideN: k, strideK: 1, threads: threads)
    }

    /// Packs any strided matrix: element (n, k) is `source[n*strideN + k*strideK]` (rounded to
    /// bfloat16 for a `.bf16` weight).
    func fill(from source: UnsafePointer<Float>, strideN: Int, strideK: Int, threads: Int) {
        let src = SendablePointer(source)
        let n = n, k = k
        switch format {
        case .f32:
            let dst = SendablePointer(data)
            Parallel.forEachChunk(count: panels, threads: threads) { range in
                packPanels(
                    src.pointer, n: n, k: k, strideN: strideN, strideK: strideK,
                    panels: range, into: dst.pointer)
            }
        case .bf16:
            // (bf16 and f16 each name their conversion, so the generic packing loop is
            // specialised on it instead of calling a function value per element.)
            let dst = SendablePointer(bf16Data)
            Parallel.forEachChunk(count: panels, threads: threads) { range in
                packPanels(
                    src.pointer, n: n, k: k, strideN: strideN, strideK: strideK,
                    panels: range, into: dst.pointer, convert: bfloat16Bits)
            }
        case .f16:
            let dst = SendablePointer(bf16Data)
            Parallel.forEachChunk(count: panels, threads: threads) { range in
                packPanels(
                    src.pointer, n: n, k: k, strideN: strideN, strideK: strideK,
                    panels: range, into: dst.pointer, convert: float16Bits)
            }
        case .int8, .int4, .int6, .int5:
            let dst = SendablePointer(quantizedData.assumingMemoryBound(to: UInt8.self)), format = format
            Parallel.forEachChunk(count: panels, threads: threads) { range in
                quantizePanels(
                    src.pointer, n: n, k: k, strideN: strideN, strideK: strideK, format: format, panels: range,
                    into: UnsafeMutableRawPointer(dst.pointer))
            }
        }
    }

    deinit { if ownsData { StreamedMemory.free(storage, bytes: byteCount) } }

    /// Bytes of packed storage (the weight bytes a full GEMM streams).
    public var byteCount: Int { Self.bytes(n: n, k: k, format: format) }

    /// The weight back as `[n, k]` row-major (for tests and debugging).
    public func unpacked() -> [Float] {
        var w = [Float](repeating: 0, count: n * k)
        if format.isQuantized {
            let g = format.group!
            withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.panelWidth * g) { block in
                for p in 0..<panels {
                    for b in 0..<(k / g) {
                        dequantizeGroup(quantizedData + (p * (k / g) + b) * format.groupBytes, format: format, into: block.baseAddress!)
                        for kk in 0..<g {
                            for j in 0..<Self.panelWidth where p * Self.panelWidth + j < n {
                                w[(p * Self.panelWidth + j) * k + b * g + kk] = block[kk * Self.panelWidth + j]
                            }
                        }
                    }
                }
            }
            return w
        }
        for p in 0..<panels {
            for kk in 0..<k {
                for j in 0..<Self.panelWidth where p * Self.panelWidth + j < n {
                    let i = (p * k + kk) * Self.panelWidth + j
                    w[(p * Self.panelWidth + j) * k + kk] =
                        format == .f32 ? data[i] : format == .f16 ? floatFromFloat16(bf16Data[i]) : floatFromBfloat16(bf16Data[i])
                }
            }
        }
        return w
    }
}

extension Kernels {
    /// Rounds `count` floats in place to the nearest bfloat16 (ties to even), the values a
    /// `.bf16` `PackedWeight` packed from them holds.
    public static func roundToBfloat16(_ p: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { p[i] = floatFromBfloat16(bfloat16Bits(p[i])) }
    }
}

/// Float → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
@inline(__always)
func bfloat16Bits(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    if f.isNaN { return UInt16(x >> 16) | 0x0040 } // quiet, so truncation cannot make it infinity
    return UInt16((x &+ 0x7FFF &+ ((x >> 16) & 1)) >> 16)
}

/// Float → IEEE binary16 bits, round to nearest even (overflow to infinity, NaN stays NaN).
@inline(__always)
func float16Bits(_ f: Float) -> UInt16 { Float16(f).bitPattern }

/// binary16 bits → Float (exact).
@inline(__always)
func floatFromFloat16(_ b: UInt16) -> Float { Float(Float16(bitPattern: b)) }

/// bfloat16 bits → Float (exact).
@inline(__always)
func floatFromBfloat16(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// Writes the given panels of the strided matrix into the packed layout (see `PackedWeight`).
func packPanels(
    _ src: UnsafePointer<Float>, n: Int, k: Int, strideN: Int, strideK: Int,
    panels: Range<Int>, into dst: UnsafeMutablePointer<Float>
) {
    packPanels(src, n: n, k: k, strideN: strideN, strideK: strideK, panels: panels, into: dst) { $0 }
}

/// `packPanels` storing `convert(element)`, and zero for columns past n.
@inline(__always)
func packPanels<S, D: Numeric>(
    _ src: UnsafePointer<S>, n: Int, k: Int, strideN: Int, strideK: Int,
    panels: Range<Int>, into dst: UnsafeMutablePointer<D>, convert: (S) -> D
) {
    let w = PackedWeight.panelWidth
    for p in panels {
        let out = dst + p * k * w
        let cols = min(w, n - p * w)
        if strideK == 1 {
            // Rows of W are contiguous: walk k in blocks so the 16 source rows stay in cache.
            var k0 = 0
            while k0 < k {
                let kEnd = min(k, k0 + 64)
                for j in 0..<w {
                    if j < cols {
                        let row = src + (p * w + j) * strideN
                        for kk in k0..<kEnd { out[kk * w + j] = convert(row[kk]) }
                    } else {
                        for kk in k0..<kEnd { out[kk * w + j] = 0 }
                    }
                }
                k0 = kEnd
            }
        } else {
            for kk in 0..<k {
                for j in 0..<w {
                    out[kk * w + j] = j < cols ? convert(src[(p * w + j) * strideN + kk * strideK]) : 0
                }
            }
        }
    }
}
