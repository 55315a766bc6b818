import Foundation
import MoEBasics

/// How a GPTQ or AWQ checkpoint stores its 4-bit linear weights: `quantization_config` of its
/// config.json, as AutoGPTQ / GPTQModel / AutoAWQ and transformers' quantizers write it.
///
/// A quantized linear `X` (W `[out, in]`) has no `X.weight`, but:
/// - GPTQ (`quant_method` "gptq", `checkpoint_format` "gptq", i.e. v1): `X.qweight` int32
///   `[in/8, out]`, nibble i (bits 4i) of word `[r, o]` is input 8r + i; `X.qzeros` int32
///   `[in/g, out/8]`, nibble j of word `[gi, c]` is output 8c + j and holds its zero minus one
///   (AutoGPTQ's `pack`: `zeros -= 1`); `X.scales` fp16 `[in/g, out]`; `X.g_idx` int32 `[in]`,
///   the group of each input (i / g unless the checkpoint was quantized in act-order).
///   `gptq_v2` stores the zeros themselves.
/// - AWQ (`quant_method` "awq", `version` "gemm"): `X.qweight` int32 `[in, out/8]` and
///   `X.qzeros` int32 `[in/g, out/8]`, both along the outputs with nibble i holding output
///   8c + [0, 2, 4, 6, 1, 3, 5, 7][i] (AWQ_ORDER); `X.scales` fp16 `[in/g, out]`.
///
/// Either way W[o, i] = S·(q − z) with S = scales[i/g, o] and z the zero of (i/g, o).
public struct Int4Quantization: Sendable, Hashable {
    public enum Method: String, Sendable, Hashable {
        case gptq, awq
    }

    public let method: Method
    /// Inputs per scale and zero (32, 64 or 128: the groups moec's int4 panels hold).
    public let group: Int
    /// What to add to a stored zero (1 for GPTQ v1, which stores zero − 1).
    public let zeroBias: Int

    /// The group sizes moec's int4 formats have.
    public static let groups = [32, 64, 128]

    /// The quantization `config` (config.json, at `path`, whose bytes `text` are searched for the
    /// key an error names, to give its offset) declares, or nil when it declares none or another
    /// method than GPTQ and AWQ. A GPTQ or AWQ config moec cannot keep as int4 groups (bits other
    /// than 4, a group size other than 32, 64 or 128, another packing) is an error naming the key.
    public static func read(config: JSONObject, path: String, text: [UInt8] = []) throws(WeightFileError) -> Int4Quantization? {
        guard let q = config["quantization_config"]?.object, let name = q["quant_method"]?.string?.lowercased(),
            let method = Method(rawValue: name)
        else { return nil }
        func fail(_ key: String, _ message: String) -> WeightFileError {
            let at = offset(of: key, in: text)
            var place = ""
            if let at {
                let before = text[..<at]
                let line = before.filter { $0 == 10 }.count + 1
                let column = at - (before.lastIndex(of: 10).map { $0 + 1 } ?? 0) + 1
                place = " (line \(line), column \(column))"
            }
            return WeightFileError(path: path, byteOffset: at, message: "quantization_config.\(key)\(place) \(message)")
        }
        let bitsKey = q["bits"] != nil || method == .gptq ? "bits" : "w_bit"
        guard let bits = q[bitsKey]?.int else { throw fail(bitsKey, "is missing or not an integer") }
        guard bits == 4 else { throw fail(bitsKey, "is \(bits): moec reads \(method.rawValue.uppercased()) checkpoints of 4 bits") }
        let groupKey = q["group_size"] != nil || method == .gptq ? "group_size" : "q_group_size"
        guard let group = q[groupKey]?.int else { throw fail(groupKey, "is missing or not an integer") }
        guard groups.contains(group) else {
            throw fail(groupKey, "is \(group): moec keeps 4-bit weights in groups of 32, 64 or 128 inputs")
        }
        switch method {
        case .gptq:
            let formatKey = q["checkpoint_format"] != nil ? "checkpoint_format" : "format"
            let format = q[formatKey]?.string?.lowercased() ?? "gptq"
            guard format == "gptq" || format == "gptq_v2" else {
                throw fail(formatKey, "is '\(format)': moec reads the \"gptq\" (v1) and \"gptq_v2\" packings")
            }
            return Int4Quantization(method: .gptq, group: group, zeroBias: format == "gptq" ? 1 : 0)
        case .awq:
            let version = q["version"]?.string?.lowercased() ?? "gemm"
            guard version == "gemm" else { throw fail("version", "is '\(version)': moec reads AWQ's \"gemm\" packing") }
            if q["zero_point"]?.bool == false { throw fail("zero_point", "is false: moec reads AWQ checkpoints with zero points") }
            return Int4Quantization(method: .awq, group: group, zeroBias: 0)
        }
    }

