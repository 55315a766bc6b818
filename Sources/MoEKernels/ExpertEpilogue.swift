import Foundation
import MoEKernelsAVX2

/// An element-wise program over the first layer's outputs of an expert, run in the expert GEMM's
/// epilogue: what an expert written as an expression (`expert(h) { … }`) does between its first
/// projection(s) and its down projection, beyond plain SwiGLU (gpt-oss: biases, clamps, a scaled
/// sigmoid, `up + 1`).
///
/// Registers hold one value per feature. Register 0 is the first input (the gate projection of a
/// gated expert, the only projection of an MLP), register 1 the second (the up projection), each
/// with its bias already added; instruction i writes register `inputs + i`, and the last
/// instruction's register is the result. Operands are registers or constants.
public struct ExpertEpilogue: Sendable, Hashable {
    public enum Unary: String, Sendable, Hashable, CaseIterable {
        case silu, gelu, gelu_tanh, relu, sigmoid, tanh, exp, neg
    }
    public enum Binary: String, Sendable, Hashable, CaseIterable {
        case add, sub, mul, div, min, max
    }
    public enum Operand: Sendable, Hashable {
        case register(Int)
        case constant(Float)
    }
    public enum Instruction: Sendable, Hashable {
        case unary(Unary, Operand)
        case binary(Binary, Operand, Operand)
    }

    /// 1 (an MLP's projection) or 2 (gate, up).
    public let inputs: Int
    public let instructions: [Instruction]

    /// Registers the program uses: inputs, then one per instruction.
    public var registers: Int { inputs + instructions.count }

    /// The program as the kernels read it, built once here so that running it allocates nothing.
    let encoding: Encoding

    /// A program whose instructions read only registers written before them; nil otherwise.
    public init?(inputs: Int, instructions: [Instruction]) {
        guard (1...2).contains(inputs), !instructions.isEmpty else { return nil }
        for (i, ins) in instructions.enumerated() {
            let operands: [Operand]
            switch ins {
            case .unary(_, let a): operands = [a]
            case .binary(_, let a, let b): operands = [a, b]
            }
            for case .register(let r) in operands where r < 0 || r >= inputs + i { return nil }
        }
        self.inputs = inputs
        self.instructions = instructions
        self.encoding = Encoding(inputs: inputs, instructions: instructions)
    }

    public static func == (x: ExpertEpilogue, y: ExpertEpilogue) -> Bool {
        x.inputs == y.inputs && x.instructions == y.instructions
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(inputs)
        hasher.combine(instructions)
    }

    /// SwiGLU as a program: `silu(gate) · up`.
    public static let swiglu = ExpertEpilogue(
        inputs: 2, instructions: [.unary(.silu, .register(0)), .binary(.mul, .register(2), .register(1))])!

    /// The program on one feature, in Double: the reference the kernels are tested against.
    public func evaluate(_ inputs: [Double]) -> Double {
        var regs = inputs
        func value(_ o: Operand) -> Double {
            switch o {
            case .register(let r): return regs[r]
            case .constant(let c): return Double(c)
            }
        }
        for ins in instructions {
            switch ins {
            case .unary(let op, let a): regs.append(Self.apply(op, value(a)))
            case .binary(let op, let a, let b): regs.append(Self.apply(op, value(a), value(b)))
            }
        }
        return regs[regs.count - 1]
    }

    public static func apply(_ op: Unary, _ x: Double) -> Double {
        switch op {
        case .silu: return x / (1 + Foundation.exp(-x))
        case .gelu: return 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot()))
        case .gelu_tanh: return 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case .relu: return x > 0 ? x : 0
        case .sigmoid: return 1 / (1 + Foundation.exp(-x))
        case .tanh: return Foundation.tanh(x)
        case .exp: return Foundation.exp(x)
        case .neg: return -x
        }
    }

    public static func apply(_ op: Binary, _ a: Double, _ b: Double) -> Double {
        switch op {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .min: return Swift.min(a, b)
        case .max: return Swift.max(a, b)
        }
    }
}

