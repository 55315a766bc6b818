import MoEIR
import MoEKernels

/// The general path for experts written as expressions whose shape the packed kernel does not
/// cover (kind `program`: three projections, a projection of the row used element-wise, …).
///
/// 1. The (token, slot) pairs sorted by expert (`MoEExpertsKernel.permute`) and the token rows
///    gathered into register 0 (scaled by the routing weight under `weighting: "input"`).
/// 2. Per expert, its rows through the body's instructions, each over all of the expert's rows
///    at once: `linear` as one GEMM (the expert's matrix packed into scratch on moec's kernels,
///    or BLAS), plus its bias; element-wise instructions on `Kernels.expertEpilogue`.
/// 3. The result rows added to their tokens' outputs in row order, times the routing weight.
///
/// Groups of experts with different bodies (`experts: 4 of swiglu(…), 2 of expert(h) { … }`) each
/// run their own program; an expert's weights are its slice of its group's.
///
/// Every register of every group has its own `[pairs, width]` region of scratch, so the run
/// allocates nothing.
enum ExpertProgramKernel {
    /// The register widths of each group's body.
    static func widths(_ n: Node, _ g: Graph) -> [[Int]] {
        let view = n.expertsView!
        let h = g[view.input].tensorType!.shape[1].fixedValue!
        let shapes = view.programWeights.map { g[$0].tensorType!.fixedShape! }
        return view.bodies.map { (try? $0.program.widths(inputs: [h], weightShapes: shapes)) ?? [h] }
    }

    /// counts and starts, perm, permWeight, the registers, the packed matrix.
    static func scratchBytes(_ n: Node, _ g: Graph, tokens: Int) throws(ByteCount.Overflow) -> [Int] {
        typealias B = ByteCount
        let view = n.expertsView!
        let r = g[view.routing].type.routing!
        let pairs = try B.product(tokens, r.slots)
        var registers = 0
        for w in widths(n, g).joined() { registers = try B.sum(registers, try B.product(pairs, w, 4)) }
        var pack = 0
        for o in view.programWeights {
            guard let shape = g[o].tensorType?.fixedShape, shape.count == 3 else { continue }
            let panelRows = try B.roundedUp(shape[1], to: PackedWeight.panelWidth)
            pack = max(pack, try B.product(panelRows, shape[2], 4))
        }
        return [try B.product(try B.sum(try B.product(2, r.experts), 2), 4), try B.product(pairs, 4), try B.product(pairs, 4), registers, pack]
    }

