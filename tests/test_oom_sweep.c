/* Memory exhaustion at every OS call, one call at a time: a systematic
 * sweep (fuzz/fail_mmap.h's mmap, munmap, madvise and mremap, which the
 * static libhakmem.a calls instead of libc's). For each workload below,
 * each kind of call, and N = 1, 2, ... until the workload completes
 * without reaching call N: a fresh allocator (hak_test_reset), call N of
 * that kind armed to fail as a kernel fails it, the workload run. Also:
 * mmap failing for good from call N on (an address-space limit), every
 * kind failing for good, and, for mremap, each move failing after it
 * unmapped its destination (kernels before 6.11). Every op must either
 * succeed with a right block (its size usable, aligned, calloc's bytes
 * zero; its bytes, written with hak_fill, intact until its free;
 * realloc's kept bytes the old ones) and errno as it was, or fail with
 * NULL (posix_memalign: its return value) and ENOMEM, and only after a
 * call did fail; a failed realloc leaves its block as it was; free and
 * hak_trim keep errno. After the run, disarmed: hak_heap_check clean (and
 * with its index's mapping refused), every block intact and freed,
 * nothing live or abandoned, and (release and debug, one-thread
 * workloads) the process's mapped size changed by exactly what hak_stats'
 * mapped_bytes did (a range hakmem lost track of shows there); then the
 * same workload again, which must succeed op for op.
 *
 * Workloads: small blocks of every class (new segments), calloc, realloc,
 * tcache growth; aligned allocations of every alignment 32 B .. 8 MiB;
 * large blocks 64 KiB .. 33 MiB through the large cache's cut, gather,
 * growth and aging, realloc small <-> large, large grow, shrink and move,
 * calloc from the cache, hak_trim between; the purges (past the threshold
 * and the delay, the segment cache's aging, hak_trim's) and calloc over
 * the slices a refused purge left dirty; 11 threads releasing a segment
 * each at once (the segment cache unmaps those past its 8); a thread that
 * exits with blocks live and a main thread that adopts and reclaims its
 * segments; three threads at once, one allocating and handing blocks to
 * two that free them remotely and allocate themselves, the failure landing
 * in whichever thread makes call N; and a free (into an abandoned segment)
 * and a malloc by a thread with no heap when no heap struct is spare (its
 * chunk's mapping fails). Part "orphans busy": a munmap refused while
 * another thread's retry holds the table of orphans. TSan runs the
 * threaded workloads only (the rest cost 16 s of CPU there).
 *
 * Found with it (2026-11-29): a refused munmap of os_one_mapping's probe
 * page left the page mapped for good; a heapless thread's free returned
 * with errno ENOMEM when no heap struct could be mapped; the asan build's
 * release of a range's shadow left a refused madvise's errno behind a
 * free or hak_trim; a munmap refused while another thread held the table
 * of orphans was forgotten, its range mapped for good.
 *
 * OOM_SWEEP_ONLY=<workload> runs one workload's sweeps, OOM_SWEEP_WHERE=1
 * prints where each injected failure landed (an offset from hak_malloc,
 * for addr2line) and how many runs each sweep took. */
#define _GNU_SOURCE
#include "hak_test.h"

#include "hak_test_internal.h"

#include "../fuzz/fail_mmap.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define SENTINEL 4321 /* errno before each op */
#define TAB_MAX 1024
#define N_MAX 2000 /* calls armed per run before the sweep gives up */

enum op_kind { A_MALLOC, A_CALLOC, A_ALIGNED, A_POSIX, A_MEMALIGN, A_VALLOC, A_PVALLOC };

typedef struct {
  unsigned char *p;
  size_t n, align;
  uint64_t seed;
} blk_t;

typedef struct {
  blk_t b[TAB_MAX];
  size_t n;
  uint64_t rng;
  bool strict; /* disarmed: every op must succeed */
  const char *what;
} tab_t;

static const char *run_name; /* the run's description, for failure messages */

/* The bytes of a block: every byte up to DENSE (64 KiB), beyond that 64
 * bytes at each DENSE and the last 4 KiB (a touched page per 64 KiB: the large
 * cache's moves carry resident pages, and a sweep of thousands of runs
 * must not fault in megabytes each). */
static size_t DENSE = 64 * KiB;   /* 256 for the purge workload's 12 MiB */
static size_t tail_at(size_t n) { /* n > DENSE */
  size_t tail = n / 16 < 4 * KiB ? n / 16 : 4 * KiB;
  return n - tail > DENSE ? n - tail : DENSE;
}
static void blk_fill(unsigned char *p, size_t n, uint64_t seed) {
  if (n <= DENSE) {
    hak_fill(p, n, seed);
    return;
  }
  hak_fill(p, DENSE, seed);
  for (size_t o = DENSE; o + 64 <= tail_at(n); o += DENSE)
    hak_fill(p + o, 64, seed ^ o);
  hak_fill(p + tail_at(n), n - tail_at(n), seed ^ n);
}

