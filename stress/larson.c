/* larson: the Larson & Krishnan server workload.
 *
 *   larson [seconds min_size max_size chunks_per_thread rounds seed threads] [--options]
 *
 * Each of `threads` chains owns a slice of `chunks_per_thread` blocks, filled
 * up front by the main thread. A chain's thread repeatedly frees a random
 * victim of its slice (after verifying its pattern) and allocates a new block
 * of a random size in [min_size, max_size), which it fills. After `rounds`
 * such replacements the thread starts a successor that inherits the slice and
 * exits, so blocks are freed by threads other than the ones that allocated
 * them and threads churn. Each successor joins its predecessor first, so an
 * exited thread's stack is released at once (when main joined the chains one
 * after the other, the exited threads of every chain but the first kept their
 * stacks until the end: peak RSS grew with the number of threads run, that is
 * with the allocator's speed). After `seconds` every chain stops (its last
 * thread, joined by main); the main thread frees what is left, runs
 * hak_heap_check and prints allocations per second.
 * The --options of stress_common.h work too (--threads, --chunks, ...). */
#include "stress_common.h"

typedef struct chain {
  unsigned id;
  stress_blk *blk; /* the slice, each block with its owner's copy */
  uint64_t rounds;
  uint64_t seed;
  uint64_t gen;     /* threads run so far */
  uint64_t ops;     /* replacements done, read by main after the joins */
  pthread_t prev;   /* the predecessor (when gen > 0), for its successor to join */
  pthread_t last;   /* the chain's last thread, for main to join ... */
  _Atomic int done; /* ... once this is set */
} chain;

static void *larson_thread(void *arg) {
  chain *c = (chain *)arg;
  if (c->gen > 0 && pthread_join(c->prev, NULL) != 0) /* it returns right after spawning us */
    stress_fail(STRESS_EXIT_FAIL, "cannot join the predecessor");
  char name[24];
  snprintf(name, sizeof name, "larson-%u.%llu", c->id, (unsigned long long)c->gen);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, c->seed ^ (c->gen * 0x9E3779B97F4A7C15ull) ^ c->id);
  size_t lo = stress_conf.min_size, hi = stress_conf.max_size;
  unsigned n = stress_conf.chunks;
  uint64_t i;
  if (c->id == 0 && c->gen == 0)
    stress_maybe_hang();
  for (i = 0; i < c->rounds; i++) {
    /* not before the first 64: a chain whose first thread started after the
     * duration (a loaded machine, a short run) counted 0 allocations, and
     * the bench took the run for one that printed no result (make check's
     * bench smoke, larson/t2-c256 under glibc: 0.11 s to start 2 threads) */
    if (i && (i & 63) == 0 && stress_time_up())
      break;
    unsigned v = (unsigned)(bench_rng_next(&r) % n);
    stress_block_free(c->blk[v], "larson victim");
    c->blk[v] = stress_block_new(stress_size(&r, lo, hi));
  }
  c->ops += i;
  c->gen++;
  if (!stress_time_up()) {
    /* c belongs to the successor from here on (pthread_create orders these
     * stores before it runs); it joins this thread */
    c->prev = pthread_self();
    stress_spawn(larson_thread, c);
    stress_unregister();
    return NULL;
  }
  c->last = pthread_self();
  atomic_store_explicit(&c->done, 1, memory_order_release);
  stress_unregister();
  return NULL;
}

int main(int argc, char **argv) {
  /* Positional Larson arguments first, then --options. */
  double seconds = 2;
  uint64_t minsz = 8, maxsz = 1024, chunks = 1024, rounds = 10000, seed = 42, threads = 2;
  int i = 1;
  if (i < argc && argv[i][0] != '-') {
    seconds = strtod(argv[i++], NULL);
    minsz = bench_arg_u64(argc, argv, i++, minsz);
    maxsz = bench_arg_u64(argc, argv, i++, maxsz);
    chunks = bench_arg_u64(argc, argv, i++, chunks);
    rounds = bench_arg_u64(argc, argv, i++, rounds);
    seed = bench_arg_u64(argc, argv, i++, seed);
    threads = bench_arg_u64(argc, argv, i++, threads);
    if (i > argc)
      i = argc;
  }
  char *saved = argv[i - 1];
  argv[i - 1] = argv[0];
  stress_parse(argc - (i - 1), argv + (i - 1), (unsigned)threads, (unsigned)chunks, seconds,
               (size_t)minsz, (size_t)maxsz, "larson");
  argv[i - 1] = saved;
  if (stress_conf.seed == 42)
    stress_conf.seed = seed;
  if (rounds == 0)
    rounds = 1;
  if (stress_conf.min_size < 16)
    stress_conf.min_size = 16; /* the block header needs 16 bytes */
  if (stress_conf.max_size <= stress_conf.min_size)
    stress_conf.max_size = stress_conf.min_size + 1;
  stress_start();

  unsigned nt = stress_conf.threads, n = stress_conf.chunks;
  chain *ch = (chain *)calloc(nt, sizeof *ch);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed);
  for (unsigned t = 0; t < nt; t++) {
    ch[t].id = t;
    ch[t].rounds = rounds;
    ch[t].seed = stress_conf.seed + t;
    ch[t].blk = (stress_blk *)calloc(n, sizeof *ch[t].blk);
    for (unsigned k = 0; k < n; k++)
      ch[t].blk[k] = stress_block_new(stress_size(&r, stress_conf.min_size, stress_conf.max_size));
  }
  stress_work_begins();
  double t0 = bench_now();
  for (unsigned t = 0; t < nt; t++)
    stress_spawn(larson_thread, &ch[t]);
  uint64_t threads_run = 0;
  for (unsigned t = 0; t < nt; t++) {
    while (!atomic_load_explicit(&ch[t].done, memory_order_acquire)) {
      struct timespec ts = {0, 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    pthread_join(ch[t].last, NULL);
    threads_run += ch[t].gen;
  }
  double el = bench_now() - t0;
  uint64_t ops = 0;
  for (unsigned t = 0; t < nt; t++) {
    ops += ch[t].ops;
    for (unsigned k = 0; k < n; k++)
      stress_block_free(ch[t].blk[k], "larson final");
    free(ch[t].blk);
  }
  free(ch);
  printf("larson: allocator=%s threads=%u chunks=%u size=[%zu,%zu) rounds=%llu time=%.3fs "
         "allocs=%llu threads_run=%llu throughput=%.0f allocs/s\n",
         bench_allocator_name(), nt, n, stress_conf.min_size, stress_conf.max_size,
         (unsigned long long)rounds, el, (unsigned long long)ops, (unsigned long long)threads_run,
         el > 0 ? (double)ops / el : 0.0);
  return stress_finish();
}
