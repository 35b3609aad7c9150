/* hak_trim gives back the pages of an abandoned segment that other threads'
 * frees emptied after its thread exited.
 *
 * A thread exits with its blocks live (a worker leaving its results); the
 * main thread, which does not allocate since, frees all of them but a few
 * (one block in every PIN): those frees push the blocks on their pages'
 * remote-free stacks and only count (README, Thread exit), and no heap
 * owns the segments to collect the stacks. hak_trim gave back only the
 * pages that were empty at the abandonment (test_trim part 3b: frees
 * before the exit), so here every page stayed carved and resident: 24 MiB
 * of freed blocks for 8 live ones, through any number of hak_trim calls
 * (found by a helper's probe: 26288 KiB resident after the frees and
 * hak_trim, 1684 KiB before the thread ran). Now hak_trim collects the
 * stacks of the abandoned segments' pages (under the global lock, which an
 * adoption takes first) and gives back the pages that emptied.
 *
 * Checked in every build: after hak_trim the class holds no more pages
 * than live blocks (hak_stats), the live blocks keep their bytes, and the
 * last of them, freed, still reclaims the segment (nothing abandoned
 * after); hak_heap_check finds nothing at each step. In release and debug,
 * also that hak_trim returns 1 and the resident size drops by at least
 * half of what was freed. */
#include "hak_test.h"

#include <pthread.h>

#define BLOCK 16384
#define NBLK 1536 /* 24 MiB of 16 KiB blocks: 6+ segments */
#define PIN 200   /* every PIN-th block stays live */
#define FREED ((size_t)(NBLK - NBLK / PIN - 1) * BLOCK)

static unsigned char *blk[NBLK];

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < NBLK; i++) {
    REQUIRE((blk[i] = hak_malloc(BLOCK)) != NULL);
    memset(blk[i], i & 0xff, BLOCK); /* resident */
  }
  return NULL; /* exits with every block live: its segments are abandoned */
}

int main(void) {
  int rss = hak_config_is("release") || hak_config_is("debug");
  hak_free(hak_malloc(16)); /* main's heap allocated before the worker's exit */
  size_t c = hak_size_to_class(BLOCK);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, worker, NULL) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments > 0);
  size_t pages_before = st.classes[c].pages;

  for (int i = 0; i < NBLK; i++)
    if (i % PIN) {
      hak_free(blk[i]);
      blk[i] = NULL;
    }
  CHECK_EQ(hak_heap_check(), 0);
  size_t before = hak_statm_bytes(1);
  int rc = hak_trim(0);
  size_t after = hak_statm_bytes(1);
  hak_stats(&st);
  size_t live = (NBLK + PIN - 1) / PIN;
  CHECK_MSG(st.classes[c].pages <= live,
            "%zu pages of %d-byte blocks after hak_trim for %zu live blocks (%zu before the "
            "frees): pages emptied by frees after their thread's exit stayed carved",
            st.classes[c].pages, BLOCK, live, pages_before);
  CHECK_EQ(st.live_blocks, live);
  if (rss) {
    CHECK_MSG(rc == 1, "hak_trim returned %d with %zu bytes of abandoned pages freed", rc, FREED);
    CHECK_MSG(after + FREED / 2 <= before,
              "resident %zu -> %zu bytes after hak_trim, want %zu less", before, after, FREED / 2);
  }
  CHECK_EQ(hak_heap_check(), 0);

  for (int i = 0; i < NBLK; i += PIN) {
    CHECK_MSG(blk[i][0] == (i & 0xff) && blk[i][BLOCK - 1] == (i & 0xff),
              "live block %d lost its bytes", i);
    hak_free(blk[i]); /* the last one reclaims its segment: it is given back */
  }
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.abandoned_segments, 0);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
