import MoEBasics

/// Graphs as JSON, for compiled plans. Reading checks the structure and reports what is wrong
/// with a damaged or foreign file; the caller then runs the verifier for the semantics.
public struct GraphDecodingError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension Graph {
    public func toJSON() -> JSON {
        var o = JSONObject()
        o["name"] = .string(name)
        o["tokens"] = .string(tokensName)
        o["params"] = .array(
            params.map { p in
                let v: JSON
                switch p.value {
                case .int(let i): v = JSON(i)
                case .float(let d): v = JSON(d)
                case .bool(let b): v = JSON(b)
                case .string(let s): v = JSON(s)
                case .null: v = .null
                }
                let kind: String
                switch p.value {
                case .int: kind = "int"
                case .float: kind = "float"
                case .bool: kind = "bool"
                case .string: kind = "string"
                case .null: kind = "null"
                }
                return JSON(["name": JSON(p.name), "type": JSON(kind), "value": v, "source": JSON(p.source)])
            })
        o["weights"] = .array(
            weights.map { w in
                var wo = JSONObject([("name", JSON(w.name)), ("pattern", JSON(w.pattern)), ("shape", .array(w.shape.map { JSON($0) }))])
                if let l = w.location { wo["loc"] = Self.encode(l) }
                if let r = w.repeats { wo["repeats"] = .array(r.map { JSON($0) }) }
                if !w.layout.isEmpty { wo["layout"] = .array(w.layout.map { JSON($0.description) }) }
                if w.format != .f32 { wo["format"] = .string(w.format.rawValue) }
                return .object(wo)
            })
        o["nodes"] = .array(
            nodes.map { n in
                var no = JSONObject()
                no["op"] = .string(n.op.rawValue)
                if !n.operands.isEmpty { no["in"] = .array(n.operands.map { JSON($0.index) }) }
                if !n.attributes.isEmpty {
                    no["attrs"] = .object(JSONObject(n.attributes.map { ($0.key, Self.encode($0.value)) }))
                }
                no["type"] = Self.encode(n.type)
                if let name = n.name { no["name"] = .string(name) }
                if !n.locations.isEmpty { no["loc"] = .array(n.locations.map(Self.encode)) }
                return .object(no)
            })
        o["outputs"] = .array(outputs.map { JSON(["name": JSON($0.name), "value": JSON($0.value.index)]) })
        if let l = lastReaders { o["last_readers"] = .array(l.map { JSON($0) }) }
        return .object(o)
    }

