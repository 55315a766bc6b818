import Foundation
import MoEBasics

/// A small command-line parser: `--name value`, `--name=value`, short aliases (`-o`), flags,
/// repeated options and positionals, with "did you mean" for unknown options.
struct OptionSpec {
    var names: [String] // "--model", "-m"
    var valueName: String? // nil for a flag
    var help: String
    var repeated = false

    var key: String { names[0] }
    var isFlag: Bool { valueName == nil }
}

struct CommandSpec {
    var name: String
    var summary: String
    var usage: [String]
    var positionals: [(name: String, help: String)]
    var options: [OptionSpec]
    var details: String
    var examples: [String]

    func help() -> String {
        var s = "\(summary)\n\nUSAGE:\n"
        for u in usage { s += "  \(u)\n" }
        if !positionals.isEmpty {
            s += "\nARGUMENTS:\n"
            for p in positionals { s += "  \(p.name.padding(toLength: 28, withPad: " ", startingAt: 0))\(p.help)\n" }
        }
        s += "\nOPTIONS:\n"
        for o in options + [OptionSpec(names: ["--help", "-h"], valueName: nil, help: "Show this help.")] {
            var left = o.names.joined(separator: ", ")
            if let v = o.valueName { left += " \(v)" }
            let lines = o.help.split(separator: "\n", omittingEmptySubsequences: false)
            if left.count >= 28 {
                s += "  \(left)\n"
                for l in lines { s += String(repeating: " ", count: 30) + l + "\n" }
            } else {
                s += "  \(left.padding(toLength: 28, withPad: " ", startingAt: 0))\(lines[0])\n"
                for l in lines.dropFirst() { s += String(repeating: " ", count: 30) + l + "\n" }
            }
        }
        if !details.isEmpty { s += "\n\(details)\n" }
        if !examples.isEmpty {
            s += "\nEXAMPLES:\n"
            for e in examples { s += "  \(e)\n" }
        }
        return s
    }
}

struct UsageError: Error, CustomStringConvertible {
    var message: String
    var command: String
    var description: String { message }
}

struct ParsedArguments {
    var values: [String: [String]] = [:]
    var flags: Set<String> = []
    var positionals: [String] = []
    var helpRequested = false

    func value(_ key: String) -> String? { values[key]?.last }
    func all(_ key: String) -> [String] { values[key] ?? [] }
    func flag(_ key: String) -> Bool { flags.contains(key) }
}

extension CommandSpec {
    func parse(_ args: [String]) throws -> ParsedArguments {
        var out = ParsedArguments()
        // --help wins over everything else, so that it works whatever else is on the line.
        if args.prefix(while: { $0 != "--" }).contains(where: { $0 == "--help" || $0 == "-h" }) {
            out.helpRequested = true
            return out
        }
        var i = 0
        func fail(_ m: String) -> UsageError { UsageError(message: m, command: name) }
        while i < args.count {
            let a = args[i]
            i += 1
            if a == "--" { out.positionals += args[i...]; break }
            if a.hasPrefix("-") && a.count > 1 && !isNumber(a) {
                var optName = a
                var inline: String?
                if let eq = a.firstIndex(of: "="), a.hasPrefix("--") {
                    optName = String(a[..<eq])
                    inline = String(a[a.index(after: eq)...])
                }
                guard let spec = options.first(where: { $0.names.contains(optName) }) else {
                    let all = options.flatMap(\.names)
                    var m = "unknown option '\(optName)' for 'moec \(name)'"
                    if let s = NameSuggestions.best(for: optName, in: all) {
                        m += " (did you mean '\(s)'?)"
                    }
                    throw fail(m)
                }
                if spec.isFlag {
                    if inline != nil { throw fail("option '\(optName)' takes no value") }
                    out.flags.insert(spec.key)
                    continue
                }
                let v: String
                if let inline {
                    v = inline
                } else {
                    guard i < args.count else { throw fail("option '\(optName)' needs a value (\(spec.valueName!))") }
                    v = args[i]
                    i += 1
                }
                if !spec.repeated, out.values[spec.key] != nil {
                    throw fail("option '\(optName)' is given more than once")
                }
                out.values[spec.key, default: []].append(v)
            } else {
                out.positionals.append(a)
            }
        }
        return out
    }

    private func isNumber(_ s: String) -> Bool { Double(s) != nil }
}

/// `NAME=VALUE` pairs from `--set`.
func parseAssignments(_ items: [String], option: String, command: String) throws -> [(name: String, value: String)] {
    try items.map { item in
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw UsageError(message: "\(option) expects NAME=VALUE, got '\(item)'", command: command)
        }
        return (String(item[..<eq]), String(item[item.index(after: eq)...]))
    }
}
