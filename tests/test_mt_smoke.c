/* Multithreaded smoke test.
 *
 * Part 1: 4 threads do random malloc/calloc/realloc/free with sizes 0..70000
 * over a shared exchange array, so most blocks are freed (or reallocated) by a
 * thread other than the one that allocated them. Each block carries a pattern
 * derived from (slot, generation) that is verified before every free/realloc.
 *
 * Part 2: one producer allocates, three consumers free, in rounds. Between
 * rounds (all threads parked at a barrier) mapped_bytes must stay bounded:
 * remote frees that are never collected make it grow every round.
 *
 * Part 3: 4 threads allocate and free large blocks at once, both sizes the
 * large-mapping cache keeps (1 MiB) and sizes it never keeps (33 MiB, unmapped
 * and remembered in the recent-free ring), so the cache and the ring are
 * updated from several threads (TSan sees a non-atomic update there).
 *
 * During parts 1 and 3 another thread calls hak_trim every millisecond, in
 * part 5 without a pause, while threads start, allocate once and exit.
 *
 * At the end: hak_heap_check() == 0, no live or large blocks. */
#include "hak_test.h"

#include <pthread.h>
#include <sched.h>

#include "internal.h" /* LARGE_CACHE_BYTES */

#define MiB ((size_t)1 << 20)
#define NTHREADS 4
#define NSLOTS 4096

struct slot {
  atomic_flag busy;
  unsigned char *p;
  size_t size;
  uint64_t gen;
};

static struct slot slots[NSLOTS];
static size_t ops_per_thread;
static double deadline;

static uint64_t seed_of(size_t slot, uint64_t gen) {
  return (uint64_t)slot << 32 ^ gen;
}

static size_t random_size(uint64_t *rng) {
  uint64_t r = hak_rand(rng) % 1000;
  if (r < 800)
    return hak_rand_below(rng, 1025); /* 0..1024 */
  if (r < 960)
    return hak_rand_below(rng, 16385);                   /* ..16 KiB */
  return 16384 + hak_rand_below(rng, 70000 - 16384 + 1); /* ..70000, some large */
}

static void verify_slot(size_t i, struct slot *s, const char *when) {
  if (hak_pattern_mismatch(s->p, s->size, seed_of(i, s->gen)) != SIZE_MAX) {
    FAIL("slot %zu gen %" PRIu64 " (%p, %zu bytes) corrupted before %s at offset %zu", i, s->gen,
         (void *)s->p, s->size, when, hak_pattern_mismatch(s->p, s->size, seed_of(i, s->gen)));
  }
}

static void *mixer(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x1234567ull + 99;
  size_t done = 0;
  for (; done < ops_per_thread; done++) {
    if ((done & 1023) == 0 && hak_now() > deadline)
      break;
    size_t i = hak_rand_below(&rng, NSLOTS);
    struct slot *s = &slots[i];
    if (atomic_flag_test_and_set_explicit(&s->busy, memory_order_acquire))
      continue;
    if (s->p == NULL) {
      size_t n = random_size(&rng);
      unsigned char *p = (hak_rand(&rng) & 7) == 0 ? hak_calloc(1, n) : hak_malloc(n);
      if (!CHECK_MSG(p != NULL, "allocation of %zu bytes failed", n)) {
        atomic_flag_clear_explicit(&s->busy, memory_order_release);
        break;
      }
      CHECK_MSG(hak_is_aligned(p, 16), "block %p not 16-byte aligned", (void *)p);
      s->p = p;
      s->size = n;
      s->gen++;
      hak_fill(p, n, seed_of(i, s->gen));
    } else {
      verify_slot(i, s, "free/realloc");
      uint64_t r = hak_rand(&rng) % 4;
      if (r == 0) {
        size_t n = random_size(&rng);
        unsigned char *q = hak_realloc(s->p, n);
        if (n == 0 && q == NULL) { /* realloc(p, 0) freed it */
          s->p = NULL;
        } else if (CHECK_MSG(q != NULL, "realloc to %zu failed", n)) {
          size_t keep = n < s->size ? n : s->size;
          if (hak_pattern_mismatch(q, keep, seed_of(i, s->gen)) != SIZE_MAX) {
            FAIL("realloc %zu -> %zu lost contents", s->size, n);
          }
          s->gen++;
          hak_fill(q, n, seed_of(i, s->gen));
          s->p = q;
          s->size = n;
        }
      } else {
        if (r == 1) {
          hak_free_sized(s->p, s->size);
        } else {
          hak_free(s->p);
        }
        s->p = NULL;
      }
    }
    atomic_flag_clear_explicit(&s->busy, memory_order_release);
  }
  return (void *)done;
}

