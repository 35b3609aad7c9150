/* remote_free: cross-thread free storms.
 *
 *   remote_free [--threads=N] [--chunks=N] [--duration=S] [--mode=M] ...
 *
 * Modes (--mode=all, the default, runs each for a quarter of the duration):
 *   queue     N producers allocate and N consumers free; every producer has a
 *             lock-free single-producer/single-consumer ring to every
 *             consumer (ring size = chunks) and picks a consumer at random.
 *   exchange  every thread swaps new blocks into a shared array of `chunks`
 *             atomic slots and frees the block it took out (allocated by
 *             whichever thread put it there).
 *   samepage  thread 0 allocates `chunks` small blocks of one size class (the
 *             same few pages), then all threads free them at once, strided,
 *             into those pages' remote-free lists; repeat.
 *   one2many  one thread allocates, every other thread frees (rings as in
 *             queue).
 * Every block travels with its owner's copy of its size and tag (ring
 * entries, slots) and is verified against it before it is freed. */
#include "stress_common.h"

typedef struct {
  _Atomic size_t head; /* consumer */
  _Atomic size_t tail; /* producer */
  stress_blk *slot;    /* written before tail's release, read after its acquire */
  size_t cap;
} ring;

static ring *rings; /* rings[p * nc + c] */
static unsigned np, nc;
static _Atomic unsigned producers_left;
static stress_xslot *xslots;
static _Atomic uint64_t total_ops;

static bool ring_push(ring *r, stress_blk b) {
  size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  if (t - atomic_load_explicit(&r->head, memory_order_acquire) == r->cap)
    return false;
  r->slot[t % r->cap] = b;
  atomic_store_explicit(&r->tail, t + 1, memory_order_release);
  return true;
}

static bool ring_pop(ring *r, stress_blk *out) {
  size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (h == atomic_load_explicit(&r->tail, memory_order_acquire))
    return false;
  *out = r->slot[h % r->cap];
  atomic_store_explicit(&r->head, h + 1, memory_order_release);
  return true;
}

static void rings_setup(unsigned p, unsigned c) {
  np = p;
  nc = c;
  rings = (ring *)calloc((size_t)p * c, sizeof *rings);
  for (size_t i = 0; i < (size_t)p * c; i++) {
    rings[i].cap = stress_conf.chunks;
    rings[i].slot = (stress_blk *)calloc(rings[i].cap, sizeof(stress_blk));
  }
  atomic_store(&producers_left, p);
}

static void rings_teardown(void) {
  for (size_t i = 0; i < (size_t)np * nc; i++)
    free(rings[i].slot);
  free(rings);
}

typedef struct {
  unsigned id;
  double until;
  pthread_barrier_t *bar;
} warg;

static void *producer(void *arg) {
  warg *w = (warg *)arg;
  char name[24];
  snprintf(name, sizeof name, "producer-%u", w->id);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed * 7 + w->id);
  uint64_t n = 0;
  if (w->id == 0)
    stress_maybe_hang();
  while (n == 0 || bench_now() < w->until) { /* one at least: see larson.c */
    stress_blk b = stress_block_new(stress_size(&r, stress_conf.min_size, stress_conf.max_size));
    n++;
    ring *rg = &rings[(size_t)w->id * nc + bench_rng_next(&r) % nc];
    while (!ring_push(rg, b)) {
      if (bench_now() >= w->until) { /* consumers are slow: free it here */
        stress_block_free(b, "producer leftover");
        break;
      }
      sched_yield();
    }
  }
  atomic_fetch_add(&total_ops, n);
  atomic_fetch_sub_explicit(&producers_left, 1, memory_order_release);
  stress_unregister();
  return NULL;
}

static void *consumer(void *arg) {
  warg *w = (warg *)arg;
  char name[24];
  snprintf(name, sizeof name, "consumer-%u", w->id);
  stress_register(name);
  for (;;) {
    bool any = false;
    for (unsigned p = 0; p < np; p++) {
      stress_blk b;
      while (ring_pop(&rings[(size_t)p * nc + w->id], &b)) {
        stress_block_free(b, "consumer");
        any = true;
      }
    }
    if (!any) {
      if (atomic_load_explicit(&producers_left, memory_order_acquire) == 0) {
        /* the producers are done: one more sweep picks up their last pushes */
        for (unsigned p = 0; p < np; p++) {
          stress_blk b;
          while (ring_pop(&rings[(size_t)p * nc + w->id], &b))
            stress_block_free(b, "consumer");
        }
        break;
      }
      sched_yield();
    }
  }
  stress_unregister();
  return NULL;
}

