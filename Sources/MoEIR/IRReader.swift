import MoEBasics

/// Reads the text `IRPrinter` prints back into the graph it printed: `read(print(g)) == g`, so
/// pass tests can start from IR text (as Cranelift's filetests do) and a printed graph can be
/// edited by hand and read again.
///
///     graph    ::= 'graph' NAME '{' ['#' FILE (',' FILE)*] line* '}'
///     line     ::= param | weight | node | output | memory | after | '#' comment
///     param    ::= 'param' NAME '=' (INT | FLOAT | BOOL | STRING) '#' SOURCE
///     weight   ::= 'weight' '@' NAME ':' 'f32' '[' INT (',' INT)* ']' '=' STRING
///                  ['repeat' '[' INT (',' INT)* ']'] ['#' location]
///     node     ::= VALUE '=' OP operands ['{' NAME '=' literal (',' NAME '=' literal)* '}']
///                  ':' type ['#' location (',' location)*]
///     operands ::= STRING (input) | '@' NAME (weight) | FLOAT (constant) | [VALUE (',' VALUE)*]
///     output   ::= 'output' NAME '=' VALUE
///     memory   ::= 'memory' ['(' … ')']           then only `after` lines
///     after    ::= 'after' VALUE ':' VALUE (',' VALUE)*
///     type     ::= ('f32' | 'i32') '[' [dim (',' dim)*] ']' | 'route' '[' TOKENS ',' INT 'of' INT ']'
///     location ::= FILE ':' LINE ':' COLUMN '-' END
///
/// What the printer leaves implicit is restored as the printer derived it: a value named `%N`
/// is unnamed (any number, so hand-trimmed text need not be renumbered), `%x.1` is a second
/// value named `x`, the header's files give shortened location names their paths, and the
/// memory plan's unlisted values are graph outputs (live to the end) or weights and constants
/// (their last reader, as `memory-planning` records them).
///
/// Problems are collected, at most one per line, each at its place in the text
/// (`g.ir:12:18: error: unknown op 'top_k'`); a line that reads a value whose own line was
/// wrong is skipped quietly. A graph read without problems then goes through
/// `Verifier.verify`, its nodes and weights located at their lines in the text, so a wrong
/// recorded type is reported where it was written.
public struct IRReader {
    /// The name errors give the text's file.
    public var file: String

    public init(file: String = "<ir>") { self.file = file }

    public func read(_ text: String) throws(DiagnosticError) -> Graph {
        var state = ReadState(file: file)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() {
            var scanner = IRLineScanner(line, file: file, line: i + 1)
            do {
                try state.read(&scanner)
            } catch let d {
                if state.skippingLine { state.skippingLine = false } else { state.problems.append(d) }
            }
            if state.problems.count >= 20 { break }
        }
        let end = SourceLocation(file: file, line: lines.count, column: (lines.last?.unicodeScalars.count ?? 0) + 1)
        return try state.finish(end: SourceRange(end))
    }
}

/// What `IRReader` has read so far.
private struct ReadState {
    enum Part { case beforeGraph, body, memory, afterGraph }

    let file: String
    var part = Part.beforeGraph
    var g = Graph(name: "")
    var problems: [Diagnostic] = []
    var header: SourceRange?
    /// Shortened file names from the header, and the paths they stand for.
    var files: [String: String] = [:]
    var tokens: String?
    /// Values by their printed name (`x`, `x.1`, `5`), without the `%`.
    var values: [String: ValueID] = [:]
    /// Names defined on lines with errors: their readers are skipped without a second error.
    var broken: Set<String> = []
    /// Set when the line reads a broken value: its error is dropped.
    var skippingLine = false
    var weightIndex: [String: Int] = [:]
    var nodeLines: [SourceRange] = []
    var weightLines: [SourceRange] = []
    /// From the memory block: value → the step after which its bytes are free.
    var freedAfter: [Int: Int] = [:]
    var hasMemoryPlan = false

    init(file: String) { self.file = file }