/* A thread calling hak_trim while parts 1, 3 and 5 run (every millisecond;
 * in part 5 with only a yield between calls): it
 * purges the free slices of the other threads' heaps under their locks,
 * the cached and abandoned segments and the large cache, under their
 * owners' feet (TSan checks the locking; the patterns check the blocks). */
static _Atomic int trim_stop, trim_hot; /* hot: a yield, not a pause, between calls */
static pthread_t trim_thread;
static size_t trim_calls, trim_gave; /* calls, and those that gave memory back */

static void *trimmer(void *arg) {
  (void)arg;
  do {
    trim_gave += (size_t)hak_trim(0);
    trim_calls++;
    if (!atomic_load_explicit(&trim_hot, memory_order_relaxed))
      hak_sleep_ms(1);
    else
      sched_yield(); /* valgrind runs one thread at a time: let the others run */
  } while (!atomic_load_explicit(&trim_stop, memory_order_relaxed));
  return NULL;
}

static void trimmer_start(int hot) {
  atomic_store(&trim_stop, 0);
  atomic_store(&trim_hot, hot);
  trim_calls = trim_gave = 0;
  REQUIRE(pthread_create(&trim_thread, NULL, trimmer, NULL) == 0);
}

static void trimmer_stop(const char *part) {
  atomic_store(&trim_stop, 1);
  pthread_join(trim_thread, NULL);
  printf("%s: %zu hak_trim calls meanwhile, %zu of them gave memory back\n", part, trim_calls,
         trim_gave);
}

static void part_mixer(void) {
  ops_per_thread = hak_iters(400000);
  deadline = hak_now() + 20;
  pthread_t t[NTHREADS];
  trimmer_start(0);
  for (size_t i = 0; i < NTHREADS; i++) {
    REQUIRE(pthread_create(&t[i], NULL, mixer, (void *)(i + 1)) == 0);
  }
  size_t total = 0;
  for (size_t i = 0; i < NTHREADS; i++) {
    void *r;
    pthread_join(t[i], &r);
    total += (size_t)r;
  }
  trimmer_stop("part 1");
  /* the trims ran among the mixers and purged memory they had freed (a
   * hak_trim that did nothing would leave the part without its point) */
  CHECK_MSG(trim_gave > 0, "part 1: none of %zu hak_trim calls gave memory back", trim_calls);
  size_t live = 0;
  for (size_t i = 0; i < NSLOTS; i++)
    live += slots[i].p != NULL;
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, live);
  CHECK_EQ(hak_heap_check(), 0);
  for (size_t i = 0; i < NSLOTS; i++) {
    if (!slots[i].p)
      continue;
    verify_slot(i, &slots[i], "final free");
    hak_free(slots[i].p);
    slots[i].p = NULL;
  }
  CHECK_EQ(hak_heap_check(), 0);
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.live_bytes, 0);
  CHECK_EQ(st.large_blocks, 0);
  printf("mixer: %zu ops over %d threads, %zu blocks live at the end; mapped %zu KiB\n", total,
         NTHREADS, live, st.mapped_bytes >> 10);
}

/* ---- producer / consumers ---------------------------------------------------------- */

#define NCONS 3
#define RING 512
#define MAPPED_LIMIT (96 * MiB)

struct item {
  unsigned char *p;
  size_t size;
  uint64_t seed;
};

struct ring {
  _Alignas(64) atomic_size_t head; /* consumer */
  _Alignas(64) atomic_size_t tail; /* producer */
  struct item items[RING];
};

static struct ring rings[NCONS];
static pthread_barrier_t barrier;
static atomic_int round_done;
static atomic_int stop;
static size_t per_round;
static atomic_size_t consumed;

static size_t pc_size(uint64_t *rng) {
  uint64_t r = hak_rand(rng) % 1000;
  if (r < 900)
    return hak_rand_below(rng, 1025);
  if (r < 995)
    return 1024 + hak_rand_below(rng, 7 * 1024);
  return 60000 + hak_rand_below(rng, 20000); /* a few large ones */
}

