import Foundation
import MoEBasics

/// A model's `config.json`, kept as JSON: the compiler binds the values it needs by name.
///
/// Keys may be dotted paths into nested objects (`"text_config.hidden_size"`); a segment that is
/// a number indexes an array (`"layer_types.0"`). A key that exists literally, dots and all,
/// wins over the path reading. Errors are `Diagnostic`s: `config.json:3:17: error: ...`.
public struct ModelConfig: Sendable, Equatable {
    /// The file it was read from, or a name for configs built in memory.
    public let path: String
    public let values: JSONObject

    public init(path: String) throws(Diagnostic) {
        guard let data = FileManager.default.contents(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw Diagnostic.error(exists ? "cannot read the model config" : "model config not found", at: SourceRange(.unknown(path), length: 0))
        }
        let json: JSON
        do {
            json = try JSON.parse(bytes: data)
        } catch {
            throw Diagnostic.error("invalid JSON: \(error.message)", at: SourceLocation(file: path, line: error.line, column: error.column))
        }
        try self.init(json: json, path: path)
    }

    /// A config from JSON already parsed; the top level must be an object.
    public init(json: JSON, path: String = "config.json") throws(Diagnostic) {
        guard case .object(let o) = json else {
            throw Diagnostic.error(
                "the top level of a model config must be a JSON object, found \(json.typeName)",
                at: SourceLocation(file: path, line: 1, column: 1))
        }
        self.init(values: o, path: path)
    }

    /// A config from an object already in hand.
    public init(values: JSONObject, path: String = "config.json") {
        self.path = path
        self.values = values
    }

    /// The value at `key` (a plain key or a dotted path), or nil.
    public func value(_ key: String) -> JSON? {
        if let v = values[key] { return v }
        var current = JSON.object(values)
        for segment in key.split(separator: ".", omittingEmptySubsequences: false) {
            let s = String(segment)
            if let v = current[s] {
                current = v
            } else if let i = Int(s), let v = current[i] {
                current = v
            } else {
                return nil
            }
        }
        return current
    }

    /// The value at `key`, or an error saying which part of the path is missing and what is there.
    public func require(_ key: String) throws(Diagnostic) -> JSON {
        if let v = value(key) { return v }
        var current = JSON.object(values)
        var walked: [String] = []
        for segment in key.split(separator: ".", omittingEmptySubsequences: false) {
            let s = String(segment)
            let next = current[s] ?? Int(s).flatMap { current[$0] }
            guard let v = next else {
                let place = walked.isEmpty ? "" : " in '\(walked.joined(separator: "."))'"
                var message = "model config has no '\(key)'"
                if !walked.isEmpty || s != key {
                    message += " (no '\(s)'\(place)"
                    if case .object = current {} else { message += ", which is \(current.typeName)" }
                    message += ")"
                }
                var notes: [Diagnostic.Note] = []
                if case .object(let o) = current {
                    let close = NameSuggestions.closest(to: s, in: o.keys, limit: 3)
                    if !close.isEmpty { notes.append(.init("did you mean " + close.map { "'\($0)'" }.joined(separator: ", ") + "?")) }
                }
                throw Diagnostic.error(message, at: SourceRange(.unknown(path), length: 0), notes: notes)
            }
            walked.append(s)
            current = v
        }
        return current
    }
}
