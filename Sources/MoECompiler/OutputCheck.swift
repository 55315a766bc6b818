import MoEBackend
import MoEBasics
import MoEIO

/// `moec run --check NAME=REF.npy`: an output compared with a reference array by its relative
/// error, max |Δ| / max |ref| over all elements.
///
/// A NaN difference counts as an infinite one, so an output with NaNs fails every tolerance. An
/// all-zero reference divides by the least normal float: any difference then fails.
public struct OutputCheck: Sendable {
    public static let defaultTolerance: Float = 1e-4

    /// The output compared.
    public let name: String
    /// The reference file.
    public let path: String
    let reference: NpyArray

    /// One comparison: the relative error and whether it is within the tolerance.
    public struct Result: Sendable, Equatable {
        public var name: String
        public var relativeError: Float
        public var tolerance: Float
        public var passed: Bool { relativeError <= tolerance }
    }

    /// Reads the reference file; an unreadable or malformed one is an error that names it.
    public init(output name: String, referencePath path: String) throws {
        self.name = name
        self.path = path
        do { reference = try NpyArray(path: path) } catch { throw DiagnosticError(.error("\(error)")) }
    }

    /// Throws when `output` and the reference differ in shape (checked before any file is written).
    public func checkShape(of output: HostTensor) throws {
        if reference.shape != output.shape {
            throw DiagnosticError(.error("--check \(name): the reference has shape \(reference.shape), the output \(output.shape)"))
        }
    }

    /// `output` (of the reference's shape) against the reference.
    public func compare(_ output: HostTensor, tolerance: Float) -> Result {
        Result(name: name, relativeError: Self.relativeError(output.floats, reference: reference.floats()), tolerance: tolerance)
    }

    /// max |got − ref| / max |ref|, with NaN differences infinite.
    public static func relativeError(_ got: [Float], reference: [Float]) -> Float {
        var maxDiff: Float = 0, maxRef: Float = 0
        for (x, y) in zip(got, reference) {
            maxDiff = max(maxDiff, abs(x - y).isNaN ? .infinity : abs(x - y))
            maxRef = max(maxRef, abs(y))
        }
        return maxDiff / max(maxRef, .leastNormalMagnitude)
    }
}