/* Offset of a byte of p[0..n) that blk_fill(p, n, seed) did not write as
 * it is now (only the ranges it writes), SIZE_MAX if none. `upto`: only
 * the bytes below it (realloc's kept prefix; the tail range is checked
 * only when upto >= n). */
static size_t blk_bad(const unsigned char *p, size_t n, uint64_t seed, size_t upto) {
  size_t lim = upto < n ? upto : n, r;
  if (n <= DENSE)
    return hak_pattern_mismatch(p, lim, seed);
  if ((r = hak_pattern_mismatch(p, lim < DENSE ? lim : DENSE, seed)) != SIZE_MAX)
    return r;
  for (size_t o = DENSE; o + 64 <= lim && o + 64 <= tail_at(n); o += DENSE)
    if ((r = hak_pattern_mismatch(p + o, 64, seed ^ o)) != SIZE_MAX)
      return o + r;
  if (upto >= n && (r = hak_pattern_mismatch(p + tail_at(n), n - tail_at(n), seed ^ n)) != SIZE_MAX)
    return tail_at(n) + r;
  return SIZE_MAX;
}

/* hak_usable_size(p) of a block of n bytes; n itself where asking costs
 * too much: under ASan the call scans the shadow of the whole block for
 * its requested end, and a sweep of thousands of runs of megabyte blocks
 * spent most of its time there. */
static size_t usable_of(const void *p, size_t n) {
#ifdef HAK_TEST_ASAN
  if (n > 256 * KiB)
    return n;
#endif
  return hak_usable_size(p);
}

/* Whether one of this thread's OS calls failed since `mark` (fo_fired_here
 * before the op): an op that fails must have met a failure itself; a NULL
 * without one is a spurious ENOMEM, one a failure earlier in the run left
 * behind. */
static bool fired_here_since(long mark) {
  return fo_fired_here > mark;
}

static void *do_alloc(enum op_kind k, size_t n, size_t align, int *rc) {
  void *p = NULL;
  *rc = 0;
  switch (k) {
  case A_MALLOC:
    return hak_malloc(n);
  case A_CALLOC:
    return hak_calloc(1, n);
  case A_ALIGNED:
    return hak_aligned_alloc(align, n);
  case A_MEMALIGN:
    return hak_memalign(align, n);
  case A_VALLOC:
    return hak_valloc(n);
  case A_PVALLOC:
    return hak_pvalloc(n);
  case A_POSIX:
    *rc = hak_posix_memalign(&p, align, n);
    return *rc ? NULL : p;
  }
  return NULL;
}

/* One allocation; a block that came is checked, filled and listed. */
static unsigned char *t_alloc(tab_t *t, enum op_kind k, size_t n, size_t align) {
  int rc;
  long mark = fo_fired_here;
  errno = SENTINEL;
  unsigned char *p = do_alloc(k, n, align, &rc);
  int e = errno;
  if (!p) {
    if (k == A_POSIX)
      CHECK_MSG(rc == ENOMEM && e == SENTINEL,
                "%s: %s: posix_memalign(%zu, %zu) failed with %d, errno %d (want ENOMEM, kept)",
                run_name, t->what, align, n, rc, e);
    else
      CHECK_MSG(e == ENOMEM, "%s: %s: alloc kind %d of %zu (align %zu) NULL with errno %d",
                run_name, t->what, (int)k, n, align, e);
    CHECK_MSG(!t->strict && fired_here_since(mark),
              "%s: %s: alloc kind %d of %zu (align %zu) failed with no OS call of its failed",
              run_name, t->what, (int)k, n, align);
    return NULL;
  }
  CHECK_MSG(e == SENTINEL, "%s: %s: alloc kind %d of %zu succeeded, errno %d (was kept %d)",
            run_name, t->what, (int)k, n, e, SENTINEL);
  size_t a = k == A_VALLOC || k == A_PVALLOC ? 4096 : align ? align : 16;
  CHECK_MSG(hak_is_aligned(p, a), "%s: %s: %p not aligned to %zu", run_name, t->what, (void *)p, a);
  CHECK_MSG(usable_of(p, n) >= n, "%s: %s: usable %zu < %zu", run_name, t->what, usable_of(p, n),
            n);
  if (k == A_CALLOC) {
    size_t z = n <= DENSE ? hak_find_not_byte(p, n, 0) : hak_find_not_byte(p, DENSE, 0);
    if (z == SIZE_MAX && n > DENSE)
      for (size_t o = DENSE; o < n && z == SIZE_MAX; o += 4 * KiB)
        z = p[o] ? o : SIZE_MAX;
    if (z == SIZE_MAX && n > DENSE)
      z = hak_find_not_byte(p + tail_at(n), n - tail_at(n), 0) == SIZE_MAX ? SIZE_MAX : n - 1;
    CHECK_MSG(z == SIZE_MAX, "%s: %s: calloc(%zu) byte %zu not zero", run_name, t->what, n, z);
  }
  REQUIRE(t->n < TAB_MAX);
  blk_t *b = &t->b[t->n++];
  b->p = p;
  b->n = n;
  b->align = a;
  b->seed = hak_rand(&t->rng);
  blk_fill(p, n, b->seed);
  return p;
}

