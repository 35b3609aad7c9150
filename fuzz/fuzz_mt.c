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
 * FZ_HEAP_CHECK runs while every other thread is parked (quiescent). At the
 * end every thread exits and is joined, then the coordinator frees what is
 * left and checks the heap (fz_exec_finish). */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

#include "ops.h"

uint64_t fuzz_one(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct worker {
  pthread_t tid;
  sem_t go;
  int alive;
  int quit; /* set with the baton: exit instead of running op */
  const struct fz_op *op;
};

static struct fz_exec x;
static struct worker workers[FZ_MAX_THREADS];
static sem_t done;

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (;;) {
    while (sem_wait(&w->go) != 0) {
    }
    if (w->quit) {
      sem_post(&done);
      return NULL; /* thread exit: its heap is abandoned with any live blocks */
    }
    fz_exec_op(&x, w->op);
    sem_post(&done);
  }
}

static void die(const char *what) {
  perror(what);
  abort();
}

static void start(struct worker *w) {
  w->quit = 0;
  w->alive = 1;
  if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
    die("pthread_create");
}

static void stop(struct worker *w) {
  w->quit = 1;
  sem_post(&w->go);
  while (sem_wait(&done) != 0) {
  }
  if (pthread_join(w->tid, NULL) != 0)
    die("pthread_join");
  w->alive = 0;
}

static void run_on(struct worker *w, const struct fz_op *op) {
  if (!w->alive)
    start(w);
  w->op = op;
  sem_post(&w->go);
  while (sem_wait(&done) != 0) {
  }
}

uint64_t fuzz_one(const uint8_t *data, size_t size) {
  static int inited;
  if (!inited) {
    sem_init(&done, 0, 0);
    for (int i = 0; i < FZ_MAX_THREADS; i++)
      sem_init(&workers[i].go, 0, 0);
    inited = 1;
  }
  unsigned nthreads = size ? 2 + data[0] % (FZ_MAX_THREADS - 1) : 2;
  struct fz_decoder d;
  struct fz_op op;
  fz_exec_init(&x);
  fz_decoder_init(&d, size ? data + 1 : data, size ? size - 1 : 0, nthreads);
  while (fz_decode_next(&d, &op)) {
    struct worker *w = &workers[op.thread];
    if (op.kind == FZ_THREAD_EXIT) {
      if (w->alive) {
        fz_exec_op(&x, &op); /* bumps the thread's epoch (its blocks become orphans) */
        stop(w);
      }
      continue;
    }
    run_on(w, &op);
  }
  for (unsigned i = 0; i < nthreads; i++)
    if (workers[i].alive)
      stop(&workers[i]);
  return fz_exec_finish(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_one(data, size);
  return 0;
}
