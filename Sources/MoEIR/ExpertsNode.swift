/// What an expert pass decided about a MoE block, as a mark on its `moe_experts` node (printed
/// and stored as a `true` attribute of the same name). The executor reads the marks to choose how
/// the block runs; each pass in `MoEPasses` sets one.
public enum ExpertPassMark: String, CaseIterable, Hashable, Sendable {
    /// Gate and up packed as one interleaved matrix per expert (`ExpertGateUpFusion`).
    case fuseGateUp = "fuse_gate_up"
    /// (token, slot) pairs sorted by expert, one GEMM per expert (`TokenPermutation`).
    case permute
    /// Expert matrices packed once at load time (`ExpertWeightPrepacking`).
    case prepacked
    /// The routing weight folded into the down projection's operand (`CombineFusion`).
    case combineInDown = "combine_in_down"
}

/// A typed view of a `moe_experts` node: its operands by role and its attributes by meaning. Code
/// that needs a block's input, routing or expert matrices reads them here, never by position.
///
/// Operands, in order: the input `x [T, H]`, the routing, the expert matrices in the kind's role
/// order (`ExpertKind.matrixRoles`), their biases `[E, rows]` for the roles the attribute `bias`
/// lists (in role order), then the active mask `[T]` of a halting multi-hop block (attribute
/// `with_active`). A `program` expert's weights (its body's w0, w1, …) take the matrices' place.
///
/// Experts written as expressions (`expert(h) { … }`) that fit the packed kernel's shapes are
/// `swiglu` or `mlp` blocks with biases and an `epilogue` (`ExpertProgram` text): what runs
/// between the projections instead of SwiGLU or the activation.
public struct ExpertsNode: Sendable {
    public let node: Node

    /// The view of `node`, or nil when it is not a `moe_experts` node with a known kind and
    /// enough operands for it (the verifier reports such nodes).
    public init?(_ node: Node) {
        guard node.op == .moe_experts, let kindName = node.attributes.string("kind"), let kind = ExpertKind(rawValue: kindName),
            node.operands.count == 2 + Self.weightCount(kind, node.attributes) + (node.attributes.bool("with_active") == true ? 1 : 0)
        else { return nil }
        self.node = node
        self.kind = kind
    }

    public let kind: ExpertKind
    /// The tokens' rows `[T, H]`.
    public var input: ValueID { node.operands[0] }
    /// The routing that chose each token's experts.
    public var routing: ValueID { node.operands[1] }
    /// The expert matrices `[E, rows, cols]`, in `kind.matrixRoles` order.
    public var matrices: ArraySlice<ValueID> { node.operands[2..<(2 + kind.matrixRoles.count)] }
    /// The expert matrix of one role (`gate`, `up`, `down`, `gate_up`).
    public func matrix(_ role: String) -> ValueID? {
        kind.matrixRoles.firstIndex(of: role).map { node.operands[2 + $0] }
    }
    /// The roles whose projection adds a per-expert bias (attribute `bias`, e.g. "gate up down").
    public var biasRoles: [String] { Self.biasRoles(node.attributes) }
    static func biasRoles(_ a: Attributes) -> [String] { (a.string("bias") ?? "").split(separator: " ").map(String.init) }
    /// The bias `[E, rows]` of one role's projection, if it has one.
    public func bias(_ role: String) -> ValueID? {
        biasRoles.firstIndex(of: role).map { node.operands[2 + kind.matrixRoles.count + $0] }
    }
    /// The element-wise program between the projections, when it is not plain SwiGLU or the
    /// activation (attribute `epilogue`).
    public var epilogue: ExpertProgram? {
        node.attributes.string("epilogue").flatMap { try? ExpertProgram(parsing: $0, inputs: kind == .mlp ? 1 : 2) }
    }
    /// A `program` block's bodies, one per group of computed experts (attribute `body`: the
    /// programs' texts joined by ` | `; attribute `groups`: the experts of each, default all
    /// computed experts): group g holds experts `first ..< first + count`, and its weights (of the
    /// block's w0, w1, …) hold one slice per expert of the group.
    public var bodies: [(first: Int, count: Int, program: ExpertProgram)] {
        Self.bodies(node.attributes, computed: computedExperts) ?? []
    }
    /// The group of each computed expert, and its index within the group.
    public func group(ofExpert e: Int) -> (group: Int, local: Int) {
        for (g, b) in bodies.enumerated() where e < b.first + b.count { return (g, e - b.first) }
        return (bodies.count - 1, 0)
    }
    static func bodies(_ a: Attributes, computed: Int) -> [(first: Int, count: Int, program: ExpertProgram)]? {
        guard let text = a.string("body") else { return nil }
        let texts = text.components(separatedBy: " | ")
        let counts = a.ints("groups") ?? [computed]
        guard counts.count == texts.count else { return nil }
        var out: [(first: Int, count: Int, program: ExpertProgram)] = []
        var first = 0
        for (t, c) in zip(texts, counts) {
            guard let p = try? ExpertProgram(parsing: t, inputs: 1) else { return nil }
            out.append((first, c, p))
            first += c
        }
        return out
    }
    /// A `program` expert's weight operands (its body's w0, w1, …).
    public var programWeights: ArraySlice<ValueID> { kind == .program ? expertWeights : [] }
    /// Every operand with one slice per expert: matrices, biases and a program's weights.
    public var expertWeights: ArraySlice<ValueID> {
        node.operands[2..<(2 + Self.weightCount(kind, node.attributes) - (constants == nil ? 0 : 1))]
    }