    public init(json: JSON) throws(GraphDecodingError) {
        func fail(_ m: String) -> GraphDecodingError { GraphDecodingError(message: "malformed graph: " + m) }
        guard let name = json["name"]?.string, let tokens = json["tokens"]?.string,
            let params = json["params"]?.array, let weights = json["weights"]?.array,
            let nodes = json["nodes"]?.array, let outputs = json["outputs"]?.array
        else {
            throw fail("missing one of name, tokens, params, weights, nodes, outputs")
        }
        var g = Graph(name: name, tokensName: tokens)
        for (i, p) in params.enumerated() {
            guard let pn = p["name"]?.string, let kind = p["type"]?.string, let v = p["value"], let src = p["source"]?.string else {
                throw fail("param \(i)")
            }
            let value: ParamBinding.Value
            switch kind {
            case "int": guard let x = v.int else { throw fail("param \(pn) value") }; value = .int(x)
            case "float": guard let x = v.double else { throw fail("param \(pn) value") }; value = .float(x)
            case "bool": guard let x = v.bool else { throw fail("param \(pn) value") }; value = .bool(x)
            case "string": guard let x = v.string else { throw fail("param \(pn) value") }; value = .string(x)
            case "null": guard v.isNull else { throw fail("param \(pn) value") }; value = .null
            default: throw fail("param \(pn) type '\(kind)'")
            }
            g.params.append(ParamBinding(name: pn, value: value, source: src))
        }
        for (i, w) in weights.enumerated() {
            guard let wn = w["name"]?.string, let pattern = w["pattern"]?.string,
                let shape = w["shape"]?.array?.compactMap(\.int), shape.count == w["shape"]?.array?.count,
                shape.allSatisfy({ $0 >= 0 })
            else { throw fail("weight \(i)") }
            var repeats: [Int]?
            if let r = w["repeats"] {
                guard let list = r.array?.compactMap(\.int), list.count == r.array?.count, list.allSatisfy({ $0 >= 1 }),
                    checkedSum(list) == shape.first
                else { throw fail("weight \(wn) repeats") }
                repeats = list
            }
            var layout: [WeightLayoutStep] = []
            if let l = w["layout"] {
                guard let texts = l.array?.compactMap(\.string), texts.count == l.array?.count else { throw fail("weight \(wn) layout") }
                for t in texts {
                    guard let step = WeightLayoutStep(text: t) else { throw fail("weight \(wn) layout step '\(t)'") }
                    layout.append(step)
                }
            }
            var format = WeightFormat.f32
            if let f = w["format"] {
                guard let text = f.string, let known = WeightFormat(rawValue: text) else {
                    throw fail("weight \(wn) format \(f.compact) (expected one of \(WeightFormat.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")))")
                }
                format = known
            }
            g.weights.append(
                WeightInfo(
                    name: wn, pattern: pattern, shape: shape, location: w["loc"].flatMap(Self.decodeRange), repeats: repeats, layout: layout,
                    format: format))
        }
        for (i, n) in nodes.enumerated() {
            guard let opName = n["op"]?.string else { throw fail("node \(i) has no op") }
            guard let op = Op(rawValue: opName) else { throw fail("node \(i) has unknown op '\(opName)'") }
            var operands: [ValueID] = []
            if let ins = n["in"] {
                guard let arr = ins.array else { throw fail("node \(i) operands") }
                for v in arr {
                    guard let k = v.int, k >= 0, k < i else { throw fail("node \(i) operand \(v.compact) is not an earlier node") }
                    operands.append(ValueID(k))
                }
            }
            var attrs = Attributes()
            if let a = n["attrs"] {
                guard let obj = a.object else { throw fail("node \(i) attrs") }
                for (k, v) in obj {
                    guard let attr = Self.decodeAttribute(v) else { throw fail("node \(i) attribute '\(k)'") }
                    attrs[k] = attr
                }
            }
            guard let t = n["type"], let type = Self.decodeType(t) else { throw fail("node \(i) type") }
            let locs = n["loc"]?.array?.compactMap(Self.decodeRange) ?? []
            g.nodes.append(Node(op: op, operands: operands, attributes: attrs, type: type, locations: locs, name: n["name"]?.string))
        }
        for (i, o) in outputs.enumerated() {
            guard let on = o["name"]?.string, let v = o["value"]?.int, v >= 0, v < g.nodes.count else { throw fail("output \(i)") }
            g.outputs.append((on, ValueID(v)))
        }
        if let l = json["last_readers"] {
            // Structure only here; the verifier checks the plan against the graph's readers.
            guard let list = l.array?.compactMap(\.int), list.count == l.array?.count, list.count == g.nodes.count else {
                throw fail("last_readers must hold one node index per node (\(g.nodes.count))")
            }
            g.lastReaders = list
        }
        self = g
    }

    // MARK: Pieces

    static func encode(_ r: SourceRange) -> JSON {
        .string("\(r.start.file):\(r.start.line):\(r.start.column):\(r.length)")
    }

    static func decodeRange(_ j: JSON) -> SourceRange? {
        guard let s = j.string else { return nil }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 4, let line = Int(parts[parts.count - 3]), let col = Int(parts[parts.count - 2]),
            let len = Int(parts[parts.count - 1])
        else { return nil }
        let file = parts[0..<(parts.count - 3)].joined(separator: ":")
        return SourceRange(SourceLocation(file: file, line: line, column: col), length: len)
    }

    static func encode(_ a: Attribute) -> JSON {
        switch a {
        case .int(let v): return JSON(["int": JSON(v)])
        case .float(let v):
            if v.isInfinite { return JSON(["float": JSON(v > 0 ? "inf" : "-inf")]) }
            return JSON(["float": JSON(v)])
        case .bool(let v): return JSON(v)
        case .string(let v): return JSON(v)
        case .ints(let v): return .array(v.map { JSON($0) })
        }
    }

    static func decodeAttribute(_ j: JSON) -> Attribute? {
        switch j {
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .array(let a):
            let ints = a.compactMap(\.int)
            return ints.count == a.count ? .ints(ints) : nil
        case .object(let o):
            if let i = o["int"]?.int { return .int(i) }
            if let f = o["float"] {
                if let d = f.double { return .float(d) }
                if f.string == "inf" { return .float(.infinity) }
                if f.string == "-inf" { return .float(-.infinity) }
            }
            return nil
        default: return nil
        }
    }

    static func encode(_ t: IRType) -> JSON {
        switch t {
        case .tensor(let tt):
            return JSON([
                "dtype": JSON(tt.dtype.rawValue),
                "shape": .array(
                    tt.shape.map { d in
                        switch d {
                        case .fixed(let n): return JSON(n)
                        case .tokens: return JSON("tokens")
                        }
                    })
            ])
        case .routing(let r):
            return JSON(["route_slots": JSON(r.slots), "route_experts": JSON(r.experts)])
        }
    }

    static func decodeType(_ j: JSON) -> IRType? {
        if let s = j["route_slots"]?.int, let e = j["route_experts"]?.int, s > 0, e > 0 {
            return .routing(RoutingType(slots: s, experts: e))
        }
        guard let dt = j["dtype"]?.string.flatMap(DType.init(rawValue:)), let shape = j["shape"]?.array else { return nil }
        var dims: [Dim] = []
        for d in shape {
            if let n = d.int, n >= 0 { dims.append(.fixed(n)) } else if d.string == "tokens" { dims.append(.tokens) } else { return nil }
        }
        return .tensor(TensorType(dt, dims))
    }
}

/// The sum, or nil when it overflows (a plan file may hold any numbers).
private func checkedSum(_ xs: [Int]) -> Int? {
    var total = 0
    for x in xs {
        let (t, overflow) = total.addingReportingOverflow(x)
        if overflow { return nil }
        total = t
    }
    return total
}
