/* calloc from a page laid over slices of different histories is zero. A
 * segment tracks which slices may hold old bytes (dirty_slices): a purge
 * (hak_trim, or the delayed purge) clears the bits of the runs it gives
 * back, and a new page is taken as zero (calloc skips the memset) only if
 * none of its slices is dirty. So after a page of one class is purged and
 * its neighbour's page is freed without a purge, a page of a bigger class
 * over both must still be cleared. An off-by-one in either mask (a purge
 * clearing the next slice's bit too, or a page tested by its first slice
 * only) handed out old data here: 32 of 64 calloc(1, 2000) blocks.
 * Then a sweep of other class pairs and patterns, each checked the same.
 * Before those, each in a child of its own: calloc over segments taken back
 * from the segment cache (emptied, still committed: their slices stay
 * dirty) is zero, and calloc from never-touched slices skips the memset
 * (its pages are not faulted in). */
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

/* Segments emptied into the segment cache keep their dirty slices: the
 * newest SEGMENT_CACHE_DIRTY stay committed, holding the old bytes, and a
 * page carved there again is cleared by calloc. A reused segment taken for
 * a fresh one (its dirty bits cleared) handed out old bytes, and only
 * fuzz_mt's corpus replay saw it (mutant cached-segment-taken-clean,
 * helper-69, 2026-11-28). */
#define CBLK 16384
#define CN 720 /* 11.25 MiB: three segments and more */
static void cached_segments(void) {
  static unsigned char *a[CN];
  for (int i = 0; i < CN; i++) {
    REQUIRE((a[i] = hak_malloc(CBLK)) != NULL);
    memset(a[i], 0xAB, CBLK);
  }
  for (int i = 0; i < CN; i++)
    hak_free(a[i]);
  hak_thread_cache_flush(); /* every segment but the heap's last goes to the cache */
  size_t bad = nonzero_blocks(CBLK, CN);
  CHECK_MSG(bad == 0, "calloc(1, %d) over segments taken back from the cache: %zu of %d not zero",
            CBLK, bad, CN);
}

/* README: "calloc skips the memset for blocks carved from never-used
 * (zero) slices": 64 blocks of 64 KiB from purged and new slices fault in
 * about a page each (the carve's and calloc's first 16 bytes), not 16.
 * Clearing them all passed every test (mutant take-never-zero). */
static void fresh_not_touched(void) {
  if (!hak_config_is("release") && !hak_config_is("debug"))
    return; /* faults are only meaningful without sanitizer runtimes */
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char thp[128] = "";
  if (f) {
    if (!fgets(thp, sizeof thp, f))
      thp[0] = 0;
    fclose(f);
  }
  if (strstr(thp, "[always]")) {
    printf("fresh_not_touched: skipped (THP always: a first touch faults in 2 MiB)\n");
    return;
  }
  void *p[64];
  REQUIRE(hak_malloc(16) != NULL); /* the heap exists */
  hak_trim(0);                     /* its free slices purged: zero */
  long f0 = hak_minflt();
  for (int i = 0; i < 64; i++)
    REQUIRE((p[i] = hak_calloc(1, 65536)) != NULL);
  long faults = hak_minflt() - f0;
  CHECK_MSG(faults < 64 * 4, "64 calloc(1, 65536) from zero slices faulted in %ld pages", faults);
  for (int i = 0; i < 64; i++) {
    CHECK(hak_find_not_byte(p[i], 65536, 0) == SIZE_MAX);
    hak_free(p[i]);
  }
}

int main(void) {
  RUN_SECTION(cached_segments);
  RUN_SECTION(fresh_not_touched);
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
