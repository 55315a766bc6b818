import Foundation
import MoEBasics
import MoEIO
import MoEIR
import MoESyntax

/// What to compile: a `.moe` file, optionally a checkpoint folder, and `--set` values.
public struct CompileOptions: Sendable {
    public var graphPath: String
    /// A Hugging Face style folder (config.json + safetensors), or nil.
    public var modelDirectory: String?
    public var overrides: [(name: String, value: String)]
    /// Run the verifier after every pass (always on in debug builds and tests).
    public var verifyEachPass: Bool
    /// Passes to leave out (by `Pass.name`), to see or measure what one pass does.
    public var disabledPasses: Set<String>
    /// Optional passes to run (`Pipeline.optionalNames`), e.g. `router-score-exposure`.
    public var enabledPasses: Set<String>
    /// How feed-forward matrices are stored (`--weights`): f32, bf16, int8 or int4 for every
    /// weight that only pre-packed MoE blocks read as expert matrices, or only `swiglu`/`mlp`
    /// layers read as theirs (`FeedForwardWeightFormat`).
    public var weightFormat: WeightFormat
    /// No `--weights` was given: expert matrices a `.gguf` model stores as Q8_0, Q4_0, Q4_K, Q5_K,
    /// Q6_K, BF16 or F16 keep that type (`GGUFWeightTypes`), and a GPTQ or AWQ checkpoint's become
    /// int4 with zero points of its group (`Int4CheckpointTypes`), instead of being widened to f32.
    public var keepsCheckpointTypes: Bool
    /// The source as an editor holds it (`moec lsp`), read instead of the file at `graphPath`
    /// (which still names it in diagnostics); nil: the file.
    public var sourceText: String?

    public init(
        graphPath: String, modelDirectory: String? = nil, overrides: [(name: String, value: String)] = [],
        verifyEachPass: Bool = false, disabledPasses: Set<String> = [], enabledPasses: Set<String> = [],
        weightFormat: WeightFormat? = nil
    ) {
        self.graphPath = graphPath
        self.modelDirectory = modelDirectory
        self.overrides = overrides
        self.verifyEachPass = verifyEachPass
        self.disabledPasses = disabledPasses
        self.enabledPasses = enabledPasses
        self.weightFormat = weightFormat ?? .f32
        keepsCheckpointTypes = weightFormat == nil
    }
}

/// One compilation, stage by stage. Each stage runs the ones before it once, and every stage
/// reports problems as diagnostics that point into the `.moe` source.
public final class CompilerSession {
    public let options: CompileOptions
    public let diagnostics = DiagnosticEngine()
    public private(set) var sourceFile: SourceFile?

    private var cachedAST: SourceFileAST?
    private var cachedIR: Graph?
    /// Per set of enabled optional passes.
    private var cachedOptimized: [Set<String>: Graph] = [:]
    var cachedCheckpoint: Checkpoint?

    public init(_ options: CompileOptions) {
        self.options = options
    }

