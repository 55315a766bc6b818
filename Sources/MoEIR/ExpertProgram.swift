import Foundation

/// What one expert computes on one token's row, when the expert is written as an expression
/// (`experts: n of expert(h) { … }`): a straight-line program over registers that each hold one
/// row of values.
///
/// Register 0 (and 1, for an epilogue of gate and up) are the inputs; instruction i writes
/// register `inputs + i`; the last instruction's register is the result. Instructions:
/// - `linear %r wM` or `linear %r wM wB`: `%r · W_M[e]ᵀ (+ B[e])` with the block's weight
///   operands M (a stacked matrix `[E, out, in]`) and B (a stacked bias `[E, out]`) of expert e;
/// - a unary op (`silu gelu gelu_tanh relu sigmoid tanh exp neg`) of a register;
/// - a binary op (`add sub mul div min max`) of two operands, registers or constants.
///
/// Its text, one instruction per `;`, is how the IR stores it (the `epilogue` and `body`
/// attributes of `moe_experts`): `%1 = linear %0 w0 w1; %2 = min %1 7; …`.
///
/// Two uses. A program without `linear` is an *epilogue*: what a gated (inputs: gate, up) or
/// MLP (input: the projection) expert does between its projections, run in the packed GEMM's
/// epilogue. A program with `linear` is a whole expert *body* (input: the token's row), for
/// experts the lowering could not map to the packed kernel's shape; they run on a general path.
public struct ExpertProgram: Hashable, Sendable, CustomStringConvertible {
    public enum Operand: Hashable, Sendable {
        case register(Int)
        case constant(Double)
    }
    public enum Instruction: Hashable, Sendable {
        case linear(Int, weight: Int, bias: Int?)
        case unary(String, Operand)
        case binary(String, Operand, Operand)
    }
    public static let unaryOps = ["silu", "gelu", "gelu_tanh", "relu", "sigmoid", "tanh", "exp", "neg"]
    public static let binaryOps = ["add", "sub", "mul", "div", "min", "max"]

    public var inputs: Int
    public var instructions: [Instruction]

    public init(inputs: Int, instructions: [Instruction]) {
        self.inputs = inputs
        self.instructions = instructions
    }

    /// The register the result is in.
    public var result: Int { inputs + instructions.count - 1 }
    public var hasLinear: Bool {
        instructions.contains {
            if case .linear = $0 { return true }; return false
        }
    }

    /// The weight operand indices the program reads (matrices and biases), in first-use order.
    public var weightsRead: [Int] {
        var seen: [Int] = []
        for case .linear(_, let w, let b) in instructions {
            for i in [w] + (b.map { [$0] } ?? []) where !seen.contains(i) { seen.append(i) }
        }
        return seen
    }

    public var description: String {
        func operand(_ o: Operand) -> String {
            switch o {
            case .register(let r): return "%\(r)"
            case .constant(let c): return Attribute.float(c).description
            }
        }
        return instructions.enumerated().map { i, ins in
            let lhs = "%\(inputs + i) = "
            switch ins {
            case .linear(let r, let w, let b): return lhs + "linear %\(r) w\(w)" + (b.map { " w\($0)" } ?? "")
            case .unary(let op, let a): return lhs + "\(op) \(operand(a))"
            case .binary(let op, let a, let b): return lhs + "\(op) \(operand(a)) \(operand(b))"
            }
        }.joined(separator: "; ")
    }

    /// Reads the text form; `inputs` registers are defined before the first instruction. Checks
    /// that every register is written before it is read and that op names are known.
    public init(parsing text: String, inputs: Int) throws(TypeRuleError) {
        self.inputs = inputs
        self.instructions = []
        let parts = text.split(separator: ";").map { $0.split(separator: " ").map(String.init) }
        guard !parts.isEmpty else { throw TypeRuleError("an expert program needs at least one instruction") }
        for (i, words) in parts.enumerated() {
            let target = inputs + i
            let shown = words.joined(separator: " ")
            guard words.count >= 3, words[0] == "%\(target)", words[1] == "=" else {
                throw TypeRuleError("expert program instruction \(i) '\(shown)' must start '%\(target) = '")
            }
            func register(_ w: String) throws(TypeRuleError) -> Int {
                guard w.hasPrefix("%"), let r = Int(w.dropFirst()), r >= 0, r < target else {
                    throw TypeRuleError("expert program instruction '\(shown)' reads '\(w)', which is not a register written before it")
                }
                return r
            }
            func operand(_ w: String) throws(TypeRuleError) -> Operand {
                if w.hasPrefix("%") { return .register(try register(w)) }
                switch w {
                case "inf": return .constant(.infinity)
                case "-inf": return .constant(-.infinity)
                default:
                    guard let c = Double(w), c.isFinite else { throw TypeRuleError("expert program instruction '\(shown)' has a bad operand '\(w)'") }
                    return .constant(c)
                }
            }
            func weight(_ w: String) throws(TypeRuleError) -> Int {
                guard w.hasPrefix("w"), let k = Int(w.dropFirst()), k >= 0 else {
                    throw TypeRuleError("expert program instruction '\(shown)' names weight '\(w)' (weights are w0, w1, …)")
                }
                return k
            }
            let op = words[2], args = Array(words.dropFirst(3))
            if op == "linear", args.count == 2 || args.count == 3 {
                instructions.append(.linear(try register(args[0]), weight: try weight(args[1]), bias: args.count == 3 ? try weight(args[2]) : nil))
            } else if Self.unaryOps.contains(op), args.count == 1 {
                instructions.append(.unary(op, try operand(args[0])))
            } else if Self.binaryOps.contains(op), args.count == 2 {
                instructions.append(.binary(op, try operand(args[0]), try operand(args[1])))
            } else {
                throw TypeRuleError("expert program instruction '\(shown)': unknown op or wrong operand count")
            }
        }
    }

