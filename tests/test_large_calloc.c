/* calloc of a large block served by the large-block cache (large.c):
 *  - it is zero on every path the cache takes: a cached mapping taken
 *    whole, cut, grown in place and filled with pages moved from other
 *    cached mappings, grown past them with new pages, a range assembled
 *    from cached pages, and after an aligned block;
 *  - it clears only what may hold old data: a big calloc made right after
 *    a small large block was freed (the cache grows that mapping in place
 *    to the request) must not touch the new pages, which are zero already:
 *    calloc(256 MiB) once committed all 256 MiB, where the same calloc with
 *    the cache empty commits nothing (and one bigger than free memory got
 *    the process killed instead of staying lazy). */
#include "hak_test.h"

#include <string.h>

#define MiB ((size_t)1 << 20)

/* Resident memory of this process in MiB. */
static size_t rss_mib(void) {
  return hak_statm_bytes(1) / MiB;
}

static void dirty_free(size_t n) {
  unsigned char *p = hak_malloc(n);
  REQUIRE(p != NULL);
  memset(p, 0xAB, n);
  hak_free(p);
}

static void check_zero(size_t n, const char *what) {
  unsigned char *c = hak_calloc(1, n);
  REQUIRE(c != NULL);
  size_t at = hak_find_not_byte(c, n, 0);
  CHECK_MSG(at == SIZE_MAX, "%s: calloc(%zu): byte %zu is not zero", what, n, at);
  hak_free(c);
}

/* Four dirty blocks freed into the cache (1, 2, 3 MiB and 700000 B). */
static void dirty_four(void) {
  static const size_t sz[4] = {1 * MiB, 2 * MiB, 3 * MiB, 700000};
  void *keep[4];
  for (int i = 0; i < 4; i++) {
    keep[i] = hak_malloc(sz[i]);
    REQUIRE(keep[i] != NULL);
    memset(keep[i], 0xCD, sz[i]);
  }
  for (int i = 0; i < 4; i++)
    hak_free(keep[i]);
}

static void test_zero_paths(void) {
  for (int round = 0; round < 3; round++) {
    hak_trim(0);
    dirty_free(3 * MiB);
    check_zero(3 * MiB - 100000, "whole");
    hak_trim(0);
    dirty_free(5 * MiB);
    check_zero(3 * MiB + 200000, "cut");
    hak_trim(0);
    dirty_four();
    check_zero(5 * MiB, "grown, filled from the others");
    hak_trim(0);
    dirty_four();
    check_zero(40 * MiB, "grown, filled from the others and with new pages");
    hak_trim(0);
    dirty_four();
    check_zero(6 * MiB, "assembled");
    void *x = hak_aligned_alloc(MiB, 200000);
    REQUIRE(x != NULL);
    memset(x, 0xEE, 200000);
    hak_free(x);
    check_zero(2 * MiB + 77777, "after an aligned block");
  }
}

static void test_lazy(void) {
  const size_t n = 256 * MiB;
  hak_trim(0);
  size_t r0 = rss_mib();
  unsigned char *a = hak_calloc(1, n);
  REQUIRE(a != NULL);
  size_t cold = rss_mib() - r0;
  hak_free(a);
  hak_trim(0);

  dirty_free(MiB); /* now cached: the calloc below grows its mapping */
  r0 = rss_mib();
  unsigned char *b = hak_calloc(1, n);
  REQUIRE(b != NULL);
  size_t warm = rss_mib() - r0;
  hak_test_log("calloc(%zu MiB): RSS +%zu MiB with the cache empty, +%zu MiB after a 1 MiB block\n",
               n / MiB, cold, warm);
  /* the sanitizer builds write their shadow of the block: the same with
   * the cache empty or not */
  if (hak_config_is("release") || hak_config_is("debug") || hak_config_is("ubsan"))
    CHECK_MSG(cold <= 8, "calloc(%zu MiB) with the cache empty committed %zu MiB", n / MiB, cold);
  CHECK_MSG(warm <= cold + 8,
            "calloc(%zu MiB) after a 1 MiB block was cached committed %zu MiB (%zu MiB cold)",
            n / MiB, warm, cold);
  size_t bad = 0;
  for (size_t i = 0; i < n; i += 4096)
    bad += b[i] != 0 || b[i + 4095] != 0;
  CHECK_MSG(bad == 0, "calloc(%zu MiB): %zu pages not zero", n / MiB, bad);
  hak_free(b);
}

int main(void) {
  test_zero_paths();
  test_lazy();
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
