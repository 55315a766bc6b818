/// A routing in the arena: `tokens × slots` expert indices (Int32, −1 for an empty slot, −2 in
/// every slot of an invalid token: `RoutingMath.invalidToken`) followed by as many weights (Float).
struct RoutingBuffer {
    let experts: UnsafeMutablePointer<Int32>
    let weights: UnsafeMutablePointer<Float>
    let tokens: Int
    let slots: Int

    init(_ raw: UnsafeMutableRawPointer, tokens: Int, slots: Int) {
        experts = raw.assumingMemoryBound(to: Int32.self)
        weights = (raw + tokens * slots * 4).assumingMemoryBound(to: Float.self)
        self.tokens = tokens
        self.slots = slots
    }

    /// Marks token `t` invalid: every slot `RoutingMath.invalidToken`, weight 0.
    @inline(__always)
    func markInvalid(_ t: Int) {
        for j in 0..<slots {
            experts[t * slots + j] = RoutingMath.invalidToken
            weights[t * slots + j] = 0
        }
    }

    func copy(to other: RoutingBuffer) {
        other.experts.update(from: experts, count: tokens * slots)
        other.weights.update(from: weights, count: tokens * slots)
    }
}