static void *producer(void *arg) {
  uint64_t rng = 4242;
  uint64_t seq = 0;
  for (;;) {
    pthread_barrier_wait(&barrier);
    if (atomic_load(&stop))
      break;
    for (size_t k = 0; k < per_round; k++) {
      struct item it;
      it.size = pc_size(&rng);
      it.seed = ++seq;
      it.p = hak_malloc(it.size);
      if (!CHECK(it.p != NULL))
        break;
      hak_fill(it.p, it.size, it.seed);
      struct ring *r = &rings[k % NCONS];
      size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
      HAK_SPIN_UNTIL(tail - atomic_load_explicit(&r->head, memory_order_acquire) < RING,
                     "a consumer stopped taking items from its full ring");
      r->items[tail % RING] = it;
      atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    }
    atomic_store(&round_done, 1);
    pthread_barrier_wait(&barrier);
  }
  return arg;
}

static void *consumer(void *arg) {
  struct ring *r = arg;
  for (;;) {
    pthread_barrier_wait(&barrier);
    if (atomic_load(&stop))
      break;
    for (;;) {
      size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
      HAK_SPIN_UNTIL(head != atomic_load_explicit(&r->tail, memory_order_acquire) ||
                         atomic_load(&round_done),
                     "neither an item nor the round's end came");
      if (head == atomic_load_explicit(&r->tail, memory_order_acquire))
        break; /* the round is done (stored after its last item) and the ring empty */
      struct item it = r->items[head % RING];
      atomic_store_explicit(&r->head, head + 1, memory_order_release);
      CHECK_PATTERN(it.p, it.size, it.seed);
      hak_free(it.p);
      atomic_fetch_add_explicit(&consumed, 1, memory_order_relaxed);
    }
    pthread_barrier_wait(&barrier);
  }
  return NULL;
}

static void part_producer_consumer(void) {
  per_round = hak_iters(100000);
  int rounds = 10;
  REQUIRE(pthread_barrier_init(&barrier, NULL, NCONS + 2) == 0);
  pthread_t prod, cons[NCONS];
  REQUIRE(pthread_create(&prod, NULL, producer, NULL) == 0);
  for (int i = 0; i < NCONS; i++) {
    REQUIRE(pthread_create(&cons[i], NULL, consumer, &rings[i]) == 0);
  }
  size_t mapped[16] = {0};
  struct hak_stats st0;
  hak_stats(&st0);
  double t0 = hak_now();
  int done_rounds = 0;
  for (int r = 0; r < rounds; r++) {
    atomic_store(&round_done, 0);
    pthread_barrier_wait(&barrier); /* start */
    pthread_barrier_wait(&barrier); /* all produced and consumed */
    struct hak_stats st;
    hak_stats(&st);
    mapped[r] = st.mapped_bytes;
    done_rounds++;
    CHECK_MSG(st.live_blocks == 0, "round %d: %zu blocks live after all were freed", r,
              st.live_blocks);
    /* At most NCONS * RING blocks (~2 MiB expected) are in flight; hakmem may keep up
     * to 8 free 4 MiB segments cached and a few pages per class per heap. */
    CHECK_MSG(st.mapped_bytes <= MAPPED_LIMIT,
              "round %d: %zu MiB mapped though only ~2 MiB are live at a time (limit %zu MiB)", r,
              st.mapped_bytes >> 20, MAPPED_LIMIT >> 20);
    if (hak_now() - t0 > 15)
      break;
  }
  atomic_store(&stop, 1);
  pthread_barrier_wait(&barrier);
  pthread_join(prod, NULL);
  for (int i = 0; i < NCONS; i++)
    pthread_join(cons[i], NULL);
  pthread_barrier_destroy(&barrier);
  /* Linear growth across rounds means freed memory is not being reused. */
  if (done_rounds >= 4) {
    CHECK_MSG(mapped[done_rounds - 1] <= mapped[1] + mapped[1] / 2 + 8 * MiB,
              "mapped_bytes grew from %zu KiB (round 1) to %zu KiB (round %d)", mapped[1] >> 10,
              mapped[done_rounds - 1] >> 10, done_rounds - 1);
  }
  CHECK_EQ(atomic_load(&consumed), per_round * (size_t)done_rounds);
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.large_blocks, 0);
  printf("producer/consumer: %d rounds x %zu blocks; mapped KiB at start %zu, per round:",
         done_rounds, per_round, st0.mapped_bytes >> 10);
  for (int r = 0; r < done_rounds; r++)
    printf(" %zu", mapped[r] >> 10);
  printf("\n");
}