    mutating func read(_ s: inout IRLineScanner) throws(Diagnostic) {
        if s.atEnd { return }
        if s.peek() == "#" { return } // a comment line
        switch part {
        case .beforeGraph: try readHeader(&s)
        case .afterGraph: throw s.error("text after the graph's closing '}'", from: s.position, to: s.chars.count)
        case .body, .memory:
            if s.accept("}") {
                guard s.atEnd else { throw s.expected("the end of the line after '}'") }
                part = .afterGraph
                return
            }
            if s.peek() == "%" {
                guard part == .body else { throw s.error("a node after the memory block (the plan must come last)", from: s.position) }
                return try readNode(&s)
            }
            let (keyword, start) = try s.word("a param, weight, node, output or memory line")
            switch (keyword, part) {
            case ("param", .body): try readParam(&s)
            case ("weight", .body): try readWeight(&s, start)
            case ("output", .body): try readOutput(&s)
            case ("memory", .body): try readMemoryHeader(&s)
            case ("after", .memory): try readFreed(&s)
            case ("after", _): throw s.error("'after' lines belong to the memory block", from: start, to: s.position)
            case (_, .memory): throw s.error("expected 'after' or '}' in the memory block, found '\(keyword)'", from: start, to: s.position)
            default: throw s.error("expected a param, weight, node, output or memory line, found '\(keyword)'", from: start, to: s.position)
            }
        }
    }

    /// `graph NAME {` with, when some locations' files are shortened, their paths.
    mutating func readHeader(_ s: inout IRLineScanner) throws(Diagnostic) {
        try s.expect(word: "graph")
        g.name = try s.word("the graph's name").0
        try s.expect("{")
        header = s.lineRange
        part = .body
        guard let (list, _) = try s.comment() else { return }
        for path in list.components(separatedBy: ", ") where !path.isEmpty {
            files[SourceFileNames.lastComponent(path)] = path
        }
    }

    mutating func readParam(_ s: inout IRLineScanner) throws(Diagnostic) {
        let (name, _) = try s.word("the param's name")
        try s.expect("=")
        s.skipSpaces()
        let start = s.position
        let value: ParamBinding.Value
        if s.accept(word: "null") {
            value = .null
        } else {
            value = try paramValue(&s, start)
        }
        guard let (source, _) = try s.comment() else { throw s.expected("'#' and where the value came from") }
        g.params.append(ParamBinding(name: name, value: value, source: source))
    }

    private func paramValue(_ s: inout IRLineScanner, _ start: Int) throws(Diagnostic) -> ParamBinding.Value {
        let value: ParamBinding.Value
        switch s.peek() == "\"" ? .string(try s.string()) : try s.scalar() {
        case .int(let v): value = .int(v)
        case .float(let v): value = .float(v)
        case .bool(let v): value = .bool(v)
        case .string(let v): value = .string(v)
        case .ints: throw s.error("a param's value is a single number, boolean, string or null", from: start, to: s.position)
        }
        return value
    }

