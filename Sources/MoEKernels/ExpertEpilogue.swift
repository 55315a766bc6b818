import Foundation

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

extension Kernels {
    /// Runs `program` on `rows` rows of `count` features:
    /// `out[r, j] = program(a[r, j] + biasA[j], b[r, j] + biasB[j])` (no `b` for a one-input
    /// program; a nil bias adds nothing). `out` may be `a` (in place). Allocation-free.
    public static func expertEpilogue(
        _ program: ExpertEpilogue, rows: Int, count: Int,
        _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
        _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
        _ out: UnsafeMutablePointer<Float>, ldo: Int, isa: ISA = .best
    ) {
        portableExpertEpilogue(program, rows: rows, count: count, a, lda: lda, biasA: biasA, b, ldb: ldb, biasB: biasB, out, ldo: ldo)
    }
}

/// One feature at a time, registers on the stack.
private func portableExpertEpilogue(
    _ program: ExpertEpilogue, rows: Int, count: Int,
    _ a: UnsafePointer<Float>, lda: Int, biasA: UnsafePointer<Float>?,
    _ b: UnsafePointer<Float>?, ldb: Int, biasB: UnsafePointer<Float>?,
    _ out: UnsafeMutablePointer<Float>, ldo: Int
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: program.registers) { regs in
        @inline(__always) func value(_ o: ExpertEpilogue.Operand) -> Float {
            switch o {
            case .register(let r): return regs[r]
            case .constant(let c): return c
            }
        }
        for r in 0..<rows {
            for j in 0..<count {
                regs[0] = a[r * lda + j] + (biasA?[j] ?? 0)
                if program.inputs == 2, let b { regs[1] = b[r * ldb + j] + (biasB?[j] ?? 0) }
                var k = program.inputs
                for ins in program.instructions {
                    switch ins {
                    case .unary(let op, let x): regs[k] = Float(ExpertEpilogue.apply(op, Double(value(x))))
                    case .binary(let op, let x, let y): regs[k] = Float(ExpertEpilogue.apply(op, Double(value(x)), Double(value(y))))
                    }
                    k += 1
                }
                out[r * ldo + j] = regs[k - 1]
            }
        }
    }
}