/* Checks the ends of the block a large_churn round wrote, after the next
 * round's malloc (read right after the writes, the compare was folded
 * away: an audit found it could not fail), and frees it. */
static void large_check_free(unsigned char *p, size_t n, int i) {
  if (p[0] != (unsigned char)i || p[n - 1] != (unsigned char)~i)
    FAIL("large_churn: block %p lost its ends", (void *)p);
  hak_free(p);
}

static void *large_churn(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 7;
  unsigned char *prev = NULL;
  size_t prev_n = 0;
  for (int i = 0; i < 24; i++) {
    /* odd: above what the cache takes (LARGE_CACHE_BYTES / 8), so the free
     * unmaps it and writes the recent-free ring; even: cached */
    size_t n = (i & 1) ? LARGE_CACHE_BYTES / 8 + MiB + hak_rand_below(&rng, 4096)
                       : MiB + hak_rand_below(&rng, 4096);
    unsigned char *p = hak_malloc(n);
    if (!p) {
      FAIL("large_churn: malloc(%zu) failed", n);
      return NULL;
    }
    p[0] = (unsigned char)i;
    p[n - 1] = (unsigned char)~i;
    if (prev)
      large_check_free(prev, prev_n, i - 1);
    prev = p;
    prev_n = n;
  }
  if (prev)
    large_check_free(prev, prev_n, 23);
  return NULL;
}

static void part_large_threads(void) {
  pthread_t t[4];
  trimmer_start(0);
  for (uintptr_t i = 0; i < 4; i++)
    REQUIRE(pthread_create(&t[i], NULL, large_churn, (void *)(i + 1)) == 0);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  trimmer_stop("part 3");
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.large_blocks, 0);
}

/* Part 4: one remote free to a full page, handed over through the owner's
 * delayed list, with no other synchronisation between the two threads
 * than the allocator's own (the test's flag is a relaxed atomic): TSan
 * sees the owner read the block's link, written by the freeing thread,
 * unless the delayed push is a release that the drain acquires. */
#define DP_SIZE 8192
static void *dp_block;
static _Atomic int dp_freed;

static void *dp_freer(void *arg) {
  (void)arg;
  hak_free(dp_block); /* its page is in the owner's full list: the delayed path */
  atomic_store_explicit(&dp_freed, 1, memory_order_relaxed);
  return NULL;
}

static void part_delayed_handoff(void) {
  size_t cls = hak_size_to_class(DP_SIZE);
  size_t per_page = class_slices(cls) * SLICE_SIZE / DP_SIZE;
  size_t n = per_page + 1; /* the one past the first page moves it to the full list */
  void **b = calloc(n + 1, sizeof *b);
  REQUIRE(b != NULL);
  for (size_t i = 0; i < n; i++)
    b[i] = hak_malloc(DP_SIZE);
  dp_block = b[0];
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, dp_freer, NULL) == 0);
  HAK_WAIT_FLAG_MSG(&dp_freed, "the remote free did not return");
  b[n] = hak_malloc(DP_SIZE); /* slow path: drains the delayed list first */
  REQUIRE(b[n] != NULL);
  pthread_join(t, NULL);
  for (size_t i = 1; i <= n; i++)
    hak_free(b[i]);
  free(b);
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
}

/* Part 5: threads that start, allocate once and exit while another thread
 * calls hak_trim: a new heap is set up while the trim walks the active
 * heaps (TSan: a review found heap_reset writing a heap already listed
 * active, with neither lock, while the trim read its segment list). */
static void *one_block(void *arg) {
  (void)arg;
  void *p = hak_malloc(64);
  hak_free(p);
  return NULL;
}

static void part_trim_thread_start(void) {
  size_t n = hak_iters(2000);
  trimmer_start(1);
  for (size_t i = 0; i < n; i++) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, one_block, NULL) == 0);
    pthread_join(t, NULL);
  }
  trimmer_stop("part 5");
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  RUN_SECTION(part_mixer);
  RUN_SECTION(part_producer_consumer);
  RUN_SECTION(part_large_threads);
  RUN_SECTION(part_delayed_handoff);
  RUN_SECTION(part_trim_thread_start);
  return hak_test_done();
}
