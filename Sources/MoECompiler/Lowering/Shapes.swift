import MoEBasics
import MoEIR
import MoESyntax

// Shapes and compile-time values: dimensions, integer and constant expressions, the input and
// weight declarations, and tensor-name patterns.
extension ASTToIR {
    /// Evaluates a dimension: an integer expression over int params, or the token symbol.
    private mutating func dim(_ e: Expr, allowTokens: Bool, what: String) throws(Diagnostic) -> Dim {
        if case .name(let id) = e, scope[id.name] == nil {
            if let t = tokensName {
                guard id.name == t else {
                    var notes: [Diagnostic.Note] = [.init("the token dimension is '\(t)'", at: tokensRange)]
                    if let s = NameSuggestions.best(for: id.name, in: Array(scope.keys) + [t]) { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
                    throw .error("unknown dimension '\(id.name)'", at: id.range, notes: notes)
                }
            } else if allowTokens {
                if let c = NameSuggestions.best(for: id.name, in: scope.keys), NameSuggestions.editDistance(c, id.name) <= 1 {
                    throw .error(
                        "unknown dimension '\(id.name)'", at: id.range,
                        notes: [
                            .init("did you mean the param '\(c)'?"),
                            .init("a name that is not a param is the graph's token dimension; one is allowed")
                        ])
                }
                tokensName = id.name
                tokensRange = id.range
            }
            guard allowTokens else {
                throw .error(
                    "the token dimension '\(id.name)' cannot appear in \(what)", at: id.range,
                    notes: [.init("only the first dimension of an input can be the token count")])
            }
            return .tokens
        }
        return .fixed(try intValue(e, what: "a dimension"))
    }

    /// Evaluates a compile-time integer expression.
    mutating func intValue(_ e: Expr, what: String) throws(Diagnostic) -> Int {
        switch try constant(e) {
        case .int(let v): return v
        case .float(let f) where f == f.rounded() && abs(f) < 1e15: return Int(f)
        case .poisoned: throw ASTToIR.alreadyReported
        case .null: throw nullUse(e, expecting: "an integer")
        default: throw .error("\(what) must be an integer known at compile time", at: e.range)
        }
    }

    /// Evaluates an expression that must be a compile-time value (number, bool, string).
    mutating func constant(_ e: Expr) throws(Diagnostic) -> Value {
        let v = try lower(e)
        switch v {
        case .tensor:
            throw .error("expected a value known at compile time, but this is a tensor", at: e.range)
        case .symbol(let s):
            guard case .name(let id) = e else { throw .error("unknown name '\(s)'", at: e.range) }
            throw unknownName(id, expecting: "a param")
        default:
            return v
        }
    }

    mutating func declareInput(_ i: InputDecl) {
        guard declare(i.name) else { return }
        do throws(Diagnostic) {
            var dims: [Dim] = []
            for (k, d) in i.shape.enumerated() {
                let v = try dim(d, allowTokens: k == 0, what: k == 0 ? "" : "dimension \(k + 1) of an input")
                if case .fixed(let n) = v, n <= 0 { throw Diagnostic.error("dimension must be positive, got \(n)", at: d.range) }
                dims.append(v)
            }
            let dtype: DType = i.elementType == .i32 ? .i32 : .f32
            if TensorType(dtype, dims).addressableElementsPerToken == nil {
                throw Diagnostic.error(
                    "input '\(i.name.name)': the shape [\(dims.map { OpSchema.format($0, tokens: tokensName ?? "tokens") }.joined(separator: ", "))] has more elements per token than moec can address",
                    at: i.shapeRange, notes: [.init(Addressable.limitNote)])
            }
            let id = builder.addInput(name: i.name.name, type: TensorType(dtype, dims), at: i.name.range)
            scope[i.name.name] = (.tensor(id), i.name.range)
        } catch {
            report(error)
            scope[i.name.name] = (.poisoned, i.name.range)
        }
    }

    mutating func declareWeight(_ w: WeightDecl) {
        guard declare(w.name) else { return }
        do throws(Diagnostic) {
            var shape: [Int] = []
            var empty: SourceRange?
            for d in w.shape {
                let v = try dim(d, allowTokens: false, what: "a weight's shape")
                guard case .fixed(let n) = v, n >= 0 else {
                    throw Diagnostic.error("weight dimensions must be positive", at: d.range)
                }
                if n == 0 { empty = empty ?? d.range }
                shape.append(n)
            }
            // A dimension of 0: the weight of a part a param switches off (no shared experts).
            // It may be declared; using it is the error.
            if let empty {
                emptyWeights[w.name.name] = .error(
                    "weight '\(w.name.name)' has the shape \(shape): a dimension of 0 (its part is switched off here)", at: empty,
                    notes: [.init("guard its use with a condition, e.g. 'shared: … if n_shared != 0'")])
                scope[w.name.name] = (.declaredWeight, w.name.range)
                return
            }
            guard Addressable.elementCount(shape) != nil else {
                throw Diagnostic.error(
                    "weight '\(w.name.name)': the shape \(shape) has more elements than moec can address",
                    at: w.shapeRange, notes: [.init(Addressable.limitNote)])
            }
            let pattern = try interpolate(w.pattern, at: w.patternRange)
            if pattern.contains("{e}") && shape.count < 2 {
                throw Diagnostic.error("a weight read per expert ({e}) needs a shape [experts, …] with at least two dimensions", at: w.shapeRange)
            }
            weightDecls[w.name.name] = w
            let layout = try weightLayout(w, perTensorShape: pattern.contains("{e}") ? Array(shape.dropFirst()) : shape)
            var info = WeightInfo(name: w.name.name, pattern: pattern, shape: shape, location: w.name.range, layout: layout)
            if let f = w.format {
                let chosen = WeightFormat.allCases.filter { !$0.isGGUFType }
                guard let format = WeightFormat(rawValue: f.name), !format.isGGUFType else {
                    throw Diagnostic.error(
                        "unknown weight format '\(f.name)'; a weight is stored as "
                            + chosen.dropLast().map(\.rawValue).joined(separator: ", ") + " or \(chosen.last!.rawValue)", at: f.range)
                }
                if let group = format.group, (shape.last ?? 0) % group != 0 {
                    throw Diagnostic.error(
                        "weight '\(w.name.name)' as \(f.name): its rows of \(shape.last ?? 0) values are not whole groups of \(group)", at: f.range)
                }
                info.format = format
            }
            scope[w.name.name] = (.declaredWeight, w.name.range)
            pendingWeights[w.name.name] = info
        } catch {
            report(error)
            scope[w.name.name] = (.poisoned, w.name.range)
        }
    }

    /// The layout steps written after a weight's tensor name, checked backwards from the shape
    /// each tensor must end with: a step that cannot make the shape the steps after it need is
    /// an error at the step. Steps before a `reshape` are checked against the tensor at binding.
    private mutating func weightLayout(_ w: WeightDecl, perTensorShape: [Int]) throws(Diagnostic) -> [WeightLayoutStep] {
        var steps: [WeightLayoutStep] = []
        for c in w.layout {
            let step: WeightLayoutStep
            switch c.callee.name {
            case "transpose":
                _ = try BoundArguments.bind(c, params: [], positional: 0)
                step = .transpose
            case "reshape":
                let a = try BoundArguments.bind(c, params: ["shape"], positional: 1)
                guard let dims = try a.optionalInts("shape", &self) else { throw .error("'reshape' needs a shape, e.g. reshape([E, F, H])", at: c.callee.range) }
                if let bad = dims.first(where: { $0 <= 0 }) { throw .error("reshape dimensions must be positive, got \(bad)", at: c.callee.range) }
                step = .reshape(dims)
            case "squeeze":
                let a = try BoundArguments.bind(c, params: ["dim"], positional: 1)
                step = .squeeze(try a.optionalInt("dim", &self) ?? 0)
            case "split", "deinterleave":
                let a = try BoundArguments.bind(c, params: ["part", "of"], positional: 1)
                let part = try a.int("part", &self), count = try a.optionalInt("of", &self) ?? 2
                guard count >= 1 else { throw .error("'\(c.callee.name)' needs 'of' of at least 1, got \(count)", at: c.callee.range) }
                guard part >= 0, part < count else {
                    throw .error("'\(c.callee.name)(\(part), of: \(count))': the part must be in 0..<\(count)", at: c.callee.range)
                }
                step = c.callee.name == "split" ? .split(part: part, of: count) : .deinterleave(part: part, of: count)
            case "pad":
                let a = try BoundArguments.bind(c, params: ["rows", "cols"], positional: 0)
                let rows = try a.optionalInt("rows", &self), cols = try a.optionalInt("cols", &self)
                guard (rows == nil) != (cols == nil), let n = rows ?? cols else {
                    throw .error("'pad' takes one of 'rows:' or 'cols:', the size to pad to (pad(rows: 1024))", at: c.callee.range)
                }
                guard n >= 1 else { throw .error("'pad' needs a positive size, got \(n)", at: c.callee.range) }
                step = .pad(cols: cols != nil, to: n)
            default:
                var notes: [Diagnostic.Note] = [.init("layout steps are " + WeightLayoutStep.names.joined(separator: ", "))]
                if let s = NameSuggestions.best(for: c.callee.name, in: WeightLayoutStep.names) { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
                throw .error("unknown layout step '\(c.callee.name)'", at: c.callee.range, notes: notes)
            }
            steps.append(step)
        }
        var needed = perTensorShape
        for (step, c) in zip(steps, w.layout).reversed() {
            switch step.source(of: needed) {
            case .success(let previous?): needed = previous
            case .success(nil): return steps
            case .failure(let e):
                throw .error(
                    "weight '\(w.name.name)': \(e.message)", at: c.callee.range,
                    notes: [.init("the steps must turn the tensor into \(perTensorShape), the declared shape\(w.pattern.contains("{e}") ? " of one expert ({e})" : "")")])
            }
        }
        return steps
    }

    /// Replaces `{param}` in a tensor-name pattern; `{e}` stays for the expert index.
    private func interpolate(_ pattern: String, at range: SourceRange) throws(Diagnostic) -> String {
        var out = ""
        var rest = Substring(pattern)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw .error("unclosed '{' in tensor name \"\(pattern)\"", at: range)
            }
            let name = String(rest[rest.index(after: open)..<close])
            if name == "e" {
                out += "{e}"
            } else {
                switch scope[name]?.value {
                case .int(let v)?: out += String(v)
                case .string(let s)?: out += s
                case .poisoned?: throw ASTToIR.alreadyReported
                case .null?: throw .error("'{\(name)}' in tensor name \"\(pattern)\" is null", at: range)
                default:
                    var notes: [Diagnostic.Note] = [.init("braces in a tensor name take an int or string param, or {e} for the expert index")]
                    if let s = NameSuggestions.best(for: name, in: params.map(\.name) + ["e"]) { notes.insert(.init("did you mean '{\(s)}'?"), at: 0) }
                    throw .error("unknown name '{\(name)}' in tensor name \"\(pattern)\"", at: range, notes: notes)
                }
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}
