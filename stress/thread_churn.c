/* thread_churn: threads that exit with live blocks, freed later by others.
 *
 *   thread_churn [--threads=N] [--chunks=N] [--duration=S] ...
 *
 * Waves of `threads` short-lived threads run until the duration is over
 * (thousands of thread creations and exits). Each thread allocates up to 64
 * blocks and swaps each into a random slot of a shared array of `chunks`
 * slots (each block with its owner's copy of its size and tag); the block it takes out was usually
 * allocated by a thread that has exited since, and is verified and freed. Every thread also leaves
 * one block behind in its orphan slot, freed by its successor of the next
 * wave, and so exits with live blocks. One thread a wave also allocates a
 * page's worth of blocks of the biggest size, so that its page fills and
 * the other threads' frees of them are handed to its heap (the delayed
 * list) while it runs: its exit must take them back. Threads are joined (not detached) so
 * that hak_heap_check at the end runs after every thread's exit, TLS
 * destructors included. */
#include "stress_common.h"

static stress_xslot *slots;
static stress_xslot *orphans; /* one per thread of a wave */
static _Atomic uint64_t created;

typedef struct {
  unsigned id;
  uint64_t wave;
} targ;

static void *hang_thread(void *arg) {
  (void)arg;
  stress_register("hang");
  stress_maybe_hang();
  return NULL;
}

static void *churner(void *arg) {
  targ a = *(targ *)arg;
  free(arg);
  char name[24];
  snprintf(name, sizeof name, "churn-%llu.%u", (unsigned long long)a.wave, a.id);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed ^ (a.wave << 16) ^ a.id);
  unsigned n = 1 + (unsigned)(bench_rng_next(&r) % 64);
  for (unsigned i = 0; i < n; i++) {
    stress_blk b = stress_block_new(stress_size(&r, stress_conf.min_size, stress_conf.max_size));
    stress_blk old = stress_xslot_swap(&slots[bench_rng_next(&r) % stress_conf.chunks], b);
    if (old.p)
      stress_block_free(old, "churn slot");
  }
  /* one thread a wave: a burst of the biggest size, more than a page's
   * worth (64 KiB) of blocks of one class, so that the page fills, goes to
   * the full list and asks for a notice of its next remote free: the other
   * threads of the wave that free its blocks from the slots while it runs
   * hand them to its heap's delayed list, which its exit must drain */
  size_t bsz = stress_conf.max_size - 1, nb = 65536 / bsz + 8;
  if (nb > 256 || bsz > 16384 || a.id != a.wave % stress_conf.threads)
    nb = 0; /* none where a page holds over 248 blocks, or for blocks over
             * 16 KiB (large blocks have no page) */
  for (size_t i = 0; i < nb; i++) {
    stress_blk b = stress_block_new(bsz);
    stress_blk old = stress_xslot_swap(&slots[bench_rng_next(&r) % stress_conf.chunks], b);
    if (old.p)
      stress_block_free(old, "churn slot");
  }
  /* leave a block behind for the next wave, free the previous wave's */
  stress_blk mine = stress_block_new(stress_size(&r, stress_conf.min_size, stress_conf.max_size));
  stress_blk old = stress_xslot_swap(&orphans[a.id], mine);
  if (old.p)
    stress_block_free(old, "churn orphan");
  stress_unregister();
  return NULL;
}

int main(int argc, char **argv) {
  stress_parse(argc, argv, 4, 1024, 2, 16, 1024, "churn");
  stress_start();
  unsigned T = stress_conf.threads;
  slots = (stress_xslot *)calloc(stress_conf.chunks, sizeof *slots);
  orphans = (stress_xslot *)calloc(T, sizeof *orphans);
  pthread_t *th = (pthread_t *)calloc(T, sizeof *th);
  uint64_t wave = 0;
  double t0 = bench_now();
  if (stress_conf.hang) /* the watchdog test: main waits for it forever */
    pthread_join(stress_spawn(hang_thread, NULL), NULL);
  while (!stress_time_up()) {
    for (unsigned i = 0; i < T; i++) {
      targ *a = (targ *)malloc(sizeof *a);
      if (!a)
        stress_fail(STRESS_EXIT_FAIL, "malloc failed");
      a->id = i;
      a->wave = wave;
      th[i] = stress_spawn(churner, a);
    }
    for (unsigned i = 0; i < T; i++)
      pthread_join(th[i], NULL);
    atomic_fetch_add(&created, T);
    wave++;
  }
  double el = bench_now() - t0;
  for (unsigned i = 0; i < stress_conf.chunks; i++)
    if (slots[i].b.p)
      stress_block_free(slots[i].b, "churn final");
  for (unsigned i = 0; i < T; i++)
    if (orphans[i].b.p)
      stress_block_free(orphans[i].b, "churn final orphan");
  free(slots);
  free(orphans);
  free(th);
  printf("thread_churn: threads=%u waves=%llu threads_created=%llu time=%.2fs threads/s=%.0f\n", T,
         (unsigned long long)wave, (unsigned long long)atomic_load(&created), el,
         atomic_load(&created) / el);
  return stress_finish();
}
