/* calloc from a page laid over slices of different histories is zero. A
 * segment tracks which slices may hold old bytes (dirty_slices): a purge
 * (hak_trim, or the delayed purge) clears the bits of the runs it gives
 * back, and a new page is taken as zero (calloc skips the memset) only if
 * none of its slices is dirty. So after a page of one class is purged and
 * its neighbour's page is freed without a purge, a page of a bigger class
 * over both must still be cleared. An off-by-one in either mask (a purge
 * clearing the next slice's bit too, or a page tested by its first slice
 * only) handed out old data here: 32 of 64 calloc(1, 2000) blocks.
 * Then a sweep of other class pairs and patterns, each checked the same. */
#include "hak_test.h"

#include <string.h>

static size_t nonzero_blocks(size_t n, size_t count) {
  size_t bad = 0;
  for (size_t k = 0; k < count; k++) {
    unsigned char *p = hak_calloc(1, n);
    REQUIRE(p != NULL);
    bad += hak_find_not_byte(p, n, 0) != SIZE_MAX;
    /* kept: the next calloc must take new blocks, not this one again */
  }
  return bad;
}

/* `pages` pages' worth of `small` blocks (each page one 64 KiB slice at
 * these sizes), every byte written; then the blocks of the pages in
 * `purged` (a bit per page) are freed and trimmed away, then those of the
 * pages in `dirty` freed without a purge; then calloc(big) `count` times. */
static size_t run(size_t small, int pages, unsigned purged, unsigned dirty, size_t big,
                  size_t count) {
  size_t per = 65536 / hak_size_class_size(hak_size_to_class(small));
  size_t n = per * (size_t)pages + 1; /* one more: the last page stays live */
  unsigned char **a = hak_malloc(n * sizeof *a);
  REQUIRE(a != NULL);
  for (size_t i = 0; i < n; i++) {
    a[i] = hak_malloc(small);
    REQUIRE(a[i] != NULL);
    memset(a[i], 0xAB, small);
  }
  for (int pg = 0; pg < pages; pg++)
    if (purged >> pg & 1)
      for (size_t i = 0; i < per; i++)
        hak_free(a[(size_t)pg * per + i]);
  hak_thread_cache_flush();
  hak_trim(0);
  for (int pg = 0; pg < pages; pg++)
    if (dirty >> pg & 1)
      for (size_t i = 0; i < per; i++)
        hak_free(a[(size_t)pg * per + i]);
  hak_thread_cache_flush();
  return nonzero_blocks(big, count);
  /* the rest stays allocated: each run's heap state is the next one's start */
}

int main(void) {
  size_t bad = run(1000, 2, 1, 2, 2000, 64);
  CHECK_MSG(bad == 0, "calloc(1, 2000) over a purged and a dirty slice: %zu of 64 blocks not zero",
            bad);
  static const size_t smalls[] = {700, 1000, 1500, 3000};
  static const size_t bigs[] = {2000, 5000, 12000, 30000};
  for (size_t s = 0; s < sizeof smalls / sizeof smalls[0]; s++)
    for (unsigned pat = 1; pat < 16; pat += 3)
      for (size_t b = 0; b < sizeof bigs / sizeof bigs[0]; b++) {
        size_t nb = run(smalls[s], 4, pat, ~pat & 15, bigs[b], 16);
        CHECK_MSG(nb == 0,
                  "small %zu, purged pages %#x, dirty %#x, calloc(%zu): %zu of 16 not zero",
                  smalls[s], pat, ~pat & 15, bigs[b], nb);
      }
  return hak_test_done();
}
