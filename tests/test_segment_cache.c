/* Emptied segments go to a global cache; the newest SEGMENT_CACHE_DIRTY of
 * them stay committed, and the older ones are purged only once they have
 * waited PURGE_DELAY_MS (segment.c). Purging them at once made a program
 * that frees everything and builds it up again (python/records' rounds)
 * fault a segment's pages back in when its next round took them. This
 * test requires both halves:
 *   1. segments emptied and taken again within the delay: the second
 *      build-up faults in (almost) nothing;
 *   2. segments left in the cache: after the delay, the next segment taken
 *      from the cache purges the older ones (resident memory drops);
 *   3. the same when a segment is released into the cache after the
 *      delay (by the release's ageing or by the heap purge that its page
 *      frees run: either one alone passes; a mutant without the release's
 *      ageing survives this part, killed only with both gone);
 *   4. the cache is bounded: with 16 segments emptied at once, at most
 *      SEGMENT_CACHE_MAX are cached (the rest unmapped);
 *   5. read off the cache list: right after a take past the delay, every
 *      cached segment past the newest SEGMENT_CACHE_DIRTY is purged (no
 *      dirty slice left);
 *   6. the same after the heap's own purge past its delay, with no
 *      segment taken or released: that purge ages the cache too.
 * hakmem's clock is frozen (os_test_freeze_clock) and moved only by
 * os_test_advance_ms, so "within the delay" is exact however slowly the
 * test runs (until 2026-11-28 it slept for the delay and skipped part 1
 * when that took longer than it): part 1 takes the segments back 1 ms
 * before the delay ends, parts 2, 3 and 5 age them exactly PURGE_DELAY_MS. */
#include "hak_test.h"

#include "internal.h"

#define BLOCK 16384
#define NBLK 1536 /* 24 MiB of 16 KiB blocks: 6+ segments */
#define PIN_N 768 /* 12 MiB: 3+ segments */

static unsigned char *blk[NBLK];

static void alloc_n(int n) {
  for (int i = 0; i < n; i++) {
    blk[i] = hak_malloc(BLOCK);
    REQUIRE(blk[i] != NULL);
    memset(blk[i], i, BLOCK); /* every page touched */
  }
}

static void free_n(int n) {
  for (int i = 0; i < n; i++)
    hak_free(blk[i]);
  hak_thread_cache_flush(); /* the pages, and so the segments, empty now */
}

static void *fill_and_free(void *arg) {
  (void)arg;
  alloc_n(NBLK);
  free_n(NBLK);
  return NULL;
}

