import MoEIR
import Testing

/// Layout steps rearrange a checkpoint tensor at load; each is checked on small tensors whose
/// expected result is written out by hand.
@Suite struct WeightLayoutTests {
    let m23: [Float] = [1, 2, 3, 4, 5, 6] // [[1, 2, 3], [4, 5, 6]]

    @Test func transposeSwapsTheLastTwoDimensions() {
        #expect(WeightLayoutStep.transpose.apply(m23, shape: [2, 3]) == [1, 4, 2, 5, 3, 6])
        #expect(WeightLayoutStep.transpose.apply(to: [4, 2, 3]) == .success([4, 3, 2]))
        // Two stacked [1, 2] matrices become two [2, 1] ones, each transposed on its own.
        #expect(WeightLayoutStep.transpose.apply([1, 2, 3, 4], shape: [2, 1, 2]) == [1, 2, 3, 4])
        #expect(WeightLayoutStep.transpose.apply([1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 2, 2]) == [1, 3, 2, 4, 5, 7, 6, 8])
    }

    @Test func splitAndDeinterleaveKeepRows() {
        let rows: [Float] = [10, 11, 20, 21, 30, 31, 40, 41] // [4, 2]: rows 10.., 20.., 30.., 40..
        #expect(WeightLayoutStep.split(part: 0, of: 2).apply(rows, shape: [4, 2]) == [10, 11, 20, 21])
        #expect(WeightLayoutStep.split(part: 1, of: 2).apply(rows, shape: [4, 2]) == [30, 31, 40, 41])
        #expect(WeightLayoutStep.deinterleave(part: 0, of: 2).apply(rows, shape: [4, 2]) == [10, 11, 30, 31])
        #expect(WeightLayoutStep.deinterleave(part: 1, of: 2).apply(rows, shape: [4, 2]) == [20, 21, 40, 41])
        // Stacked [E=2, 2, 1]: each expert's rows are split separately.
        #expect(WeightLayoutStep.split(part: 1, of: 2).apply([1, 2, 3, 4], shape: [2, 2, 1]) == [2, 4])
        // A vector's rows are its elements.
        #expect(WeightLayoutStep.split(part: 1, of: 2).apply([1, 2, 3, 4], shape: [4]) == [3, 4])
    }

    @Test func shapeRulesAndTheirErrors() {
        #expect(WeightLayoutStep.reshape([2, 3, 4]).apply(to: [6, 4]) == .success([2, 3, 4]))
        #expect(WeightLayoutStep.squeeze(0).apply(to: [1, 8]) == .success([8]))
        guard case .failure(let e) = WeightLayoutStep.reshape([2, 3, 4]).apply(to: [5, 4]) else { Issue.record("reshape of 20 elements to 24"); return }
        #expect(e.message == "reshape([2, 3, 4]) needs 24 elements, the tensor [5, 4] has 20")
        guard case .failure(let s) = WeightLayoutStep.squeeze(0).apply(to: [2, 8]) else { Issue.record("squeeze of a dimension of 2"); return }
        #expect(s.message == "squeeze(0) needs dimension 0 of size 1, the tensor is [2, 8]")
        guard case .failure(let d) = WeightLayoutStep.split(part: 0, of: 2).apply(to: [5, 4]) else { Issue.record("split of 5 rows"); return }
        #expect(d.message == "split(0, of: 2) needs a number of rows divisible by 2, the tensor [5, 4] has 5")
        // Backwards: the tensor a chain needs; open before a reshape.
        #expect([WeightLayoutStep.transpose, .split(part: 0, of: 2)].source(of: [3, 4]) == .success([4, 6]))
        #expect([WeightLayoutStep.reshape([2, 3, 4]), .transpose].source(of: [2, 4, 3]) == .success(nil))
    }

    @Test func textRoundTrips() {
        let steps: [WeightLayoutStep] = [.transpose, .reshape([4, 8, 16]), .squeeze(1), .split(part: 1, of: 2), .deinterleave(part: 0, of: 3)]
        for s in steps { #expect(WeightLayoutStep(text: s.description) == s, "\(s)") }
        #expect(WeightLayoutStep(text: "rotate") == nil)
        #expect(WeightLayoutStep(text: "reshape([])") == nil)
    }

    /// `pad` appends zeros to the rows or the last dimension; it cannot shrink a tensor.
    @Test func padAppendsZeros() {
        // [2, 3] → rows to 4: the two rows, then two rows of zeros.
        #expect(WeightLayoutStep.pad(cols: false, to: 4).apply([1, 2, 3, 4, 5, 6], shape: [2, 3]) == [1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0])
        // [2, 3] → columns to 5.
        #expect(WeightLayoutStep.pad(cols: true, to: 5).apply([1, 2, 3, 4, 5, 6], shape: [2, 3]) == [1, 2, 3, 0, 0, 4, 5, 6, 0, 0])
        // A vector's rows are its only dimension.
        #expect(WeightLayoutStep.pad(cols: false, to: 3).apply([7], shape: [1]) == [7, 0, 0])
        #expect(WeightLayoutStep.pad(cols: false, to: 4).apply(to: [2, 3]) == .success([4, 3]))
        #expect(WeightLayoutStep.pad(cols: true, to: 2).apply(to: [2, 3]) != .success([2, 2]))
        #expect(WeightLayoutStep(text: "pad(rows: 4)") == .pad(cols: false, to: 4))
        #expect(WeightLayoutStep(text: "pad(cols: 9)") == .pad(cols: true, to: 9))
        #expect(WeightLayoutStep(text: "pad(depth: 9)") == nil)
    }
}
