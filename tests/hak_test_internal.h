/* hak_test_internal.h: set-up shared by the test programs that reach into
 * hakmem's internals (alloc/src/internal.h: pages, segments, the notify
 * states). Such a test includes hak_test.h first, then this header in
 * place of internal.h; a test of the public API alone includes neither
 * internal.h nor this. */
#ifndef HAK_TEST_INTERNAL_H
#define HAK_TEST_INTERNAL_H

#include "hak_test.h"

#include "internal.h"

/* The page that block p lies in. */
static inline hak_page_t *hak_block_page(const void *p) {
  return ptr_page(ptr_segment_base(p), p);
}

/* Heap structs ever made (heap.c: reused from the pool, never unmapped). */
static inline size_t hak_heap_structs(void) {
  size_t n = 0;
  pthread_mutex_lock(&hak_global_lock);
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next)
    n++;
  pthread_mutex_unlock(&hak_global_lock);
  return n;
}

/* Fills a page: allocates blk[0..per_page] of `size` bytes, a class whose
 * page holds per_page blocks. The page of blk[0] fills up and a malloc
 * after finds it full and moves it to the full list with its notify
 * request (TF_NOTIFY: the next remote free into it is handed over to this
 * thread's heap). Returns that page; not in the full list, or without the
 * request, stops the test. With nothing of the class live in this
 * thread's heap before, blk[0..per_page-1] are that page's blocks: a test
 * that needs them so says so (a block an earlier part leaked takes a slot,
 * and stopping here would hide what that part's checks say of it). */
static inline hak_page_t *hak_fill_full_page(void **blk, int per_page, size_t size) {
  for (int i = 0; i <= per_page; i++)
    REQUIRE((blk[i] = hak_malloc(size)) != NULL);
  hak_page_t *pg = hak_block_page(blk[0]);
  REQUIRE(pg->in_full && (atomic_load(&pg->thread_free) & TF_MASK) == TF_NOTIFY);
  return pg;
}

/* One action at a test hook point, for the tests that hold a race's window
 * open there (hak_test_hook): hak_hook_once(at, target, then) installs a
 * hook that runs then(arg) the first time the allocator reaches `at` for
 * `target`, after letting hak_once.skip such calls pass. hak_once.ran is
 * set before then() runs: a nested call that reaches the point again (a
 * free of the target from then()) passes. A test that watches other points
 * too installs its own hook after hak_hook_once_arm, and passes every call
 * on to hak_hook_once_fn. */
static struct {
  enum hak_hook_point at;
  void *target;
  void (*then)(void *arg);
  atomic_int skip, ran;
} hak_once;
static inline void hak_hook_once_fn(enum hak_hook_point where, void *arg) {
  if (where != hak_once.at || arg != hak_once.target || atomic_fetch_sub(&hak_once.skip, 1) > 0 ||
      atomic_exchange(&hak_once.ran, 1))
    return;
  hak_once.then(arg);
}
static inline void hak_hook_once_arm(enum hak_hook_point at, void *target, void (*then)(void *)) {
  atomic_store(&hak_once.ran, 0); /* once per arming: a second one in a process runs too */
  hak_once.at = at;
  hak_once.target = target;
  hak_once.then = then;
}
static inline void hak_hook_once(enum hak_hook_point at, void *target, void (*then)(void *)) {
  hak_hook_once_arm(at, target, then);
  atomic_store(&hak_test_hook, hak_hook_once_fn);
}

/* After a call that was to end the process (with a report): it returned, a
 * bug. Removes the hook and says so on stderr, with whether the hook ran
 * (the child's exit status alone would not tell the two failures apart). */
static inline void hak_hook_returned(const char *call) {
  atomic_store(&hak_test_hook, NULL);
  fprintf(stderr, "hook ran: %d; %s returned\n", atomic_load(&hak_once.ran), call);
}

/* Threads that each hold a heap struct, started until none is spare, so
 * that the next thread's heap needs a new mapping of heap structs (a test
 * of that mapping refused: test_free_no_heap, test_oom_sweep part no
 * heap). Each has done its malloc when hak_park_all returns: one that took
 * its struct but allocated only later could adopt a segment the test
 * meant for another (test_free_no_heap's set-up failed in 26 of 2128 runs
 * under TSan). They stay until hak_unpark_all. */
#define HAK_PARK_MAX 256
static struct {
  pthread_t t[HAK_PARK_MAX];
  size_t n;
  atomic_size_t ready;
  atomic_int go;
} hak_parked;
static void *hak_parked_thread_(void *arg) {
  hak_free(hak_malloc(16)); /* takes a heap struct */
  atomic_fetch_add(&hak_parked.ready, 1);
  /* no bound: the test's own bounded waits (a fork's, a whole sweep's)
   * come first */
  while (!atomic_load(&hak_parked.go))
    hak_sleep_ms(1);
  return arg;
}
static inline void hak_park_all(void) {
  for (size_t want = heap_structs_spare(); want > 0; want = heap_structs_spare()) {
    REQUIRE(hak_parked.n + want <= HAK_PARK_MAX);
    for (size_t i = 0; i < want; i++)
      REQUIRE(pthread_create(&hak_parked.t[hak_parked.n++], NULL, hak_parked_thread_, NULL) == 0);
    HAK_SPIN_UNTIL(atomic_load(&hak_parked.ready) >= hak_parked.n,
                   "a parked thread did not allocate");
  }
}
/* Lets every parked thread go and joins it. */
static inline void hak_unpark_all(void) {
  atomic_store(&hak_parked.go, 1);
  for (size_t i = 0; i < hak_parked.n; i++)
    REQUIRE(pthread_join(hak_parked.t[i], NULL) == 0);
  hak_parked.n = 0;
  atomic_store(&hak_parked.ready, 0);
  atomic_store(&hak_parked.go, 0);
}

/* A live large block whose request ends at a 4 MiB boundary (where its
 * range ends, without a redzone), and a live large block whose range
 * starts right after that boundary: both placed in the zone (os.c) by
 * hand, the neighbour first. Returns the block; *n is its request, *next
 * the neighbour (test_asan_catches and test_valgrind_catches write b[*n]). */
static inline volatile unsigned char *hak_large_at_boundary(size_t *n, unsigned char **next) {
  hak_trim(0);
  unsigned char *a = hak_malloc(200000);
  REQUIRE(a != NULL);
  size_t off = (uintptr_t)a & (hak_page_size() - 1); /* where malloc's large blocks start */
  hak_free(a);
  hak_trim(0);
  *n = ((size_t)4 << 20) - off;
  os_zone_seek(OS_ZONE_SIZE / 2 + ((size_t)4 << 20));
  *next = hak_malloc(200000);
  os_zone_seek(OS_ZONE_SIZE / 2);
  volatile unsigned char *b = hak_malloc(*n);
  REQUIRE(b != NULL && *next != NULL);
  return b;
}

#endif /* HAK_TEST_INTERNAL_H */