extension ExpertEpilogue {
    /// The program in the flat form both kernel sets interpret (`MoEKernelsAVX2` cannot see the
    /// enums above):
    /// - `code`: 5 `Int32` per instruction: opcode, destination slot, then operands x, y, z
    ///   (unused ones repeat x). Opcodes: `Unary` silu 0, gelu 1, gelu_tanh 2, relu 3, sigmoid 4,
    ///   tanh 5, exp 6, neg 7 (of x); `Binary` add 8, sub 9, mul 10, div 11, min 12, max 13 (of x,
    ///   y); and fused forms of common sequences: 14 max(min(x, y), z), 15 min(max(x, y), z) (a
    ///   clamp), 16 x·sigmoid(y·x) (gpt-oss's GLU, SiLU with a scale), 17 (x + y)·z, 18 (x − y)·z,
    ///   19 silu(x)·y (SwiGLU).
    ///   An operand ≥ 0 is a slot; −1−k is constant k.
    /// - `constants`: constant k repeated 8 times at `8k`, so a vector kernel reads it as a vector
    ///   with stride 0.
    /// - Slots are registers after allocation: the inputs in slots 0 and 1, and a register's slot is
    ///   reused once its last reader has run, so `slots` is the most values live at once (+ inputs)
    ///   and not the program's length. `result` is the last instruction's slot.
    ///
    /// Each instruction costs the kernels a store and a reload of every value, so sequences whose
    /// intermediate results have no other reader run as one fused instruction (gpt-oss's eight
    /// instructions run as four, SwiGLU's two as one). A fused form computes the same roundings in
    /// the same order; it may differ from the instructions only in the sign of a zero from min/max
    /// of ±0 (min and max are taken as commutative) and in which NaN comes out.
    struct Encoding: Sendable {
        var code: [Int32] = []
        var constants: [Float] = []
        var slots: Int
        var result: Int32 = 0
        /// Vectors of 8 per register in a chunk: up to 16 within `scratchFloats` (or 1).
        var vectorsPerChunk = 1

        /// 256 floats (1 KiB) is what `withUnsafeTemporaryAllocation` puts on the stack without
        /// asking the runtime whether more fits (which costs ~30 ns a call).
        static let scratchFloats = 256

        static let wordsPerInstruction = 5

        init(inputs: Int, instructions: [Instruction]) {
            func operands(_ ins: Instruction) -> [Operand] {
                switch ins {
                case .unary(_, let a): return [a]
                case .binary(_, let a, let b): return [a, b]
                }
            }
            // 1. Fusion: which instructions run as part of a later one (`absorbed`), and the
            //    fused forms, by the index of the instruction that completes them.
            let n = instructions.count
            var readers = [Int](repeating: 0, count: inputs + n)
            for ins in instructions {
                for case .register(let r) in Set(operands(ins)) { readers[r] += 1 }
            }
            var absorbed = [Bool](repeating: false, count: n)
            var fused: [Int: (opcode: Int32, operands: [Operand])] = [:]
            // The instruction computing `o` when its only reader is the one being fused into.
            func inner(_ o: Operand) -> Instruction? {
                guard case .register(let r) = o, r >= inputs, readers[r] == 1, !absorbed[r - inputs], fused[r - inputs] == nil else { return nil }
                return instructions[r - inputs]
            }
            func absorb(_ o: Operand) { if case .register(let r) = o { absorbed[r - inputs] = true } }
            for (i, ins) in instructions.enumerated() {
                guard case .binary(let op, let p, let q) = ins else { continue }
                for (a, other) in [(p, q), (q, p)] where a != other {
                    switch (op, inner(a)) {
                    case (.max, .binary(.min, let x, let y)?), (.min, .binary(.max, let x, let y)?):
                        fused[i] = (op == .max ? 14 : 15, [x, y, other])
                        absorb(a)
                    case (.mul, .unary(.sigmoid, let t)?):
                        guard case .binary(.mul, let t1, let t2)? = inner(t), t1 == other || t2 == other else { continue }
                        fused[i] = (16, [other, t2 == other ? t1 : t2])
                        absorb(a)
                        absorb(t)
                    case (.mul, .unary(.silu, let x)?):
                        fused[i] = (19, [x, other])
                        absorb(a)
                    case (.mul, .binary(.add, let x, let y)?), (.mul, .binary(.sub, let x, let y)?):
                        guard case .binary(let sum, _, _)? = inner(a) else { continue }
                        fused[i] = (sum == .add ? 17 : 18, [x, y, other])
                        absorb(a)
                    default: continue
                    }
                    break
                }
            }
            var program: [(value: Int, opcode: Int32, operands: [Operand])] = []
            for (i, ins) in instructions.enumerated() where !absorbed[i] {
                if let f = fused[i] {
                    program.append((inputs + i, f.opcode, f.operands))
                } else {
                    switch ins {
                    case .unary(let op, let a): program.append((inputs + i, Self.opcode(op), [a]))
                    case .binary(let op, let a, let b): program.append((inputs + i, Self.opcode(op), [a, b]))
                    }
                }
            }
            // 2. Registers to slots, by liveness over the fused program.
            let values = inputs + n
            var lastRead = [Int](repeating: -1, count: values)
            for (i, ins) in program.enumerated() {
                for case .register(let r) in ins.operands { lastRead[r] = i }
            }
            var slotOf = Array(0..<values)
            slots = inputs
            var free = (0..<inputs).filter { lastRead[$0] < 0 }
            var constantIndex: [UInt32: Int32] = [:]
            func encode(_ o: Operand) -> Int32 {
                switch o {
                case .register(let r): return Int32(slotOf[r])
                case .constant(let c):
                    if let k = constantIndex[c.bitPattern] { return -1 - k }
                    let k = Int32(constantIndex.count)
                    constantIndex[c.bitPattern] = k
                    constants += [Float](repeating: c, count: 8)
                    return -1 - k
                }
            }
            for (i, ins) in program.enumerated() {
                let encoded = ins.operands.map(encode)
                // Operands read for the last time free their slots before the destination is
                // chosen: the kernels read element k of every operand before writing element k.
                for case .register(let r) in Set(ins.operands) where lastRead[r] == i { free.append(slotOf[r]) }
                let dst: Int
                if let k = free.min() {
                    free.remove(at: free.firstIndex(of: k)!)
                    dst = k
                } else {
                    dst = slots
                    slots += 1
                }
                slotOf[ins.value] = dst
                if lastRead[ins.value] < 0 && i != program.count - 1 { free.append(dst) }
                code += [ins.opcode, Int32(dst)] + (0..<3).map { encoded[$0 < encoded.count ? $0 : 0] }
            }
            result = Int32(slotOf[values - 1])
            vectorsPerChunk = slots <= Self.scratchFloats / 8 ? min(16, Self.scratchFloats / (8 * slots)) : 1
        }

