/* hak_trim (malloc_trim) gives free memory back to the OS at once, wherever
 * hakmem holds it:
 *   1. the calling thread's heap, its cached blocks flushed first (a class
 *      whose freed blocks sit in the cache keeps one page at most), the
 *      blocks other threads' frees handed over to it (1b: full pages) and
 *      those they freed onto its pages' remote-free stacks (1c), also
 *      with the segment cache full (1d: what goes back is unmapped);
 *   2. another, living thread's heap, while that thread waits;
 *   3. the segments a thread left abandoned at exit (live blocks in them),
 *      also when other threads' frees emptied its pages (collected at its
 *      exit, left carved for an adopter: given back by hak_trim);
 *   4. the segment cache (a thread that freed everything and exited);
 *   5. the large-block cache.
 * Each part frees a few dozen MiB, which the purge delay keeps resident
 * (segment.c, large.c), then requires that hak_trim returns 1 and that the
 * resident size drops by at least half of what was freed; a second
 * hak_trim, with nothing left to give, returns 0. Memory trimmed away is
 * used again: calloc'd blocks from it must read zero (purged slices are
 * handed out as zeroed memory). */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

#define BLOCK 16384
#define NBLK 1536 /* 24 MiB of 16 KiB blocks: 6+ segments */
#define PIN 200   /* every PIN-th block stays, so no segment empties whole */
#define FREED ((size_t)(NBLK - NBLK / PIN - 1) * BLOCK)

static unsigned char *blk[NBLK];

static void alloc_all(void) {
  hak_fill_touched(blk, NBLK, BLOCK);
}

/* Frees every block but the pinned ones (pin = 0: all). */
static void free_blocks(int pin) {
  for (int i = 0; i < NBLK; i++)
    if (!pin || i % pin) {
      hak_free(blk[i]);
      blk[i] = NULL;
    }
}

/* The freed memory comes back as calloc'd blocks that read zero. */
static void calloc_check_free(void) {
  for (int i = 0; i < NBLK; i++) {
    if (blk[i])
      continue;
    unsigned char *p = hak_calloc(1, BLOCK);
    REQUIRE(p != NULL);
    for (size_t j = 0; j < BLOCK; j += 512)
      if (p[j] != 0) {
        CHECK_MSG(0, "calloc'd block %p after hak_trim: byte %zu is %d", (void *)p, j, p[j]);
        break;
      }
    hak_free(p);
  }
}

/* hak_trim after `what` was freed: it must return 1 and drop the resident
 * size by at least `want` bytes. The timer clock is frozen (main), so the
 * purge delay and the caches' age cannot have given the memory back before
 * (until 2026-11-28 a machine slow enough to pass the delay skipped the
 * check: "purged already"). */
static void trim_and_check(const char *what, size_t want) {
  size_t before = hak_statm_bytes(1);
  int rc = hak_trim(0);
  size_t after = hak_statm_bytes(1);
  CHECK_MSG(rc == 1, "%s: hak_trim returned %d with memory to give back", what, rc);
  CHECK_MSG(after + want <= before, "%s: resident %zu -> %zu bytes, want %zu bytes less", what,
            before, after, want);
  CHECK_MSG(hak_trim(0) == 0, "%s: a second hak_trim, with nothing left, returned 1", what);
}

/* ---- 1b. blocks handed over ------------------------------------------- */
/* Frees the first block seen of each of main's full pages (the pages in
 * its full list ask for notification): each goes to main's delayed stack.
 * Until 2026-11-28 no test required hak_trim to take them: without it
 * (mutant trim-skips-delayed) the pages kept one block each, carved and
 * resident through hak_trim, 24 MiB here. */
static void *hand_over(void *arg) {
  (void)arg;
  static hak_page_t *seen[NBLK];
  int nseen = 0;
  for (int i = 0; i < NBLK; i++) {
    hak_page_t *pg = hak_block_page(blk[i]);
    bool first = pg->in_full;
    for (int k = 0; k < nseen && first; k++)
      first = seen[k] != pg;
    if (!first)
      continue;
    seen[nseen++] = pg;
    hak_free(blk[i]);
    blk[i] = NULL;
  }
  return NULL;
}

/* 1c. Frees every block of main's (no pin). Until 2026-11-28 hak_trim
 * left the remote-free stacks of the caller's own pages alone: a program
 * whose threads freed what its main thread built (24 MiB here) kept it all
 * carved and resident through malloc_trim. */
static void *free_all(void *arg) {
  (void)arg;
  free_blocks(0);
  return NULL;
}

/* 1d. A thread fills the segment cache (SEGMENT_CACHE_MAX): the segments
 * hak_trim then gives back as it takes the remote frees of the caller's
 * pages are unmapped at once, and its walk must not touch one again (a
 * walk that went on through a segment given back read its unmapped
 * header: mutant trim-collect-walks-released-segment, which every test
 * survived before, 2026-11-28, helper-78). */
#define FILL_N (3 * SEGMENT_CACHE_MAX * 128) /* 16 KiB blocks: 1.5 x the cache's segments */
static void *fill_cache(void *arg) {
  (void)arg;
  static unsigned char *b[FILL_N];
  for (int i = 0; i < FILL_N; i++)
    REQUIRE((b[i] = hak_malloc(BLOCK)) != NULL);
  for (int i = 0; i < FILL_N; i++)
    hak_free(b[i]);
  return NULL;
}

/* ---- 2. a living thread's heap ----------------------------------------- */
static pthread_barrier_t bar;

