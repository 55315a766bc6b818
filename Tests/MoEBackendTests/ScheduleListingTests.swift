import Foundation
import MoEBackend
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// `--emit plan` lists the steps a run executes: the steps a real schedule builds (weights
/// loaded, closures made) are the ones `Schedule.stepDescriptions` describes from the graph, and
/// the ones `PlanPrinter` prints, on every example graph.
@Suite struct ScheduleListingTests {
    /// The step names in the `schedule` section of a printed plan, in order.
    static func printedSteps(_ plan: String) throws -> [String] {
        let section = try #require(plan.components(separatedBy: "\nschedule (").dropFirst().first)
        let lines = section.components(separatedBy: "\n\n")[0].split(separator: "\n").dropFirst()
        return try lines.map { line in
            // "    3  %y = moe_experts %x, %5, …    f32[tokens, 24]"
            let rhs = try #require(line.components(separatedBy: " = ").dropFirst().first, "\(line)")
            return String(rhs.split(separator: " ")[0])
        }
    }

    @Test(arguments: RoutingStatisticsBackendTests.graphs)
    func printedPlanListsTheStepsOfTheSchedule(_ file: String) throws {
        let m = try RoutingStatisticsBackendTests.model(file)
        let described = Schedule.stepDescriptions(m.graph)
        for options in [ExecutionOptions(threads: 1), ExecutionOptions(threads: 2, backend: .native)] {
            let schedule = m.executable(options).schedule(tokens: 3)
            #expect(schedule.steps.map(\.name) == described.map(\.name), "\(file) \(options.backend)")
        }
        #expect(described.allSatisfy { ![.input, .weight, .constant].contains(m.graph[$0.node].op) }, "\(file)")
        #expect(described.map(\.node.index) == described.map(\.node.index).sorted(), "\(file)")
        let printed = try Self.printedSteps(PlanPrinter(threads: 1).print(graph: m.graph, checkpoint: nil, sourcePath: file))
        #expect(printed == described.map(\.name), "\(file)")
    }
}
