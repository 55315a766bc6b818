import Foundation
import MoEBasics

/// The Language Server Protocol's base framing: each message is a header block
/// (`Content-Length: N`, optionally `Content-Type: …`, each line ended by CRLF, then an empty
/// line) and N bytes of UTF-8 JSON.
public enum MessageFraming {
    /// Bodies larger than this are refused (a broken header, not a real document).
    public static let maximumBodyBytes = 64 << 20

    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
    }

    /// Takes the first whole message's body off the front of `buffer`; nil when the buffer does
    /// not hold a whole message yet. Throws on a header that is not LSP framing.
    public static func takeMessage(from buffer: inout [UInt8]) throws(Error) -> [UInt8]? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = firstIndex(of: separator, in: buffer) else {
            if buffer.count > 8192 { throw Error(description: "no end of header in the first 8192 bytes") }
            return nil
        }
        let header = String(decoding: buffer[0..<end], as: UTF8.self)
        var length: Int?
        for line in header.split(separator: "\r\n", omittingEmptySubsequences: false) {
            guard let colon = line.firstIndex(of: ":") else { throw Error(description: "header line without ':': '\(line)'") }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-length" {
                guard let n = Int(value), n >= 0 else { throw Error(description: "Content-Length '\(value)' is not a byte count") }
                guard n <= maximumBodyBytes else { throw Error(description: "Content-Length \(n) is over \(maximumBodyBytes) bytes") }
                length = n
            }
        }
        guard let length else { throw Error(description: "header without Content-Length") }
        let start = end + separator.count
        guard buffer.count - start >= length else { return nil }
        let body = Array(buffer[start..<(start + length)])
        buffer.removeFirst(start + length)
        return body
    }

    /// `message` framed for the wire.
    public static func frame(_ message: JSON) -> [UInt8] {
        let body = Array(message.compact.utf8)
        return Array("Content-Length: \(body.count)\r\n\r\n".utf8) + body
    }

    private static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }
}
