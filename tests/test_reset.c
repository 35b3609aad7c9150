/* hak_test_reset returns hakmem to a fresh process's state: nothing stays
 * mapped, and the same operations then lay blocks out exactly as the first
 * time (offsets inside their 4 MiB ranges), which is what lets a fuzz input
 * reproduce from its file alone. Without the reset the second run lands on
 * pages the first one left behind, so the comparison below can fail.
 * Blocks still live at a reset (a fuzz input that ends with some) are gone
 * with it: a large and a huge (4 MiB-aligned) block's mappings unmapped,
 * counted nowhere, and a free of the stale pointers afterwards reported as
 * memory hakmem never allocated, not a read of their unmapped headers
 * (until 2026-11-28 no test reset with a large block live, make
 * test-coverage). A thread that resets and then exits: its heap, put in
 * the pool by the reset, is not abandoned again by the thread's exit
 * (heap_thread_done's check that the heap is still the thread's, which no
 * test reached before): two threads started afterwards get two heaps. */
#include "hak_test.h"

#include "internal.h"

#define N 3000
#define RANGE ((uintptr_t)4 << 20)

static uint64_t run(uintptr_t *sig) {
  uint64_t rng = 12345, h = 0;
  void *live[N];
  for (int i = 0; i < N; i++) {
    size_t n = hak_rand_below(&rng, 3) == 0 ? 16 + hak_rand_below(&rng, 100000)
                                            : hak_rand_below(&rng, 2000);
    live[i] = hak_malloc(n);
    REQUIRE(live[i] != NULL);
    memset(live[i], i & 0xff, n < 64 ? n : 64);
    sig[i] = (uintptr_t)live[i] & (RANGE - 1);
    if (i % 3 == 2) {
      hak_free(live[i - 1]);
      live[i - 1] = NULL;
    }
  }
  for (int i = 0; i < N; i++) {
    h = h * 31 + sig[i];
    hak_free(live[i]);
  }
  return h;
}

static unsigned char *stale;

static void free_stale(void *arg) {
  hak_free(stale);
}

/* Whether any page of [p, p + n) is mapped. */
static int mapped(const void *p, size_t n) {
  unsigned char vec[64];
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)(hak_page_size() - 1);
  for (; a < (uintptr_t)p + n; a += hak_page_size())
    if (mincore((void *)a, hak_page_size(), vec) == 0)
      return 1;
  return 0;
}

static void live_at_reset(void) {
  unsigned char *small = hak_malloc(100), *large = hak_malloc(100000),
                *huge = hak_aligned_alloc(RANGE, 100000);
  REQUIRE(small && large && huge);
  memset(large, 0x5a, 100000);
  memset(huge, 0xa5, 100000);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.large_blocks, 2);
  hak_test_reset();
  hak_stats(&st);
  CHECK_EQ(st.mapped_bytes, 0);
  CHECK_EQ(st.large_blocks, 0);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(hak_heap_check(), 0);
  CHECK_MSG(!mapped(large, 100000), "a large block live at the reset is still mapped");
  CHECK_MSG(!mapped(huge - 4096, 100000 + 4096), "a huge block live at the reset is still mapped");
  stale = large;
  EXPECT_ABORT(free_stale, NULL, "not allocated by hakmem");
  stale = huge;
  EXPECT_ABORT(free_stale, NULL, "not allocated by hakmem");
  unsigned char *p = hak_malloc(100000); /* the large blocks work as before */
  REQUIRE(p != NULL);
  memset(p, 1, 100000);
  hak_free(p);
  CHECK_EQ(hak_heap_check(), 0);
}

static void *reset_in_thread(void *arg) {
  hak_free(hak_malloc(100)); /* a heap, its key set: the exit runs heap_thread_done */
  hak_test_reset();
  return NULL;
}

static pthread_barrier_t both;

static void *heap_of_new_thread(void *arg) {
  void *p = hak_malloc(100);
  void *h = hak_tls_heap;
  pthread_barrier_wait(&both); /* both threads hold their heaps at once */
  hak_free(p);
  return h;
}

static void reset_then_exit(void) {
  pthread_t t, u;
  REQUIRE(pthread_create(&t, NULL, reset_in_thread, NULL) == 0 && pthread_join(t, NULL) == 0);
  pthread_barrier_init(&both, NULL, 2);
  void *ht = NULL, *hu = NULL;
  REQUIRE(pthread_create(&t, NULL, heap_of_new_thread, NULL) == 0);
  REQUIRE(pthread_create(&u, NULL, heap_of_new_thread, NULL) == 0);
  REQUIRE(pthread_join(t, &ht) == 0 && pthread_join(u, &hu) == 0);
  CHECK_MSG(ht != hu && ht != (void *)&hak_empty_heap,
            "two threads after a thread's reset and exit share heap %p", ht);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  static uintptr_t a[N], b[N], c[N];
  uint64_t ha = run(a);
  uint64_t hb = run(b); /* no reset: pages left by the first run change the layout */
  hak_test_reset();
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.mapped_bytes, 0);
  CHECK_EQ(st.segments, 0);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(hak_heap_check(), 0);
  uint64_t hc = run(c);
  CHECK_MSG(ha == hc && memcmp(a, c, sizeof a) == 0,
            "after hak_test_reset the same operations placed blocks differently");
  if (ha == hb)
    printf("note: the second run without reset happened to match\n");
  CHECK_EQ(hak_heap_check(), 0);
  /* a thread started after a reset works normally */
  hak_test_reset();
  void *p = hak_calloc(10, 10);
  CHECK(p != NULL && hak_usable_size(p) >= 100);
  hak_free(p);
  live_at_reset();
  reset_then_exit();
  return hak_test_done();
}