    /// The byte offset of `"key"` in the text (the first after "quantization_config"), if found.
    private static func offset(of key: String, in text: [UInt8]) -> Int? {
        func find(_ needle: [UInt8], from start: Int) -> Int? {
            guard !needle.isEmpty, text.count >= needle.count, start <= text.count - needle.count else { return nil }
            return (start...(text.count - needle.count)).first { text[$0..<($0 + needle.count)].elementsEqual(needle) }
        }
        let section = find(Array("\"quantization_config\"".utf8), from: 0) ?? 0
        return find(Array("\"\(key)\"".utf8), from: section)
    }
}

/// moec's rows of 4-bit groups with zero points, the form a GPTQ or AWQ linear is read into
/// (`Checkpoint.copyInt4Rows`) and repacked from: row o of W `[out, in]` is `in / g` groups, each
/// an fp32 scale S, an fp32 offset M, then `g / 2` bytes of nibbles (value 2j in the low nibble
/// of byte j, 2j + 1 in the high one); each weight is exactly fma(u, S, M), u the nibble.
public enum Int4Rows {
    /// Bytes of one row of k values in groups of `group`.
    public static func rowBytes(k: Int, group: Int) -> Int { k / group * (8 + group / 2) }

    /// Calls `body(group index, S, M, u)` for each group of the row at `row`, u holding its
    /// `group` values.
    public static func forEachGroup(row: UnsafeRawPointer, k: Int, group: Int, _ body: (Int, Float, Float, UnsafePointer<UInt8>) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: group) { buffer in
            let u = buffer.baseAddress!
            for gi in 0..<(k / group) {
                let p = row + gi * (8 + group / 2)
                let s = p.loadUnaligned(as: Float.self), m = p.loadUnaligned(fromByteOffset: 4, as: Float.self)
                for j in 0..<(group / 2) {
                    let b = p.load(fromByteOffset: 8 + j, as: UInt8.self)
                    u[2 * j] = b & 15
                    u[2 * j + 1] = b >> 4
                }
                body(gi, s, m, UnsafePointer(u))
            }
        }
    }
}

/// One GPTQ or AWQ linear of a checkpoint: its tensors, checked against each other, and its
/// rows decoded into `Int4Rows`.
struct QuantizedLinear {
    let quantization: Int4Quantization
    /// W's shape: outputs and inputs.
    let out: Int, k: Int
    let qweight: TensorInfo, qzeros: TensorInfo, scales: TensorInfo
    /// The files holding them (shards of one checkpoint may split a linear's tensors).
    let qweightFile: SafetensorsFile, qzerosFile: SafetensorsFile, scalesFile: SafetensorsFile

