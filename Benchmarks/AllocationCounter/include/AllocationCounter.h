#ifndef MOEC_ALLOCATION_COUNTER_H
#define MOEC_ALLOCATION_COUNTER_H

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made by
/// any thread of this process so far, or -1 where they cannot be counted (not glibc).
long moec_allocation_count(void);

/// Sets a flag a debugger can break on (`break malloc if moec_allocation_trace`): set around one
/// counted run when MOEC_ALLOC_TRACE is in the environment.
void moec_allocation_set_trace(int on);

#endif
