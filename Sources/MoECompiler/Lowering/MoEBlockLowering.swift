import MoEBasics
import MoEIR
import MoESyntax

// The `moe(x) { router: …, experts: N of KIND(…), … }` block: its fields, the expert kinds, and
// hops, halting and upcycling.
extension ASTToIR {
    /// A moe block. With `hops: n` the block runs n times on its own output
    /// (h ← h + block(h), the router re-reading h each hop) and its value is the final h;
    /// with `halt: τ` a token stops once its update is small (‖Δh‖ < τ·‖h‖). Each hop is a
    /// `moe_experts` node with the attributes `block` (the name of the `let` the block is in,
    /// made unique with `#2`, `#3`, …) and `hop` (0 ..< n): one MoE layer (`MoELayer`).
    /// `upcycle: c` (or a list, one count per expert) duplicates experts and router rows
    /// at compile time (the ExpertUpcycling pass), keeping top-k.
    mutating func moeBlock(_ m: MoEBlock) throws(Diagnostic) -> Value {
        let inputValue = try lower(m.input)
        guard case .tensor(let x) = inputValue else {
            throw .error("the moe block's input must be a tensor", at: m.input.range)
        }
        var fields: [String: MoEField] = [:]
        let known = ["router", "experts", "shared", "hops", "halt", "upcycle", "weighting"]
        for f in m.fields {
            guard known.contains(f.name.name) else {
                var notes: [Diagnostic.Note] = [.init("a moe block has the fields " + known.joined(separator: ", "))]
                if let s = NameSuggestions.best(for: f.name.name, in: known) { notes.insert(.init("did you mean '\(s)'?"), at: 0) }
                throw .error("unknown field '\(f.name.name)' in moe block", at: f.name.range, notes: notes)
            }
            // `shared: … if COND`: shared experts a param can switch off.
            if let cond = f.condition {
                guard f.name.name == "shared" else {
                    throw .error("only 'shared:' takes a condition ('shared: … if n_shared != 0')", at: cond.range)
                }
                let v = try constant(cond)
                guard case .bool(let keep) = v else {
                    if case .null = v { throw nullUse(cond, expecting: "a bool") }
                    throw .error("the condition of 'shared: … if …' must be a bool known at compile time", at: cond.range)
                }
                if !keep { continue }
            }
            if let prev = fields[f.name.name] {
                throw .error("field '\(f.name.name)' is given twice", at: f.name.range, notes: [.init("first given here", at: prev.name.range)])
            }
            if f.kind != nil && f.name.name != "experts" {
                throw .error("'of' belongs to the experts field ('experts: 8 of swiglu(…)')", at: f.name.range)
            }
            fields[f.name.name] = f
        }
        guard let routerField = fields["router"] else {
            throw .error(
                "moe block has no router", at: m.range,
                notes: [.init("add e.g. 'router: x |> linear(gate) |> softmax |> topk(2)'")])
        }
        guard let expertsField = fields["experts"] else {
            throw .error(
                "moe block has no experts", at: m.range,
                notes: [.init("add e.g. 'experts: 8 of swiglu(gate: w1, up: w3, down: w2)'")])
        }
        guard let kindCall = expertsField.kind else {
            throw .error(
                "experts must be written 'COUNT of KIND(…)'", at: expertsField.value.range,
                notes: [.init("e.g. 'experts: num_experts of swiglu(gate: w1, up: w3, down: w2)'")])
        }
        var count = try intValue(expertsField.value, what: "the number of experts")
        guard count >= 1 else { throw .error("the number of experts must be positive, got \(count)", at: expertsField.value.range) }

        var hops = 1
        if let f = fields["hops"] {
            hops = try intValue(f.value, what: "hops")
            guard hops >= 1, hops <= 64 else { throw .error("hops must be between 1 and 64, got \(hops)", at: f.value.range) }
        }
        var haltTau: Double?
        if let f = fields["halt"] {
            switch try constant(f.value) {
            case .int(let v): haltTau = Double(v)
            case .float(let v): haltTau = v
            default: throw .error("halt takes a number: the relative update norm below which a token stops", at: f.value.range)
            }
            guard haltTau! >= 0 else { throw .error("halt must be non-negative", at: f.value.range) }
            guard hops > 1 else { throw .error("halt needs hops > 1", at: f.name.range) }
        }
        var inputName: Identifier?
        if hops > 1 {
            guard case .name(let id) = m.input else {
                throw .error("a multi-hop block needs a named input (write 'moe(h) { … }' with 'let h = …')", at: m.input.range)
            }
            inputName = id
            if let shared = fields["shared"], haltTau != nil {
                throw .error("shared experts with halting are not supported: a halted token must get no update", at: shared.name.range)
            }
        }
        // `weighting: "input"` scales each chosen expert's input row by its routing weight and sums
        // the expert outputs unweighted (Llama 4); `weighting: "output"` (the default) weights outputs.
        // (Not `weight: input`: `weight` and `input` are keywords.)
        var weightOnInput = false
        if let f = fields["weighting"] {
            guard case .string(let side, _) = f.value, ["input", "output"].contains(side) else {
                throw .error(
                    "weighting takes \"input\" or \"output\": where the routing weight multiplies", at: f.value.range,
                    notes: [.init("'weighting: \"input\"' scales each expert's input row (Llama 4); \"output\" (the default) its output")])
            }
            weightOnInput = side == "input"
        }
        var upcycle: [Int]?
        if let f = fields["upcycle"] {
            switch try constant(f.value) {
            case .int(let c): upcycle = [Int](repeating: c, count: count)
            case .ints(let list): upcycle = list
            default: throw .error("upcycle takes a copy count, or a list with one count per expert", at: f.value.range)
            }
            guard upcycle!.count == count else {
                throw .error("upcycle lists \(upcycle!.count) copy counts, but the block has \(count) experts", at: f.value.range)
            }
            if let bad = upcycle!.first(where: { $0 < 1 }) {
                throw .error("upcycle copy counts must be at least 1, got \(bad)", at: f.value.range)
            }
        }

        // The expert kind: swiglu(gate:, up:, down:) | swiglu(gate_up:, down:) | mlp(up:, down:, act:)
        // | expert(h) { body }
        let kindAt = kindCall.callee.range
        var weights: [ValueID] = []
        var attrs: Attributes
        // Further groups of computed experts (before the fixed ones): each group's program, one
        // `program` block on the general path.
        let computedGroups = expertsField.moreGroups.prefix { !ExpertsNode.fixedKinds.contains($0.kind.callee.name) }
        if !computedGroups.isEmpty {
            if let f = fields["upcycle"] { throw .error("upcycle does not combine with groups of experts", at: f.name.range) }
            guard let hidden = builder.type(of: x).tensor?.shape.last?.fixedValue else {
                throw .error("the moe block's input must be [tokens, hidden]", at: m.input.range)
            }
            var programs: [String] = [], counts: [Int] = []
            let groups = [(count: expertsField.value, kind: kindCall, body: expertsField.body)] + computedGroups.map { (count: $0.count, kind: $0.kind, body: $0.body) }
            for (i, group) in groups.enumerated() {
                let n = i == 0 ? count : try intValue(group.count, what: "the number of experts of a group")
                guard n >= 1 else { throw .error("a group of experts needs a positive count, got \(n)", at: group.count.range) }
                let (program, ws) = try groupProgram(group.kind, group.body, experts: n, hidden: hidden)
                programs.append(program.offsettingWeights(by: weights.count).description)
                weights += ws
                counts.append(n)
            }
            count = counts.reduce(0, +)
            attrs = ["experts": .int(count), "kind": .string(ExpertKind.program.rawValue), "body": .string(programs.joined(separator: " | ")), "groups": .ints(counts)]
        } else if let body = expertsField.body {
            guard kindCall.callee.name == "expert" else {
                throw .error(
                    "an expert body follows 'expert(row)', not '\(kindCall.callee.name)(…)'", at: kindAt,
                    notes: [.init("write 'experts: n of expert(h) { … }'")])
            }
            guard let hidden = builder.type(of: x).tensor?.shape.last?.fixedValue else {
                throw .error("the moe block's input must be [tokens, hidden]", at: m.input.range)
            }
            let lowered = try lowerExpertBody(kindCall, body, experts: count, hidden: hidden)
            weights = lowered.weights
            attrs = lowered.attributes
            attrs["experts"] = .int(count)
            attrs["kind"] = .string(lowered.kind.rawValue)
        } else {
            if kindCall.callee.name == "expert" {
                throw .error(
                    "'expert(h)' needs a body: 'expert(h) { … }'", at: kindAt,
                    notes: [.init("e.g. 'experts: n of expert(h) { h |> linear(up, bias: b1) |> relu |> linear(down, bias: b2) }'")])
            }
            let kindArgs = try bindExpertKind(kindCall)
            let kind: ExpertKind
            var activation: Activation?
            switch kindCall.callee.name {
            case "swiglu": kind = kindArgs.has("gate_up") ? .swiglu_fused : .swiglu
            case "mlp": kind = .mlp
            default:
                throw .error(
                    "unknown expert kind '\(kindCall.callee.name)'", at: kindAt,
                    notes: [.init("expert kinds are swiglu(gate:, up:, down:), swiglu(gate_up:, down:), mlp(up:, down:, act:) and expert(h) { … }")])
            }
            for role in kind.matrixRoles { weights.append(try kindArgs.tensor(role, &self)) }
            if kind == .mlp { activation = Activation(rawValue: try kindArgs.symbol("act", &self, among: Activation.allCases.map(\.rawValue))) }
            attrs = ExpertsNode.attributes(kind: kind, experts: count, activation: activation)
        }
        // Fixed experts after the computed ones: `, n of zero`, `, n of copy`, `, n of constant(v)`.
        var fixed: [String] = []
        var constantRows: ValueID?
        for group in expertsField.moreGroups.dropFirst(computedGroups.count) {
            let n = try intValue(group.count, what: "the number of experts of a group")
            guard n >= 1 else { throw .error("a group of experts needs a positive count, got \(n)", at: group.count.range) }
            let kindName = group.kind.callee.name
            guard ExpertsNode.fixedKinds.contains(kindName) else {
                throw .error(
                    "the fixed experts (zero, copy, constant) come after every group of computed experts, not before '\(kindName)'",
                    at: group.kind.callee.range,
                    notes: [.init("zero: a null expert (no output); copy: the token's row; constant(v): a learned row, v [n, hidden]")])
            }
            if kindName == "constant" {
                guard constantRows == nil else {
                    throw .error("write the constant experts as one group, with their rows in one [n, hidden] weight", at: group.kind.callee.range)
                }
                let args = try BoundArguments.bind(group.kind, params: ["rows"], positional: 1)
                constantRows = try args.tensor("rows", &self)
            } else if !group.kind.arguments.isEmpty {
                throw .error("'\(kindName)' experts take no arguments", at: group.kind.callee.range)
            }
            fixed += [String](repeating: kindName, count: n)
        }
        if !fixed.isEmpty {
            if let f = fields["upcycle"] { throw .error("upcycle does not combine with fixed experts (zero, copy, constant)", at: f.name.range) }
            attrs["experts"] = .int(count + fixed.count)
            attrs["fixed"] = .string(fixed.joined(separator: " "))
            if let constantRows { weights.append(constantRows) }
        }
        let total = count + fixed.count
        if let upcycle { attrs["upcycle"] = .ints(upcycle) }
        if weightOnInput { attrs[ExpertsNode.weightOnInputAttribute] = .bool(true) }
        var blockName: String?
        if hops > 1 {
            let base = binding ?? "moe"
            var name = base, n = 1
            while blockNames.contains(name) { n += 1; name = "\(base)#\(n)" }
            blockNames.insert(name)
            blockName = name
        }

        let saved = inputName.flatMap { scope[$0.name] }
        defer { if let id = inputName, let saved { scope[id.name] = saved } }
        var h = x
        var active: ValueID?
        var result = x
        for hop in 0..<hops {
            if let id = inputName { scope[id.name] = (.tensor(h), id.range) }
            let routerValue = try lower(routerField.value)
            guard case .tensor(let routing) = routerValue, let rt = builder.type(of: routing).routing else {
                throw .error(
                    "the router must end in an expert selection such as 'topk(k)'", at: routerField.value.range,
                    notes: [.init("the router computes scores, then selects: 'x |> linear(gate) |> softmax |> topk(2)'")])
            }
            guard rt.experts == total else {
                throw .error(
                    "the router scores \(rt.experts) experts but the block declares \(total)", at: expertsField.value.range,
                    notes: [.init("the router is here", at: routerField.value.range)])
            }
            var hopAttrs = attrs
            if let blockName {
                hopAttrs["block"] = .string(blockName)
                hopAttrs["hop"] = .int(hop)
            }
            let hopNode = ExpertsNode.operands(input: h, routing: routing, matrices: weights, active: active, attributes: hopAttrs)
            var delta = try builder.add(.moe_experts, hopNode.operands, hopNode.attributes, at: [kindAt, m.range])
            if let shared = fields["shared"] {
                let sv = try lower(shared.value)
                guard case .tensor(let s) = sv, builder.type(of: s).tensor != nil else {
                    throw .error("shared must be a tensor expression, e.g. 'swiglu(x, gate: sg, up: su, down: sd)'", at: shared.value.range)
                }
                delta = try builder.add(.add, [delta, s], at: shared.name.range)
            }
            if hops == 1 {
                result = delta
            } else {
                var next: ValueID?
                if let tau = haltTau, hop + 1 < hops {
                    next = try builder.add(.halt_mask, [h, delta] + (active.map { [$0] } ?? []), ["tau": .float(tau)], at: fields["halt"]!.name.range)
                }
                h = try builder.add(.add, [h, delta], at: m.range)
                active = next
                result = h
            }
        }
        return .tensor(result)
    }

    /// Binds the experts' kind call by label only: the kind names the weight layout, not a function.
    private func bindExpertKind(_ c: Call) throws(Diagnostic) -> BoundArguments {
        let sig: [String]
        switch c.callee.name {
        case "swiglu": sig = ["gate", "up", "down", "gate_up"]
        case "mlp": sig = ["up", "down", "act"]
        default:
            throw .error(
                "unknown expert kind '\(c.callee.name)'", at: c.callee.range,
                notes: [.init("expert kinds are swiglu(gate:, up:, down:), swiglu(gate_up:, down:), mlp(up:, down:, act:) and expert(h) { … }")])
        }
        return try BoundArguments.bind(c, params: sig, positional: 0)
    }
}
