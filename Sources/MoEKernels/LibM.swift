import Foundation

// The C library's functions under names that cannot be shadowed by `Kernels.exp` and friends.
@inline(__always) func Foundation_exp(_ x: Float) -> Float { Foundation.exp(x) }
@inline(__always) func Foundation_erf(_ x: Float) -> Float { Foundation.erf(x) }
@inline(__always) func Foundation_erfc(_ x: Float) -> Float { Foundation.erfc(x) }
@inline(__always) func Foundation_exp(_ x: Double) -> Double { Foundation.exp(x) }
@inline(__always) func Foundation_erfc(_ x: Double) -> Double { Foundation.erfc(x) }