    /// The same program reading weight `w + offset` for every weight `w`.
    public func offsettingWeights(by offset: Int) -> ExpertProgram {
        ExpertProgram(
            inputs: inputs,
            instructions: instructions.map {
                if case .linear(let r, let w, let b) = $0 { return .linear(r, weight: w + offset, bias: b.map { $0 + offset }) }
                return $0
            })
    }

    /// The width of every register, given the input widths and the weights' shapes (`[E, out,
    /// in]` matrices, `[E, out]` biases); errors name the instruction.
    public func widths(inputs inputWidths: [Int], weightShapes: [[Int]]) throws(TypeRuleError) -> [Int] {
        var widths = inputWidths
        func width(_ o: Operand) -> Int? {
            if case .register(let r) = o { return widths[r] }
            return nil
        }
        for (i, ins) in instructions.enumerated() {
            let at = "expert program instruction %\(inputs + i)"
            switch ins {
            case .linear(let r, let w, let b):
                guard weightShapes.indices.contains(w), weightShapes[w].count == 3 else {
                    throw TypeRuleError("\(at) needs weight w\(w) to be a stacked matrix [experts, out, in]")
                }
                let m = weightShapes[w]
                guard m[2] == widths[r] else {
                    throw TypeRuleError("\(at): the weight is [\(m[0]), \(m[1]), \(m[2])] but its input row has \(widths[r]) values")
                }
                if let b {
                    guard weightShapes.indices.contains(b), weightShapes[b] == [m[0], m[1]] else {
                        throw TypeRuleError("\(at): the bias must be [\(m[0]), \(m[1])] (one row of outputs per expert)")
                    }
                }
                widths.append(m[1])
            case .unary(_, let a):
                guard let wa = width(a) else { throw TypeRuleError("\(at) applies a function to a constant") }
                widths.append(wa)
            case .binary(_, let a, let b):
                switch (width(a), width(b)) {
                case (let wa?, let wb?):
                    guard wa == wb else { throw TypeRuleError("\(at) combines rows of \(wa) and \(wb) values") }
                    widths.append(wa)
                case (let w?, nil), (nil, let w?): widths.append(w)
                case (nil, nil): throw TypeRuleError("\(at) combines two constants")
                }
            }
        }
        return widths
    }

    /// The program on one row, in Double (the reference interpreter's): `linear` calls back with
    /// (input row, weight, bias).
    public func evaluate(_ inputRows: [[Double]], linear: ([Double], Int, Int?) -> [Double]) -> [Double] {
        var regs = inputRows
        func row(_ o: Operand, width: Int) -> [Double] {
            switch o {
            case .register(let r): return regs[r]
            case .constant(let c): return [Double](repeating: c, count: width)
            }
        }
        func width(_ o: Operand) -> Int? { if case .register(let r) = o { return regs[r].count }; return nil }
        for ins in instructions {
            switch ins {
            case .linear(let r, let w, let b): regs.append(linear(regs[r], w, b))
            case .unary(let op, let a):
                regs.append(row(a, width: 1).map { Self.apply(op, $0) })
            case .binary(let op, let a, let b):
                let n = width(a) ?? width(b) ?? 1
                regs.append(zip(row(a, width: n), row(b, width: n)).map { Self.apply(op, $0, $1) })
            }
        }
        return regs[regs.count - 1]
    }

    public static func apply(_ op: String, _ x: Double) -> Double {
        switch op {
        case "silu": return x / (1 + exp(-x))
        case "gelu": return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case "gelu_tanh": return 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case "relu": return x > 0 ? x : 0
        case "sigmoid": return 1 / (1 + exp(-x))
        case "tanh": return tanh(x)
        case "exp": return exp(x)
        default: return -x // neg
        }
    }

    public static func apply(_ op: String, _ a: Double, _ b: Double) -> Double {
        switch op {
        case "add": return a + b
        case "sub": return a - b
        case "mul": return a * b
        case "div": return a / b
        case "min": return Swift.min(a, b)
        default: return Swift.max(a, b)
        }
    }

    /// SwiGLU as an epilogue: `silu(gate) · up`.
    public static let swiglu = ExpertProgram(inputs: 2, instructions: [.unary("silu", .register(0)), .binary("mul", .register(2), .register(1))])
}
