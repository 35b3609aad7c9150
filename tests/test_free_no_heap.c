/* A free by a thread without a heap, into an abandoned segment, when no heap
 * can be made for it (the heap structs' mapping refused: RLIMIT_AS, or the
 * machine out of memory), must still free the block.
 *
 * Such a free wants to reclaim the segment (reclaim_wanted: a heap that
 * allocated after the abandonment, which a heap made now would be), so
 * free_not_owned makes the thread a heap first. When that failed it set its
 * heap pointer to NULL and went on with it: the push dereferenced it
 * (mark_seg, 9b2f39a; before it, the next round of the loop's
 * reclaim_wanted). clang-tidy's analyzer found the path. Now the thread
 * stays without a heap and frees the block as a remote free, counted into
 * the abandonment.
 *
 * Set-up, in a child: a producer thread allocates two blocks and exits (its
 * segment abandoned, its heap struct back in the pool); parked threads take
 * every heap struct left in the pool and in the current chunk of them
 * (heap_structs_spare), so the next heap needs a new mapping; a freeing thread that never allocated
 * is started; then RLIMIT_AS is set to the address space in use, and the freeing thread frees one
 * block. Must hold: the child exits 0 (it died by SIGSEGV before), the block was freed (one live
 * block left, the other one), and once the limit is lifted the other block frees too, nothing is
 * live and no segment stays abandoned.
 *
 * Part "last": the same, but the freeing thread frees both blocks under
 * the limit, the second the last live block of the segment. Reclaiming
 * would give the segment back (README, Thread exit, rule 3); without a heap
 * the free gives it back itself (segment_unlink_if_empty_locked). Before,
 * the segment stayed abandoned with nothing live, carved and mapped, past
 * hak_trim, until some malloc adopted it.
 *
 * Part "adopted": the same, but the producer leaves a third block, and the
 * freer's second free is held after its count, before its push
 * (HAK_HOOK_FREE_COUNTED), while main frees the third: the last by the
 * count, so main reclaims S. The held free then pushes onto S, main's now,
 * and must leave it alone: the give-back on the no-heap path is for a
 * segment still abandoned only. Without that check (mutant
 * no-heap-give-back-ignores-owner, which every test survived before,
 * 2026-11-28, helper-77) it collected main's page without main's lock,
 * "unlinked" S from the abandoned list (whose head became main's other
 * segment) and released S into the cache while main's heap still listed it.
 *
 * Part "fork": as "last", but the freer's second free, which gave S back
 * (segment_unlink_if_empty_locked: off the abandoned list, owned by nobody),
 * is held after it let the global lock go, before segment_release
 * (HAK_HOOK_NO_HEAP_RELEASING), and main forks there. In the child no
 * thread will release S: the fork's fix-up (segment_fork_fixup) must, or S
 * stays mapped on no list, never reused (hak_heap_check: "segment ownership
 * inconsistent"). Must hold in the child: S is cached or unmapped, and
 * hak_heap_check is clean; in the parent, the same as part "last". Until
 * 2026-11-28 no test reached that fix-up (make test-coverage), and the
 * segment in transit at a fork was thought unreachable: this is the one
 * way a segment is on no list and under no lock (every other is under its
 * heap's lock, which fork_prepare takes); mutant
 * fork-fixup-skips-unowned survived.
 *
 * Part "malloc": the same limit, no producer: a thread that never allocated
 * mallocs (and callocs) 64 bytes. No heap can be made for it: each returns
 * NULL with errno ENOMEM, and the thread stays without a heap; once the
 * limit is lifted its next malloc makes one and serves. Until 2026-11-28 no
 * test reached small_alloc_slow's failed heap_get_or_create (make
 * test-coverage); the mutant small-alloc-no-heap-crash (the NULL heap
 * locked) survived. */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

#define DECOY_SEGS 4
#define DECOY_BLOCK (60 * 1024)
#define DECOY_N (DECOY_SEGS * (SEGMENT_SIZE / DECOY_BLOCK))

static void *blocks[3], *decoy_blocks[DECOY_N];
static int last;    /* part "last": the freer frees both blocks, the second the last live one */
static int adopted; /* part "adopted": S is reclaimed while the freer's second free is held */
static int forked;  /* part "fork": main forks while the freer's second free releases S */
static atomic_int held, let_go;
static atomic_int exit_producer, exit_decoy, producer_ready, decoy_ready, go_free, freed,
    freer_started;

static void *producer(void *arg) {
  for (int i = 0; i < 2 + adopted; i++) {
    blocks[i] = hak_malloc(64);
    if (blocks[i])
      memset(blocks[i], 0x5a, 64);
  }
  atomic_store(&producer_ready, 1);
  HAK_WAIT_FLAG(&exit_producer);
  return arg; /* exits with both live: S is abandoned */
}

static void *decoy(void *arg) {
  for (size_t i = 0; i < DECOY_N; i++)
    decoy_blocks[i] = hak_malloc(DECOY_BLOCK);
  atomic_store(&decoy_ready, 1);
  HAK_WAIT_FLAG(&exit_decoy);
  return arg;
}

