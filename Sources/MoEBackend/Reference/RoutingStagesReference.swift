import Foundation
import MoEIR

/// Stages on the chosen weights (see `RoutingStageOp`).
extension RoutingStageOp: ReferenceFamily {
    func evaluate(_ c: ReferenceContext) throws -> ReferenceInterpreter.Value {
        let n = c.node, a = n.attributes
        func routing(_ i: Int) -> ReferenceInterpreter.Routing { c.routing(i) }
        switch self {
        case .route_renormalize:
            var r = routing(0)
            let eps = a.float("eps") ?? 0
            for t in 0..<r.tokens {
                var sum = 0.0
                for s in 0..<r.slots where r.expert[t * r.slots + s] >= 0 { sum += r.weight[t * r.slots + s] }
                // A zero sum leaves the weights (0/0 would make NaN out of finite input).
                if sum + eps == 0 { continue }
                for s in 0..<r.slots where r.expert[t * r.slots + s] >= 0 { r.weight[t * r.slots + s] /= (sum + eps) }
            }
            return .routing(r)

        case .route_softmax:
            var r = routing(0)
            for t in 0..<r.tokens {
                let live = (0..<r.slots).filter { r.expert[t * r.slots + $0] >= 0 }
                let p = R.softmax(live.map { r.weight[t * r.slots + $0] })
                for (i, s) in live.enumerated() { r.weight[t * r.slots + s] = p[i] }
            }
            return .routing(r)

        case .route_scale:
            var r = routing(0)
            let f = a.float("factor")!
            for i in r.weight.indices where r.expert[i] >= 0 { r.weight[i] *= f }
            return .routing(r)

        case .route_sqrt:
            var r = routing(0)
            for i in r.weight.indices where r.expert[i] >= 0 { r.weight[i] = max(r.weight[i], 0).squareRoot() }
            return .routing(r)

        case .route_capacity:
            // Each expert accepts (token, slot) pairs in priority order until it holds
            // `capacity`: all tokens' first choices in token order, then all second choices, ...
            var r = routing(0)
            let cap = RoutingStageOp.capacity(a, tokens: r.tokens)
            var taken = [Int](repeating: 0, count: r.experts)
            for s in 0..<r.slots {
                for t in 0..<r.tokens {
                    let e = r.expert[t * r.slots + s]
                    guard e >= 0 else { continue }
                    if taken[e] < cap {
                        taken[e] += 1
                    } else {
                        r.expert[t * r.slots + s] = -1
                        r.weight[t * r.slots + s] = 0
                    }
                }
            }
            return .routing(r)
        }
    }
}