        static func opcode(_ op: Unary) -> Int32 {
            switch op {
            case .silu: return 0
            case .gelu: return 1
            case .gelu_tanh: return 2
            case .relu: return 3
            case .sigmoid: return 4
            case .tanh: return 5
            case .exp: return 6
            case .neg: return 7
            }
        }

        static func opcode(_ op: Binary) -> Int32 {
            switch op {
            case .add: return 8
            case .sub: return 9
            case .mul: return 10
            case .div: return 11
            case .min: return 12
            case .max: return 13
            }
        }
    }
}

extension Kernels {
    /// Runs `program` on `rows` rows of `count` features:
    /// `out[r, j] = program(a[r, j] + biasA[j], b[r, j] + biasB[j])` (no `b` for a one-input
    /// program; a nil bias adds nothing). `out` may be `a` (in place, same row stride).
    /// Allocation-free for any program with at most 32 values live at once (its registers live on
    /// the stack, at most 1 KiB).
    public static func expertEpilogue(
        _ program: ExpertEpilogue, rows: Int, count: Int,
        _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
        _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
        _ out: UnsafeMutablePointer<Float>, ldo: Int, isa: ISA = .best
    ) {
        precondition(program.inputs == 1 || b != nil, "a two-input epilogue needs b")
        guard rows > 0, count > 0 else { return }
        let e = program.encoding, words = ExpertEpilogue.Encoding.wordsPerInstruction
        let capacity = Swift.max(ExpertEpilogue.Encoding.scratchFloats, 8 * e.slots)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: capacity) { scratch in
            e.code.withUnsafeBufferPointer { code in
                e.constants.withUnsafeBufferPointer { constants in
                    let s = scratch.baseAddress!
                    let c = constants.baseAddress ?? UnsafePointer(s) // never read without constants
                    if isa.runsAVX2 {
                        avx2ExpertEpilogue(
                            code: code.baseAddress!, instructions: code.count / words, constants: c, inputs: program.inputs,
                            slots: e.slots, result: Int(e.result), scratch: s, vectors: e.vectorsPerChunk,
                            rows: rows, count: count, a, lda: lda, biasA: biasA, b, ldb: ldb, biasB: biasB, out, ldo: ldo)
                    } else {
                        let encoded = EncodedEpilogue(
                            code: code.baseAddress!, instructions: code.count / words, constants: c,
                            inputs: program.inputs, slots: e.slots, result: Int(e.result), scratch: s, width: 8 * e.vectorsPerChunk)
                        portableExpertEpilogue(encoded, rows: rows, count: count, a, lda: lda, biasA: biasA, b, ldb: ldb, biasB: biasB, out, ldo: ldo)
                    }
                }
            }
        }
    }
}