static void t_check(tab_t *t, size_t i, const char *when) {
  blk_t *b = &t->b[i];
  size_t bad = blk_bad(b->p, b->n, b->seed, SIZE_MAX);
  CHECK_MSG(bad == SIZE_MAX, "%s: %s: block %p (%zu bytes) changed at %zu %s", run_name, t->what,
            (void *)b->p, b->n, bad, when);
}

/* Frees block i (the last one takes its slot). */
static void t_free(tab_t *t, size_t i) {
  if (i >= t->n) /* an allocation before it failed */
    return;
  t_check(t, i, "before its free");
  blk_t *b = &t->b[i];
  errno = SENTINEL;
  if (b->seed % 3 == 0) /* free_sized and free_aligned_sized too */
    hak_free_sized(b->p, b->n);
  else if (b->seed % 3 == 1 && b->align > 16)
    hak_free_aligned_sized(b->p, b->align, b->n);
  else
    hak_free(b->p);
  CHECK_MSG(errno == SENTINEL, "%s: %s: free(%p) of %zu bytes changed errno to %d", run_name,
            t->what, (void *)t->b[i].p, t->b[i].n, errno);
  t->b[i] = t->b[--t->n];
}

/* Takes block i out of t without freeing it (handed to another thread). */
static blk_t t_take(tab_t *t, size_t i) {
  blk_t b = t->b[i];
  t->b[i] = t->b[--t->n];
  return b;
}

static void t_put(tab_t *t, blk_t b) {
  REQUIRE(t->n < TAB_MAX);
  t->b[t->n++] = b;
}

static void t_realloc(tab_t *t, size_t i, size_t n) {
  if (i >= t->n)
    return;
  blk_t *b = &t->b[i];
  t_check(t, i, "before its realloc");
  size_t usable = usable_of(b->p, b->n);
  long mark = fo_fired_here;
  errno = SENTINEL;
  unsigned char *q = b->seed & 4 ? hak_reallocarray(b->p, 1, n) : hak_realloc(b->p, n);
  int e = errno;
  if (!q) {
    CHECK_MSG(e == ENOMEM, "%s: %s: realloc(%zu -> %zu) NULL with errno %d", run_name, t->what,
              b->n, n, e);
    CHECK_MSG(!t->strict && fired_here_since(mark),
              "%s: %s: realloc(%zu -> %zu) failed with no OS call of its failed", run_name, t->what,
              b->n, n);
    t_check(t, i, "after its failed realloc");
    CHECK_MSG(usable_of(b->p, b->n) == usable, "%s: %s: a failed realloc changed usable %zu -> %zu",
              run_name, t->what, usable, usable_of(b->p, b->n));
    return;
  }
  CHECK_MSG(e == SENTINEL, "%s: %s: realloc(%zu -> %zu) succeeded, errno %d", run_name, t->what,
            b->n, n, e);
  CHECK_MSG(usable_of(q, n) >= n, "%s: %s: realloc'd usable %zu < %zu", run_name, t->what,
            usable_of(q, n), n);
  CHECK_MSG(hak_is_aligned(q, 16), "%s: %s: realloc gave %p", run_name, t->what, (void *)q);
  size_t keep = n < b->n ? n : b->n;
  size_t bad = blk_bad(q, b->n, b->seed, keep);
  CHECK_MSG(bad == SIZE_MAX, "%s: %s: realloc(%zu -> %zu) lost byte %zu", run_name, t->what, b->n,
            n, bad);
  b->p = q;
  b->n = n;
  b->align = 16;
  blk_fill(q, n, b->seed);
}

static void t_trim(tab_t *t) {
  errno = SENTINEL;
  hak_trim(0);
  CHECK_MSG(errno == SENTINEL, "%s: %s: hak_trim changed errno to %d", run_name, t->what, errno);
}

static void t_free_all(tab_t *t) {
  while (t->n)
    t_free(t, t->n - 1);
}

/* ---- workloads ------------------------------------------------------------ */

/* Every class, several pages of some (new segments: 80 classes of pages
 * of up to 8 slices fill several), calloc, frees, realloc within small,
 * a burst that grows the tcache, a cache flush. */
static void w_small(tab_t *t) {
  t->what = "small";
  size_t ncls = hak_size_class_count();
  for (size_t c = 0; c < ncls; c++)
    t_alloc(t, c % 3 == 0 ? A_CALLOC : A_MALLOC, hak_size_class_size(c) - (c & 1), 0);
  for (size_t i = 0; i < t->n; i += 2)
    t_free(t, i);
  for (int i = 0; i < 40; i++)
    t_alloc(t, A_MALLOC, 48 * KiB, 0);
  for (int r = 0; r < 3; r++) { /* the tcache: frees and mallocs in bursts */
    size_t first = t->n;
    for (int i = 0; i < 150; i++)
      t_alloc(t, A_MALLOC, 8 * KiB, 0);
    while (t->n > first)
      t_free(t, first);
  }
  for (size_t i = 0; i < t->n && i < 40; i++)
    t_realloc(t, i, t->b[i].n + t->b[i].n / 2 + 1);
  hak_thread_cache_flush();
  t_trim(t);
  for (int i = 0; i < 20; i++)
    t_alloc(t, A_CALLOC, 1000 + (size_t)i * 700, 0);
}