static void *living(void *arg) {
  (void)arg;
  alloc_all();
  pthread_barrier_wait(&bar); /* 1: allocated */
  free_blocks(PIN);
  pthread_barrier_wait(&bar); /* 2: freed; main measures and trims */
  pthread_barrier_wait(&bar); /* 3: main is done */
  calloc_check_free();
  free_blocks(0);
  return NULL;
}

/* ---- 3. and 4. a thread that exits ------------------------------------- */
static void *exiting(void *arg) {
  alloc_all();
  free_blocks((int)(intptr_t)arg); /* PIN: live blocks stay (abandoned); 0: none */
  return NULL;
}

/* 3b. its blocks freed by this thread while it lives, then it exits */
static void *exits_after_remote(void *arg) {
  (void)arg;
  alloc_all();
  pthread_barrier_wait(&bar); /* allocated */
  pthread_barrier_wait(&bar); /* main freed them */
  return NULL;
}

static void run_exiting(const char *what, int pin, size_t want) {
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, exiting, (void *)(intptr_t)pin) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  trim_and_check(what, want); /* what the thread left resident */
}

int main(void) {
  if (!hak_config_is("release") && !hak_config_is("debug"))
    hak_test_skip("resident memory is only meaningful without sanitizer runtimes");
  os_test_freeze_clock(); /* only hak_trim gives memory back here, however slow the run */

  /* 1. the calling thread's heap */
  alloc_all();
  free_blocks(PIN); /* no hak_thread_cache_flush: hak_trim flushes */
  trim_and_check("own heap", FREED / 2);
  calloc_check_free();
  free_blocks(0);
  hak_trim(0);
  /* the cached blocks are flushed: 64 blocks of 8 KiB freed, at least 32 of
   * them into the thread's cache (its limit for 8 KiB), their pages are
   * given back but the one kept page of the class */
  size_t c8 = hak_size_to_class(8192);
  void *b8[64];
  for (int i = 0; i < 64; i++)
    REQUIRE((b8[i] = hak_malloc(8192)) != NULL);
  for (int i = 0; i < 64; i++)
    hak_free(b8[i]);
  hak_trim(0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_MSG(st.classes[c8].pages <= 1, "8 KiB class: %zu pages after hak_trim (cache not flushed?)",
            st.classes[c8].pages);

  /* 1b. blocks other threads' frees handed over to this heap (the first
   * remote free into a full page goes to the heap's delayed stack): taken
   * back by hak_trim before its cache flush, so the pages empty and go */
  alloc_all();
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, hand_over, NULL) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  REQUIRE(atomic_load(&hak_tls_heap->delayed) != 0); /* handed over, not taken yet */
  free_blocks(0); /* the rest: into the thread's cache and its pages */
  trim_and_check("blocks handed over by remote frees", FREED / 2);
  hak_trim(0);

  /* 1c. every block of this heap freed by another thread: on the pages'
   * remote-free stacks (but the first of each full page, handed over), which
   * hak_trim takes as their owner before it gives pages back */
  alloc_all();
  REQUIRE(pthread_create(&t, NULL, free_all, NULL) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  trim_and_check("blocks other threads freed", FREED / 2);
  CHECK_EQ(hak_heap_check(), 0);

  /* 1d. the same with the segment cache full: what the trim gives back of
   * this heap's segments is unmapped */
  alloc_all();
  REQUIRE(pthread_create(&t, NULL, fill_cache, NULL) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  REQUIRE(segment_cache_count() == SEGMENT_CACHE_MAX);
  REQUIRE(pthread_create(&t, NULL, free_all, NULL) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  trim_and_check("blocks other threads freed, the segment cache full", FREED / 2);
  CHECK_EQ(hak_heap_check(), 0);

  /* 2. another thread's heap, while that thread lives */
  REQUIRE(pthread_barrier_init(&bar, NULL, 2) == 0);
  REQUIRE(pthread_create(&t, NULL, living, NULL) == 0);
  pthread_barrier_wait(&bar);
  pthread_barrier_wait(&bar);
  trim_and_check("another thread's heap", FREED / 2);
  pthread_barrier_wait(&bar);
  REQUIRE(pthread_join(t, NULL) == 0);
  pthread_barrier_destroy(&bar);
  hak_trim(0);

  /* 3. abandoned segments (live blocks in them), 4. cached segments (the
   * newest SEGMENT_CACHE_DIRTY stay committed) */
  run_exiting("abandoned segments", PIN, FREED / 2);
  for (int i = 0; i < NBLK; i++)
    if (blk[i]) {
      hak_free(blk[i]); /* the pinned blocks the thread left */
      blk[i] = NULL;
    }
  hak_trim(0);
  REQUIRE(pthread_barrier_init(&bar, NULL, 2) == 0);
  REQUIRE(pthread_create(&t, NULL, exits_after_remote, NULL) == 0);
  pthread_barrier_wait(&bar);
  free_blocks(PIN); /* remote frees: the pages empty at the thread's exit */
  pthread_barrier_wait(&bar);
  REQUIRE(pthread_join(t, NULL) == 0);
  pthread_barrier_destroy(&bar);
  trim_and_check("abandoned segments emptied by remote frees", FREED / 2);
  free_blocks(0);
  hak_trim(0);
  run_exiting("cached segments", 0, SEGMENT_CACHE_DIRTY * SEGMENT_SIZE / 2);

  /* 5. the large-block cache */
  void *big[8];
  for (int i = 0; i < 8; i++) {
    big[i] = hak_malloc((size_t)4 << 20);
    REQUIRE(big[i] != NULL);
    memset(big[i], i + 1, (size_t)4 << 20);
  }
  for (int i = 0; i < 8; i++)
    hak_free(big[i]);
  trim_and_check("large-block cache", (size_t)16 << 20);

  CHECK_EQ(hak_heap_check(), 0);
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
