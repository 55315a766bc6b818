import Foundation

/// libFuzzer entry point for moec's JSON reader (built by scripts/fuzz.sh json).
///
/// Any input must parse or fail with an error inside the input; a value that parses must
/// print (compact and pretty), and both printed forms must parse back to an equal value.
@_cdecl("LLVMFuzzerTestOneInput")
public func jsonFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let value: JSON
    do {
        value = try JSON.parse(bytes: bytes)
    } catch {
        if error.offset < 0 || error.offset > size { fatalError("error offset \(error.offset) outside the \(size) input bytes") }
        return 0
    }
    for printed in [value.compact, value.pretty] {
        do {
            let again = try JSON.parse(printed)
            // NaN cannot be written, so equality holds for every value the parser can produce.
            if again != value { fatalError("printing changes the value:\n\(printed)") }
        } catch {
            fatalError("the printed value does not parse (\(error)):\n\(printed)")
        }
    }
    return 0
}
