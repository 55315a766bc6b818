import Foundation
import MoEIR

/// Leaves: the run's inputs, the checkpoint's weights, constants.
extension LeafOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, a = n.attributes
        switch self {
        case .input:
            return .tensor(c.inputs[a.string("name")!]!)

        case .weight:
            return .tensor(c.interpreter.weights[a.int("index")!])

        case .constant:
            return .tensor(HostTensor(shape: [], floats: [Float(a.float("value")!)]))
        }
    }
}