/// An `ExpertEpilogue.Encoding` as pointers, with the register scratch.
private struct EncodedEpilogue {
    let code: UnsafePointer<Int32>
    let instructions: Int
    let constants: UnsafePointer<Float>
    let inputs: Int
    let slots: Int
    let result: Int
    let scratch: UnsafeMutablePointer<Float>
    /// Floats per register.
    let width: Int
}

/// Scalar Float, a row's features in chunks of up to 128: each instruction runs over the whole
/// chunk before the next one, so its `switch` is paid once per chunk and not per element.
private func portableExpertEpilogue(
    _ p: EncodedEpilogue, rows: Int, count: Int,
    _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
    _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
    _ out: UnsafeMutablePointer<Float>, ldo: Int
) {
    let width = p.width
    let regs = p.scratch
    @inline(__always) func load(_ x: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        if let bias { for k in 0..<n { dst[k] = x[k] + bias[k] } } else { for k in 0..<n { dst[k] = x[k] } }
    }
    for r in 0..<rows {
        var j = 0
        while j < count {
            let n = min(width, count - j)
            load(a + r * lda + j, biasA.map { $0 + j }, regs, n)
            if p.inputs == 2, let b { load(b + r * ldb + j, biasB.map { $0 + j }, regs + width, n) }
            runPortable(p, width: width, n)
            let res = regs + p.result * width, o = out + r * ldo + j
            for k in 0..<n { o[k] = res[k] }
            j += n
        }
    }
}

/// Runs every instruction over elements 0..<n of the registers (`width` floats apart).
private func runPortable(_ p: EncodedEpilogue, width: Int, _ n: Int) {
    @inline(__always) func operand(_ o: Int32) -> (UnsafePointer<Float>, Int) {
        o >= 0 ? (UnsafePointer(p.scratch + Int(o) * width), 1) : (p.constants + Int(-1 - o) * 8, 0)
    }
    for i in 0..<p.instructions {
        let c = p.code + ExpertEpilogue.Encoding.wordsPerInstruction * i
        let d = p.scratch + Int(c[1]) * width
        let (x, sx) = operand(c[2]), (y, sy) = operand(c[3]), (z, sz) = operand(c[4])
        @inline(__always) func unary(_ f: (Float) -> Float) { for k in 0..<n { d[k] = f(x[k * sx]) } }
        @inline(__always) func binary(_ f: (Float, Float) -> Float) { for k in 0..<n { d[k] = f(x[k * sx], y[k * sy]) } }
        @inline(__always) func ternary(_ f: (Float, Float, Float) -> Float) { for k in 0..<n { d[k] = f(x[k * sx], y[k * sy], z[k * sz]) } }
        switch c[0] {
        case 0: unary { $0 * sigmoid($0) }
        case 1: unary { 0.5 * $0 * Foundation_erfc($0 * -0.707_106_781_186_547_5) }
        case 2: unary { $0 / (1 + Foundation_exp(-2 * 0.797_884_560_802_865_4 * $0.addingProduct(0.044_715 * $0, $0 * $0))) }
        case 3: unary { $0 > 0 ? $0 : 0 }
        case 4: unary { sigmoid($0) }
        case 5: unary { Foundation.tanh($0) }
        case 6: unary { Foundation_exp($0) }
        case 7: unary { -$0 }
        case 8: binary { $0 + $1 }
        case 9: binary { $0 - $1 }
        case 10: binary { $0 * $1 }
        case 11: binary { $0 / $1 }
        case 12: binary { Swift.min($0, $1) }
        case 13: binary { Swift.max($0, $1) }
        case 14: ternary { Swift.max(Swift.min($0, $1), $2) }
        case 15: ternary { Swift.min(Swift.max($0, $1), $2) }
        case 16: binary { $0 * sigmoid($1 * $0) }
        case 17: ternary { ($0 + $1) * $2 }
        case 18: ternary { ($0 - $1) * $2 }
        case 19: binary { ($0 * sigmoid($0)) * $1 }
        default: preconditionFailure("bad expert epilogue opcode \(c[0])")
        }
    }
}

/// 1 / (1 + e⁻ˣ), as `Kernels.sigmoid` computes it.
@inline(__always) private func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation_exp(-x)) }