static void *freer(void *arg) {
  /* started before the limit: a sanitizer maps its per-thread state (ASan's
   * alternate signal stack) as the thread starts, and died of ENOMEM when
   * that came after the limit (every run under ASan on the 2-core VM);
   * TSan maps its signal context at the thread's first blocking call (4
   * of 2128 runs under TSan died so): one before the flag */
  usleep(1);
  atomic_store(&freer_started, 1);
  HAK_WAIT_FLAG(&go_free);
  hak_free(blocks[0]); /* no heap: wants one to reclaim S, cannot have it */
  if (last)
    hak_free(blocks[1]); /* the last live block of S: still no heap */
  atomic_store(&freed, 1);
  return arg;
}

/* Part "adopted": the freer's second free, counted (it wanted a reclaim
 * and had no heap for it), waits here before its push while main frees
 * the third block, the last live one by the count, and so reclaims S. */
static void hold_second(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_FREE_COUNTED || arg != blocks[1])
    return;
  atomic_store(&held, 1);
  HAK_WAIT_FLAG(&let_go);
}

/* Part "fork": the freer's second free, S given back, waits here before
 * segment_release while main forks. */
static void hold_release(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_NO_HEAP_RELEASING || arg != ptr_segment_base(blocks[0]))
    return;
  atomic_store(&held, 1);
  while (!atomic_load(&let_go)) /* unbounded: main's fork wait (60 s scaled) comes first */
    usleep(1000);
}

/* Part "fork", in the fork's child: S, left in transit by a thread the
 * child does not have, released by the fork's fix-up. */
static void fork_child_check(void *seg) {
  bool listed = false, cached = false;
  for (hak_segment_t *q = hak_all_segments; q; q = q->gnext)
    listed |= q == seg;
  for (hak_segment_t *q = hak_segment_cache; q; q = q->next)
    cached |= q == seg;
  if (listed && !cached) {
    fprintf(stderr,
            "fork child: S, released by no thread here, stays mapped on no list (owner %p, "
            "abandoned %d)\n",
            (void *)atomic_load(&((hak_segment_t *)seg)->owner), ((hak_segment_t *)seg)->abandoned);
    _exit(4);
  }
  if (hak_heap_check() != 0)
    _exit(5);
  void *p = hak_malloc(64); /* the child allocates and frees as before */
  if (!p)
    _exit(6);
  hak_free(p);
  _exit(0);
}

