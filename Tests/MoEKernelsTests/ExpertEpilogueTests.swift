import Foundation
import Testing

@testable import MoEKernels

/// gpt-oss's expert activation: gate = min(g, 7); up = clamp(u, −7, 7);
/// out = (up + 1) · gate · sigmoid(1.702 · gate).
private let gptOSS = ExpertEpilogue(
    inputs: 2,
    instructions: [
        .binary(.min, .register(0), .constant(7)), // 2: gate
        .binary(.min, .register(1), .constant(7)), // 3
        .binary(.max, .register(3), .constant(-7)), // 4: up
        .binary(.mul, .constant(1.702), .register(2)), // 5
        .unary(.sigmoid, .register(5)), // 6
        .binary(.mul, .register(2), .register(6)), // 7: glu
        .binary(.add, .register(4), .constant(1)), // 8
        .binary(.mul, .register(8), .register(7)) // 9
    ])!

/// A random well-formed program: 1–8 instructions, operands mostly recent registers, sometimes
/// constants in [−2, 2].
private func randomProgram(_ rng: inout TestRandom) -> ExpertEpilogue {
    func pick(_ n: Int) -> Int { min(n - 1, Int((rng.next() + 1) / 2 * Float(n))) }
    let inputs = 1 + pick(2)
    let length = 1 + pick(8)
    var instructions: [ExpertEpilogue.Instruction] = []
    for i in 0..<length {
        let registers = inputs + i
        func operand() -> ExpertEpilogue.Operand {
            if pick(4) == 0 { return .constant((rng.next() * 2 * 64).rounded() / 64) }
            // Half the time the newest register, so programs are chains more than trees.
            return .register(pick(2) == 0 ? registers - 1 : pick(registers))
        }
        if pick(2) == 0 {
            instructions.append(.unary(ExpertEpilogue.Unary.allCases[pick(ExpertEpilogue.Unary.allCases.count)], operand()))
        } else {
            instructions.append(.binary(ExpertEpilogue.Binary.allCases[pick(ExpertEpilogue.Binary.allCases.count)], operand(), operand()))
        }
    }
    return ExpertEpilogue(inputs: inputs, instructions: instructions)!
}

/// `r2 = min(r0, 7); r3 = sigmoid(r2)`, for failure messages.
private func describe(_ program: ExpertEpilogue) -> String {
    func operand(_ o: ExpertEpilogue.Operand) -> String {
        switch o {
        case .register(let r): return "r\(r)"
        case .constant(let c): return "\(c)"
        }
    }
    return program.instructions.enumerated().map { i, ins in
        switch ins {
        case .unary(let op, let a): return "r\(program.inputs + i) = \(op.rawValue)(\(operand(a)))"
        case .binary(let op, let a, let b): return "r\(program.inputs + i) = \(op.rawValue)(\(operand(a)), \(operand(b)))"
        }
    }.joined(separator: "; ")
}

private let randomPrograms: [ExpertEpilogue] = {
    var rng = TestRandom(seed: 31)
    return (0..<48).map { _ in randomProgram(&rng) }
}()

/// The reference value of `program` on one feature and how much Float rounding of the inputs and
/// of every step can move it (first order): |∂y/∂x|·bound(x) through each instruction, plus
/// |result| per instruction. Kernels are a few ulp per step, so `2e-6 · bound` is their error
/// budget; this tolerates the cancellation a random program can contain (`(x + 2) − 2`) without
/// loosening the check where no cancellation happens. The reference's own error counts too where
/// it is not negligible: `apply` computes GELU as ½x(1 + erf(…)) and ½x(1 + tanh(…)), and for
/// x ≪ 0 the 1 + … cancels in Double, leaving an error of a few |x|·2⁻⁵².
private func referenceWithBound(_ program: ExpertEpilogue, _ inputs: [Double]) -> (value: Double, bound: Double) {
    var v = inputs, m = inputs.map { abs($0) }
    func operand(_ o: ExpertEpilogue.Operand) -> (Double, Double) {
        switch o {
        case .register(let r): return (v[r], m[r])
        case .constant(let c): return (Double(c), 0)
        }
    }
    for ins in program.instructions {
        switch ins {
        case .unary(let op, let a):
            let (x, mx) = operand(a)
            let y = ExpertEpilogue.apply(op, x)
            let h = 1e-6 * max(1, abs(x))
            let slope = abs(ExpertEpilogue.apply(op, x + h) - ExpertEpilogue.apply(op, x - h)) / (2 * h)
            let cancels = op == .gelu || op == .gelu_tanh ? 1e-9 * abs(x) : 0
            v.append(y)
            m.append(slope * mx + abs(y) + cancels)
        case .binary(let op, let a, let b):
            let (x, mx) = operand(a), (y, my) = operand(b)
            let z = ExpertEpilogue.apply(op, x, y)
            let propagated: Double
            switch op {
            case .add, .sub: propagated = mx + my
            case .mul: propagated = mx * abs(y) + abs(x) * my
            case .div: propagated = mx / abs(y) + abs(x) * my / (y * y)
            case .min, .max: propagated = max(mx, my)
            }
            v.append(z)
            m.append(propagated + abs(z))
        }
    }
    return (v[v.count - 1], m[m.count - 1])
}

