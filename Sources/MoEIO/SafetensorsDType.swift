/// The element types a safetensors header may name.
///
/// Every one is recognised (so errors can say "unsupported" and not "unknown"); all but the
/// 8-bit floats can be read as `Float`. F32, F16 and BF16 are the types weights come in; the
/// integer types and F64 convert because it costs nothing.
public enum SafetensorsDType: String, Sendable, CaseIterable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e4m3, .f8e5m2, .i8, .u8, .bool: return 1
        }
    }

    /// Whether `SafetensorsFile.copyFloats` can convert this type to `Float`.
    public var isReadableAsFloat: Bool {
        switch self {
        case .f8e4m3, .f8e5m2: return false
        default: return true
        }
    }

    /// The types `SafetensorsWriter` can store.
    public var isWritable: Bool { self == .f32 || self == .f16 || self == .bf16 }
}