/* Every alignment, with small and large sizes, through each function. */
static void w_aligned(tab_t *t) {
  t->what = "aligned";
  int f = 0;
  for (size_t a = 32; a <= 8 * MiB; a *= 2) {
    static const enum op_kind ks[] = {A_ALIGNED, A_POSIX, A_MEMALIGN};
    t_alloc(t, ks[f++ % 3], 100, a);
    t_alloc(t, ks[f++ % 3], a < 64 * KiB ? a * 3 : 70 * KiB, a);
  }
  t_alloc(t, A_VALLOC, 5000, 0);
  t_alloc(t, A_PVALLOC, 70 * KiB, 0);
  for (size_t i = 0; i < t->n; i += 3)
    t_free(t, i);
  for (size_t i = 1; i < t->n; i += 4)
    t_realloc(t, i, t->b[i].n * 2);
  t_trim(t);
}

/* Large blocks through the cache: cut, gather, growth; realloc of every
 * kind; calloc from the cache; hak_trim in between. */
static void w_large(tab_t *t) {
  t->what = "large";
  static const size_t sz[] = {64 * KiB + 1, 100 * KiB, 256 * KiB, 1 * MiB, 3 * MiB, 8 * MiB};
  for (size_t i = 0; i < 6; i++)
    t_alloc(t, A_MALLOC, sz[i], 0);
  while (t->n) /* all into the cache */
    t_free(t, 0);
  t_alloc(t, A_MALLOC, 2 * MiB, 0);   /* the 3 MiB one: whole */
  t_alloc(t, A_MALLOC, 300 * KiB, 0); /* cut from 1 MiB, or grown */
  t_alloc(t, A_CALLOC, 5 * MiB, 0);   /* from 8 MiB: cut, calloc clears */
  t_alloc(t, A_MALLOC, 6 * MiB, 0);   /* gathered from what is left */
  t_alloc(t, A_MALLOC, 70 * KiB, 0);
  t_realloc(t, 4, 2 * MiB);   /* large grow: in place or moved */
  t_realloc(t, 0, 600 * KiB); /* shrink: tail unmapped */
  t_realloc(t, 1, 280 * KiB); /* shrink: tail kept */
  t_realloc(t, 3, 12 * MiB);  /* grow a gathered block: extended or copied */
  t_trim(t);                  /* tails given back */
  t_realloc(t, 1, 1 * MiB);   /* grows back */
  t_alloc(t, A_MALLOC, 1000, 0);
  t_realloc(t, t->n - 1, 200 * KiB); /* small -> large */
  t_realloc(t, 2, 5000);             /* large -> small */
  t_free(t, 0);
  t_free(t, 0);
  t_alloc(t, A_CALLOC, 900 * KiB, 0); /* from the cache */
  t_alloc(t, A_MALLOC, 33 * MiB, 0);  /* over the zone's bound (32 MiB): where the kernel puts it */
  t_realloc(t, t->n - 1, 300 * KiB);  /* its tail unmapped (the valgrind build: copied) */
  t_free(t, 0);
  t_free(t, 1);
  os_test_advance_ms(LARGE_CACHE_AGE_MS + 1); /* the cached mappings expire: */
  t_alloc(t, A_MALLOC, 90 * KiB, 0);          /* unmapped at the next large call */
}

/* The purges: 12 MiB of 60 KiB blocks, three pages of every four freed
 * (free dirty slices past the threshold), the purge delay passed on the
 * test clock, a slow path that purges; then everything freed (segments
 * to the cache, which ages them), again, and hak_trim. */
static void w_purge(tab_t *t) {
  t->what = "purge";
  for (int i = 0; i < 200; i++)
    t_alloc(t, A_MALLOC, 60 * KiB, 0);
  for (size_t i = t->n; i-- > 0;)
    if ((i / 8) % 4 != 0)
      t_free(t, i);
  os_test_advance_ms(PURGE_DELAY_MS + 1);
  t_alloc(t, A_MALLOC, 24, 0);
  t_alloc(t, A_MALLOC, 2000, 0);
  for (int i = 0; i < 100; i++) /* the slices again: calloc's zero whether purged or refused */
    t_alloc(t, A_CALLOC, 60 * KiB, 0);
  t_free_all(t);
  os_test_advance_ms(PURGE_DELAY_MS + 1);
  t_alloc(t, A_MALLOC, 24, 0);
  for (int i = 0; i < 60; i++)
    t_alloc(t, A_MALLOC, 30 * KiB, 0);
  t_free_all(t);
  t_trim(t);
  for (int i = 0; i < 60; i++) /* after hak_trim's purges */
    t_alloc(t, A_CALLOC, 30 * KiB, 0);
}

/* More segments than the segment cache keeps (SEGMENT_CACHE_MAX): that
 * many threads and three more each hold a block of a segment of their
 * own until all have one, then free it and exit, each releasing its
 * segment; the cache unmaps those past its bound. */
