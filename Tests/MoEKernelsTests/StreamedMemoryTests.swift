import Foundation
import Testing

@testable import MoEKernels

/// Packed weights' storage: small weights carved from shared huge-page slabs, large ones alone.
@Suite struct StreamedMemoryTests {
    @Test func smallWeightsAreAlignedDisjointAndShareSlabs() {
        // Sizes of small expert matrices (int4 and bf16 OLMoE-like), odd sizes included.
        let sizes = (0..<40).map { [655_360, 327_680, 1_048_577, 100, 1][$0 % 5] }
        let blocks = sizes.map { (pointer: StreamedMemory.allocate(bytes: $0), bytes: $0) }
        for (p, n) in blocks {
            #expect(Int(bitPattern: p) % 64 == 0)
            p.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: n), count: n)
        }
        // Every block kept its own bytes: none overlaps another.
        for (p, n) in blocks {
            let bytes = UnsafeBufferPointer(start: p.assumingMemoryBound(to: UInt8.self), count: n)
            #expect(bytes.allSatisfy { $0 == UInt8(truncatingIfNeeded: n) })
        }
        // Small blocks come from slabs: far fewer slabs than blocks.
        let slabs = Set(blocks.map { UInt(bitPattern: $0.pointer) & ~UInt(StreamedMemory.slabBytes - 1) })
        #expect(slabs.count <= (sizes.reduce(0, +) + StreamedMemory.slabBytes - 1) / StreamedMemory.slabBytes + 1)
        for (p, n) in blocks { StreamedMemory.free(p, bytes: n) }
    }

    @Test func largeWeightsAreHugePageAligned() {
        let n = 3 * StreamedMemory.hugePage + 4096
        let p = StreamedMemory.allocate(bytes: n)
        #expect(Int(bitPattern: p) % StreamedMemory.hugePage == 0)
        p.initializeMemory(as: UInt8.self, repeating: 7, count: n)
        StreamedMemory.free(p, bytes: n)
    }

    @Test func packedWeightsFreedAndMadeAgainKeepTheirValues() {
        // Many small packed weights made and dropped in turns: slabs are freed and carved again,
        // and a weight made after others were freed still unpacks to its values.
        for round in 0..<3 {
            var kept: [(PackedWeight, [Float])] = []
            for i in 0..<24 {
                let n = 16 + i % 5, k = 64
                let w = (0..<(n * k)).map { Float(($0 + i + round) % 13) - 6 }
                kept.append((PackedWeight(weight: w, n: n, k: k), w))
                if i % 3 == 0 { kept.removeFirst() }
            }
            for (packed, w) in kept { #expect(packed.unpacked() == w) }
        }
    }
}
