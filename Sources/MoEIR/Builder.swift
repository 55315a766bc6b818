import MoEBasics

/// Appends nodes to a graph, inferring each node's type from its operands with `OpSchema`.
/// A type error becomes a diagnostic at the node's source location.
public struct GraphBuilder {
    public private(set) var graph: Graph

    public init(name: String, tokensName: String = "tokens") {
        graph = Graph(name: name, tokensName: tokensName)
    }

    public mutating func setParams(_ params: [ParamBinding]) { graph.params = params }

    public func type(of id: ValueID) -> IRType { graph[id].type }

    /// Adds a computed node. Throws a diagnostic (at `range`) if the operands do not fit the op.
    @discardableResult
    public mutating func add(
        _ op: Op, _ operands: [ValueID], _ attributes: Attributes = [:],
        at ranges: [SourceRange] = [], name: String? = nil
    ) throws(Diagnostic) -> ValueID {
        let types = operands.map { graph[$0].type }
        let result: IRType
        do {
            guard let t = try OpSchema.resultType(op, types, attributes) else {
                preconditionFailure("leaf op \(op) must be added with its own method")
            }
            result = t
        } catch {
            throw Diagnostic.error(error.message, at: ranges.first, notes: error.notes.map { Diagnostic.Note($0) })
        }
        return append(Node(op: op, operands: operands, attributes: attributes, type: result, locations: ranges, name: name))
    }

    public mutating func add(
        _ op: Op, _ operands: [ValueID], _ attributes: Attributes = [:],
        at range: SourceRange?, name: String? = nil
    ) throws(Diagnostic) -> ValueID {
        try add(op, operands, attributes, at: range.map { [$0] } ?? [], name: name)
    }

    public mutating func addInput(name: String, type: TensorType, at range: SourceRange? = nil) -> ValueID {
        append(
            Node(
                op: .input, operands: [], attributes: ["name": .string(name)], type: .tensor(type),
                locations: range.map { [$0] } ?? [], name: name))
    }

    /// Adds the weight to the graph's table (once per name) and a node that reads it.
    public mutating func addWeight(_ info: WeightInfo) -> ValueID {
        let index: Int
        if let i = graph.weights.firstIndex(where: { $0.name == info.name }) {
            index = i
        } else {
            index = graph.weights.count
            graph.weights.append(info)
        }
        if let existing = graph.nodes.firstIndex(where: { $0.op == .weight && $0.attributes.int("index") == index }) {
            return ValueID(existing)
        }
        return append(
            Node(
                op: .weight, operands: [], attributes: ["index": .int(index)],
                type: .tensor(TensorType(.f32, info.shape.map { .fixed($0) })),
                locations: info.location.map { [$0] } ?? [], name: info.name))
    }

    public mutating func addConstant(_ value: Double, at range: SourceRange? = nil) -> ValueID {
        append(
            Node(
                op: .constant, operands: [], attributes: ["value": .float(value)], type: .tensor(TensorType(.f32, [])),
                locations: range.map { [$0] } ?? []))
    }

    /// Appends a node whose type the caller has already established (used by passes that
    /// copy nodes from another graph).
    @discardableResult
    public mutating func append(_ node: Node) -> ValueID {
        graph.nodes.append(node)
        return ValueID(graph.nodes.count - 1)
    }

    public mutating func rename(_ id: ValueID, to name: String) { graph[id].name = name }

    public mutating func addOutput(name: String, value: ValueID) {
        graph.outputs.append((name, value))
    }

    public mutating func finish() -> Graph { graph }
}

extension Graph {
    /// Recomputes every computed node's type from its operands, in order (after a pass
    /// changed shapes). Throws a diagnostic at the first node whose operands no longer fit.
    public mutating func reinferTypes() throws(Diagnostic) {
        for i in nodes.indices where !nodes[i].op.isLeaf {
            let n = nodes[i]
            do {
                if let t = try OpSchema.resultType(n.op, n.operands.map { nodes[$0.index].type }, n.attributes) {
                    nodes[i].type = t
                }
            } catch {
                throw Diagnostic.error(error.message, at: n.location, notes: error.notes.map { Diagnostic.Note($0) })
            }
        }
    }
}
