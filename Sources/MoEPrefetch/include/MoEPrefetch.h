#ifndef MOE_PREFETCH_H
#define MOE_PREFETCH_H

/// Asks the CPU to bring the cache line at `p` into all cache levels ahead of its use (Swift has
/// no prefetch of its own; this inline function is imported and inlined into the kernels).
static inline __attribute__((always_inline)) void moec_prefetch(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

#endif
