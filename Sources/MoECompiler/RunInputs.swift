import MoEBackend
import MoEBasics
import MoEIO
import MoEIR

/// The `.npy` files named by `--input NAME=FILE.npy`, read as a graph's input tensors.
public enum RunInputs {
    /// Reads each file for the graph input of its name: f32 inputs from f32 (or f64, converted)
    /// arrays, i32 inputs from integer arrays. Names and element types are checked here, with
    /// errors that name the file; shapes are checked by the runner.
    public static func read(_ files: [(name: String, path: String)], for graph: Graph) throws -> [String: HostTensor] {
        var tensors: [String: HostTensor] = [:]
        for i in files {
            guard let decl = graph.inputs.first(where: { $0.name == i.name }) else {
                throw DiagnosticError(.error("--input \(i.name)=…: the graph has no input '\(i.name)' (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))"))
            }
            let array: NpyArray
            do { array = try NpyArray(path: i.path) } catch { throw DiagnosticError(.error("\(error)")) }
            if decl.type.dtype == .i32 {
                do { tensors[i.name] = HostTensor(shape: array.shape, ints: try array.int32s()) } catch {
                    throw DiagnosticError(.error("\(i.path): input '\(i.name)' must hold integers: \(error)"))
                }
            } else {
                switch array.storage {
                case .float32, .float64: break
                default:
                    throw DiagnosticError(.error("\(i.path): input '\(i.name)' is f32, but the file holds \(array.storage.descr) values (save it as float32)"))
                }
                tensors[i.name] = HostTensor(shape: array.shape, floats: array.floats())
            }
        }
        return tensors
    }
}
