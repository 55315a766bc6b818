// MoEIO: reading and writing the files a model's weights and test data come in.
//
//   SafetensorsFile       one memory-mapped .safetensors file, header validated on open
//   SafetensorsWriter     writes .safetensors (F32, F16, BF16) atomically, reference layout
//   GGUFFile              one memory-mapped GGUF v2/v3 file (llama.cpp's): metadata and tensor
//                         directory validated on open, tensors dequantized by rows
//   GGMLBlocks            ggml's tensor types (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) and
//                         their dequantization, bit for bit as ggml's
//   Checkpoint            a Hugging Face folder: model.safetensors or shards + index, opened lazily
//   QuantizedLinear       GPTQ / AWQ 4-bit linears (`Int4Quantization` from config.json): read as
//                         `Int4Rows` (groups with scale and offset) or dequantized
//   WeightFileFingerprint path, size, mtime and header hash, to notice changed weights later
//   NpyArray / NpyFormat  NumPy .npy v1–3 reader, v1 writer (byte-exact with numpy.save)
//   ModelConfig           config.json with dotted-path lookup
//   HalfPrecision         binary16 and bfloat16 ↔ Float by bit manipulation
//
// Every file error is a `WeightFileError` naming the file, and where it applies the tensor and
// the absolute byte offset; config errors are `Diagnostic`s (`config.json:3:17: error: ...`).
// Nothing here reads past the end of a mapping: every offset is checked when a header is read.