    /// Operands between the routing and the active mask.
    static func weightCount(_ kind: ExpertKind, _ a: Attributes) -> Int {
        let constants = fixedExperts(a).contains("constant") ? 1 : 0
        if kind == .program {
            guard let bodies = bodies(a, computed: 0) else { return constants }
            return (bodies.flatMap(\.program.weightsRead).max() ?? -1) + 1 + constants
        }
        return kind.matrixRoles.count + biasRoles(a).count + constants
    }

    /// The fixed experts after the computed ones (attribute `fixed`, one word per expert):
    /// `zero` (no output: a null expert), `copy` (the token's row: an identity expert) and
    /// `constant` (a learned row, one per constant expert, in the `constants` operand
    /// `[constant experts, H]`). They have no weights to multiply and cost nothing in the kernels.
    public static let fixedKinds = ["zero", "copy", "constant"]
    public var fixedExperts: [String] { Self.fixedExperts(node.attributes) }
    static func fixedExperts(_ a: Attributes) -> [String] { (a.string("fixed") ?? "").split(separator: " ").map(String.init) }
    /// Experts with weights: the first `computedExperts` of the routing's.
    public var computedExperts: Int { (node.attributes.int("experts") ?? 0) - fixedExperts.count }
    /// The rows of the constant experts `[constant experts, H]`, in their order among the fixed ones.
    public var constants: ValueID? {
        fixedExperts.contains("constant") ? node.operands[2 + Self.weightCount(kind, node.attributes) - 1] : nil
    }

    /// The active mask `[T]` of a halting multi-hop block: 1 for tokens still running.
    public var active: ValueID? { node.attributes.bool("with_active") == true ? node.operands.last : nil }
    /// The activation of `mlp` experts (SwiGLU's is silu).
    public var activation: Activation { kind == .mlp ? Activation(rawValue: node.attributes.string("act") ?? "") ?? .relu : .silu }
    /// A multi-hop block's name and this node's hop (`MoELayer`).
    public var block: String? { node.attributes.string("block") }
    public var hop: Int? { node.attributes.int("hop") }
    /// Copy counts of `upcycle:` before the `expert-upcycling` pass expands them.
    public var upcycle: [Int]? { node.attributes.ints("upcycle") }

    /// The attribute of `weighting: "input"`: the routing weight scales each chosen expert's input
    /// row, and the expert outputs are summed without it (Llama 4's `Llama4TextMoe`).
    public static let weightOnInputAttribute = "weight_input"
    /// Whether the routing weight scales the expert's input instead of its output.
    public var weightOnInput: Bool { node.attributes.bool(Self.weightOnInputAttribute) == true }

    public func has(_ mark: ExpertPassMark) -> Bool { node.attributes.bool(mark.rawValue) == true }
    public var marks: Set<ExpertPassMark> { Set(ExpertPassMark.allCases.filter(has)) }

    /// The attributes of a new block.
    public static func attributes(kind: ExpertKind, experts: Int, activation: Activation?) -> Attributes {
        var a: Attributes = ["experts": .int(experts), "kind": .string(kind.rawValue)]
        if kind == .mlp { a["act"] = .string((activation ?? .relu).rawValue) }
        return a
    }

    /// The operands and attributes of one hop of a new block: `attributes` (from
    /// `attributes(kind:experts:activation:)`, with any `upcycle`, `block`, `hop`) plus the
    /// active-mask flag when the hop reads one.
    public static func operands(
        input: ValueID, routing: ValueID, matrices: [ValueID], active: ValueID?, attributes: Attributes
    ) -> (operands: [ValueID], attributes: Attributes) {
        var a = attributes
        if active != nil { a["with_active"] = .bool(true) }
        return ([input, routing] + matrices + (active.map { [$0] } ?? []), a)
    }