    mutating func readWeight(_ s: inout IRLineScanner, _ start: Int) throws(Diagnostic) {
        try s.expect("@")
        let (name, nameStart) = try s.word("the weight's name")
        guard weightIndex[name] == nil else { throw s.error("weight @\(name) is declared twice", from: nameStart - 1, to: s.position) }
        try s.expect(":")
        let (dtype, typeStart) = try s.word("f32")
        guard let format = WeightFormat(rawValue: dtype) else {
            throw s.error(
                "weights are \(WeightFormat.allCases.dropLast().map(\.rawValue).joined(separator: ", ")) or \(WeightFormat.allCases.last!.rawValue), found '\(dtype)'",
                from: typeStart, to: s.position)
        }
        let shape = try s.intList("the weight's shape")
        try s.expect("=")
        let pattern = try s.string()
        var layout: [WeightLayoutStep] = []
        if s.accept(word: "layout") {
            s.skipSpaces()
            let layoutStart = s.position
            let text = try s.string()
            for part in text.split(separator: "|>") {
                guard let step = WeightLayoutStep(text: String(part)) else {
                    throw s.error(
                        "unknown layout step '\(part.filter { $0 != " " })' (expected one of \(WeightLayoutStep.names.joined(separator: ", ")))",
                        from: layoutStart, to: s.position)
                }
                layout.append(step)
            }
        }
        var repeats: [Int]?
        if s.accept(word: "repeat") {
            let listStart = s.position
            let r = try s.intList("the repeat counts")
            var total = 0
            for c in r {
                let (t, overflow) = total.addingReportingOverflow(c)
                guard c >= 1, !overflow else { throw s.error("repeat counts must be positive and add up to the first dimension", from: listStart, to: s.position) }
                total = t
            }
            guard total == shape.first else {
                throw s.error(
                    "the repeat counts add up to \(total), but the weight's first dimension is \(shape.first.map(String.init) ?? "missing")", from: listStart, to: s.position)
            }
            repeats = r
        }
        let location = try s.locations(files: files)
        guard location.count <= 1 else { throw s.error("a weight has one source location", from: start, to: s.chars.count) }
        weightIndex[name] = g.weights.count
        weightLines.append(s.lineRange)
        g.weights.append(WeightInfo(name: name, pattern: pattern, shape: shape, location: location.first, repeats: repeats, layout: layout, format: format))
    }

    mutating func readNode(_ s: inout IRLineScanner) throws(Diagnostic) {
        let (printed, start) = try s.value()
        guard values[printed] == nil, !broken.contains(printed) else { throw s.error("%\(printed) is defined twice", from: start, to: s.position) }
        broken.insert(printed) // until the line has been read
        try s.expect("=")
        let (opName, opStart) = try s.word("an op")
        guard let op = Op(rawValue: opName) else { throw s.error("unknown op '\(opName)'", from: opStart, to: s.position) }
        var operands: [ValueID] = []
        var attributes = Attributes()
        // The leaf ops' operand stands for the attribute the printer leaves out of the braces.
        let implied: String?
        switch op {
        case .input:
            attributes["name"] = .string(try s.string())
            implied = "name"
        case .weight:
            try s.expect("@")
            let (name, p) = try s.word("a weight name")
            guard let index = weightIndex[name] else { throw s.error("no weight @\(name) in the weight table", from: p - 1, to: s.position) }
            attributes["index"] = .int(index)
            implied = "index"
        case .constant:
            s.skipSpaces()
            let p = s.position
            switch try s.scalar() {
            case .float(let v): attributes["value"] = .float(v)
            case .int(let v): attributes["value"] = .float(Double(v))
            default: throw s.error("a constant's value is a number", from: p, to: s.position)
            }
            implied = "value"
        default:
            implied = nil
            if s.peek() == "%" {
                repeat { operands.append(try use(&s)) } while s.accept(",")
            }
        }
        if s.accept("{") {
            repeat {
                let (key, p) = try s.word("an attribute name")
                guard attributes[key] == nil else {
                    throw s.error(key == implied ? "'\(key)' is given by the \(op.rawValue)'s operand" : "attribute '\(key)' is given twice", from: p, to: s.position)
                }
                try s.expect("=")
                attributes[key] = try s.attribute()
            } while s.accept(",")
            try s.expect("}")
        }
        try s.expect(":")
        let type = try s.type(tokens: &tokens)
        let locations = try s.locations(files: files)
        broken.remove(printed)
        values[printed] = ValueID(g.nodes.count)
        nodeLines.append(s.lineRange)
        g.nodes.append(Node(op: op, operands: operands, attributes: attributes, type: type, locations: locations, name: sourceName(printed)))
    }

