// The expert epilogue (MoEKernels' `ExpertEpilogue`) for AVX2 + FMA: an interpreter of the
// program's flat encoding over vectors of 8 features.
//
// A chunk is up to 8 vectors of 8 features, taken row after row (a row's last vector may be
// partial), so a 16-feature strip of 4 rows is one chunk. The inputs (bias added) go to slots 0
// and 1; each instruction then runs over the whole chunk before the next one, so its `switch` is
// paid once per 64 features; the result slot is stored back. Registers live in the caller's
// scratch (`vectors` × 8 floats apart); constants are read as vectors with stride 0.

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
/// MoEKernels for `code`, `constants`, `slots`, `result`): `out[r, j] = program(a[r, j] +
/// biasA[j], b[r, j] + biasB[j])`. `scratch` holds at least `8 · slots` floats. `out` may be `a`
/// (same row stride).
@inline(never)
public func avx2ExpertEpilogue(
    code: UnsafePointer<Int32>, instructions: Int, constants: UnsafePointer<Float>, inputs: Int,
    slots: Int, result: Int, scratch: UnsafeMutablePointer<Float>, scratchCount: Int,
    rows: Int, count: Int,
    _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
    _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
    _ out: UnsafeMutablePointer<Float>, ldo: Int
) {
    guard rows > 0, count > 0 else { return }
    let vectors = min(8, scratchCount / (8 * slots))
    let stride = 8 * vectors
    let perRow = (count + 7) / 8
    let second = inputs == 2 ? b : nil
    var r = 0, v = 0 // the next vector: row r, features 8v..<8v+8
    while r < rows {
        let (r0, v0) = (r, v)
        var n = 0
        while n < vectors && r < rows {
            let j = 8 * v, len = min(8, count - j)
            var x = loadPart(a + r * lda + j, len)
            if let biasA { x += loadPart(biasA + j, len) }
            store8(x, scratch + 8 * n)
            if let second {
                var y = loadPart(second + r * ldb + j, len)
                if let biasB { y += loadPart(biasB + j, len) }
                store8(y, scratch + stride + 8 * n)
            }
            n += 1
            v += 1
            if v == perRow { (r, v) = (r + 1, 0) }
        }
        run(code, instructions, constants, scratch, stride: stride, vectors: n)
        let res = scratch + result * stride
        (r, v) = (r0, v0)
        for s in 0..<n {
            let j = 8 * v
            storePart(load8(res + 8 * s), out + r * ldo + j, min(8, count - j))
            v += 1
            if v == perRow { (r, v) = (r + 1, 0) }
        }
    }
}

/// Runs every instruction over vectors 0..<n of the registers.
@inline(__always)
private func run(
    _ code: UnsafePointer<Int32>, _ instructions: Int, _ constants: UnsafePointer<Float>,
    _ scratch: UnsafeMutablePointer<Float>, stride: Int, vectors n: Int
) {
    @inline(__always) func operand(_ o: Int32) -> (UnsafePointer<Float>, Int) {
        o >= 0 ? (UnsafePointer(scratch + Int(o) * stride), 8) : (constants + Int(-1 - o) * 8, 0)
    }
    for i in 0..<instructions {
        let c = code + 4 * i
        let d = scratch + Int(c[1]) * stride
        let (x, sx) = operand(c[2]), (y, sy) = operand(c[3])
        @inline(__always) func unary(_ f: (V8) -> V8) {
            for s in 0..<n { store8(f(load8(x + s * sx)), d + 8 * s) }
        }
        @inline(__always) func binary(_ f: (V8, V8) -> V8) {
            for s in 0..<n { store8(f(load8(x + s * sx), load8(y + s * sy)), d + 8 * s) }
        }
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
        case 12: binary { $0.replacing(with: $1, where: $1 .< $0) } // Swift.min
        case 13: binary { $0.replacing(with: $1, where: $1 .>= $0) } // Swift.max
        default: preconditionFailure("bad expert epilogue opcode \(c[0])")
        }
    }
}
