/* fuzz/fuzz_mt.c: deterministic multithreaded op programs.
 *
 * Byte 0 picks the number of logical threads (2..8); every op names the
 * logical thread that runs it. Each logical thread is a real pthread that
 * sleeps on its own semaphore; the coordinator (the fuzzing thread) hands the
 * baton to exactly one of them per op and waits for it to finish, so an input
 * always gives the same interleaving at op granularity. A block allocated by
 * one thread and freed or reallocated by another is a remote free.
 * FZ_THREAD_EXIT makes the thread exit with its blocks still live (the
 * coordinator joins it, so its heap is abandoned before the next op); the
 * next op for that logical thread starts a new pthread, which may adopt the
 * abandoned segments. FZ_FREE_ORPHANS frees an exited thread's blocks.
 * FZ_HOOK puts the next op or two inside the op after them, at a hook point
 * of the allocator (fz_runner_hooked): the interleavings that otherwise need
 * two threads at the same instant, still one at a time and repeatable.
 * FZ_HEAP_CHECK runs while every other thread is parked (quiescent). At the
 * end every thread exits and is joined, then the coordinator frees what is
 * left and checks the heap (fz_exec_finish). The runner (workers, baton)
 * is ops.c's fz_runner, shared with repro/replay. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

#include "ops.h"

uint64_t fuzz_one(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fz_exec x;
static struct fz_runner runner; /* the baton runner of ops.c */

uint64_t fuzz_one(const uint8_t *data, size_t size) {
  static int inited;
  if (!inited) {
    if (fz_runner_init(&runner, &x, FZ_MAX_THREADS) != 0)
      abort();
    inited = 1;
  }
  unsigned nthreads = size ? 2 + data[0] % (FZ_MAX_THREADS - 1) : 2;
  struct fz_decoder d;
  struct fz_op op;
  fz_exec_init(&x);
  fz_decoder_init(&d, size ? data + 1 : data, size ? size - 1 : 0, nthreads);
  while (fz_decode_next(&d, &op)) {
    if (op.kind == FZ_HOOK) { /* the next op(s) land inside the one after them */
      struct fz_op nested[2], outer;
      unsigned n = 0;
      while (n < op.b && fz_decode_next(&d, &nested[n]))
        n++;
      if (n == op.b && fz_decode_next(&d, &outer))
        fz_runner_hooked(&runner, &op, nested, n, &outer);
      else
        for (unsigned i = 0; i < n; i++)
          fz_runner_dispatch(&runner, &nested[i]);
      continue;
    }
    fz_runner_dispatch(&runner, &op); /* a thread exit: epoch bumped, thread joined */
  }
  fz_runner_exit_all(&runner);
  return fz_exec_finish(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_one(data, size);
  return 0;
}
