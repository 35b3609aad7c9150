/* The op trace of the `trace` configuration (-DHAK_TRACE=1): every public
 * API call becomes one record (see trace.c for the buffers and the file
 * format, repro/README.md for the format and the tools that read it).
 *
 * Ordering. Each record carries a global sequence number from one atomic
 * counter. A call that hands memory back (free, realloc's old block) takes
 * its number *before* the memory is released; a call that obtains memory
 * takes it *after* the block is in hand. So when a block is freed by one
 * thread and handed out again to another, the free's number is always the
 * smaller one, and a replay in sequence order never sees an address that is
 * live twice. realloc records once, after its new block is in hand and
 * before the old one is released (api.c defers that free in this build). */
#ifndef HAK_TRACE_H
#define HAK_TRACE_H

#include <stddef.h>
#include <stdint.h>

enum hak_trace_op {
  TR_MALLOC = 1,
  TR_CALLOC = 2,           /* a1 = count, a2 = size */
  TR_REALLOC = 3,          /* arg = old block, a1 = size */
  TR_REALLOCARRAY = 4,     /* arg = old block, a1 = count, a2 = size */
  TR_FREE = 5,             /* arg = block */
  TR_POSIX_MEMALIGN = 6,   /* a1 = size, a2 = alignment, err = return code */
  TR_ALIGNED_ALLOC = 7,    /* a1 = size, a2 = alignment */
  TR_MEMALIGN = 8,         /* a1 = size, a2 = alignment */
  TR_VALLOC = 9,           /* a1 = size */
  TR_PVALLOC = 10,         /* a1 = size */
  TR_USABLE_SIZE = 11,     /* arg = block, result = (void *)usable size */
  TR_FREE_SIZED = 12,      /* arg = block, a1 = size */
  TR_FREE_ALIGNED_SIZED = 13, /* arg = block, a1 = size, a2 = alignment */
  TR_THREAD_EXIT = 14,     /* the calling thread's heap is abandoned */
};

#if defined(HAK_TRACE) && HAK_TRACE
/* The next global sequence number (one atomic fetch-add). */
uint64_t hak_trace_next_seq(void) __attribute__((visibility("hidden")));
/* Appends one record to the calling thread's buffer. `err` is errno after
 * the call for the ops that set it (0 when they succeed), or the return
 * code of posix_memalign. Never allocates with malloc; async-signal-safe
 * with respect to the writer in trace.c's crash handler. */
void hak_trace_emit(uint64_t seq, unsigned op, const void *arg, size_t a1, size_t a2,
                    const void *result, int err) __attribute__((visibility("hidden")));
#define HAK_TRACE_ON 1
#else
#define HAK_TRACE_ON 0
#endif

#endif