#define SEG_THREADS (SEGMENT_CACHE_MAX + 3)
static tab_t seg_tab[SEG_THREADS];
static atomic_int seg_held;
static void *seg_thread(void *arg) {
  tab_t *t = arg;
  t_alloc(t, A_MALLOC, 100, 0);
  atomic_fetch_add(&seg_held, 1);
  HAK_SPIN_UNTIL(atomic_load(&seg_held) >= SEG_THREADS, "segments: a thread never took its block");
  t_free_all(t);
  return NULL;
}
static void w_segments(tab_t *t) {
  t->what = "segments";
  atomic_store(&seg_held, 0);
  pthread_t th[SEG_THREADS];
  for (int i = 0; i < SEG_THREADS; i++) {
    seg_tab[i] = (tab_t){.rng = t->rng + (uint64_t)i, .strict = t->strict, .what = "segments"};
    REQUIRE(pthread_create(&th[i], NULL, seg_thread, &seg_tab[i]) == 0);
  }
  for (int i = 0; i < SEG_THREADS; i++)
    pthread_join(th[i], NULL);
  t_alloc(t, A_MALLOC, 100, 0);
}

/* A thread allocates, frees some, and exits with the rest live (its
 * segments abandoned); main allocates (adopts) and frees them (reclaims). */
static tab_t *exit_tab;
static void *exit_thread(void *arg) {
  tab_t *t = arg;
  for (int i = 0; i < 300; i++)
    t_alloc(t, A_MALLOC, 16 + (size_t)(i % 40) * 200, 0);
  t_alloc(t, A_MALLOC, 200 * KiB, 0);
  for (size_t i = 0; i < t->n; i += 2)
    t_free(t, i);
  return NULL;
}
static void w_exit(tab_t *t) {
  t->what = "exit";
  static tab_t sub;
  sub = (tab_t){.rng = t->rng ^ 1, .strict = t->strict, .what = "exit: thread"};
  exit_tab = &sub;
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, exit_thread, &sub) == 0);
  pthread_join(th, NULL);
  for (int i = 0; i < 100; i++)
    t_alloc(t, A_MALLOC, 16 + (size_t)(i % 40) * 200, 0);
  while (sub.n) /* reclaims: frees by a heap that allocated since */
    t_free(&sub, sub.n - 1);
  t_trim(t);
}

/* Three threads at once: A allocates small and large blocks and hands
 * most to B and C, which free them (remote frees, into A's pages and the
 * large cache) while they allocate and free their own. */
#define MT_Q 64
static struct {
  pthread_mutex_t mu;
  blk_t q[MT_Q];
  int n;
  atomic_int done;
} mt = {.mu = PTHREAD_MUTEX_INITIALIZER};
static tab_t mt_tab[3];

static void *mt_producer(void *arg) {
  tab_t *t = arg;
  for (int i = 0; i < 400; i++) {
    size_t n = i % 50 == 7 ? 100 * KiB + (size_t)i * 1000 : 16 + (size_t)(i * 37 % 3000);
    if (!t_alloc(t, A_MALLOC, n, 0))
      continue;
    if (i % 4 == 0)
      continue; /* A keeps a quarter (freed at the end) */
    for (;;) {
      pthread_mutex_lock(&mt.mu);
      bool room = mt.n < MT_Q;
      if (room)
        mt.q[mt.n++] = t_take(t, t->n - 1);
      pthread_mutex_unlock(&mt.mu);
      if (room)
        break;
      sched_yield();
    }
  }
  atomic_store(&mt.done, 1);
  t_free_all(t);
  return NULL;
}

static void *mt_consumer(void *arg) {
  tab_t *t = arg;
  for (unsigned i = 0;; i++) {
    pthread_mutex_lock(&mt.mu);
    bool got = mt.n > 0;
    blk_t b = got ? mt.q[--mt.n] : (blk_t){0};
    pthread_mutex_unlock(&mt.mu);
    if (got) {
      t_put(t, b);
      t_free(t, t->n - 1);
    } else if (atomic_load(&mt.done)) {
      break;
    } else {
      sched_yield();
    }
    if (i % 3 == 0) /* its own, some of them kept a while */
      t_alloc(t, A_MALLOC, 32 + (size_t)(i * 53 % 5000), 0);
    if (t->n > 20)
      t_free(t, (size_t)(i % t->n));
  }
  t_free_all(t);
  return NULL;
}

static void w_mt(tab_t *t) {
  t->what = "threads";
  mt.n = 0;
  atomic_store(&mt.done, 0);
  pthread_t th[3];
  static const char *const names[3] = {"threads: allocator", "threads: freer 1",
                                       "threads: freer 2"};
  for (int i = 0; i < 3; i++) {
    mt_tab[i] = (tab_t){.rng = t->rng + (uint64_t)i, .strict = t->strict, .what = names[i]};
    REQUIRE(pthread_create(&th[i], NULL, i ? mt_consumer : mt_producer, &mt_tab[i]) == 0);
  }
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  REQUIRE(mt.n == 0);
  t_trim(t);
}