    /// Reads and parses the source. Throws `DiagnosticError` with everything found.
    public func parse() throws -> SourceFileAST {
        if let a = cachedAST { return a }
        var text = options.sourceText ?? ""
        if options.sourceText == nil {
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: options.graphPath))
                guard let s = String(data: data, encoding: .utf8) else {
                    throw DiagnosticError(.error("\(options.graphPath): not UTF-8 text"))
                }
                text = s
            } catch let e as DiagnosticError {
                throw e
            } catch {
                throw DiagnosticError(.error("cannot read '\(options.graphPath)': \(Self.reason(error))"))
            }
        }
        let file = SourceFile(path: options.graphPath, text: text)
        sourceFile = file
        diagnostics.register(file)
        let ast = Parser.parse(file, diagnostics: diagnostics)
        try diagnostics.throwIfErrors()
        cachedAST = ast
        return ast
    }

    /// The param sources: config.json from the model folder, and `--set` values.
    public func paramSources() throws -> ParamSources {
        var sources = ParamSources(overrides: options.overrides)
        if let dir = options.modelDirectory, PathCheck.isGGUF(dir) {
            // A GGUF file holds its config as metadata: params read "qwen3moe.expert_count".
            sources.configPath = dir
            do {
                sources.config = try Checkpoint(path: dir).ggufMetadata
            } catch {
                throw DiagnosticError(.error("\(error)"))
            }
        } else if let dir = options.modelDirectory {
            let path = (dir as NSString).appendingPathComponent("config.json")
            sources.configPath = path
            sources.config = try ConfigLoader.load(path)
        }
        return sources
    }

    /// Lowers the AST to IR and verifies it.
    public func lower() throws -> Graph {
        if let g = cachedIR { return g }
        let ast = try parse()
        let sources = try paramSources()
        guard let g = ASTToIR.lower(ast, sources: sources, diagnostics: diagnostics) else {
            try diagnostics.throwIfErrors()
            throw DiagnosticError(.error("lowering failed"))
        }
        try diagnostics.throwIfErrors()
        let problems = Verifier.verify(g)
        if !problems.isEmpty { throw DiagnosticError(problems) }
        cachedIR = g
        return g
    }

    /// Runs the optimisation pipeline.
    public func optimize() throws -> Graph { try optimize(enabling: []) }

    /// Runs the optimisation pipeline with the optional passes `extra` enabled as well as the
    /// options' (`ModelRunner` enables `router-score-exposure` for statistics).
    func optimize(enabling extra: Set<String>) throws -> Graph {
        let enabled = options.enabledPasses.union(extra)
        if let g = cachedOptimized[enabled] { return g }
        var g = try Pipeline.run(
            try lower(), verifyEachPass: options.verifyEachPass || Pipeline.verifyByDefault,
            disabled: options.disabledPasses, enabled: enabled, weights: options.weightFormat)
        if options.keepsCheckpointTypes, options.modelDirectory != nil, let c = try? checkpoint() {
            g = c.ggufFiles.isEmpty ? Int4CheckpointTypes.apply(g, c) : GGUFWeightTypes.apply(g, c)
        }
        if options.weightFormat != .f32 && g.weights.allSatisfy({ $0.format == .f32 }) {
            diagnostics.emit(
                .warning(
                    "--weights \(options.weightFormat.rawValue): no weight is stored as \(options.weightFormat.rawValue); only the expert matrices of MoE blocks packed at load (the expert-weight-prepacking pass) can be"
                ))
        }
        cachedOptimized[enabled] = g
        return g
    }

    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain, let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSCocoaErrorDomain && (ns.code == NSFileReadNoSuchFileError || ns.code == NSFileNoSuchFileError) {
            return "no such file"
        }
        return ns.localizedDescription
    }
}

/// Reads config.json with errors that give the line and column.
enum ConfigLoader {
    static func load(_ path: String) throws -> JSONObject {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DiagnosticError(.error("\(path): no such file (a model folder needs a config.json)"))
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DiagnosticError(.error("\(path): cannot read the file"))
        }
        do {
            let j = try JSON.parse(bytes: data)
            guard let o = j.object else {
                throw DiagnosticError(.error("\(path): the top level must be a JSON object, found \(j.typeName)"))
            }
            return o
        } catch let e as JSONError {
            throw DiagnosticError(
                .error(
                    "invalid JSON: \(e.message)",
                    at: SourceLocation(file: path, line: e.line, column: e.column)))
        }
    }
}

extension CompileOptions {
    /// The values `--weights` takes.
    public static let weightFormatNames = ["f32", "bf16", "f16", "int8", "int4[:32|64|128]", "int4z[:32|64|128]"]

    /// Sets `weightFormat` from a `--weights` value; false (nothing set) when it names no format.
    public mutating func setWeightFormat(_ name: String) -> Bool {
        guard let f = WeightFormat(option: name), !f.isGGUFType else { return false }
        weightFormat = f
        keepsCheckpointTypes = false
        return true
    }

    /// The error text for a `--weights` value that names no format.
    public static func unknownWeightFormat(_ name: String) -> String {
        "--weights expects " + weightFormatNames.dropLast().joined(separator: ", ") + " or " + weightFormatNames.last!
            + " (how feed-forward matrices are stored), got '\(name)'"
    }
}
