import MoEBasics
import MoEIR

/// Router fusion: the score function, the top-k selection and the weight stages after it become
/// one `fused_router` node, which the executor runs in one pass over the tokens: per token it
/// turns the row of logits into scores in a small buffer, selects (with the selection bias and
/// group limits), normalises and scales the chosen weights, and writes the routing. The
/// `[tokens, E]` score tensor and the intermediate routings are never written to memory.
///
/// The chain it matches, in a router such as `linear(gate) |> softmax |> topk(2) |> renormalize`:
///
///     scores  = softmax(logits) | sigmoid(logits)     optional (else the topk's input is used as is)
///     routing = topk(scores (, bias)) {k, groups, keep_groups, group_top, masked}
///     routing = route_renormalize {eps} | route_softmax          optional
///     routing = route_scale {factor}                                optional
///
/// becomes `fused_router logits (, bias) {score, k, …, normalize, eps, scale}` with `score` one of
/// `softmax`, `sigmoid`, `identity` and `normalize` one of `sum`, `softmax` (absent: none).
///
/// A link joins the chain only when its value has no other reader and is not a graph output (so a
/// router whose probabilities are also read elsewhere keeps them), and the softmax must have no
/// temperature or groups. `topk(by:)`, `force` and `disable` are left unfused. The fused node
/// takes the place (and name) of the chain's last node and keeps every part's source location;
/// the parts it replaced are left for dead-code elimination.
public struct RouterFusion: Pass {
    public static let name = "router-fusion"
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        var g = graph
        var uses = [Int](repeating: 0, count: g.nodes.count)
        for n in g.nodes { for o in n.operands { uses[o.index] += 1 } }
        for o in g.outputs { uses[o.value.index] += 1 }
        func single(_ i: Int) -> Bool { uses[i] == 1 }
        var readers = [[Int]](repeating: [], count: g.nodes.count)
        for (i, n) in g.nodes.enumerated() { for o in n.operands { readers[o.index].append(i) } }

        for i in g.nodes.indices where g.nodes[i].op == .topk {
            let topk = g.nodes[i]
            let a = topk.attributes
            if a.bool("with_by") == true || a["force"] != nil || a["disable"] != nil { continue }
            var attributes = Attributes()
            var locations: [SourceRange] = []
            var input = topk.operands[0]
            attributes["score"] = .string("identity")
            let scoreNode = g[input]
            if single(input.index), case .scoreFunction(let function)? = scoreNode.op.routerFusionPart,
                (scoreNode.attributes.float("temperature") ?? 1) == 1, (scoreNode.attributes.int("groups") ?? 1) == 1
            {
                attributes["score"] = .string(function)
                locations += scoreNode.locations
                input = scoreNode.operands[0]
            }
            for key in ["k", "with_bias", "groups", "keep_groups", "group_top", "masked"] {
                if let v = a[key] { attributes[key] = v }
            }
            locations += topk.locations
            var last = i
            /// The single reader of the chain's last node, when it can join as `part`.
            func next(_ part: (RouterFusionPart) -> Bool) -> Int? {
                guard single(last), let r = readers[last].first, let p = g.nodes[r].op.routerFusionPart, part(p) else { return nil }
                return r
            }
            if let r = next({
                if case .normalize = $0 { return true }; return false
            }),
                case .normalize(let how)? = g.nodes[r].op.routerFusionPart
            {
                let stage = g.nodes[r]
                attributes["normalize"] = .string(how)
                if how == "sum" { attributes["eps"] = .float(stage.attributes.float("eps") ?? 0) }
                locations += stage.locations
                last = r
            }
            if let r = next({ $0 == .scale }) {
                attributes["scale"] = .float(g.nodes[r].attributes.float("factor")!)
                locations += g.nodes[r].locations
                last = r
            }
            if last == i && attributes.string("score") == "identity" { continue } // nothing to fuse
            let fused = Node(
                op: .fused_router, operands: [input] + topk.operands.dropFirst(), attributes: attributes,
                type: g.nodes[last].type, locations: locations, name: g.nodes[last].name ?? topk.name)
            // The parts stay in the graph until dead-code elimination; only their reader changes.
            g.nodes[last] = fused
        }
        return g
    }
}
