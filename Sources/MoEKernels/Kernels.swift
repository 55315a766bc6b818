/// moec's CPU kernels. Each entry point picks the AVX2 + FMA build or the portable build through
/// its `isa:` argument (default `ISA.best`). Pointers are raw: shapes are in the argument names,
/// and outputs may alias inputs only where a kernel says so.
public enum Kernels {}