/* ---- the sweep ------------------------------------------------------------ */

static bool vm_exact; /* release, debug: nothing else maps meanwhile */

/* The checks after a run (disarmed), every block freed. */
static void end_of_run(tab_t *t, size_t vm0, size_t st0, bool vm_check) {
  /* its index's mapping refused: the walk without it */
  fo_arm(FO_BIT(FO_MMAP), 1, true);
  errno = SENTINEL;
  size_t bad = hak_heap_check();
  int e = errno;
  fo_disarm();
  CHECK_MSG(bad == 0 && e == SENTINEL, "%s: hak_heap_check without its index: %zu, errno %d",
            run_name, bad, e);
  CHECK_MSG(hak_heap_check() == 0, "%s: hak_heap_check after the run", run_name);
  for (size_t i = 0; i < t->n; i++)
    t_check(t, i, "after the run");
  t->strict = true;
  t_free_all(t);
  t_trim(t);
  char what[256];
  snprintf(what, sizeof what, "%s: everything freed", run_name);
  CHECK_ALL_FREED(what);
  if (vm_check && vm_exact) {
    struct hak_stats st;
    hak_stats(&st);
    size_t vm = hak_statm_bytes(0);
    long long dvm = (long long)vm - (long long)vm0,
              dst = (long long)st.mapped_bytes - (long long)st0;
    CHECK_MSG(dvm == dst,
              "%s: after the frees and hak_trim the process's mapped size changed by %lld KiB, "
              "hakmem's mapped_bytes by %lld KiB",
              run_name, dvm / 1024, dst / 1024);
  }
}

static const char *kind_name(unsigned kinds) {
  switch (kinds) {
  case FO_BIT(FO_MMAP):
    return "mmap";
  case FO_BIT(FO_MUNMAP):
    return "munmap";
  case FO_BIT(FO_MADVISE):
    return "madvise";
  case FO_BIT(FO_MREMAP):
    return fo.move_how == FM_AFTER_UNMAP ? "mremap (a move failing after unmapping its destination)"
                                         : "mremap";
  default:
    return fo.move_how == FM_AFTER_UNMAP
               ? "any call (a move failing after unmapping its destination)"
               : "any call";
  }
}

static long runs_total;

/* One sweep: N = 1.. until the workload completes with nothing failed. */
static void sweep(const char *name, void (*work)(tab_t *), unsigned kinds, bool persist) {
  static char namebuf[256];
  static tab_t t;
  long n;
  for (n = 1; n <= N_MAX; n++) {
    snprintf(namebuf, sizeof namebuf, "%s, %s number %ld fails%s", name, kind_name(kinds), n,
             persist ? " (and every one after)" : "");
    run_name = namebuf;
    hak_test_reset();
    fo.madvise_errno = n & 1 ? EAGAIN : ENOMEM;
    struct hak_stats st;
    hak_stats(&st);
    size_t vm0 = vm_exact ? hak_statm_bytes(0) : 0, st0 = st.mapped_bytes;
    t = (tab_t){.rng = 0x5eed + (uint64_t)n};
    fo_arm(kinds, n, persist);
    work(&t);
    long fired = fo_disarm();
    if (fired && getenv("OOM_SWEEP_WHERE"))
      hak_test_log("%s: failed at hak_malloc%+td\n", run_name,
                   (char *)atomic_load(&fo.where) - (char *)(void *)hak_malloc);
    runs_total++;
    end_of_run(&t, vm0, st0, true);
    /* the same again, nothing failing, on the state the failure left */
    snprintf(namebuf, sizeof namebuf, "%s, after %s number %ld failed: the workload again", name,
             kind_name(kinds), n);
    hak_stats(&st);
    vm0 = vm_exact ? hak_statm_bytes(0) : 0;
    st0 = st.mapped_bytes;
    t = (tab_t){.rng = 0xa9a1 + (uint64_t)n, .strict = true};
    work(&t);
    end_of_run(&t, vm0, st0, true);
    if (!fired || hak_test_failures())
      break;
  }
  CHECK_MSG(n <= N_MAX, "%s, %s: still failing calls after %d", name, kind_name(kinds), N_MAX);
  if (getenv("OOM_SWEEP_WHERE"))
    hak_test_log("%s, %s%s: %ld runs\n", name, kind_name(kinds), persist ? " (persistent)" : "", n);
}

/* OOM_SWEEP_ONLY=name: that workload's sweeps only (for debugging). */
static bool selected(const char *name) {
  const char *only = getenv("OOM_SWEEP_ONLY");
  return !only || strcmp(only, name) == 0;
}

/* The sweeps of one workload: each kind of call in `kinds` failing alone,
 * then every kind failing for good. MOVES: a workload of many page moves
 * (mremap), swept once more with every call failing for good and each
 * move after unmapping its destination. */
