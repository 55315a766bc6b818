import Foundation
import MoEBasics
import MoEIR

/// Builtins of the elementwise family: the unary activations, and `sqrt`, which on a routing is
/// the routing stage `route_sqrt`. `exp`, `sigmoid` and `sqrt` of a compile-time number are
/// computed at compile time. Negation and the operators `+ - * /` lower in `Expressions.swift`.
enum ElementwiseBuiltins {
    static let builtins: [Builtin] = [
        activation("silu", .silu),
        activation("gelu", .gelu),
        activation("gelu_tanh", .gelu_tanh),
        activation("relu", .relu),
        activation("sigmoid", .sigmoid, folding: { 1 / (1 + Foundation.exp(-$0)) }),
        activation("tanh", .tanh),
        activation("exp", .exp, folding: { Foundation.exp($0) }),
        Builtin("sqrt", ["x"], positional: 1) { l, args throws(Diagnostic) in
            let v = try args.raw("x", &l)
            if case .int(let i) = v { return .float(Double(i).squareRoot()) }
            if case .float(let f) = v { return .float(f.squareRoot()) }
            let x = try args.value("x", from: v, l)
            return try l.node(l.isRouting(x) ? .route_sqrt : .sqrt, [x], at: args.at)
        }
    ]

    /// `name(x)` on a tensor; `fold`, if given, computes it on a compile-time number.
    private static func activation(_ name: String, _ op: Op, folding fold: (@Sendable (Double) -> Double)? = nil) -> Builtin {
        Builtin(name, ["x"], positional: 1) { l, args throws(Diagnostic) in
            let v = try args.raw("x", &l)
            if let fold, let n = number(v) { return .float(fold(n)) }
            let x = try args.tensor("x", from: v, l)
            return try l.node(op, [x], at: args.at)
        }
    }

    private static func number(_ v: ASTToIR.Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .float(let f): return f
        default: return nil
        }
    }
}