/// One run of `program` on `rows` × `count` features, against the Double reference.
/// Inputs have row strides `count + 3` (a) and `count + 5` (b); out of place, `out` has stride
/// `count + 1`, and the padding between rows must be left alone. Returns failure messages.
private func check(
    _ program: ExpertEpilogue, rows: Int, count: Int, bias: Bool, inPlace: Bool, isa: ISA,
    seed: UInt64, scale: Float = 3, relativeToMax: Double? = nil
) -> [String] {
    var rng = TestRandom(seed: seed)
    let lda = count + 3, ldb = count + 5
    let a = rng.array(rows * lda, scale: scale), b = rng.array(rows * ldb, scale: scale)
    let biasA = rng.array(count, scale: 1), biasB = rng.array(count, scale: 1)
    let ldo = inPlace ? lda : count + 1
    var out = inPlace ? a : [Float](repeating: .nan, count: rows * ldo)
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            biasA.withUnsafeBufferPointer { ba in
                biasB.withUnsafeBufferPointer { bb in
                    out.withUnsafeMutableBufferPointer { op in
                        let o = op.baseAddress!
                        Kernels.expertEpilogue(
                            program, rows: rows, count: count, inPlace ? UnsafePointer(o) : ap.baseAddress!, lda: lda,
                            biasA: bias ? ba.baseAddress! : nil, program.inputs == 2 ? bp.baseAddress! : nil, ldb: ldb,
                            biasB: bias ? bb.baseAddress! : nil, o, ldo: ldo, isa: isa)
                    }
                }
            }
        }
    }
    var expected: [(value: Double, bound: Double)] = []
    for r in 0..<rows {
        for j in 0..<count {
            var x = [Double(a[r * lda + j]) + (bias ? Double(biasA[j]) : 0)]
            if program.inputs == 2 { x.append(Double(b[r * ldb + j]) + (bias ? Double(biasB[j]) : 0)) }
            let e = referenceWithBound(program, x)
            #expect(e.value.bitPattern == program.evaluate(x).bitPattern)
            expected.append(e)
        }
    }
    let maxAbs = expected.map { $0.value.isFinite ? abs($0.value) : 0 }.max() ?? 0
    var failures: [String] = []
    let label = "\(isa) rows \(rows) count \(count) bias \(bias) inPlace \(inPlace)"
    for r in 0..<rows {
        for j in 0..<ldo {
            let got = out[r * ldo + j]
            if j >= count {
                let untouched = inPlace ? a[r * lda + j] : .nan
                if got.bitPattern != untouched.bitPattern { failures.append("\(label): padding (\(r), \(j)) written: \(got)") }
                continue
            }
            let (value, bound) = expected[r * count + j]
            // ±inf and NaN propagation is not specified; nor are results past Float's range.
            guard value.isFinite, bound.isFinite, bound < 1e30 else { continue }
            let error = abs(Double(got) - value)
            var tolerance = 2e-6 * bound + 1e-30
            if let relativeToMax { tolerance = min(tolerance, relativeToMax * maxAbs + 1e-30) }
            if !(error <= tolerance) {
                failures.append("\(label): (\(r), \(j)) got \(got), expected \(value) (tolerance \(tolerance))")
            }
        }
    }
    return failures
}

private let counts = [1, 7, 16, 33, 3584]

@Test(arguments: ISA.available)
func gptOSSEpilogueMatchesReference(isa: ISA) {
    var failures: [String] = []
    var seed: UInt64 = 100
    for count in counts {
        for rows in 1...5 {
            for bias in [false, true] {
                for inPlace in [false, true] {
                    seed += 1
                    // Inputs up to ±10 so both clamps engage.
                    failures += check(gptOSS, rows: rows, count: count, bias: bias, inPlace: inPlace, isa: isa, seed: seed, scale: 10, relativeToMax: 1e-5)
                }
            }
        }
    }
    #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(3))")
}

