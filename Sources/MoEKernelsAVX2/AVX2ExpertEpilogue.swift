// The expert epilogue (MoEKernels' `ExpertEpilogue`) for AVX2 + FMA: an interpreter of the
// program's flat encoding over vectors of 8 features.
//
// A chunk is up to 16 vectors per register: whole rows when a row fits (a 16-feature strip of 6
// rows is one chunk of 12 vectors), else an equal piece of one row; a row's last vector may be
// partial. The inputs (bias added) go to slots 0 and 1; each instruction then runs over the whole
// chunk before the next one, so its `switch` is paid once per chunk; the result slot is stored
// back, or for a piece of one row the last instruction writes `out` itself. Registers live in the
// caller's scratch (`vectors` × 8 floats apart); constants are read as vectors with stride 0.

/// tanh(x): x + x·z·P(z) with z = x² for |x| < 0.625 (Cephes `tanhf`), else
/// ±(1 − 2/(e^(2|x|) + 1)), which is ±1 once e^(2|x|) overflows.
@inline(__always)
func vtanh(_ x: V8) -> V8 {
    let t = vabs(x)
    let e = vexp(t + t)
    let outer = splat(1) - splat(2) / (e + splat(1))
    let signed = float(bits(outer) | (bits(x) & I8(repeating: Int32(bitPattern: 0x8000_0000))))
    let z = x * x
    var p = splat(-5.704_988_727_45e-3)
    p = step(p, z, 2.063_908_879_54e-2)
    p = step(p, z, -5.373_971_555_31e-2)
    p = step(p, z, 1.333_144_220_36e-1)
    p = step(p, z, -3.333_328_194_22e-1)
    let inner = x.addingProduct(x * z, p)
    return signed.replacing(with: inner, where: t .< 0.625)
}

/// `len` ≤ 8 floats from `p`, zero-padded.
@inline(__always)
private func loadPart(_ p: UnsafePointer<Float>, _ len: Int) -> V8 {
    if len == 8 { return load8(p) }
    var v = V8()
    for k in 0..<len { v[k] = p[k] }
    return v
}

@inline(__always)
private func storePart(_ v: V8, _ p: UnsafeMutablePointer<Float>, _ len: Int) {
    if len == 8 { store8(v, p); return }
    for k in 0..<len { p[k] = v[k] }
}