    static func step(_ s: Schedule, _ n: Node, _ i: Int) -> () -> Void {
        let g = s.executable.graph
        let view = n.expertsView!
        let bodies = view.bodies
        let groupWidths = widths(n, g)
        let r = g[view.routing].type.routing!
        let h = groupWidths[0][0]
        let z = MoEExpertsKernel.Sizes(
            tokens: s.tokens, slots: r.slots, experts: view.computedExperts, hidden: h, ffn: groupWidths.joined().max()!)
        let x = UnsafePointer(s.floats(view.input))
        let routing = RoutingBuffer(s.pointer(view.routing), tokens: s.tokens, slots: z.slots)
        let y = s.floats(ValueID(i))
        let active = view.active.map { UnsafePointer(s.floats($0)) }
        let weightOnInput = view.weightOnInput
        let backend = s.executable.options.backend
        let threads = s.executable.options.threads
        let loads = s.loadCounts(i)
        let counts = s.scratch(i, 0).assumingMemoryBound(to: Int32.self)
        let starts = counts + z.experts + 1
        let perm = s.scratch(i, 1).assumingMemoryBound(to: Int32.self)
        let permWeight = s.scratch(i, 2).assumingMemoryBound(to: Float.self)
        // Group g's register k: `pairs` rows of groupWidths[g][k] floats.
        var groupRegisters: [[UnsafeMutablePointer<Float>]] = []
        var next = s.scratch(i, 3).assumingMemoryBound(to: Float.self)
        for widths in groupWidths {
            var registers: [UnsafeMutablePointer<Float>] = []
            for w in widths {
                registers.append(next)
                next += z.pairs * w
            }
            groupRegisters.append(registers)
        }
        // The group of each expert and the expert's index in it.
        var groupOf: [Int] = [], localOf: [Int] = []
        for (gi, b) in bodies.enumerated() {
            for l in 0..<b.count {
                groupOf.append(gi)
                localOf.append(l)
            }
        }
        let weights = view.programWeights.map { (raw: UnsafePointer(s.floats($0)), shape: g[$0].tensorType!.fixedShape!) }
        let packBytes = (try? scratchBytes(n, g, tokens: s.tokens))?.last ?? 0
        let packStorage = s.scratch(i, 4)
        /// Each element-wise instruction as a one-instruction kernel program over its register
        /// operands (in order), made once.
        let groupElementwise: [[(program: ExpertEpilogue, sources: [Int])?]] = bodies.map {
            $0.program.instructions.map { ins in
                var sources: [Int] = []
                func operand(_ o: ExpertProgram.Operand) -> ExpertEpilogue.Operand {
                    switch o {
                    case .register(let r):
                        sources.append(r)
                        return .register(sources.count - 1)
                    case .constant(let c): return .constant(Float(c))
                    }
                }
                switch ins {
                case .linear: return nil
                case .unary(let op, let a):
                    let a = operand(a)
                    return (ExpertEpilogue(inputs: sources.count, instructions: [.unary(.init(rawValue: op)!, a)])!, sources)
                case .binary(let op, let a, let b):
                    let a = operand(a), b = operand(b)
                    return (ExpertEpilogue(inputs: sources.count, instructions: [.binary(.init(rawValue: op)!, a, b)])!, sources)
                }
            }
        }

        return {
            y.initialize(repeating: 0, count: z.tokens * h)
            _ = MoEExpertsKernel.permute(
                routing, sizes: z, active: active, counts: counts, starts: starts, perm: perm, permWeight: permWeight, rowOf: nil,
                loads: loads)
            for e in 0..<z.experts {
                let begin = Int(starts[e]), m = Int(starts[e + 1]) - begin
                guard m > 0 else { continue }
                let gi = groupOf[e], local = localOf[e]
                let program = bodies[gi].program, widths = groupWidths[gi], registers = groupRegisters[gi]
                let elementwise = groupElementwise[gi]
                // The expert's rows of x (times the routing weight under `weighting: "input"`).
                for row in begin..<(begin + m) {
                    let src = x + Int(perm[row]) * h, dst = registers[0] + row * h
                    if weightOnInput {
                        for j in 0..<h { dst[j] = permWeight[row] * src[j] }
                    } else {
                        dst.update(from: src, count: h)
                    }
                }
                for (k, ins) in program.instructions.enumerated() {
                    let target = program.inputs + k, wOut = widths[target]
                    let out = registers[target] + begin * wOut
                    if case .linear(let src, let wi, let bi) = ins {
                        let w = weights[wi], rowsW = w.shape[1], cols = w.shape[2]
                        let raw = w.raw + local * rowsW * cols
                        let input = UnsafePointer(registers[src] + begin * widths[src])
                        if backend.isNative, PackedWeight.bytes(n: rowsW, k: cols) <= packBytes {
                            let packed = PackedWeight(n: rowsW, k: cols, storage: packStorage)
                            packed.repack(from: raw, threads: threads)
                            Kernels.gemm(input, packed, out, m: m, ldx: widths[src], ldy: wOut, threads: threads)
                        } else {
                            backend.linear(
                                input, m: m, ldx: widths[src], LinearWeight(n: rowsW, k: cols, raw: raw, packed: nil), out, ldy: wOut,
                                accumulate: false, threads: threads)
                        }
                        if let bi {
                            let bias = weights[bi].raw + local * rowsW
                            for q in 0..<m { Kernels.add(out + q * wOut, bias, out + q * wOut, count: wOut) }
                        }
                    } else if let (p, sources) = elementwise[k] {
                        let a = UnsafePointer(registers[sources[0]] + begin * wOut)
                        let b = sources.count > 1 ? UnsafePointer(registers[sources[1]] + begin * wOut) : nil
                        Kernels.expertEpilogue(p, rows: m, count: wOut, a, lda: wOut, biasA: nil, b, ldb: wOut, biasB: nil, out, ldo: wOut)
                    }
                }
                // Added to their tokens in row order (rows of one expert, experts in order).
                let result = registers[program.result]
                for row in begin..<(begin + m) {
                    Kernels.axpy(alpha: weightOnInput ? 1 : permWeight[row], result + row * h, y + Int(perm[row]) * h, count: h)
                }
            }
        }
    }
}
