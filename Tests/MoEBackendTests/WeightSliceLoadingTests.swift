import MoEBasics
import MoEIO
import MoEIR
import MoETestSupport
import Testing

@testable import MoEBackend

/// `WeightBinding.load(slices:)`, as an MPI rank loads: the wanted expert slices of a weight
/// hold the checkpoint's values (as a whole load gives them), whatever the tensors' layout and
/// dtype; weights not named are read whole.
@Suite struct WeightSliceLoadingTests {
    /// Values distinct per element (and exact in f16: small integers over 8).
    static func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(($0 * 7 + seed) % 97) / 8 } }

    /// A checkpoint of: a stacked f32 tensor [5, 3, 4], a stacked f16 one [5, 2, 3], per-expert
    /// tensors e.{e}.w [3, 4], a router [5, 4] and a 2-slice tensor upcycled to 5 slices.
    static func graphAndCheckpoint(_ dir: TemporaryDirectory) throws -> (Graph, Checkpoint) {
        var tensors = [
            SafetensorsWriter.Tensor(name: "stacked", shape: [5, 3, 4], values: values(60, seed: 1)),
            SafetensorsWriter.Tensor(name: "half", shape: [5, 2, 3], dtype: .f16, values: values(30, seed: 2)),
            SafetensorsWriter.Tensor(name: "router", shape: [5, 4], values: values(20, seed: 3)),
            SafetensorsWriter.Tensor(name: "source", shape: [2, 3, 4], values: values(24, seed: 4))
        ]
        for e in 0..<5 { tensors.append(SafetensorsWriter.Tensor(name: "e.\(e).w", shape: [3, 4], values: values(12, seed: 10 + e))) }
        try SafetensorsWriter.write(tensors: tensors, to: dir.file("model.safetensors"))
        var b = GraphBuilder(name: "slices")
        _ = b.addWeight(WeightInfo(name: "stacked", pattern: "stacked", shape: [5, 3, 4]))
        _ = b.addWeight(WeightInfo(name: "half", pattern: "half", shape: [5, 2, 3]))
        _ = b.addWeight(WeightInfo(name: "each", pattern: "e.{e}.w", shape: [5, 3, 4]))
        _ = b.addWeight(WeightInfo(name: "router", pattern: "router", shape: [5, 4]))
        _ = b.addWeight(WeightInfo(name: "upcycled", pattern: "source", shape: [5, 3, 4], repeats: [3, 2]))
        return (b.finish(), try Checkpoint(path: dir.path))
    }

    @Test func wantedSlicesHoldTheCheckpointsValues() throws {
        let dir = TemporaryDirectory()
        let (graph, checkpoint) = try Self.graphAndCheckpoint(dir)
        let whole = try WeightBinding.load(graph, checkpoint)
        let wanted: Set<Int> = [1, 3, 4]
        let sliced = try WeightBinding.load(graph, checkpoint, slices: [0: wanted, 1: wanted, 2: wanted, 4: wanted])
        for (i, w) in graph.weights.enumerated() {
            let per = w.shape.dropFirst().reduce(1, *)
            for s in 0..<w.shape[0] where i == 3 || wanted.contains(s) {
                let want = Array(UnsafeBufferPointer(start: whole[i].floats + s * per, count: per))
                let got = Array(UnsafeBufferPointer(start: sliced[i].floats + s * per, count: per))
                #expect(got == want, "weight \(w.name), slice \(s)")
            }
        }
        // The whole load itself is the checkpoint's values (upcycled slice 4 is source slice 1).
        #expect(Array(UnsafeBufferPointer(start: whole[0].floats + 12, count: 12)) == Array(Self.values(60, seed: 1)[12..<24]))
        #expect(Array(UnsafeBufferPointer(start: whole[4].floats + 48, count: 12)) == Array(Self.values(24, seed: 4)[12..<24]))
    }

    /// gpt-oss's experts: one stacked tensor [E, hidden, 2·ffn], input-first with gate and up
    /// interleaved by column, made [E, ffn, hidden] by `transpose |> deinterleave(p, of: 2)`. Each
    /// expert's slice is read and rearranged alone, so a rank reads only its experts' bytes;
    /// a layout that mixes experts (a transpose of a 2-D tensor) is still read whole.
    @Test func rearrangedStackedTensorsAreReadSliceBySlice() throws {
        let dir = TemporaryDirectory()
        try SafetensorsWriter.write(
            tensors: [
                .init(name: "gate_up", shape: [5, 4, 6], values: Self.values(120, seed: 5)),
                .init(name: "flat", shape: [4, 5], values: Self.values(20, seed: 6))
            ], to: dir.file("model.safetensors"))
        var b = GraphBuilder(name: "rearranged")
        _ = b.addWeight(WeightInfo(name: "gate", pattern: "gate_up", shape: [5, 3, 4], layout: [.transpose, .deinterleave(part: 0, of: 2)]))
        _ = b.addWeight(WeightInfo(name: "up", pattern: "gate_up", shape: [5, 3, 4], layout: [.transpose, .deinterleave(part: 1, of: 2)]))
        _ = b.addWeight(WeightInfo(name: "flat", pattern: "flat", shape: [5, 4], layout: [.transpose]))
        let graph = b.finish()
        let checkpoint = try Checkpoint(path: dir.path)
        let whole = try WeightBinding.load(graph, checkpoint)
        let wanted: Set<Int> = [0, 3]
        var progress: [(done: Int, total: Int)] = []
        let sliced = try WeightBinding.load(graph, checkpoint, slices: [0: wanted, 1: wanted, 2: wanted]) { progress.append(($0, $1)) }
        for (i, w) in graph.weights.enumerated() {
            let per = w.shape.dropFirst().reduce(1, *)
            for s in wanted {
                let want = Array(UnsafeBufferPointer(start: whole[i].floats + s * per, count: per))
                #expect(Array(UnsafeBufferPointer(start: sliced[i].floats + s * per, count: per)) == want, "\(w.name), slice \(s)")
            }
        }
        // gate, expert 3, row 1 (ffn index 1), is column 2·1 + 0 of the tensor's expert-3 plane.
        let plane = Array(Self.values(120, seed: 5)[72..<96])
        let column: [Float] = (0..<4).map { plane[$0 * 6 + 2] }
        #expect(Array(UnsafeBufferPointer(start: whole[0].floats + 3 * 12 + 4, count: 4)) == column)
        // Read: 2 of the 5 slices of gate_up (24 floats each) for gate and again for up, and flat
        // whole (20 floats; reading gate_up whole would be 120 floats twice).
        let expected: Int = (2 * 24 + 2 * 24 + 20) * 4
        #expect(progress.last?.total == expected)
        #expect(progress.last?.done == expected)
    }

    @Test func partialReadsAreCheckedAgainstTheTensor() throws {
        let dir = TemporaryDirectory()
        let (_, checkpoint) = try Self.graphAndCheckpoint(dir)
        var out = [Float](repeating: 0, count: 8)
        #expect(throws: WeightFileError.self) {
            try out.withUnsafeMutableBufferPointer { try checkpoint.copyFloats("router", elements: 16..<24, into: $0) }
        }
        try out.withUnsafeMutableBufferPointer { try checkpoint.copyFloats("half", elements: 22..<30, into: $0) }
        #expect(out == Array(Self.values(30, seed: 2)[22..<30]))
    }
}
