import MoEBasics
import MoEIR
import MoESyntax

/// The stages `moec compile --emit` can print.
public enum Stage: String, CaseIterable, Sendable {
    case ast, ir
    case irOpt = "ir-opt"
    case plan
}

public enum MoECompilerVersion {
    public static let string = "0.1.0"
}

extension CompilerSession {
    /// The text of one stage.
    public func emit(_ stage: Stage) throws -> String {
        switch stage {
        case .ast: return ASTPrinter().print(try parse())
        case .ir: return IRPrinter().print(try lower())
        case .irOpt: return IRPrinter().print(try optimize())
        case .plan:
            if options.modelDirectory != nil {
                return PlanPrinter().print(graph: try boundGraph(), checkpoint: try checkpoint(), sourcePath: options.graphPath)
            }
            return PlanPrinter().print(graph: try optimize(), checkpoint: nil, sourcePath: options.graphPath)
        }
    }

}