    /// The tensors of linear `prefix` ("X." for "X.weight"), each in the file `file(name)` gives
    /// (nil: the checkpoint has no such tensor), checked: their dtypes and shapes agree, and a
    /// GPTQ `g_idx` puts input i in group i / g (an act-order checkpoint's does not: the error
    /// names the tensor and the byte offset of its first such entry).
    init(
        prefix: String, quantization q: Int4Quantization, file: (String) throws(WeightFileError) -> SafetensorsFile?
    ) throws(WeightFileError) {
        quantization = q
        func tensor(_ suffix: String) throws(WeightFileError) -> (TensorInfo, SafetensorsFile) {
            guard let f = try file(prefix + suffix), let t = f.tensors[prefix + suffix] else {
                let path = try file(prefix + "qweight")?.path ?? ""
                throw WeightFileError(
                    path: path, tensor: prefix + "qweight",
                    message: "a \(q.method.rawValue.uppercased()) linear needs '\(prefix + suffix)' as well, and the checkpoint has none")
            }
            return (t, f)
        }
        (qweight, qweightFile) = try tensor("qweight")
        (qzeros, qzerosFile) = try tensor("qzeros")
        (scales, scalesFile) = try tensor("scales")
        let g = q.group
        let files = [qweight.name: qweightFile.path, qzeros.name: qzerosFile.path, scales.name: scalesFile.path]
        func bad(_ t: TensorInfo, _ message: String) -> WeightFileError {
            WeightFileError(path: files[t.name] ?? "", tensor: t.name, byteOffset: t.byteRange.lowerBound, message: message)
        }
        for t in [qweight, qzeros] where t.dtype != .i32 && t.dtype != .u32 || t.shape.count != 2 {
            throw bad(t, "is \(t.dtype.rawValue) \(t.shape); packed 4-bit values are 2-d I32")
        }
        guard [.f16, .bf16, .f32].contains(scales.dtype), scales.shape.count == 2 else {
            throw bad(scales, "is \(scales.dtype.rawValue) \(scales.shape); scales are a 2-d F16, BF16 or F32 tensor")
        }
        switch q.method {
        case .gptq:
            out = qweight.shape[1]
            k = qweight.shape[0] * 8
        case .awq:
            out = qweight.shape[1] * 8
            k = qweight.shape[0]
        }
        let packing = q.method == .gptq ? "[in/8, out]" : "[in, out/8]"
        guard out % 8 == 0, k % g == 0, out > 0, k > 0 else {
            throw bad(qweight, "is \(qweight.shape) (\(packing)): \(k) inputs are not whole groups of \(g)")
        }
        guard scales.shape == [k / g, out] else {
            throw bad(scales, "has shape \(scales.shape), but '\(qweight.name)' \(qweight.shape) \(packing) with groups of \(g) needs \([k / g, out])")
        }
        guard qzeros.shape == [k / g, out / 8] else {
            throw bad(qzeros, "has shape \(qzeros.shape), but '\(qweight.name)' \(qweight.shape) \(packing) with groups of \(g) needs \([k / g, out / 8])")
        }
        if q.method == .gptq, let gIdxFile = try file(prefix + "g_idx"), let gIdx = gIdxFile.tensors[prefix + "g_idx"] {
            guard gIdx.dtype == .i32 || gIdx.dtype == .i64, gIdx.shape == [k] else {
                throw bad(gIdx, "is \(gIdx.dtype.rawValue) \(gIdx.shape); g_idx is an I32 tensor of the \(k) inputs")
            }
            let size = gIdx.dtype.size
            let first: (Int, Int)? = try? gIdxFile.withBytes(gIdx.name) { bytes -> (Int, Int)? in
                for i in 0..<k {
                    let v =
                        size == 4
                        ? Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                        : Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
                    if v != i / g { return (i, v) }
                }
                return nil
            }
            if let (i, v) = first {
                throw WeightFileError(
                    path: gIdxFile.path, tensor: gIdx.name, byteOffset: gIdx.byteRange.lowerBound + size * i,
                    message:
                        "g_idx[\(i)] is \(v), but in groups of \(g) input \(i) is in group \(i / g) (entry at byte \(gIdx.byteRange.lowerBound + size * i)): the checkpoint was quantized in act-order (desc_act), so its groups are not runs of \(g) inputs, which moec cannot keep as int4 groups"
                )
            }
        }
    }

    /// The description `Checkpoint.info` gives "X.weight".
    func info(name: String) -> TensorInfo {
        TensorInfo(name: name, dtype: .f32, shape: [out, k], dataOffsets: qweight.dataOffsets, byteRange: qweight.byteRange, int4Group: quantization.group)
    }