/// Runs `rows` × `count` features through the encoded program (see `ExpertEpilogue.Encoding` in
/// MoEKernels for `code` (5 words per instruction), `constants`, `slots`, `result`):
/// `out[r, j] = program(a[r, j] + biasA[j], b[r, j] + biasB[j])`. A chunk has at most `vectors` (≤ 16) vectors per register and
/// `scratch` holds at least `8 · vectors · slots` floats. `out` may be `a` (same row stride).
@inline(never)
public func avx2ExpertEpilogue(
    code: UnsafePointer<Int32>, instructions: Int, constants: UnsafePointer<Float>, inputs: Int,
    slots: Int, result: Int, scratch: UnsafeMutablePointer<Float>, vectors most: Int,
    rows: Int, count: Int,
    _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
    _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
    _ out: UnsafeMutablePointer<Float>, ldo: Int
) {
    guard rows > 0, count > 0 else { return }
    // Chunks as long as the scratch allows (an instruction's result is read by the next one only
    // after the whole chunk, so longer chunks hide more latency) and of equal length (9 rows when
    // 4 fit run as 3 + 3 + 3, not 4 + 4 + 1).
    let perRow = (count + 7) / 8
    if rows * perRow <= most && count & 7 == 0 {
        oneChunk(
            code, instructions, constants, inputs: inputs, result: result, scratch: scratch, rows: rows, perRow: perRow,
            a, lda: lda, biasA: biasA, inputs == 2 ? b : nil, ldb: ldb, biasB: biasB, out, ldo: ldo)
        return
    }
    var rowsPerChunk = rows, piece = perRow
    if rows * perRow > most { // (no divisions on a strip that fits: they would cost as much as it)
        if perRow <= most {
            let chunks = (rows + most / perRow - 1) / (most / perRow)
            rowsPerChunk = (rows + chunks - 1) / chunks
        } else {
            let chunks = (perRow + most - 1) / most
            (rowsPerChunk, piece) = (1, (perRow + chunks - 1) / chunks)
        }
    }
    let stride = 8 * rowsPerChunk * piece
    let second = inputs == 2 ? b : nil
    let res = scratch + result * stride
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + rowsPerChunk)
        var v0 = 0
        while v0 < perRow {
            let v1 = min(perRow, v0 + piece)
            // Features 8·v0 ..< min(count, 8·v1) of rows r0 ..< r1.
            var n = 0
            for r in r0..<r1 {
                load(a + r * lda, biasA, into: scratch + 8 * n, v0, v1, count)
                if let second { load(second + r * ldb, biasB, into: scratch + stride + 8 * n, v0, v1, count) }
                n += v1 - v0
            }
            if r1 - r0 == 1 && 8 * v1 <= count {
                // One row piece of whole vectors: the last instruction writes `out` directly.
                run(code, instructions, constants, scratch, stride: stride, vectors: n, final: out + r0 * ldo + 8 * v0)
                v0 = v1
                continue
            }
            run(code, instructions, constants, scratch, stride: stride, vectors: n, final: nil)
            n = 0
            for r in r0..<r1 {
                let o = out + r * ldo
                for v in v0..<v1 {
                    let j = 8 * v
                    if j + 8 <= count { store8(load8(res + 8 * n), o + j) } else { storePart(load8(res + 8 * n), o + j, count - j) }
                    n += 1
                }
            }
            v0 = v1
        }
        r0 = r1
    }
}

/// The whole call as one chunk of whole vectors (the GEMM epilogue's strips: 16 features of a few
/// rows): the general path's bookkeeping costs about as much as such a strip's loads and stores,
/// so here they are plain loops (−15 ns on a 1 × 16 strip, −28 ns on 6 × 16).
@inline(__always)
private func oneChunk(
    _ code: UnsafePointer<Int32>, _ instructions: Int, _ constants: UnsafePointer<Float>, inputs: Int, result: Int,
    scratch: UnsafeMutablePointer<Float>, rows: Int, perRow: Int,
    _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
    _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
    _ out: UnsafeMutablePointer<Float>, ldo: Int
) {
    let stride = 8 * rows * perRow
    @inline(__always) func copy(_ x: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>) {
        var v = 0
        if let bias {
            while v < perRow {
                store8(load8(x + 8 * v) + load8(bias + 8 * v), dst + 8 * v)
                v += 1
            }
        } else {
            while v < perRow {
                store8(load8(x + 8 * v), dst + 8 * v)
                v += 1
            }
        }
    }
    var r = 0
    while r < rows {
        copy(a + r * lda, biasA, scratch + 8 * perRow * r)
        if let b { copy(b + r * ldb, biasB, scratch + stride + 8 * perRow * r) }
        r += 1
    }
    run(code, instructions, constants, scratch, stride: stride, vectors: rows * perRow, final: nil)
    let res = scratch + result * stride
    r = 0
    while r < rows {
        let o = out + r * ldo, x = res + 8 * perRow * r
        var v = 0
        while v < perRow {
            store8(load8(x + 8 * v), o + 8 * v)
            v += 1
        }
        r += 1
    }
}