@Test(arguments: ISA.available)
func randomEpiloguesMatchReference(isa: ISA) {
    var failures: [String] = []
    for (i, program) in randomPrograms.enumerated() {
        for (c, count) in counts.enumerated() {
            // A rotating sample of the shapes and variants; the long rows with 1–2 rows only.
            let rows = count > 100 ? 1 + (i + c) % 2 : 1 + (i + c) % 5
            let bias = (i + c) % 2 == 0, inPlace = (i / 2 + c) % 2 == 0
            let found = check(program, rows: rows, count: count, bias: bias, inPlace: inPlace, isa: isa, seed: UInt64(1000 + 10 * i + c))
            failures += found.map { "program \(i) \(describe(program)): \($0)" }
        }
    }
    #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(3))")
}

/// Every operation alone (register and constant operands, one and two inputs) against the
/// reference, also relative to the largest result.
@Test(arguments: ISA.available)
func everyOperationMatchesReference(isa: ISA) {
    var programs: [ExpertEpilogue] = []
    for op in ExpertEpilogue.Unary.allCases {
        programs.append(ExpertEpilogue(inputs: 1, instructions: [.unary(op, .register(0))])!)
        // On the second input, after an add that makes a bias of 0.5.
        programs.append(ExpertEpilogue(inputs: 2, instructions: [.binary(.add, .register(1), .constant(0.5)), .unary(op, .register(2))])!)
    }
    for op in ExpertEpilogue.Binary.allCases {
        programs.append(ExpertEpilogue(inputs: 2, instructions: [.binary(op, .register(0), .register(1))])!)
        programs.append(ExpertEpilogue(inputs: 1, instructions: [.binary(op, .register(0), .constant(1.25))])!)
        programs.append(ExpertEpilogue(inputs: 1, instructions: [.binary(op, .constant(-0.75), .register(0))])!)
    }
    var failures: [String] = []
    for (i, program) in programs.enumerated() {
        for (c, count) in [7, 16, 33].enumerated() {
            let found = check(
                program, rows: 1 + (i + c) % 5, count: count, bias: c == 1, inPlace: c == 2, isa: isa, seed: UInt64(5000 + 10 * i + c),
                scale: c == 0 ? 1 : 8, relativeToMax: 1e-5)
            failures += found.map { "\(describe(program)): \($0)" }
        }
    }
    #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(3))")
}

/// The random programs and `everyOperationMatchesReference` between them run every operation,
/// and the random ones use every operation too, with constant and register operands.
@Test func randomProgramsExerciseEveryOperation() {
    var unary = Set<ExpertEpilogue.Unary>(), binary = Set<ExpertEpilogue.Binary>()
    var constants = 0, oneInput = 0
    for p in randomPrograms {
        if p.inputs == 1 { oneInput += 1 }
        for ins in p.instructions {
            switch ins {
            case .unary(let op, let a):
                unary.insert(op)
                if case .constant = a { constants += 1 }
            case .binary(let op, let a, let b):
                binary.insert(op)
                for case .constant in [a, b] { constants += 1 }
            }
        }
    }
    #expect(unary == Set(ExpertEpilogue.Unary.allCases))
    #expect(binary == Set(ExpertEpilogue.Binary.allCases))
    #expect(constants > 0)
    #expect(oneInput > 0 && oneInput < randomPrograms.count)
}

/// The SwiGLU program gives what the SwiGLU kernel gives, on its layout (`[gate | up]` rows, the
/// output over the gate half).
@Test(arguments: ISA.available)
func swigluProgramMatchesSwigluKernel(isa: ISA) {
    var rng = TestRandom(seed: 7)
    for (rows, f) in [(1, 1), (3, 7), (4, 16), (5, 33), (2, 3584)] {
        let gu = rng.array(rows * 2 * f, scale: 8)
        var kernel = [Float](repeating: .nan, count: rows * f), program = gu
        gu.withUnsafeBufferPointer { g in
            kernel.withUnsafeMutableBufferPointer { Kernels.swiglu(g.baseAddress!, $0.baseAddress!, rows: rows, f: f, isa: isa) }
        }
        program.withUnsafeMutableBufferPointer { p in
            let base = p.baseAddress!
            Kernels.expertEpilogue(
                .swiglu, rows: rows, count: f, UnsafePointer(base), lda: 2 * f, biasA: nil, UnsafePointer(base + f), ldb: 2 * f,
                biasB: nil, base, ldo: 2 * f, isa: isa)
        }
        for r in 0..<rows {
            for i in 0..<f {
                let k = kernel[r * f + i], p = program[r * 2 * f + i]
                #expect(close(p, Double(k), rel: 1e-6, abs: 1e-37), "rows \(rows) f \(f) (\(r), \(i)): \(p) vs \(k)")
            }
        }
    }
}

