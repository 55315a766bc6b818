/// moec's CPU kernels.
///
/// Each entry point picks the AVX2 + FMA build (`MoEKernelsAVX2`, compiled with
/// `-march=haswell`) or the portable build (plain Swift, any CPU) through its `isa:` argument,
/// default `ISA.best`: AVX2 when `/proc/cpuinfo` (or `sysctl` on macOS) reports avx2 and fma, unless
/// `MOEC_SIMD=portable`. Pointers are raw; shapes are in the argument names; outputs may alias
/// inputs only where a kernel says so.
///
/// What is here:
/// - `PackedWeight` + `gemm`: `y[M, N] (+)= x[M, K] · Wᵀ` with W (`[N, K]`, Hugging Face layout)
///   packed once into 16-column panels. A 6×16 register tile (12 `SIMD8<Float>` accumulators), x
///   packed per call into 6-row panels, K blocked by 512; one to three rows use a 32-column tile
///   and stream each weight panel front to back (decode shapes). Deterministic: every output is
///   one FMA chain over k in order, independent of `threads` and of M.
///   `PackedWeight(…, format: .bf16)` keeps the panels as bfloat16 (half the bytes): the same
///   GEMMs widen them exactly to fp32 (in registers for one register tile, else once per K-block
///   into an L1 strip) and accumulate in fp32, giving the fp32 result on the rounded weight.
/// - `Q8Weight` + `q8Gemm`: W as int8 in blocks of 32 with an fp32 scale (llama.cpp's Q8_0
///   scheme; from fp32 by round-to-nearest, or GGUF Q8_0 blocks as they are), x quantized per
///   row the same way (`Q8Activations`), integer dot products per block (AVX2 `vpmaddubsw` /
///   `vpmaddwd` through Clang's intrinsics), scaled and accumulated in fp32; the portable kernel
///   gives the same bits. A quarter of fp32's weight bytes: for decode shapes (one to four rows).
/// - `gemm(gathering:rows:…)`: the same on the token rows routed to one expert, gathered while
///   x is packed; `scatterAddRows` is the weighted combine back into token rows.
/// - `gemv`: one row through an unpacked `[N, K]` weight.
/// - `sgemm`: BLAS-style strided `C = αop(A)op(B) + βC` (packs both operands per call).
/// - `BLAS`: OpenBLAS/Accelerate opened with `dlopen` at run time (`MOEC_BLAS=none|/path`).
/// - Element-wise: `exp`, `sigmoid`, `silu`, `gelu`, `geluTanh`, `erf`, `relu`, `add`, `mul`,
///   `axpy`, `scale`, and `swiglu`; rows: `softmaxRows`, `rmsNormRows`, `layerNormRows`.
/// - `Parallel.forEachChunk`: the Dispatch helper the threaded kernels use.
public enum Kernels {}