int main(void) {
  if (!hak_config_is("release") && !hak_config_is("debug"))
    hak_test_skip("resident memory is only meaningful without sanitizer runtimes");
  os_test_freeze_clock(); /* the delay passes only by os_test_advance_ms */
  alloc_n(NBLK);
  free_n(NBLK);
  size_t cached = segment_cache_count();
  CHECK_MSG(cached > SEGMENT_CACHE_DIRTY, "only %zu emptied segments were cached", cached);
  os_test_advance_ms(PURGE_DELAY_MS - 1); /* the last ms of the delay */
  long f0 = hak_minflt();
  alloc_n(NBLK);
  long faults = hak_minflt() - f0;
  CHECK_MSG(faults < NBLK * (BLOCK / 4096) / 8,
            "taking %zu cached segments back %d ms into the purge delay faulted %ld pages in",
            cached, PURGE_DELAY_MS - 1, faults);

  free_n(NBLK);
  cached = segment_cache_count();
  REQUIRE(cached > SEGMENT_CACHE_DIRTY + 1);
  size_t before = hak_statm_bytes(1);
  os_test_advance_ms(PURGE_DELAY_MS);
  /* one segment's worth of blocks: the heap takes the newest cached
   * segment, and the cached ones past the newest SEGMENT_CACHE_DIRTY, all
   * older than the delay now, are purged */
  int one = (int)((SLICES_PER_SEGMENT - 1) / class_slices(size_to_class(BLOCK)) *
                  (class_slices(size_to_class(BLOCK)) * SLICE_SIZE / BLOCK));
  alloc_n(one + 1);
  size_t after = hak_statm_bytes(1);
  size_t old = cached - 1 - SEGMENT_CACHE_DIRTY; /* purged now: at least 3 MiB resident each */
  CHECK_MSG(after + old * 3 * ((size_t)1 << 20) < before + (size_t)(one + 1) * BLOCK,
            "%zu cached segments older than the delay not purged: resident %zu -> %zu KiB", old,
            before >> 10, after >> 10);
  free_n(one + 1);
  CHECK_EQ(hak_heap_check(), 0);

  /* 3. ageing with no segment taken: the segment of the last block stays
   * in use while the others are emptied and cached; after the delay it is
   * emptied too, and its release (or the heap purge its page frees run)
   * purges the cached ones past the newest SEGMENT_CACHE_DIRTY */
  alloc_n(NBLK);
  void *pinned_seg = ptr_segment_base(blk[NBLK - 1]);
  void *holder = blk[0]; /* keeps another segment with the heap, which
                          * then releases the pinned one when it empties */
  REQUIRE(ptr_segment_base(holder) != pinned_seg);
  int kept = 0;
  for (int i = 1; i < NBLK; i++) {
    if (ptr_segment_base(blk[i]) == pinned_seg)
      blk[kept++] = blk[i]; /* moved to the front: freed last */
    else
      hak_free(blk[i]);
  }
  hak_thread_cache_flush();
  cached = segment_cache_count();
  REQUIRE(cached > SEGMENT_CACHE_DIRTY + 1);
  os_test_advance_ms(PURGE_DELAY_MS);
  before = hak_statm_bytes(1);
  size_t cached_before = segment_cache_count();
  free_n(kept);
  REQUIRE(segment_cache_count() == cached_before + 1); /* released, nothing taken */
  after = hak_statm_bytes(1);
  old = cached_before + 1 - SEGMENT_CACHE_DIRTY;
  CHECK_MSG(after + old * 3 * ((size_t)1 << 20) < before,
            "a release after the delay did not purge %zu older cached segments: resident %zu -> "
            "%zu KiB",
            old, before >> 10, after >> 10);
  hak_free(holder);
  CHECK_EQ(hak_heap_check(), 0);

  /* 5. dirty segments cached by a thread that exits (so this heap's
   * purge, which ages the cache too, has nothing to do), then blocks
   * allocated past the delay until one segment is taken from the cache:
   * right after that take, positions 0..SEGMENT_CACHE_DIRTY-1 of the
   * cache list may stay dirty, every later one is purged */
  hak_trim(0);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, fill_and_free, NULL) == 0);
  pthread_join(t, NULL);
  size_t n_cached = segment_cache_count();
  REQUIRE(n_cached > SEGMENT_CACHE_DIRTY + 1);
  os_test_advance_ms(PURGE_DELAY_MS); /* the worker's thread read the same frozen clock */
  int taken = 0;
  while (segment_cache_count() == n_cached && taken < NBLK) {
    blk[taken] = hak_malloc(BLOCK);
    REQUIRE(blk[taken] != NULL);
    memset(blk[taken++], 1, BLOCK);
  }
  REQUIRE(segment_cache_count() == n_cached - 1);
  size_t pos = 0, dirty_pos = 0, dirty_old = 0;
  hak_lock(&hak_global_lock);
  for (hak_segment_t *q = hak_segment_cache; q; q = q->next, pos++)
    if (pos >= SEGMENT_CACHE_DIRTY && q->dirty_slices && !dirty_old++)
      dirty_pos = pos;
  hak_unlock(&hak_global_lock);
  CHECK_MSG(pos > SEGMENT_CACHE_DIRTY, "only %zu segments left cached after the take", pos);
  CHECK_MSG(dirty_old == 0,
            "%zu of %zu cached segments past the newest %d still dirty after a take past the "
            "delay (first at position %zu)",
            dirty_old, pos, SEGMENT_CACHE_DIRTY, dirty_pos);
  free_n(taken);
  CHECK_EQ(hak_heap_check(), 0);

  /* 6. ageing by the heap's purge alone, no segment released or taken
   * after the delay: a worker caches dirty segments (as in 5) while this
   * heap holds pinned segments; their free slices, over the threshold,
   * start the heap's delay at the same time. Past it, the next slow path
   * purges the heap's slices and ages the cache: every cached segment past
   * the newest SEGMENT_CACHE_DIRTY is purged. Without the ageing there
   * they stayed committed until the next release or take (mutant
   * purge-heap-skips-cache-age, which every test survived before:
   * 2026-11-28, helper-77). */
  hak_trim(0);
  static unsigned char *pin[PIN_N];
  for (int i = 0; i < PIN_N; i++) {
    pin[i] = hak_malloc(BLOCK);
    REQUIRE(pin[i] != NULL);
    memset(pin[i], 2, BLOCK);
  }
  REQUIRE(pthread_create(&t, NULL, fill_and_free, NULL) == 0);
  pthread_join(t, NULL);
  REQUIRE(segment_cache_count() > SEGMENT_CACHE_DIRTY + 1);
  for (int i = 0; i < PIN_N; i++)
    if (i % 64) { /* every segment keeps a block: none leaves the heap */
      hak_free(pin[i]);
      pin[i] = NULL;
    }
  hak_thread_cache_flush();
  REQUIRE(hak_tls_heap->dirty_free_bytes >= PURGE_THRESHOLD); /* the delay runs */
  n_cached = segment_cache_count();
  os_test_advance_ms(PURGE_DELAY_MS);
  void *q = hak_malloc(40000); /* a class with no page: the slow path, which purges */
  REQUIRE(q != NULL);
  REQUIRE(hak_tls_heap->dirty_free_bytes == 0); /* the heap's purge ran */
  REQUIRE(segment_cache_count() == n_cached);   /* no segment taken or released */
  pos = dirty_old = 0;
  hak_lock(&hak_global_lock);
  for (hak_segment_t *c = hak_segment_cache; c; c = c->next, pos++)
    dirty_old += pos >= SEGMENT_CACHE_DIRTY && c->dirty_slices;
  hak_unlock(&hak_global_lock);
  CHECK_MSG(dirty_old == 0,
            "%zu of %zu cached segments past the newest %d still dirty after the heap's purge "
            "past the delay",
            dirty_old, pos, SEGMENT_CACHE_DIRTY);
  hak_free(q);
  for (int i = 0; i < PIN_N; i++)
    hak_free(pin[i]);
  hak_thread_cache_flush();
  CHECK_EQ(hak_heap_check(), 0);

  /* 4. bounded: 64 MiB of blocks (16 segments) emptied at once */
  static unsigned char *many[4 * NBLK];
  for (int i = 0; i < 4 * NBLK; i++) {
    many[i] = hak_malloc(BLOCK);
    REQUIRE(many[i] != NULL);
    many[i][0] = 1;
  }
  for (int i = 0; i < 4 * NBLK; i++)
    hak_free(many[i]);
  hak_thread_cache_flush();
  CHECK_MSG(segment_cache_count() <= SEGMENT_CACHE_MAX,
            "%zu emptied segments cached, more than SEGMENT_CACHE_MAX (%d)", segment_cache_count(),
            SEGMENT_CACHE_MAX);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
