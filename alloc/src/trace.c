/* The op trace of the trace configuration (stub: records nothing yet). */
#include "trace.h"

#include <stdatomic.h>

#if HAK_TRACE_ON
static _Atomic uint64_t trace_seq;

uint64_t hak_trace_next_seq(void) {
  return atomic_fetch_add_explicit(&trace_seq, 1, memory_order_relaxed);
}

void hak_trace_emit(uint64_t seq, unsigned op, const void *arg, size_t a1, size_t a2,
                    const void *result, int err) {
  (void)seq, (void)op, (void)arg, (void)a1, (void)a2, (void)result, (void)err;
}
#endif