    /// The name the source gave a value printed as `%printed` (see `IRPrinter.valueNames`).
    func sourceName(_ printed: String) -> String? {
        if printed.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) { return nil }
        // `x.1`, `x.2`, … follow a `%x`: the printer's way of telling equal names apart.
        if let dot = printed.lastIndex(of: "."), printed.index(after: dot) < printed.endIndex,
            printed[printed.index(after: dot)...].unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }),
            values[String(printed[..<dot])] != nil
        {
            return String(printed[..<dot])
        }
        return printed
    }

    /// A value read by the line; a value whose definition was wrong skips the line.
    mutating func use(_ s: inout IRLineScanner) throws(Diagnostic) -> ValueID {
        let (name, start) = try s.value()
        if let id = values[name] { return id }
        if broken.contains(name) {
            skippingLine = true
            throw s.error("reads %\(name), whose line has an error", from: start, to: s.position)
        }
        throw s.error("%\(name) is not defined before this line", from: start, to: s.position)
    }

    mutating func readOutput(_ s: inout IRLineScanner) throws(Diagnostic) {
        let (name, start) = try s.word("the output's name")
        guard !g.outputs.contains(where: { $0.name == name }) else { throw s.error("output '\(name)' is declared twice", from: start, to: s.position) }
        try s.expect("=")
        let value = try use(&s)
        guard s.atEnd else { throw s.expected("the end of the line") }
        g.outputs.append((name, value))
    }

    mutating func readMemoryHeader(_ s: inout IRLineScanner) throws(Diagnostic) {
        if s.peek() == "(" {
            // The printer's explanation of the block, in parentheses.
            guard let close = s.chars[s.position...].firstIndex(of: ")") else { throw s.error("expected ')'", from: s.chars.count) }
            s.skip(to: close + 1)
        }
        guard s.atEnd else { throw s.expected("the end of the line") }
        hasMemoryPlan = true
        part = .memory
    }

    /// `after %step: %a, %b`: those values' bytes are free once `%step` has run.
    mutating func readFreed(_ s: inout IRLineScanner) throws(Diagnostic) {
        let step = try use(&s)
        try s.expect(":")
        repeat {
            s.skipSpaces()
            let start = s.position
            let v = try use(&s)
            let op = g[v].op
            guard op == .input || !op.isLeaf else {
                throw s.error("\(op.rawValue) values live outside the arena and are not in the memory plan", from: start, to: s.position)
            }
            guard freedAfter[v.index] == nil else { throw s.error("this value is already freed after another step", from: start, to: s.position) }
            freedAfter[v.index] = step.index
        } while s.accept(",")
        guard s.atEnd else { throw s.expected("',' or the end of the line") }
    }

    /// The graph, once the text has ended; then the verifier's verdict, located in the text.
    mutating func finish(end: SourceRange) throws(DiagnosticError) -> Graph {
        switch part {
        case .beforeGraph: problems.append(.error("expected 'graph NAME {'", at: end))
        case .body, .memory: problems.append(.error("expected '}' to close graph '\(g.name)'", at: end))
        case .afterGraph: break
        }
        guard problems.isEmpty else { throw DiagnosticError(problems) }
        g.tokensName = tokens ?? "tokens"
        if hasMemoryPlan {
            // Unlisted values: outputs live to the end; weights and constants, which live outside
            // the arena, keep their last reader as `memory-planning` records it.
            var last = Array(g.nodes.indices)
            for (i, n) in g.nodes.enumerated() { for o in n.operands { last[o.index] = max(last[o.index], i) } }
            for o in g.outputs { last[o.value.index] = g.nodes.count }
            for id in g.ids where !g[id].op.isLeaf || g[id].op == .input {
                last[id.index] = freedAfter[id.index] ?? g.nodes.count
            }
            g.lastReaders = last
        }
        var located = g
        for i in located.nodes.indices { located.nodes[i].locations = [nodeLines[i]] }
        for i in located.weights.indices { located.weights[i].location = weightLines[i] }
        let verdict = Verifier.verify(located).map { d in
            var d = d
            if d.range == nil { d.range = header }
            return d
        }
        guard verdict.isEmpty else { throw DiagnosticError(verdict) }
        return g
    }
}