    /// The type rule of `moe_experts` (see `ExpertsOp`).
    static func resultType(_ operands: [IRType], _ attrs: Attributes) throws(TypeRuleError) -> IRType? {
        guard operands.count >= 2 else { throw TypeRuleError("moe_experts needs an input, a routing and expert weights") }
        let x = try OpSchema.tensor(operands[0], "the input of the moe block")
        guard x.rank == 2, let h = x.shape[1].fixedValue else {
            throw TypeRuleError("the moe block input must be [tokens, hidden], got \(OpSchema.format(x))")
        }
        guard let r = operands[1].routing else {
            throw TypeRuleError("the router must end in a routing (e.g. '|> topk(k)'), got a tensor \(OpSchema.format(operands[1].tensor!))")
        }
        guard let kindName = attrs.string("kind"), let kind = ExpertKind(rawValue: kindName) else {
            throw TypeRuleError("moe_experts needs a kind")
        }
        let total = attrs.int("experts") ?? r.experts
        guard total == r.experts else {
            throw TypeRuleError("the block declares \(total) experts but the router scores \(r.experts)")
        }
        let roles = kind.matrixRoles
        if kind == .mlp { try OpSchema.activation(attrs) }
        // The passes' marks (plans can be edited by hand): flags, when present.
        for flag in ["with_active", weightOnInputAttribute] + ExpertPassMark.allCases.map(\.rawValue) where attrs[flag] != nil {
            guard attrs.bool(flag) != nil else { throw TypeRuleError("moe_experts attribute '\(flag)' must be true or false") }
        }
        let withActive = attrs.bool("with_active") ?? false
        // Fixed experts come after the computed ones and take no weights but the constants.
        let fixedKinds = fixedExperts(attrs)
        for f in fixedKinds where !Self.fixedKinds.contains(f) {
            throw TypeRuleError("moe_experts attribute 'fixed' names '\(f)', not one of \(Self.fixedKinds.joined(separator: ", "))")
        }
        guard fixedKinds.count < total else { throw TypeRuleError("a block needs at least one computed expert besides its fixed ones") }
        var operands = operands
        if fixedKinds.contains("constant") {
            let constantCount = fixedKinds.filter { $0 == "constant" }.count
            let last = operands.count - 1 - (withActive ? 1 : 0)
            guard last >= 2 else { throw TypeRuleError("constant experts need their rows [\(constantCount), \(h)]") }
            let c = try OpSchema.tensor(operands[last], "the constant experts' rows")
            guard c.fixedShape == [constantCount, h] else {
                throw TypeRuleError("the constant experts' rows must be [\(constantCount), \(h)], got \(OpSchema.format(c))")
            }
            operands.remove(at: last)
        }
        let count = total - fixedKinds.count
        if kind == .program {
            return try programResultType(operands, attrs, x: x, hidden: h, experts: count, withActive: withActive)
        }
        let biases = biasRoles(attrs)
        for b in biases where !roles.contains(b) || biases.filter({ $0 == b }).count > 1 {
            throw TypeRuleError("moe_experts attribute 'bias' names '\(b)', not one of the roles \(roles.joined(separator: ", ")) (once each)")
        }
        guard operands.count == 2 + roles.count + biases.count + (withActive ? 1 : 0) else {
            throw TypeRuleError(
                "\(kind) experts take \(roles.count + biases.count) weights (\((roles + biases.map { $0 + " bias" }).joined(separator: ", "))), got \(operands.count - 2 - (withActive ? 1 : 0))"
            )
        }
        if withActive {
            let a = try OpSchema.tensor(operands[operands.count - 1], "the active mask")
            guard a.shape == [x.shape[0]] else { throw TypeRuleError("the active mask must be [tokens], got \(OpSchema.format(a))") }
        }
        var ffn: Int?
        for (i, role) in roles.enumerated() {
            let w = try OpSchema.tensor(operands[2 + i], "the \(role) weight")
            guard w.rank == 3, let fixed = w.fixedShape else {
                throw TypeRuleError("expert \(role) weight must be [experts, rows, cols], got \(OpSchema.format(w))")
            }
            guard fixed[0] == count else {
                throw TypeRuleError("expert \(role) weight \(OpSchema.format(w)) holds \(fixed[0]) experts, but the block has \(count)")
            }
            let rows = role == "down" ? fixed[1] : fixed[2]
            guard rows == h else {
                throw TypeRuleError(
                    "expert \(role) weight \(OpSchema.format(w)) does not fit hidden size \(h)",
                    notes: [role == "down" ? "down weights are [experts, hidden, ffn]" : "\(role) weights are [experts, ffn, hidden]"])
            }
            var f = role == "down" ? fixed[2] : fixed[1]
            if role == "gate_up" {
                guard f % 2 == 0 else { throw TypeRuleError("gate_up weight \(OpSchema.format(w)) must have an even number of rows (gate, then up)") }
                f /= 2
            }
            if let prev = ffn, prev != f {
                throw TypeRuleError("expert \(role) weight \(OpSchema.format(w)) has ffn width \(f), but the other expert weights have \(prev)")
            }
            ffn = f
        }
        for (i, role) in biases.enumerated() {
            let b = try OpSchema.tensor(operands[2 + roles.count + i], "the \(role) bias")
            let rows = role == "down" ? h : (ffn ?? 0) * (role == "gate_up" ? 2 : 1)
            guard b.fixedShape == [count, rows] else {
                throw TypeRuleError("expert \(role) bias must be [\(count), \(rows)] (one row per expert), got \(OpSchema.format(b))")
            }
        }
        if let text = attrs.string("epilogue") {
            let program = try ExpertProgram(parsing: text, inputs: kind == .mlp ? 1 : 2)
            guard !program.hasLinear else { throw TypeRuleError("an expert epilogue is element-wise: it cannot contain 'linear'") }
            _ = try program.widths(inputs: [Int](repeating: ffn ?? 0, count: program.inputs), weightShapes: [])
        }
        return .tensor(TensorType(.f32, [x.shape[0], .fixed(h)]))
    }