static void child(void *arg) {
  (void)arg;
  hak_free(hak_malloc(16)); /* main's heap */
  pthread_t p, d, f;
  REQUIRE(pthread_create(&p, NULL, producer, NULL) == 0);
  HAK_WAIT_FLAG(&producer_ready);
  REQUIRE(pthread_create(&d, NULL, decoy, NULL) == 0);
  HAK_WAIT_FLAG(&decoy_ready);
  REQUIRE(blocks[0] && blocks[1] && decoy_blocks[DECOY_N - 1]);
  hak_segment_t *s = ptr_segment_base(blocks[0]);
  hak_park_all();
  atomic_store(&exit_producer, 1);
  REQUIRE(pthread_join(p, NULL) == 0);
  atomic_store(&exit_decoy, 1);
  REQUIRE(pthread_join(d, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments >= 1 + heap_structs_spare()); /* S, and a decoy's for each */
  hak_park_all();
  REQUIRE(heap_structs_spare() == 0);
  REQUIRE(atomic_load_explicit(&s->owner, memory_order_relaxed) == NULL); /* S still abandoned */
  REQUIRE(pthread_create(&f, NULL, freer, NULL) == 0);
  HAK_WAIT_FLAG(&freer_started);
  struct rlimit old = hak_limit_as(0); /* no new mapping from here on */
  /* the limit holds: a new heap-chunk-sized mapping is refused */
  void *probe = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(probe == MAP_FAILED);
  if (adopted)
    atomic_store(&hak_test_hook, hold_second);
  if (forked)
    atomic_store(&hak_test_hook, hold_release);
  atomic_store(&go_free, 1);
  if (forked) {
    if (!hak_flag_within(&held, 30 * hak_test_slowdown())) { /* nothing tested, said so */
      fprintf(stderr, "part fork: the last free without a heap never reached "
                      "HAK_HOOK_NO_HEAP_RELEASING\n");
      _exit(3);
    }
    REQUIRE(setrlimit(RLIMIT_AS, &old) == 0); /* the fork's child may map again */
    /* in transit: off the abandoned list, owned by nobody, not cached */
    bool cached = false;
    for (hak_segment_t *q = hak_segment_cache; q; q = q->next)
      cached |= q == s;
    REQUIRE(atomic_load_explicit(&s->owner, memory_order_relaxed) == NULL && !s->abandoned &&
            !segment_is_abandoned_listed(s) && !cached && s->used_pages == 0);
    int status;
    REQUIRE(hak_fork_wait(fork_child_check, s, 60 * hak_test_slowdown(), &status) == 1);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "part fork: the fork's child, S in transit at the fork: status 0x%x (4: S on no "
              "list; 5: hak_heap_check; 6: malloc)",
              status);
    atomic_store(&let_go, 1);
  }
  if (adopted) {
    HAK_WAIT_FLAG(&held);
    hak_free(blocks[2]); /* main has a heap: it reclaims S, now its own */
    CHECK(atomic_load_explicit(&s->owner, memory_order_relaxed) == hak_tls_heap);
    atomic_store(&let_go, 1);
  }
  REQUIRE(pthread_join(f, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  CHECK(atomic_load(&freed) == 1);
  REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
  if (adopted) { /* the held free pushed onto S, main's now: S stays main's, unlisted */
    CHECK(atomic_load_explicit(&s->owner, memory_order_relaxed) == hak_tls_heap);
    CHECK(!segment_is_abandoned_listed(s));
    hak_trim(0);     /* main takes the pushed block back (its own page's remote free) */
  } else if (last) { /* nothing of S live: given back by the free, though it had no heap */
    CHECK_MSG(!segment_is_abandoned_listed(s),
              "every block of S freed, yet it stays abandoned (the last free had no heap)");
  } else {
    CHECK(atomic_load_explicit(&s->owner, memory_order_relaxed) == NULL); /* freed remotely */
    CHECK(((unsigned char *)blocks[1])[0] == 0x5a && ((unsigned char *)blocks[1])[63] == 0x5a);
    hak_free(blocks[1]); /* the last of S's live blocks: main reclaims S and gives it back */
  }
  for (size_t i = 0; i < DECOY_N; i++)
    hak_free(decoy_blocks[i]);
  hak_unpark_all();
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.abandoned_segments, 0);
  CHECK_EQ(hak_heap_check(), 0);
}

static atomic_int go_malloc, malloc_done, lifted;
static void *no_heap_p, *no_heap_q, *after_lift;
static int no_heap_errno, no_heap_errno_c;
static hak_heap_t *no_heap_tls;

static void *mallocer(void *arg) {
  usleep(1); /* as freer: a sanitizer's per-thread state before the limit */
  atomic_store(&freer_started, 1);
  HAK_WAIT_FLAG(&go_malloc);
  errno = 0;
  no_heap_p = hak_malloc(64);
  no_heap_errno = errno;
  errno = 0;
  no_heap_q = hak_calloc(4, 16);
  no_heap_errno_c = errno;
  no_heap_tls = hak_tls_heap;
  atomic_store(&malloc_done, 1);
  HAK_WAIT_FLAG(&lifted);
  after_lift = hak_malloc(64);
  if (after_lift)
    memset(after_lift, 0x6b, 64);
  hak_free(after_lift);
  return arg;
}

static void child_malloc(void *arg) {
  (void)arg;
  hak_free(hak_malloc(16)); /* main's heap */
  pthread_t m;
  hak_park_all();
  REQUIRE(heap_structs_spare() == 0);
  REQUIRE(pthread_create(&m, NULL, mallocer, NULL) == 0);
  HAK_WAIT_FLAG(&freer_started);
  struct rlimit old = hak_limit_as(0);
  void *probe = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(probe == MAP_FAILED);
  atomic_store(&go_malloc, 1);
  HAK_WAIT_FLAG(&malloc_done);
  REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
  CHECK_MSG(no_heap_p == NULL && no_heap_errno == ENOMEM,
            "malloc with no heap to be had: %p, errno %d (want NULL, ENOMEM)", no_heap_p,
            no_heap_errno);
  CHECK_MSG(no_heap_q == NULL && no_heap_errno_c == ENOMEM,
            "calloc with no heap to be had: %p, errno %d (want NULL, ENOMEM)", no_heap_q,
            no_heap_errno_c);
  CHECK(no_heap_tls == &hak_empty_heap); /* still without a heap */
  atomic_store(&lifted, 1);
  REQUIRE(pthread_join(m, NULL) == 0);
  CHECK_MSG(after_lift != NULL, "malloc after the limit was lifted failed");
  hak_unpark_all();
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  /* part malloc: under TSan, whose runtime maps per-thread state lazily
   * (a thread's signal context at its first intercepted call), the limit
   * made TSan itself fail to map, "Failed to mmap", 2 of 65 loaded runs */
  if (hak_config_is("tsan")) {
    printf("part malloc: skipped under TSan (its runtime maps under the limit too)\n");
  } else {
    struct hak_child c;
    REQUIRE(hak_run_child(child_malloc, NULL, 120, &c));
    char why[128];
    CHECK_MSG(hak_child_exited(&c, 0), "part malloc: %s; output: %s",
              hak_child_describe(&c, why, sizeof why), c.out ? c.out : "");
    hak_child_free(&c);
  }
  for (int part = 0; part < 4; part++) {
    last = part >= 1;
    adopted = part == 2;
    forked = part == 3;
    struct hak_child c;
    REQUIRE(hak_run_child(child, NULL, 120, &c));
    char why[128];
    CHECK_MSG(hak_child_exited(&c, 0), "part %s: the free without a heap failed: %s; output: %s",
              adopted  ? "adopted"
              : forked ? "fork"
              : last   ? "last"
                       : "first",
              hak_child_describe(&c, why, sizeof why), c.out ? c.out : "");
    hak_child_free(&c);
  }
  return hak_test_done();
}