/// Programs with many values live at once: registers are reused once dead, and a program with
/// more live values than fit in the kernels' on-stack scratch still runs correctly.
@Test(arguments: ISA.available)
func registerAllocation(isa: ISA) {
    #expect(gptOSS.encoding.slots == 2)
    #expect(ExpertEpilogue.swiglu.encoding.slots == 2)
    // A chain of 100 steps, each reading only the step before, lives in the inputs' slots.
    let chain = ExpertEpilogue(
        inputs: 2, instructions: [.binary(.add, .register(0), .register(1))] + (1..<100).map { i in .binary(i % 2 == 0 ? .add : .mul, .register(i + 1), .constant(0.99)) })!
    #expect(chain.encoding.slots == 2)
    // 40 products of x, all live until summed: 40 slots (the last product takes x's), more than
    // the 32 that fit in 1 KiB of stack.
    var wide: [ExpertEpilogue.Instruction] = (0..<40).map { k in .binary(.mul, .register(0), .constant(Float(k + 1) / 16)) }
    wide.append(.binary(.add, .register(1), .register(2)))
    for k in 3...40 { wide.append(.binary(.add, .register(wide.count), .register(k))) }
    let wideProgram = ExpertEpilogue(inputs: 1, instructions: wide)!
    #expect(wideProgram.encoding.slots == 40)
    var failures: [String] = []
    for (c, count) in counts.enumerated() {
        failures += check(chain, rows: 3, count: count, bias: true, inPlace: c % 2 == 0, isa: isa, seed: UInt64(c), scale: 1)
        failures += check(wideProgram, rows: 2, count: count, bias: c % 2 == 1, inPlace: c % 2 == 0, isa: isa, seed: UInt64(c), relativeToMax: 1e-5)
    }
    #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(3))")
}

@Test func programsCompareByInstructions() {
    let again = ExpertEpilogue(inputs: 2, instructions: ExpertEpilogue.swiglu.instructions)!
    #expect(again == .swiglu)
    #expect(again.hashValue == ExpertEpilogue.swiglu.hashValue)
    #expect(again != gptOSS)
}

/// Sequences that run as one fused instruction, in every operand order, give what the
/// instructions give; one whose intermediate has another reader is left alone.
@Test(arguments: ISA.available)
func fusedSequencesMatchReference(isa: ISA) {
    typealias I = ExpertEpilogue.Instruction
    let cases: [(name: String, inputs: Int, instructions: [I], encoded: Int)] = [
        ("gpt-oss", 2, gptOSS.instructions, 4),
        ("swiglu", 2, ExpertEpilogue.swiglu.instructions, 1),
        (
            "silu(x)·y, y a constant, then silu(x)·x", 1,
            [.unary(.silu, .register(0)), .binary(.mul, .constant(-1.5), .register(1)), .unary(.silu, .register(2)), .binary(.mul, .register(3), .register(2))], 2
        ),
        (
            "gpt-oss, operands swapped", 2,
            [
                .binary(.min, .constant(7), .register(0)), .binary(.max, .constant(-7), .register(1)),
                .binary(.min, .constant(7), .register(3)), .binary(.mul, .register(2), .constant(1.702)),
                .unary(.sigmoid, .register(5)), .binary(.mul, .register(6), .register(2)),
                .binary(.add, .constant(1), .register(4)), .binary(.mul, .register(7), .register(8))
            ], 4
        ),
        (
            "clamp by registers, (x − y)·z", 2,
            [
                .unary(.neg, .register(1)), .binary(.max, .register(0), .register(2)), .binary(.min, .register(3), .register(1)),
                .binary(.sub, .register(4), .register(1)), .binary(.mul, .register(0), .register(5))
            ], 3
        ),
        (
            "intermediates with two readers", 2,
            [
                .binary(.min, .register(1), .constant(2)), .binary(.max, .register(2), .constant(-2)), .binary(.add, .register(3), .register(2)),
                .binary(.mul, .constant(0.5), .register(0)), .unary(.sigmoid, .register(5)), .binary(.mul, .register(0), .register(6)),
                .binary(.add, .register(7), .register(5)), .binary(.mul, .register(4), .register(8))
            ], 7 // only the last (x + y)·z fuses
        ),
        ("min(x, x), max of it", 1, [.binary(.min, .register(0), .register(0)), .binary(.max, .register(1), .register(1))], 2)
    ]
    var failures: [String] = []
    for (i, c) in cases.enumerated() {
        let program = ExpertEpilogue(inputs: c.inputs, instructions: c.instructions)!
        #expect(program.encoding.code.count == ExpertEpilogue.Encoding.wordsPerInstruction * c.encoded, "\(c.name)")
        for (k, count) in [7, 16, 3584].enumerated() {
            let found = check(
                program, rows: 1 + (i + k) % 3, count: count, bias: k != 1, inPlace: k == 1, isa: isa, seed: UInt64(9000 + 10 * i + k), scale: 10,
                relativeToMax: 1e-5)
            failures += found.map { "\(c.name): \($0)" }
        }
    }
    #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(3))")
}