/// Vectors v0 ..< v1 of a row `x` (+ `bias`) to `dst`; the vector past `count` zero-padded.
@inline(__always)
private func load(
    _ x: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, into dst: UnsafeMutablePointer<Float>, _ v0: Int, _ v1: Int, _ count: Int
) {
    let full = min(v1, count / 8)
    if let bias {
        for v in v0..<max(v0, full) { store8(load8(x + 8 * v) + load8(bias + 8 * v), dst + 8 * (v - v0)) }
    } else {
        for v in v0..<max(v0, full) { store8(load8(x + 8 * v), dst + 8 * (v - v0)) }
    }
    if full < v1 {
        let j = 8 * full, len = count - j
        var p = loadPart(x + j, len)
        if let bias { p += loadPart(bias + j, len) }
        store8(p, dst + 8 * (full - v0))
    }
}

/// Runs every instruction over vectors 0..<n of the registers; the last one writes to `final`
/// (8 floats apart) instead of its register when that is given.
@inline(__always)
private func run(
    _ code: UnsafePointer<Int32>, _ instructions: Int, _ constants: UnsafePointer<Float>,
    _ scratch: UnsafeMutablePointer<Float>, stride: Int, vectors n: Int, final: UnsafeMutablePointer<Float>?
) {
    @inline(__always) func operand(_ o: Int32) -> (UnsafePointer<Float>, Int) {
        o >= 0 ? (UnsafePointer(scratch + Int(o) * stride), 8) : (constants + Int(-1 - o) * 8, 0)
    }
    for i in 0..<instructions {
        let c = code + 5 * i
        // In place, `final` is `a`'s row: the last instruction reads element k of its operands (in
        // the scratch) before writing element k there.
        let d = i == instructions - 1 ? final ?? scratch + Int(c[1]) * stride : scratch + Int(c[1]) * stride
        let (x, sx) = operand(c[2]), (y, sy) = operand(c[3]), (z, sz) = operand(c[4])
        @inline(__always) func unary(_ f: (V8) -> V8) {
            for s in 0..<n { store8(f(load8(x + s * sx)), d + 8 * s) }
        }
        @inline(__always) func binary(_ f: (V8, V8) -> V8) {
            for s in 0..<n { store8(f(load8(x + s * sx), load8(y + s * sy)), d + 8 * s) }
        }
        @inline(__always) func ternary(_ f: (V8, V8, V8) -> V8) {
            for s in 0..<n { store8(f(load8(x + s * sx), load8(y + s * sy), load8(z + s * sz)), d + 8 * s) }
        }
        // Swift.min(a, b) is `b < a ? b : a`, Swift.max(a, b) is `b >= a ? b : a`.
        @inline(__always) func vmin(_ a: V8, _ b: V8) -> V8 { a.replacing(with: b, where: b .< a) }
        @inline(__always) func vmax(_ a: V8, _ b: V8) -> V8 { a.replacing(with: b, where: b .>= a) }
        switch c[0] {
        case 0: unary { $0 * vsigmoid($0) }
        case 1: unary { $0 * vphi($0) }
        case 2:
            unary { x in
                let u2 = splat(2 * 0.797_884_560_802_865_4) * x.addingProduct(splat(0.044_715), x * x * x)
                return x * vsigmoid(u2)
            }
        case 3: unary { $0.replacing(with: 0, where: $0 .< 0) }
        case 4: unary { vsigmoid($0) }
        case 5: unary { vtanh($0) }
        case 6: unary { vexp($0) }
        case 7: unary { -$0 }
        case 8: binary { $0 + $1 }
        case 9: binary { $0 - $1 }
        case 10: binary { $0 * $1 }
        case 11: binary { $0 / $1 }
        case 12: binary { vmin($0, $1) }
        case 13: binary { vmax($0, $1) }
        case 14: ternary { vmax(vmin($0, $1), $2) }
        case 15: ternary { vmin(vmax($0, $1), $2) }
        case 16: binary { $0 * vsigmoid($1 * $0) }
        case 17: ternary { ($0 + $1) * $2 }
        case 18: ternary { ($0 - $1) * $2 }
        case 19: binary { ($0 * vsigmoid($0)) * $1 } // as avx2SwiGLU
        default: preconditionFailure("bad expert epilogue opcode \(c[0])")
        }
    }
}
