/* A class's thread-cache limit grows when its list overflows after running
 * empty since its last overflow (tcache.c): doubled, to at most
 * TCACHE_GROW_MAX times the first limit, and all of a heap's limits by at
 * most TCACHE_GROW_BYTES. An overflow with no empty list since the last
 * one spills half, as before. hak_heap_check agrees with the counts
 * throughout. */
#include "hak_test.h"

#include "internal.h"

#define N 8192

static void *stack[N]; /* live blocks, freed last allocated first */
static int top;

static void alloc_n(size_t size, int n) {
  for (int i = 0; i < n; i++) {
    REQUIRE(top < N);
    stack[top] = hak_malloc(size);
    REQUIRE(stack[top] != NULL);
    top++;
  }
}

static void free_n(int n) {
  for (int i = 0; i < n; i++) {
    REQUIRE(top > 0);
    hak_free(stack[--top]);
  }
}

static size_t length(size_t cls) {
  size_t n = 0;
  for (hak_block_t *b = hak_tls_heap->tc_head[cls]; b; b = block_next(b))
    n++;
  return n;
}

/* Whether the list of `cls` holds the blocks freed last, newest first:
 * stack[top], stack[top + 1], ... (free_n frees from the top down). An
 * overflow keeps the newest half, the blocks most likely still in the CPU
 * cache; keeping the older half passed every test (mutant
 * tcache-overflow-keeps-oldest, 2026-11-28). */
static bool holds_newest(size_t cls) {
  int i = top;
  for (hak_block_t *b = hak_tls_heap->tc_head[cls]; b; b = block_next(b), i++)
    if (i >= N || (void *)b != stack[i])
      return false;
  return true;
}

/* The first limits (sizeclass.c, README "Thread cache"): TCACHE_BYTES
 * worth of blocks, at most 128, at least 32 up to 8 KiB, 16 up to 16 KiB
 * and 4 above; every class full: at most 7.9 MiB per thread. */
static void first_limits(void) {
  static const struct {
    size_t size;
    uint32_t limit;
  } rows[] = {
      {16, 128},   /* 64 KiB / 16 = 4096: capped at 128 */
      {1024, 64},  /* 64 KiB / 1 KiB */
      {16384, 16}, /* 4: raised to the 16 of classes up to 16 KiB */
      {16385, 4},  /* above 16 KiB: at least 4 */
      {65536, 4},  /* 1: raised to 4 (256 KiB) */
  };
  REQUIRE(TCACHE_BYTES == 64 * 1024);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    size_t c = size_to_class(rows[i].size);
    CHECK_MSG(class_tcache_limit(c) == rows[i].limit,
              "%zu B (class %zu, %zu B): limit %u, expected %u", rows[i].size, c,
              (size_t)class_size(c), class_tcache_limit(c), rows[i].limit);
  }
  size_t total = 0;
  for (size_t c = 0; c < NCLS; c++) {
    uint32_t lim = class_tcache_limit(c);
    CHECK_MSG(lim >= 4 && lim <= 128, "class %zu (%zu B): limit %u", c, (size_t)class_size(c), lim);
    total += (size_t)lim * class_size(c);
  }
  /* README: "at most 7.9 MiB per thread if every class fills" (7.0 before the minimum of 32) */
  CHECK_MSG(total <= (size_t)(7.9 * 1024 * 1024) && total > (size_t)(7.8 * 1024 * 1024),
            "every class's cache full: %zu bytes (%.2f MiB), the README says 7.9 MiB", total,
            (double)total / (1024 * 1024));
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
  first_limits();
  size_t size = 8192, cls = size_to_class(size);
  uint32_t first = class_tcache_limit(cls);
  REQUIRE(first == 32 && TCACHE_GROW_MAX == 4);
  alloc_n(size, 300); /* the list is empty: these come from pages */
  hak_heap_t *h = hak_tls_heap;
  CHECK_EQ(h->tc_limit[cls], first);
  /* first + 1 frees overflow a list that ran empty: it grows, nothing spills */
  free_n((int)first + 1);
  CHECK_EQ(h->tc_limit[cls], 2 * first);
  CHECK_EQ(length(cls), first + 1);
  CHECK_EQ(hak_heap_check(), 0);
  /* it fills and overflows again with no malloc between: half spills, the
   * newest half stays */
  free_n((int)first);
  CHECK_EQ(h->tc_limit[cls], 2 * first);
  CHECK_EQ(length(cls), first);
  CHECK_MSG(holds_newest(cls), "an overflow kept other blocks than the %u freed last", first);
  CHECK_EQ(hak_heap_check(), 0);
  /* mallocs served by the list without emptying it, then an overflow:
   * still a spill, no growth */
  alloc_n(size, 10);
  CHECK_EQ(length(cls), first - 10);
  free_n((int)first + 11);
  CHECK_EQ(h->tc_limit[cls], 2 * first);
  CHECK_EQ(length(cls), first);
  CHECK_MSG(holds_newest(cls), "an overflow kept other blocks than the %u freed last", first);
  CHECK_EQ(hak_heap_check(), 0);
  /* run empty, then overflow: 64 -> 128, then it stays (4 x 32) */
  for (int round = 0; round < 3; round++) {
    uint32_t limit = h->tc_limit[cls];
    alloc_n(size, (int)length(cls) + 1); /* the last one from a page */
    CHECK_EQ(length(cls), 0);
    free_n((int)limit + 1);
    CHECK_EQ(h->tc_limit[cls], limit * 2 < first * 4 ? limit * 2 : first * 4);
    CHECK_EQ(length(cls), limit * 2 <= first * 4 ? limit + 1 : limit / 2);
    CHECK_EQ(hak_heap_check(), 0);
  }
  CHECK_EQ(h->tc_limit[cls], first * TCACHE_GROW_MAX);
  free_n(top);

  /* the heap's budget: the classes from 16 KiB up, each run empty and
   * overflowed three times, grow by at most TCACHE_GROW_BYTES in all */
  size_t grown_before = h->tc_grown, stuck = 0;
  for (size_t c = size_to_class(16384); c < NCLS; c++) {
    uint32_t before = h->tc_limit[c];
    for (int round = 0; round < 3; round++) {
      int n = (int)h->tc_limit[c] + 1;
      alloc_n(class_size(c), (int)length(c) + n);
      free_n((int)length(c) + n);
      CHECK_EQ(hak_heap_check(), 0);
    }
    stuck += h->tc_limit[c] == before;
    free_n(top);
  }
  CHECK_GT(h->tc_grown, grown_before);
  CHECK_LE(h->tc_grown, TCACHE_GROW_BYTES);
  CHECK_MSG(stuck > 0, "every class from 16 KiB grew: the heap's growth budget is not applied");
  hak_thread_cache_flush();
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
