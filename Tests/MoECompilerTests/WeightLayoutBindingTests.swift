import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEIR
import MoETestSupport
import Testing

/// Layout steps meet real tensors: a step that does not fit the checkpoint's tensor, or a chain
/// that ends in the wrong shape, is an error at the weight's declaration when the checkpoint is
/// bound; a good chain shows in `--emit plan` and survives the plan file.
@Suite struct WeightLayoutBindingTests {
    /// The aria fixture: experts.fc1.weight is [4, 16, 24] (input-first), router.weight [4, 16].
    static let aria = RepoPaths.fixtures + "/aria-tiny"
    static let dbrx = RepoPaths.fixtures + "/dbrx-tiny"

    func bindingErrors(_ source: String, model: String) throws -> [Diagnostic] {
        let dir = TemporaryDirectory()
        try source.write(toFile: dir.file("g.moe"), atomically: true, encoding: .utf8)
        let session = CompilerSession(CompileOptions(graphPath: dir.file("g.moe"), modelDirectory: model))
        do {
            _ = try session.boundGraph()
        } catch let e as DiagnosticError {
            return e.diagnostics
        }
        return []
    }

    func graph(_ weight: String, use: String) -> String {
        """
        param hidden = 16 from "hidden_size"
        param ffn = 12 from "intermediate_size"
        param num_experts = 4 from "moe_num_experts"
        input x: [tokens, hidden]
        \(weight)
        let y = moe(x) {
          router: x |> linear(gate) |> topk(2) |> softmax
          experts: num_experts of \(use)
        }
        output y
        """
    }

    @Test func aStepThatDoesNotFitTheTensorIsLocated() throws {
        let source = graph(
            """
            weights "model.layers.1.mlp." {
              gate: [num_experts, hidden] = "router.weight"
              gate_up: [num_experts, 2 * ffn, hidden] = "experts.fc1.weight" |> squeeze(1)
              down: [num_experts, hidden, ffn] = "experts.fc2.weight" |> transpose
            }
            """, use: "swiglu(gate_up: gate_up, down: down)")
        let errors = try bindingErrors(source, model: Self.aria)
        #expect(errors.count == 1, "\(errors)")
        #expect(
            errors.first?.message
                == "weight 'gate_up': layout step 'squeeze(1)' does not fit tensor 'model.layers.1.mlp.experts.fc1.weight' of shape [4, 16, 24]: squeeze(1) needs dimension 1 of size 1, the tensor is [4, 16, 24]"
        )
        #expect(errors.first?.location?.line == 7 && errors.first?.location?.column == 3)
    }

    @Test func aChainEndingInTheWrongShapeIsLocated() throws {
        let source = graph(
            """
            weights "model.layers.1.mlp." {
              gate: [num_experts, hidden] = "router.weight"
              gate_up: [num_experts, 2 * ffn, hidden] = "experts.fc1.weight" |> transpose |> transpose
              down: [num_experts, hidden, ffn] = "experts.fc2.weight" |> transpose
            }
            """, use: "swiglu(gate_up: gate_up, down: down)")
        let errors = try bindingErrors(source, model: Self.aria)
        #expect(
            errors.first?.message
                == "tensor 'model.layers.1.mlp.experts.fc1.weight' has shape [4, 16, 24], which 'transpose |> transpose' makes [4, 16, 24], but weight 'gate_up' expects [4, 24, 16]",
            "\(errors)")
        #expect(errors.first?.location?.line == 7)
    }

    @Test func aReshapeOfTheWrongSizeIsLocated() throws {
        // dbrx's w1 is [4·12, 16]; with ffn = 10 the reshape needs 640 elements, the tensor has 768.
        let session = CompilerSession(
            CompileOptions(graphPath: RepoPaths.graphs + "/dbrx.moe", modelDirectory: Self.dbrx, overrides: [("layer", "1"), ("ffn", "10")]))
        var messages: [String] = []
        do { _ = try session.boundGraph() } catch let e as DiagnosticError { messages = e.diagnostics.map(\.message) }
        #expect(
            messages.contains(
                "weight 'w_gate': layout step 'reshape([4, 10, 16])' does not fit tensor 'transformer.blocks.1.ffn.experts.mlp.w1' of shape [48, 16]: reshape([4, 10, 16]) needs 640 elements, the tensor [48, 16] has 768"
            ), "\(messages)")
    }

    @Test func thePlanShowsAndKeepsTheLayout() throws {
        let options = CompileOptions(graphPath: RepoPaths.graphs + "/dbrx.moe", modelDirectory: Self.dbrx, overrides: [("layer", "1")])
        let plan = try CompilerSession(options).emit(.plan)
        #expect(plan.contains("transformer.blocks.1.ffn.experts.mlp.w2 |> reshape([4, 12, 16]) |> transpose"), "\(plan)")
        let ir = try CompilerSession(options).emit(.ir)
        #expect(ir.contains(#"= "transformer.blocks.1.ffn.experts.mlp.w2" layout "reshape([4, 12, 16]) |> transpose""#), "\(ir)")
        let dir = TemporaryDirectory()
        let path = try CompilerSession(options).writePlan(to: dir.file("plan.json"))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(#""reshape([4, 12, 16])""#) && text.contains(#""transpose""#))
    }
}
