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
  TR_CALLOC = 2,              /* a1 = count, a2 = size */
  TR_REALLOC = 3,             /* arg = old block, a1 = size */
  TR_REALLOCARRAY = 4,        /* arg = old block, a1 = count, a2 = size */
  TR_FREE = 5,                /* arg = block */
  TR_POSIX_MEMALIGN = 6,      /* a1 = size, a2 = alignment, err = return code */
  TR_ALIGNED_ALLOC = 7,       /* a1 = size, a2 = alignment */
  TR_MEMALIGN = 8,            /* a1 = size, a2 = alignment */
  TR_VALLOC = 9,              /* a1 = size */
  TR_PVALLOC = 10,            /* a1 = size */
  TR_USABLE_SIZE = 11,        /* arg = block, result = (void *)usable size */
  TR_FREE_SIZED = 12,         /* arg = block, a1 = size */
  TR_FREE_ALIGNED_SIZED = 13, /* arg = block, a1 = size, a2 = alignment */
  TR_THREAD_EXIT = 14,        /* the calling thread's heap is abandoned */
};

/* ---- the trace file (read by repro/: replay, trace2fuzz, tracecat) ------
 * A header, then records in no particular order (each thread's buffer in
 * turn); readers sort them by `seq`. All fields little-endian (x86-64, aarch64).
 * A sequence number may be missing (a thread interrupted between taking
 * its number and writing its record when the file was written). */
#define HAK_TRACE_MAGIC "HAKTRACE"
#define HAK_TRACE_VERSION 2u /* 2: records of 64 bytes, with `ms` */
enum hak_trace_flags {
  HAK_TRACE_F_EXIT = 1,       /* written at process exit */
  HAK_TRACE_F_SIGNAL = 2,     /* written by the fatal-signal handler (signo set) */
  HAK_TRACE_F_FLUSH = 4,      /* written by hak_trace_flush() (stress watchdog) */
  HAK_TRACE_F_TRUNCATED = 8,  /* HAKMEM_TRACE_LIMIT_MB reached: later records dropped */
  HAK_TRACE_F_REENTERED = 16, /* calls made while the thread's recorder was interrupted
                                 (a signal handler's malloc) were not recorded */
  HAK_TRACE_F_INFLIGHT = 32,  /* the last record (highest seq) is the call the crashing
                                 thread died in: written by the signal handler, result,
                                 usable and err 0 (the call never returned) */
};
struct hak_trace_header { /* 64 bytes */
  char magic[8];          /* "HAKTRACE" */
  uint32_t version;       /* HAK_TRACE_VERSION */
  uint32_t rec_size;      /* sizeof(struct hak_trace_rec) = 64 */
  uint32_t flags;         /* enum hak_trace_flags */
  int32_t signo;          /* the fatal signal, or 0 */
  uint64_t pid;
  uint64_t nthreads; /* threads that recorded at least one op */
  uint64_t dropped;  /* records not kept (limit reached, or recorder re-entered) */
  char config[16];   /* hak_config() of the recording library */
};
struct hak_trace_rec { /* 64 bytes */
  uint64_t seq;        /* global order (one atomic counter) */
  uint64_t arg;        /* argument block (free, realloc, usable_size, free_sized) */
  uint64_t a1, a2;     /* see enum hak_trace_op */
  uint64_t result;     /* returned block (NULL on failure); usable size for TR_USABLE_SIZE */
  uint64_t usable;     /* usable size of the returned block (allocations), else 0 */
  uint32_t tid;        /* small sequential thread id, 1 = first thread that allocated */
  uint16_t op;         /* enum hak_trace_op */
  int16_t err;         /* errno after the call (0 on success), posix_memalign's return code */
  uint64_t ms;         /* os_now_ms (the clock of the purge delay and the caches' aging)
                        * when the record was written; repro/replay moves its clock by it */
};

#if defined(HAK_TRACE) && HAK_TRACE
/* The next global sequence number (one atomic fetch-add). */
uint64_t hak_trace_next_seq(void) __attribute__((visibility("hidden")));
/* A call in flight: op 0 when none. */
struct hak_trace_call {
  uint64_t arg, a1, a2;
  unsigned op;
};
/* The call about to run (allocations, realloc, reallocarray, usable_size:
 * the ops recorded after the call): should the thread die in it, the
 * fatal-signal handler appends it to the file as the last record
 * (HAK_TRACE_F_INFLIGHT). hak_trace_emit clears it. Returns the call it
 * interrupts (a signal handler's allocation inside another), which
 * hak_trace_end puts back in flight after this call's record. */
struct hak_trace_call hak_trace_begin(unsigned op, const void *arg, size_t a1, size_t a2)
    __attribute__((visibility("hidden")));
void hak_trace_end(struct hak_trace_call outer) __attribute__((visibility("hidden")));
/* Appends one record to the calling thread's buffer. `err` is errno after
 * the call for the ops that set it (0 when they succeed), or the return
 * code of posix_memalign. Never allocates with malloc; async-signal-safe
 * with respect to the writer in trace.c's crash handler. */
void hak_trace_emit(uint64_t seq, unsigned op, const void *arg, size_t a1, size_t a2,
                    const void *result, int err) __attribute__((visibility("hidden")));
/* Writes the trace file now (async-signal-safe); public as hak_trace_flush(). */
void hak_trace_write(unsigned flags, int signo) __attribute__((visibility("hidden")));
/* The fork child's handler: a writer that was running in another thread of
 * the parent does not exist in the child, whose own file must still be
 * written at its exit. */
void hak_trace_fork_child(void) __attribute__((visibility("hidden")));
#if defined(HAK_PLANT_REMOTE_FREE)
/* Test-only planted bug (repro tests): a free of a small block owned by
 * another live heap aborts with a named error ("hakmem: planted crash of
 * 0x...") once it is at least the HAK_PLANT_REMOTE_FREE-th such free of the
 * calling thread (nothing else: a condition on how many threads are alive
 * would not replay deterministically). The fuzz executor resets
 * the calling thread's count for every input (through a weak reference). */
void hak_trace_plant_reset(void);
#endif
#define HAK_TRACE_ON 1
#else
#define HAK_TRACE_ON 0
#endif

#endif
