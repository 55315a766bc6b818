import Foundation
import MoEBasics

/// The index of a node in its graph; a node's value is named by its node.
public struct ValueID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var index: Int
    public init(_ index: Int) { self.index = index }
    public static func < (a: ValueID, b: ValueID) -> Bool { a.index < b.index }
    public var description: String { "%\(index)" }
}

/// One operation and the value it produces.
public struct Node: Hashable, Sendable {
    public var op: Op
    public var operands: [ValueID]
    public var attributes: Attributes
    public var type: IRType
    /// Where in the `.moe` source this node came from. A node made by fusing others keeps all
    /// their locations, so an error found late still points at the source.
    public var locations: [SourceRange]
    /// The name the source gave this value (`let h = …`), for printing.
    public var name: String?

    public init(
        op: Op, operands: [ValueID], attributes: Attributes = [:], type: IRType,
        locations: [SourceRange] = [], name: String? = nil
    ) {
        self.op = op
        self.operands = operands
        self.attributes = attributes
        self.type = type
        self.locations = locations
        self.name = name
    }

    public var tensorType: TensorType? { type.tensor }
    public var location: SourceRange? { locations.first }
}

/// A weight the graph reads: a tensor (or one tensor per expert) from the checkpoint.
public struct WeightInfo: Hashable, Sendable {
    /// The name in the `.moe` source.
    public var name: String
    /// The tensor name with params substituted; `{e}` remains when there is one tensor per expert.
    public var pattern: String
    /// The declared shape. With `{e}`, the first dimension counts experts and each tensor has
    /// the remaining dimensions.
    public var shape: [Int]
    public var location: SourceRange?
    /// When set, slice i of the first dimension of the checkpoint's tensor is repeated
    /// `repeats[i]` times (expert upcycling): the checkpoint holds `repeats.count` slices and
    /// the weight has `repeats.reduce(0, +)`.
    public var repeats: [Int]?
    /// How each tensor read is rearranged at load into the declared layout (`|> transpose`),
    /// in order; empty when the checkpoint already has it.
    public var layout: [WeightLayoutStep]
    /// How the executor stores the weight (`--weights`): values are read as f32 from any
    /// checkpoint dtype and, for `.bf16`, rounded to bfloat16 once at load.
    public var format: WeightFormat

    public init(
        name: String, pattern: String, shape: [Int], location: SourceRange? = nil, repeats: [Int]? = nil, layout: [WeightLayoutStep] = [],
        format: WeightFormat = .f32
    ) {
        self.name = name
        self.pattern = pattern
        self.shape = shape
        self.location = location
        self.repeats = repeats
        self.layout = layout
        self.format = format
    }

    public var perExpert: Bool { pattern.contains("{e}") }

    /// The shape as stored in the checkpoint (before repeats).
    public var sourceShape: [Int] {
        guard let r = repeats else { return shape }
        return [r.count] + shape.dropFirst()
    }

    /// The checkpoint tensors this weight reads, in order, with the shape each has once its
    /// `layout` is applied (the tensor's own shape when there is no layout).
    public var tensors: [(name: String, shape: [Int])] {
        let source = sourceShape
        if perExpert {
            let each = Array(source.dropFirst())
            return (0..<(source.first ?? 0)).map { e in
                (pattern.replacingOccurrences(of: "{e}", with: String(e)), each)
            }
        }
        return [(pattern, source)]
    }

    /// The element count; the graph's invariants keep it addressable (`Addressable`).
    public var elementCount: Int { shape.reduce(1, *) }

    /// Whether the weight, and the tensors it is read from, can be addressed.
    public var isAddressable: Bool {
        Addressable.elementCount(shape) != nil && Addressable.elementCount(sourceShape) != nil
    }
}

/// The element format a weight is stored in at run time. The graph's arithmetic is f32 either
/// way: a `.bf16` weight's values are rounded to bfloat16 (nearest even) once, when the plan is
/// loaded, and the kernels widen them back to f32 exactly, so the format decides the numbers a
/// product sees and the bytes it streams, never how it accumulates.
public enum WeightFormat: String, Sendable, Hashable, CaseIterable {
    case f32
    case bf16
    /// IEEE binary16: half the bytes, 11 significant bits (range to 65504); values rounded to
    /// nearest even once at load, an f16 checkpoint's kept exactly.
    case f16
    /// 8-bit integers in groups of 32 along each row, one fp32 scale per group (llama.cpp's
    /// Q8_0 rounding: S = max|w| / 127, q = round(w / S)).
    case int8
    /// 4-bit integers in groups of 32 (llama.cpp's Q4_0 rounding: w = (q - 8)·S), and in groups
    /// of 64 and 128 (fewer scales, coarser values).
    case int4
    case int4g64
    case int4g128
    /// 4-bit integers with zero points: per group an fp32 scale and offset (llama.cpp's Q4_1
    /// rounding: S = (max − min) / 15, w = q·S + min), in groups of 32, 64 or 128. A GPTQ or AWQ
    /// checkpoint's linears get the one of their group, and keep their values (offset −zero·S).
    case int4z
    case int4zg64
    case int4zg128
    /// A GGUF file's quantized type, kept: its values and scales exactly, repacked once at load
    /// into moec's int8 (Q8_0), int5 (Q5_K with its per-group offsets, groups of 32), int6
    /// (Q6_K, groups of 16) or int4 (Q4_0; Q4_K with its per-group offsets)
    /// panels, never widened to f32 in memory. Chosen when a `.gguf` model's expert tensors have
    /// that type.
    case q8_0
    case q4_0
    case q4_k
    case q5_k
    case q6_k