static void *exchanger(void *arg) {
  warg *w = (warg *)arg;
  char name[24];
  snprintf(name, sizeof name, "exchange-%u", w->id);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed * 13 + w->id);
  uint64_t n = 0;
  while (n == 0 || bench_now() < w->until) { /* one at least: see larson.c */
    stress_blk b = stress_block_new(stress_size(&r, stress_conf.min_size, stress_conf.max_size));
    n++;
    stress_blk old = stress_xslot_swap(&xslots[bench_rng_next(&r) % stress_conf.chunks], b);
    if (old.p)
      stress_block_free(old, "exchange");
  }
  atomic_fetch_add(&total_ops, n);
  stress_unregister();
  return NULL;
}

/* samepage: thread 0 fills xslots; everyone frees slot i with i % T == id. */
static _Atomic int samepage_go;
static void *samepage(void *arg) {
  warg *w = (warg *)arg;
  char name[24];
  snprintf(name, sizeof name, "samepage-%u", w->id);
  stress_register(name);
  unsigned T = stress_conf.threads, n = stress_conf.chunks;
  for (;;) {
    if (w->id == 0) {
      int go = bench_now() < w->until;
      for (unsigned i = 0; go && i < n; i++)
        stress_xslot_swap(&xslots[i], stress_block_new(48));
      atomic_store(&samepage_go, go);
    }
    pthread_barrier_wait(w->bar);
    if (!atomic_load(&samepage_go))
      break;
    for (unsigned i = w->id; i < n; i += T)
      stress_block_free(stress_xslot_swap(&xslots[i], STRESS_BLK_NONE), "samepage");
    atomic_fetch_add(&total_ops, (n + T - 1 - w->id) / T);
    pthread_barrier_wait(w->bar);
  }
  stress_unregister();
  return NULL;
}

static void run_mode(const char *mode, double secs) {
  unsigned T = stress_conf.threads;
  double until = bench_now() + secs;
  pthread_t *th = (pthread_t *)calloc(2 * T + 1, sizeof *th);
  warg *wa = (warg *)calloc(2 * T + 1, sizeof *wa);
  pthread_barrier_t bar;
  unsigned k = 0;
  atomic_store(&total_ops, 0);
  double t0 = bench_now();
  if (!strcmp(mode, "queue") || !strcmp(mode, "one2many")) {
    unsigned p = !strcmp(mode, "queue") ? T : 1,
             c = !strcmp(mode, "queue") ? T : (T > 1 ? T - 1 : 1);
    rings_setup(p, c);
    for (unsigned i = 0; i < c; i++) {
      wa[k] = (warg){i, until, NULL};
      th[k] = stress_spawn(consumer, &wa[k]);
      k++;
    }
    for (unsigned i = 0; i < p; i++) {
      wa[k] = (warg){i, until, NULL};
      th[k] = stress_spawn(producer, &wa[k]);
      k++;
    }
  } else if (!strcmp(mode, "exchange") || !strcmp(mode, "samepage")) {
    int ex = !strcmp(mode, "exchange");
    xslots = (stress_xslot *)calloc(stress_conf.chunks, sizeof *xslots);
    pthread_barrier_init(&bar, NULL, T);
    for (unsigned i = 0; i < T; i++) {
      wa[k] = (warg){i, until, &bar};
      th[k] = stress_spawn(ex ? exchanger : samepage, &wa[k]);
      k++;
    }
  } else {
    fprintf(stderr, "remote_free: unknown mode '%s' (queue exchange samepage one2many all)\n",
            mode);
    exit(STRESS_EXIT_USAGE);
  }
  for (unsigned i = 0; i < k; i++)
    pthread_join(th[i], NULL);
  double el = bench_now() - t0;
  if (!strcmp(mode, "queue") || !strcmp(mode, "one2many")) {
    rings_teardown();
  } else {
    for (unsigned i = 0; i < stress_conf.chunks; i++)
      if (xslots[i].b.p)
        stress_block_free(xslots[i].b, "exchange final");
    free(xslots);
    pthread_barrier_destroy(&bar);
  }
  printf("remote_free: mode=%s threads=%u ops=%llu time=%.2fs ops/s=%.0f\n", mode, T,
         (unsigned long long)atomic_load(&total_ops), el, atomic_load(&total_ops) / el);
  fflush(stdout);
  free(th);
  free(wa);
}

int main(int argc, char **argv) {
  stress_parse(argc, argv, 4, 1024, 2, 16, 1024, "all");
  stress_start();
  if (!strcmp(stress_conf.mode, "all")) {
    const char *m[] = {"queue", "exchange", "samepage", "one2many"};
    for (int i = 0; i < 4; i++)
      run_mode(m[i], stress_conf.duration / 4);
  } else {
    run_mode(stress_conf.mode, stress_conf.duration);
  }
  return stress_finish();
}