#define MOVES (1u << FO_KINDS)
static void sweep_all(const char *name, void (*work)(tab_t *), unsigned kinds) {
  if (!selected(name))
    return;
  /* a warm-up: what the first run of a process maps for good (the heap
   * structs' chunk, glibc's thread stacks) is not the sweep's */
  static tab_t w;
  w = (tab_t){.rng = 1, .strict = true};
  run_name = name;
  work(&w);
  end_of_run(&w, 0, 0, false);
  for (int k = 0; k < FO_KINDS; k++)
    if (kinds & FO_BIT(k))
      sweep(name, work, FO_BIT(k), false);
  if (kinds & FO_BIT(FO_MMAP)) /* out of address space for good (RLIMIT_AS): unmaps work */
    sweep(name, work, FO_BIT(FO_MMAP), true);
  if (kinds & FO_BIT(FO_MREMAP)) { /* the moves failing after unmapping their destination */
    fo.move_how = FM_AFTER_UNMAP;
    sweep(name, work, FO_BIT(FO_MREMAP), false);
    if (kinds & MOVES) /* and the hole's mapping again refused */
      sweep(name, work, FO_ALL, true);
    fo.move_how = FM_BEFORE_UNMAP;
  }
  sweep(name, work, FO_ALL, true);
}

/* A thread with no heap yet frees a block of an abandoned segment S (a
 * reclaim it wants: it makes a heap for it) and then allocates, while no
 * heap struct is spare, so its heap needs a new mapping of heap structs:
 * call N may be that one. The free must free the block and keep errno
 * either way; the malloc succeeds or says ENOMEM. The set-up, as
 * test_free_no_heap's: parked threads hold every heap struct; S's producer
 * P exits, then a decoy D whose segments, abandoned after S, the threads
 * parked for P's and D's structs adopt instead of S. The parked threads
 * stay for the whole sweep (no hak_test_reset here). */
#define DECOY_SEGS 4
static void *s_blk[2], *decoy[DECOY_SEGS * 64];
static size_t ndecoy;
static atomic_int p_exit, d_exit, pd_ready;
static void *noheap_producer(void *arg) {
  if (arg) { /* the decoy: a block kept in each of DECOY_SEGS segments */
    void *seg = NULL;
    int segs = 0;
    ndecoy = 0;
    while (segs < DECOY_SEGS) {
      void *q = hak_malloc(60 * KiB);
      REQUIRE(q && ndecoy < sizeof decoy / sizeof decoy[0]);
      decoy[ndecoy++] = q;
      if (ptr_segment_base(q) != seg) {
        seg = ptr_segment_base(q);
        segs++;
      }
    }
  } else {
    REQUIRE((s_blk[0] = hak_malloc(100)) && (s_blk[1] = hak_malloc(100)));
  }
  atomic_fetch_add(&pd_ready, 1);
  HAK_WAIT_FLAG(arg ? &d_exit : &p_exit);
  return NULL;
}

static void *noheap_thread(void *arg) {
  tab_t *t = arg;
  REQUIRE(t->n == 1);
  t_free(t, 0); /* by a thread without a heap */
  t_alloc(t, A_MALLOC, 64, 0);
  t_alloc(t, A_CALLOC, 64, 0);
  t_free_all(t);
  return NULL;
}

static void sweep_noheap(unsigned kinds, bool persist) {
  if (!selected("noheap"))
    return;
  static char namebuf[256];
  static tab_t t;
  long n;
  for (n = 1; n <= N_MAX; n++) {
    snprintf(namebuf, sizeof namebuf, "no heap, %s number %ld fails%s", kind_name(kinds), n,
             persist ? " (and every one after)" : "");
    run_name = namebuf;
    pthread_t p, d, f;
    atomic_store(&p_exit, 0);
    atomic_store(&d_exit, 0);
    atomic_store(&pd_ready, 0);
    REQUIRE(pthread_create(&p, NULL, noheap_producer, NULL) == 0);
    REQUIRE(pthread_create(&d, NULL, noheap_producer, decoy) == 0);
    HAK_SPIN_UNTIL(atomic_load(&pd_ready) >= 2, "no heap: the producers never allocated");
    hak_park_all();
    atomic_store(&p_exit, 1); /* S abandoned first, then D's segments */
    pthread_join(p, NULL);
    atomic_store(&d_exit, 1);
    pthread_join(d, NULL);
    hak_park_all(); /* adopting D's segments */
    hak_segment_t *seg = ptr_segment_base(s_blk[0]);
    REQUIRE(heap_structs_spare() == 0 && atomic_load(&seg->owner) == NULL);
    t = (tab_t){.rng = 0x9f + (uint64_t)n, .what = "no heap"};
    t.b[0] = (blk_t){.p = s_blk[0], .n = 100, .align = 16, .seed = 7};
    t.n = 1;
    blk_fill(s_blk[0], 100, 7);
    fo_arm(kinds, n, persist);
    REQUIRE(pthread_create(&f, NULL, noheap_thread, &t) == 0);
    pthread_join(f, NULL);
    long fired = fo_disarm();
    runs_total++;
    if (getenv("OOM_SWEEP_WHERE"))
      hak_test_log("%s: %ld failed, the last at hak_malloc%+td\n", run_name, fired,
                   (char *)atomic_load(&fo.where) - (char *)(void *)hak_malloc);
    t = (tab_t){.what = "no heap: the rest"};
    hak_free(s_blk[1]);
    for (size_t i = 0; i < ndecoy; i++)
      hak_free(decoy[i]);
    s_blk[0] = s_blk[1] = NULL;
    ndecoy = 0;
    end_of_run(&t, 0, 0, false);
    if (!fired || hak_test_failures())
      break;
  }
  CHECK_MSG(n <= N_MAX, "no heap, %s: still failing calls after %d", kind_name(kinds), N_MAX);
}