    /// The type rule of a `program` expert: each group's body reads the token's row `[H]` and
    /// gives `[H]`, from weights with one slice per expert of its group.
    private static func programResultType(
        _ operands: [IRType], _ attrs: Attributes, x: TensorType, hidden h: Int, experts count: Int, withActive: Bool
    ) throws(TypeRuleError) -> IRType? {
        guard let text = attrs.string("body") else { throw TypeRuleError("a program expert needs its body") }
        let texts = text.components(separatedBy: " | ")
        let counts = attrs.ints("groups") ?? [count]
        guard counts.count == texts.count, counts.allSatisfy({ $0 >= 1 }), counts.reduce(0, +) == count else {
            throw TypeRuleError("a program block's groups \(counts) must give one positive count per body and add up to its \(count) computed experts")
        }
        let programs = try texts.map { t throws(TypeRuleError) in try ExpertProgram(parsing: t, inputs: 1) }
        let n = (programs.flatMap(\.weightsRead).max() ?? -1) + 1
        guard operands.count == 2 + n + (withActive ? 1 : 0) else {
            throw TypeRuleError("the expert body reads \(n) weights, but the block has \(operands.count - 2 - (withActive ? 1 : 0))")
        }
        var shapes: [[Int]] = []
        for i in 0..<n {
            let w = try OpSchema.tensor(operands[2 + i], "expert weight w\(i)")
            guard let fixed = w.fixedShape, fixed.count >= 2 else {
                throw TypeRuleError("expert weight w\(i) must hold one slice per expert ([experts, …]), got \(OpSchema.format(w))")
            }
            shapes.append(fixed)
        }
        for (g, program) in programs.enumerated() {
            for i in program.weightsRead where shapes[i][0] != counts[g] {
                throw TypeRuleError("expert weight w\(i) holds \(shapes[i][0]) experts, but its group has \(counts[g])")
            }
            let widths = try program.widths(inputs: [h], weightShapes: shapes)
            guard widths.last == h else {
                throw TypeRuleError("the expert body gives rows of \(widths.last ?? 0) values, but the block's hidden size is \(h)")
            }
        }
        return .tensor(TensorType(.f32, [x.shape[0], .fixed(h)]))
    }
}

extension Node {
    /// The typed view of a `moe_experts` node, else nil.
    public var expertsView: ExpertsNode? { ExpertsNode(self) }

    /// Sets (or clears) one of the expert passes' marks on a `moe_experts` node.
    public mutating func setMark(_ mark: ExpertPassMark, _ on: Bool = true) {
        attributes[mark.rawValue] = on ? .bool(true) : nil
    }
}

extension Graph {
    /// Every `moe_experts` node with its typed view, in graph order.
    public var expertsNodes: [(id: ValueID, view: ExpertsNode)] {
        ids.compactMap { id in self[id].expertsView.map { (id, $0) } }
    }
}
