// Counts heap allocations by defining the allocator entry points in the executable that links
// this target: the dynamic linker then resolves every library's malloc (Swift runtime, Foundation,
// Dispatch, libc) to these, and they forward to glibc's own implementations. Used only by the
// `moec-alloc-check` tool, never by moec itself.
#include "AllocationCounter.h"
#include <errno.h>   // defines __GLIBC__ on glibc
#include <stdatomic.h>
#include <stddef.h>

#if defined(__linux__) && defined(__GLIBC__)

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_long allocations;
volatile int moec_allocation_trace = 0;
void moec_allocation_set_trace(int on) { moec_allocation_trace = on; }

static inline void count(void) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); }

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
void *memalign(size_t alignment, size_t n) { count(); return __libc_memalign(alignment, n); }
void *aligned_alloc(size_t alignment, size_t n) { count(); return __libc_memalign(alignment, n); }
int posix_memalign(void **out, size_t alignment, size_t n) {
    count();
    void *p = __libc_memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

long moec_allocation_count(void) { return atomic_load_explicit(&allocations, memory_order_relaxed); }
#else
long moec_allocation_count(void) { return -1; }
void moec_allocation_set_trace(int on) { (void)on; }
#endif
