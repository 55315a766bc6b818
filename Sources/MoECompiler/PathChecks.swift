import Foundation
import MoEBasics
import MoEIO

/// Checks on the paths named on the command line, made before any work: a mistake then costs
/// nothing, gets a message that names the path, and never leaves a file behind.
public enum PathCheck {
    public enum Kind { case missing, file, folder, special }

    /// What is at `path`, following symbolic links.
    public static func kind(_ path: String) -> Kind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .folder
        default: return .special
        }
    }

    /// A file to read (a graph or a plan). A missing file is left to the reader, which says so.
    public static func readable(_ path: String, what: String) throws {
        switch kind(path) {
        case .missing, .file: return
        case .folder: throw DiagnosticError(.error("cannot read '\(path)': it is a folder, not \(what)"))
        case .special: throw DiagnosticError(.error("cannot read '\(path)': not a regular file (a device, FIFO or socket), not \(what)"))
        }
    }

    /// The `--model` checkpoint folder.
    public static func modelFolder(_ path: String) throws {
        switch kind(path) {
        case .folder: return
        case .file where isGGUF(path): return
        case .missing: throw DiagnosticError(.error("--model \(path): no such folder or file"))
        case .file, .special:
            throw DiagnosticError(
                .error("--model \(path): not a folder or a GGUF file (give the checkpoint folder that holds config.json and the .safetensors files, or a .gguf file)"))
        }
    }

    /// Whether `--model` names a GGUF file (by its name or its first four bytes).
    public static func isGGUF(_ path: String) -> Bool {
        kind(path) == .file && (path.hasSuffix(".gguf") || GGUFFile.looksLikeGGUF(path: path))
    }

    /// A file moec will write by renaming a complete temporary file over it: its folder must
    /// exist, and it must be absent or a regular file (renaming over a device such as /dev/null
    /// would replace the device).
    public static func writable(_ path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty, kind(folder) != .folder {
            throw DiagnosticError(.error("cannot write '\(path)': folder '\(folder)' does not exist"))
        }
        switch kind(path) {
        case .missing, .file: return
        case .folder: throw DiagnosticError(.error("cannot write '\(path)': it is a folder"))
        case .special:
            throw DiagnosticError(
                .error(
                    "cannot write '\(path)': not a regular file (moec writes files atomically, by renaming a temporary file over them, so it cannot write to a device, FIFO or socket)"
                ))
        }
    }

    /// Writes every file or none: each goes to a temporary file beside its destination, and they
    /// are renamed over their destinations only once all of them are complete.
    public static func writeAll(_ files: [(path: String, data: Data)]) throws {
        var temporaries: [String] = []
        func removeTemporaries() { for t in temporaries { unlink(t) } }
        for (i, f) in files.enumerated() {
            let url = URL(fileURLWithPath: f.path)
            let temporary = url.deletingLastPathComponent().path + "/.\(url.lastPathComponent).tmp-\(getpid())-\(i)"
            guard FileManager.default.createFile(atPath: temporary, contents: f.data) else {
                let reason = String(cString: strerror(errno))
                removeTemporaries()
                throw DiagnosticError(.error("cannot write '\(f.path)': \(reason)"))
            }
            temporaries.append(temporary)
        }
        for (i, f) in files.enumerated() where rename(temporaries[i], f.path) != 0 {
            let reason = String(cString: strerror(errno))
            removeTemporaries()
            throw DiagnosticError(.error("cannot write '\(f.path)': \(reason)"))
        }
    }
}
