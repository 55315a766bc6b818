/// libFuzzer entry point for the weight-file readers (built by scripts/fuzz.sh weights).
///
/// The first byte picks the reader, the rest is the file: even, a safetensors file (its header
/// validated, then every readable tensor converted to floats); odd, a `.npy` file. Either must
/// open or throw a `WeightFileError`; a validated safetensors file must read without going out
/// of its bytes (AddressSanitizer watches).
@_cdecl("LLVMFuzzerTestOneInput")
public func weightsFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    // A copy of exactly the file's bytes, so a read past them is a heap overflow ASan reports.
    let file = UnsafeMutableRawBufferPointer.allocate(byteCount: size - 1, alignment: 8)
    defer { file.deallocate() }
    if size > 1 { file.copyMemory(from: UnsafeRawBufferPointer(start: data + 1, count: size - 1)) }
    let bytes = UnsafeRawBufferPointer(file)
    if data[0] % 2 == 0 {
        guard let header = try? SafetensorsHeader.parse(bytes, path: "fuzz.safetensors") else { return 0 }
        for t in header.tensors.values {
            guard t.byteRange.lowerBound >= 0, t.byteRange.upperBound <= bytes.count else {
                fatalError("tensor '\(t.name)' at bytes \(t.byteRange) of a \(bytes.count)-byte file passed validation")
            }
            guard t.dtype.isReadableAsFloat, t.elementCount <= 1 << 20 else { continue }
            var out = [Float](repeating: 0, count: t.elementCount)
            out.withUnsafeMutableBufferPointer { buffer in
                if t.elementCount > 0 {
                    TensorConversion.toFloat(
                        t.dtype, from: bytes.baseAddress! + t.byteRange.lowerBound,
                        count: t.elementCount, into: buffer.baseAddress!)
                }
            }
        }
    } else {
        _ = try? NpyFormat.decode(bytes, path: "fuzz.npy")
    }
    return 0
}