/* A munmap refused while another thread holds the table of orphans (a
 * retry, hak_trim's here, held at HAK_HOOK_ORPHANS_HELD): the range must
 * still be kept, and unmapped by the next retry of them all. A 33 MiB
 * block (beyond the large cache) is freed by a thread whose munmap of it
 * fails; once the trimming thread has let the table go and another
 * hak_trim has run, its range must be unmapped. */
static atomic_int orph_held, orph_go, orph_freed;
static void orph_hold(void *arg) { /* the trimmer, holding the table */
  (void)arg;
  atomic_store(&orph_held, 1);
  HAK_WAIT_FLAG(&orph_go);
}
static void *orph_trimmer(void *arg) {
  hak_trim(0);
  return arg;
}
static atomic_int orph_tid;
static void *orph_freer(void *p) {
  atomic_store(&orph_tid, (int)gettid());
  errno = SENTINEL;
  hak_free(p);
  CHECK_MSG(errno == SENTINEL, "orphans busy: a refused free changed errno to %d", errno);
  atomic_store(&orph_freed, 1);
  return NULL;
}
static void part_orphans_busy(void) {
  if (!selected("orphans"))
    return;
  run_name = "orphans busy";
  hak_test_reset();
  void *p0 = hak_malloc(33 * MiB), *p1 = hak_malloc(33 * MiB);
  REQUIRE(p0 && p1);
  fo_arm(FO_BIT(FO_MUNMAP), 1, false);
  hak_free(p0); /* refused: the table's first orphan */
  REQUIRE(fo_disarm() == 1);
  hak_hook_once(HAK_HOOK_ORPHANS_HELD, NULL, orph_hold);
  pthread_t tr, fr;
  REQUIRE(pthread_create(&tr, NULL, orph_trimmer, NULL) == 0);
  HAK_WAIT_FLAG(&orph_held);
  fo_arm(FO_BIT(FO_MUNMAP), 1, false);
  REQUIRE(pthread_create(&fr, NULL, orph_freer, p1) == 0);
  /* done at once (the bug), or its munmap refused and it waits for the
   * table (spin_wait's sleep): not a fixed time, which a loaded machine
   * could pass before the freer's munmap, leaving the table free for it
   * and the wait untested */
  HAK_SPIN_UNTIL(atomic_load(&orph_freed) ||
                     (fo_fired() == 1 && hak_thread_in_nanosleep(atomic_load(&orph_tid))),
                 "orphans busy: the freer neither returned nor waited for the table");
  atomic_store(&orph_go, 1);
  pthread_join(fr, NULL);
  pthread_join(tr, NULL);
  atomic_store(&hak_test_hook, NULL);
  CHECK_EQ(fo_disarm(), 1);
  hak_trim(0);
  unsigned char v;
  uintptr_t pg = (uintptr_t)p1 & ~(uintptr_t)(hak_page_size() - 1);
  CHECK_MSG(mincore((void *)pg, hak_page_size(), &v) != 0,
            "orphans busy: the freed block's range, whose munmap was refused while another "
            "thread held the table of orphans, is still mapped after hak_trim");
  CHECK_MSG(mincore(hak_page_start(p0), hak_page_size(), &v) != 0,
            "orphans busy: the first orphan is still mapped after hak_trim");
  CHECK_ALL_FREED("orphans busy");
}

int main(void) {
  /* TSan (16 s of CPU for every workload): the ones with threads, where
   * its reports count */
  bool all = !hak_config_is("tsan") || getenv("OOM_SWEEP_ALL");
  vm_exact = hak_config_is("release") || hak_config_is("debug");
  double t0 = hak_now();
  if (all) {
    sweep_all("small", w_small, FO_ALL);
    sweep_all("aligned", w_aligned, FO_ALL);
    sweep_all("large", w_large, FO_ALL | MOVES);
    DENSE = 256;
    sweep_all("purge", w_purge, FO_BIT(FO_MADVISE)); /* the rest: as small's */
    DENSE = 64 * KiB;
  }
  vm_exact = false; /* thread stacks, glibc's per-thread structures */
  sweep_all("segments", w_segments, FO_BIT(FO_MUNMAP));
  sweep_all("exit", w_exit, FO_ALL);
  sweep_all("threads", w_mt, FO_ALL | MOVES);
  sweep_noheap(FO_BIT(FO_MMAP), false);
  sweep_noheap(FO_ALL, true);
  hak_unpark_all();
  part_orphans_busy();
  hak_test_log("%ld runs in %.2f s\n", runs_total, hak_now() - t0);
  return hak_test_done();
}