    /// Bytes per weight as moec packs it, scales (and offsets) included (int8: 1 + 4/32).
    public var bytesPerWeight: Double {
        switch self {
        case .f32: return 4
        case .bf16, .f16: return 2
        default: return Double(bits) / 8 + (offsets ? 8 : 4) / Double(group!)
        }
    }

    /// Whether each group also has an offset (w = q·S + M with any M).
    public var offsets: Bool { self == .q4_k || self == .q5_k || self == .int4z || self == .int4zg64 || self == .int4zg128 }

    /// Whether the values come as stored in a GGUF file (not rounded by moec).
    public var isGGUFType: Bool { self == .q8_0 || self == .q4_0 || self == .q4_k || self == .q5_k || self == .q6_k }

    /// Bits of one stored value.
    public var bits: Int {
        switch self {
        case .f32: return 32
        case .bf16, .f16: return 16
        case .int8, .q8_0: return 8
        // Q5_K's and Q6_K's values go into 5- and 6-bit panels (on CPUs with AVX-512 into 8-bit
        // ones for now: `ExpertMatrices.packedFormat`; their byte counts here are then short).
        case .q5_k: return 5
        case .q6_k: return 6
        case .int4, .int4g64, .int4g128, .int4z, .int4zg64, .int4zg128, .q4_0, .q4_k: return 4
        }
    }

    /// Values of a row per scale (nil for the float formats).
    public var group: Int? {
        switch self {
        case .f32, .bf16, .f16: return nil
        case .int8, .int4, .int4z, .q8_0, .q4_0, .q4_k, .q5_k: return 32
        case .q6_k: return 16
        case .int4g64, .int4zg64: return 64
        case .int4g128, .int4zg128: return 128
        }
    }

    /// Whether values are integers with scales (their rounding happens once, at load).
    public var isQuantized: Bool { group != nil }

    /// How `moec compile --weights` spells it (`int4:64` for `.int4g64`).
    public var optionName: String {
        switch self {
        case .int4g64: return "int4:64"
        case .int4g128: return "int4:128"
        case .int4zg64: return "int4z:64"
        case .int4zg128: return "int4z:128"
        default: return rawValue
        }
    }

    /// The format `moec compile --weights` spells `name`: a raw value, or `int4:G` / `int8:32`.
    public init?(option name: String) {
        switch name {
        case "int8:32": self = .int8
        case "int4:32": self = .int4
        case "int4:64": self = .int4g64
        case "int4:128": self = .int4g128
        case "int4z:32": self = .int4z
        case "int4z:64": self = .int4zg64
        case "int4z:128": self = .int4zg128
        default: self.init(rawValue: name)
        }
    }
}

/// A compile-time parameter's final value and where it came from, kept for printing and plans.
public struct ParamBinding: Hashable, Sendable {
    public enum Value: Hashable, Sendable, CustomStringConvertible {
        case int(Int), float(Double), bool(Bool), string(String)
        /// An optional param (`int?`) whose value is JSON's null.
        case null
        public var description: String {
            switch self {
            case .int(let v): return String(v)
            case .float(let v): return String(v)
            case .bool(let v): return String(v)
            case .string(let s): return "\"\(s)\""
            case .null: return "null"
            }
        }
    }
    public var name: String
    public var value: Value
    /// "default", "config.json:key" or "--set".
    public var source: String
    public init(name: String, value: Value, source: String) {
        self.name = name
        self.value = value
        self.source = source
    }
}

/// A typed, shape-inferred dataflow graph in static single assignment form: nodes are in
/// topological order and every operand refers to an earlier node.
public struct Graph: Hashable, Sendable {
    public var name: String
    /// The name of the symbolic dimension (the token count), as written in the source.
    public var tokensName: String
    public var params: [ParamBinding]
    public var weights: [WeightInfo]
    public var nodes: [Node]
    public var outputs: [(name: String, value: ValueID)]
    /// The memory plan's liveness, set by the `memory-planning` pass: per node, the index of the
    /// last node that reads its value (`nodes.count` for a graph output, which lives to the end
    /// of the run; the node's own index when nothing reads it). The executor's arena reuses a
    /// value's bytes after that step. nil: no plan, every value keeps its own bytes. A pass that
    /// changes the node list after planning must plan again (`compact` drops the plan).
    public var lastReaders: [Int]?

    public init(
        name: String, tokensName: String = "tokens", params: [ParamBinding] = [], weights: [WeightInfo] = [],
        nodes: [Node] = [], outputs: [(name: String, value: ValueID)] = []
    ) {
        self.name = name
        self.tokensName = tokensName
        self.params = params
        self.weights = weights
        self.nodes = nodes
        self.outputs = outputs
    }

    public subscript(id: ValueID) -> Node {
        get { nodes[id.index] }
        set { nodes[id.index] = newValue }
    }

    public var ids: [ValueID] { nodes.indices.map(ValueID.init) }

    /// Input nodes in declaration order.
    public var inputs: [(name: String, value: ValueID, type: TensorType)] {
        ids.compactMap { id in
            let n = self[id]
            guard n.op == .input, let name = n.attributes.string("name"), let t = n.tensorType else { return nil }
            return (name, id, t)
        }
    }

    public static func == (a: Graph, b: Graph) -> Bool {
        a.name == b.name && a.tokensName == b.tokensName && a.params == b.params && a.weights == b.weights && a.nodes == b.nodes && a.outputs.map(\.name) == b.outputs.map(\.name)
            && a.outputs.map(\.value) == b.outputs.map(\.value) && a.lastReaders == b.lastReaders
    }

    public func hash(into h: inout Hasher) {
        h.combine(name)
        h.combine(nodes)
    }
}
