import Foundation

/// Little-endian stored elements → `Float`. Sources may be unaligned (safetensors only aligns
/// its data section to 8 bytes, and tensors of odd-sized types can shift what follows).
enum TensorConversion {
    static func toFloat(_ dtype: SafetensorsDType, from src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32:
            #if _endian(little)
                memcpy(dst, src, count * 4)
            #else
                for i in 0..<count { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            #endif
        case .f16:
            for i in 0..<count { dst[i] = HalfPrecision.halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .bf16:
            for i in 0..<count { dst[i] = HalfPrecision.bfloat16ToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .f64:
            for i in 0..<count { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .i64:
            for i in 0..<count { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .u64:
            for i in 0..<count { dst[i] = Float(UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .i32:
            for i in 0..<count { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .u32:
            for i in 0..<count { dst[i] = Float(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .i16:
            for i in 0..<count { dst[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .u16:
            for i in 0..<count { dst[i] = Float(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .i8:
            for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u8:
            for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        case .bool:
            for i in 0..<count { dst[i] = src.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
        case .f8e4m3, .f8e5m2:
            preconditionFailure("callers check isReadableAsFloat")
        }
    }
}