    /// Rows `rows` of W as `Int4Rows` (`Int4Rows.rowBytes(k:group:)` bytes each) at `destination`.
    func copyRows(_ rows: Range<Int>, into destination: UnsafeMutableRawPointer) throws(WeightFileError) {
        let g = quantization.group, rowBytes = Int4Rows.rowBytes(k: k, group: g), groups = k / g
        let method = quantization.method, bias = quantization.zeroBias, out = self.out
        let scaleType = scales.dtype
        do {
            try qweightFile.withBytes(qweight.name) { qw in
                try qzerosFile.withBytes(qzeros.name) { qz in
                    try scalesFile.withBytes(scales.name) { sc in
                        func word(_ p: UnsafeRawBufferPointer, _ index: Int) -> UInt32 {
                            UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self))
                        }
                        func scale(_ index: Int) -> Float {
                            switch scaleType {
                            case .f16: return HalfPrecision.halfToFloat(UInt16(littleEndian: sc.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
                            case .bf16: return HalfPrecision.bfloat16ToFloat(UInt16(littleEndian: sc.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
                            default: return Float(bitPattern: UInt32(littleEndian: sc.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
                            }
                        }
                        // Where output o's nibble sits in a word packed along the outputs.
                        let awqShift: [UInt32] = [0, 16, 4, 20, 8, 24, 12, 28]
                        for (n, o) in rows.enumerated() {
                            let row = destination + n * rowBytes
                            let zeroShift = method == .gptq ? UInt32(4 * (o % 8)) : awqShift[o % 8]
                            for gi in 0..<groups {
                                let s = scale(gi * out + o)
                                let z = Int((word(qz, gi * (out / 8) + o / 8) >> zeroShift) & 15) + bias
                                let p = row + gi * (8 + g / 2)
                                p.storeBytes(of: s, as: Float.self)
                                p.storeBytes(of: -Float(z) * s, toByteOffset: 4, as: Float.self)
                                for j in 0..<(g / 2) {
                                    let i = gi * g + 2 * j
                                    let lo: UInt32, hi: UInt32
                                    if method == .gptq {
                                        let w = word(qw, (i / 8) * out + o)
                                        lo = (w >> UInt32(4 * (i % 8))) & 15
                                        hi = (w >> UInt32(4 * (i % 8 + 1))) & 15
                                    } else {
                                        lo = (word(qw, i * (out / 8) + o / 8) >> awqShift[o % 8]) & 15
                                        hi = (word(qw, (i + 1) * (out / 8) + o / 8) >> awqShift[o % 8]) & 15
                                    }
                                    p.storeBytes(of: UInt8(lo | hi << 4), toByteOffset: 8 + j, as: UInt8.self)
                                }
                            }
                        }
                    }
                }
            }
        } catch let e as WeightFileError {
            throw e
        } catch {
            throw WeightFileError(path: qweightFile.path, tensor: qweight.name, message: "\(error)")
        }
        // A whole linear read: its pages of the file are not needed again.
        if rows == 0..<out {
            qweightFile.releasePages(of: qweight.name)
            qzerosFile.releasePages(of: qzeros.name)
            scalesFile.releasePages(of: scales.name)
        }
    }

    /// Elements `elements` of W (row-major) dequantized: fma(u, S, M), as the int4 panels hold them.
    func copyFloats(_ elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws(WeightFileError) {
        guard elements.lowerBound >= 0, elements.upperBound <= out * k, buffer.count == elements.count else {
            throw WeightFileError(
                path: qweightFile.path, tensor: qweight.name, message: "elements \(elements) into \(buffer.count) floats, but the linear has \(out * k) ([\(out), \(k)])")
        }
        if elements.isEmpty { return }
        let g = quantization.group, rowBytes = Int4Rows.rowBytes(k: k, group: g)
        let rows = (elements.lowerBound / k)..<((elements.upperBound + k - 1) / k)
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: rowBytes, alignment: 16)
        defer { bytes.deallocate() }
        var values = [Float](repeating: 0, count: k)
        for r in rows {
            try copyRows(r..<(r + 1), into: bytes)
            Int4Rows.forEachGroup(row: bytes, k: k, group: g) { gi, s, m, u in
                for j in 0..<g { values[gi * g + j] = m.addingProduct(Float(u[j]), s) }
            }
            let lo = max(elements.lowerBound, r * k), hi = min(elements.upperBound, (r + 1) * k)
            for e in lo..<hi { buffer[e - elements.lowerBound] = values[e - r * k] }
        }
    }
}
