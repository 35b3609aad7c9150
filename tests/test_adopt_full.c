/* Abandoned segments that cannot serve a request do not hide the ones that
 * can (README, Thread exit: adoption).
 *
 * A heap that needs a page adopts abandoned segments before it maps a new
 * one, at most 4 per slow path. Until 2026-11-28 it took the first 4 of the
 * list whatever they held, and a thread's exit pushed every segment it
 * owned back onto the head of the list, the adopted ones last: in a
 * process whose threads each leave a block behind (a record handed to a
 * global structure), once the first 4 segments were full every new thread
 * adopted those same 4, found no room in them, mapped a new segment for its
 * block and left it behind them, where no later adopter looked. One
 * segment per thread, for ever: a helper's probe (threads one after the
 * other, each allocating 50-200 blocks of 16-2016 B and keeping the first)
 * ran with 5 segments for 10000 threads, then mapped a new one for each
 * thread after, 78817 segments (308 GiB mapped, 16 GiB resident) for 100
 * MiB live at 100000 threads, and was killed by the OOM killer.
 *
 * Here a filler thread leaves 4 and a bit segments full of live 1 KiB
 * blocks; then workers, one after the other, each allocate 48 B blocks,
 * keep one and exit. The workers' blocks fit in one segment: the test
 * requires that they take at most 2 segments more than the filler's (the
 * old code took one per worker), frees everything and requires nothing
 * left live or abandoned and hak_heap_check clean. Part `rotate` does it
 * with the filler's segments all full but for the last, which serves
 * every worker; part `reclaimed` lets main free and reallocate between
 * workers. */
#include "hak_test.h"

#include <pthread.h>

#define FILL_SIZE 1024
#define WORK_SIZE 48
#define MAX_FILL 40000
#define MAX_WORKERS 4096

static void *fill[MAX_FILL];
static size_t nfill;
static void *kept[MAX_WORKERS];

static size_t segments_now(void) {
  struct hak_stats st;
  hak_stats(&st);
  return st.segments;
}

/* Allocates 1 KiB blocks until it has 4 full segments and one partly
 * used, and exits with all of them live. */
static void *filler(void *arg) {
  size_t base = *(size_t *)arg;
  nfill = 0;
  while (nfill < MAX_FILL) {
    void *p = hak_malloc(FILL_SIZE);
    REQUIRE(p != NULL);
    memset(p, 0x5a, 16);
    fill[nfill++] = p;
    if (segments_now() >= base + 5) {
      /* a few more in the fifth: it has room left for the workers */
      for (int i = 0; i < 8 && nfill < MAX_FILL; i++)
        REQUIRE((fill[nfill++] = hak_malloc(FILL_SIZE)) != NULL);
      return NULL;
    }
  }
  REQUIRE(!"the filler never reached 5 segments");
  return NULL;
}

static void *worker(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  void *tmp[8];
  for (int k = 0; k < 8; k++) {
    REQUIRE((tmp[k] = hak_malloc(WORK_SIZE + (size_t)k * 16)) != NULL);
    memset(tmp[k], (int)(i & 0xff), WORK_SIZE);
  }
  kept[i] = tmp[0];
  for (int k = 1; k < 8; k++)
    hak_free(tmp[k]);
  return NULL;
}

static void run(int reclaimed) {
  size_t base = segments_now();
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, filler, &base) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  size_t after_fill = segments_now();
  CHECK_GE(after_fill, base + 5);

  size_t workers = hak_iters(400);
  if (workers > MAX_WORKERS)
    workers = MAX_WORKERS;
  size_t most = after_fill;
  for (size_t i = 0; i < workers; i++) {
    REQUIRE(pthread_create(&t, NULL, worker, (void *)(uintptr_t)i) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    if (reclaimed && i % 16 == 15) {
      /* main allocates (so its frees reclaim) and frees a worker's block */
      void *q = hak_malloc(WORK_SIZE);
      REQUIRE(q != NULL);
      hak_free(kept[i - 8]);
      kept[i - 8] = q;
    }
    size_t s = segments_now();
    if (s > most)
      most = s;
  }
  /* workers * 48 B fit in one segment; a margin of one more */
  CHECK_MSG(most <= after_fill + 2,
            "%zu workers, one block each, took the segments from %zu to %zu (filler's: %zu)",
            workers, after_fill, most, after_fill - base);
  for (size_t i = 0; i < workers; i++) {
    unsigned char *p = kept[i];
    CHECK(p[0] == (unsigned char)(i & 0xff) || (reclaimed && i % 16 == 7));
    hak_free(p);
    kept[i] = NULL;
  }
  for (size_t i = 0; i < nfill; i++)
    hak_free(fill[i]);
  nfill = 0;
  hak_thread_cache_flush();
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.abandoned_segments, 0);
  CHECK_EQ(hak_heap_check(), 0);
}

static void part_rotate(void) {
  run(0);
}

static void part_reclaimed(void) {
  run(1);
}

int main(void) {
  RUN_SECTION(part_rotate);
  RUN_SECTION(part_reclaimed);
  return hak_test_done();
}
