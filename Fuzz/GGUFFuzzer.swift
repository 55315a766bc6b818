/// libFuzzer entry point for the GGUF reader (built by scripts/fuzz.sh gguf).
///
/// The input is the file. Its header, metadata and tensor directory are read (`GGUFReader`);
/// either that throws a `WeightFileError`, or every tensor must lie inside the bytes and
/// dequantize without reading out of them (AddressSanitizer watches), and the metadata must
/// convert to JSON and print.
@_cdecl("LLVMFuzzerTestOneInput")
public func ggufFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // A copy of exactly the file's bytes, so a read past them is a heap overflow ASan reports.
    let file = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 32)
    defer { file.deallocate() }
    if size > 0 { file.copyMemory(from: UnsafeRawBufferPointer(start: data, count: size)) }
    let bytes = UnsafeRawBufferPointer(file)
    var reader = GGUFReader(bytes: bytes, path: "fuzz.gguf")
    guard let parsed = try? reader.parse() else { return 0 }
    for t in parsed.tensors {
        guard t.byteRange.lowerBound >= 0, t.byteRange.upperBound <= bytes.count,
            t.byteRange.count == t.elementCount / t.type.blockSize * t.type.blockBytes
        else {
            fatalError("tensor '\(t.name)' (\(t.type) \(t.dims)) at bytes \(t.byteRange) of a \(bytes.count)-byte file passed validation")
        }
        guard t.elementCount > 0, t.elementCount <= 1 << 20 else { continue }
        var out = [Float](repeating: 0, count: t.elementCount)
        out.withUnsafeMutableBufferPointer { buffer in
            t.type.dequantize(
                blocks: t.elementCount / t.type.blockSize, from: bytes.baseAddress! + t.byteRange.lowerBound, into: buffer.baseAddress!)
        }
    }
    var metadata = JSONObject()
    for k in parsed.keys { metadata[k] = parsed.metadata[k]!.json }
    _ = JSON.object(metadata).compact
    for v in parsed.metadata.values { _ = v.description }
    return 0
}
