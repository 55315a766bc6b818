import MoEBasics

/// An error in a weight or tensor file (safetensors, sharded index, `.npy`, fingerprint).
///
/// It always names the file, and where it applies the tensor and the absolute byte offset in
/// the file where the problem was found. The description reads
/// `model.safetensors: tensor 'model.layers.0.mlp.gate.weight': data_offsets [1024, 9216] end beyond
/// the data section (8000 bytes, data begins at byte 96)`; messages that have an offset say
/// where it is in words, so the description alone is enough for a person.
public struct WeightFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file as it was given to the reader.
    public var path: String
    /// The tensor the problem concerns, if any.
    public var tensor: String?
    /// Absolute byte offset in the file where the problem was found, if one applies.
    public var byteOffset: Int?
    public var message: String

    public init(path: String, tensor: String? = nil, byteOffset: Int? = nil, message: String) {
        self.path = path
        self.tensor = tensor
        self.byteOffset = byteOffset
        self.message = message
    }

    /// A tensor the file does not have, with up to three names close to it ("did you mean").
    static func noSuchTensor(_ name: String, in names: some Collection<String>, path: String) -> WeightFileError {
        let close = NameSuggestions.closest(to: name, in: names, limit: 3)
        let hint = close.isEmpty ? "" : "; did you mean " + close.map { "'\($0)'" }.joined(separator: ", ") + "?"
        return WeightFileError(path: path, tensor: name, message: "no such tensor in this file" + hint)
    }

    public var description: String {
        var s = path + ": "
        if let t = tensor { s += "tensor '\(t)': " }
        return s + message
    }
}
