import Foundation
import MoEBackend
import MoEBasics
import MoEIR

/// The arena a token count needs, checked against the machine's memory before it is allocated
/// (allocating more than there is ends the process).
public enum MemoryCheck {
    /// Throws when `graph`'s buffers for `tokens` tokens cannot be addressed or exceed the
    /// machine's physical memory; `option` is the command-line option the token count came from.
    public static func arena(_ graph: Graph, tokens: Int, option: String) throws {
        let bytes: Int
        do { bytes = try Schedule.memoryPlan(graph, tokens: tokens).layout.totalBytes } catch {
            throw DiagnosticError(.error("\(option): \(error)"))
        }
        let memory = ProcessInfo.processInfo.physicalMemory
        if UInt64(bytes) > memory {
            throw DiagnosticError(
                .error("\(option): \(tokens) tokens need \(formatBytes(Double(bytes))) of buffers, more than this machine's memory (\(formatBytes(Double(memory))))"))
        }
    }
}
