/* Reclaim on free (free_not_owned / reclaim_wanted in api.c): a thread
 * that frees into an abandoned segment adopts it only if it has allocated
 * since the segment was abandoned (it will reuse the segment's free
 * blocks), if it has no heap yet (a successor thread taking over), or if
 * its free is the last of the blocks live at abandonment (the segment is
 * empty: adopting gives it back).
 *
 * Before: every heap had a credit of 4 reclaims, refilled by allocation
 * slow paths. A main thread that only joins its workers and frees their
 * handles spent it on segments full of the workers' live blocks; the
 * workers' own frees into them then went to the remote-free stacks of a
 * heap that never allocates again. Larson (1 thread, 1024 chunks) had
 * 2.5 MB stranded that way: 1.8x glibc's peak RSS. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

#define WORKERS 6
#define PER_WORKER 4

static pthread_barrier_t all_allocated;
static void *left[WORKERS][PER_WORKER];

static void *worker(void *arg) {
  /* all workers are alive at once, so each heap takes a segment of its own
   * (nothing is abandoned yet) and leaves it abandoned at exit */
  void **mine = arg;
  for (int i = 0; i < PER_WORKER; i++)
    mine[i] = hak_malloc(256);
  pthread_barrier_wait(&all_allocated);
  return NULL;
}

static size_t abandoned_now(void) {
  struct hak_stats st;
  hak_stats(&st);
  return st.abandoned_segments;
}

static void run_workers(void) {
  pthread_t t[WORKERS];
  REQUIRE(pthread_barrier_init(&all_allocated, NULL, WORKERS) == 0);
  for (int i = 0; i < WORKERS; i++)
    REQUIRE(pthread_create(&t[i], NULL, worker, left[i]) == 0);
  for (int i = 0; i < WORKERS; i++)
    REQUIRE(pthread_join(t[i], NULL) == 0);
  REQUIRE(pthread_barrier_destroy(&all_allocated) == 0);
}

/* Main (which has not allocated since the workers exited) frees all but
 * the last block of each worker: no segment may be reclaimed. */
static void free_all_but_last(const char *when) {
  size_t before = abandoned_now();
  for (int i = 0; i < WORKERS; i++)
    for (int j = 0; j < PER_WORKER - 1; j++)
      hak_free(left[i][j]);
  CHECK_MSG(abandoned_now() == before,
            "%s: %zu segments reclaimed by a thread that has not allocated since, while a "
            "block was still live",
            when, before - abandoned_now());
  CHECK_EQ(hak_heap_check(), 0);
}

/* Part 3b: a new thread's first free into an abandoned segment reclaims
 * it, but the heap made for it has not allocated: freeing one block of
 * each other segment, abandoned before or after, reclaims none. */
static pthread_barrier_t step;
static size_t freer_first, freer_older, freer_second;
static void *freer(void *arg) {
  (void)arg;
  size_t before = abandoned_now();
  hak_free(left[0][0]); /* no heap yet: reclaims, and this thread gets a heap */
  freer_first = before - abandoned_now();
  for (int j = 1; j < PER_WORKER; j++)
    hak_free(left[0][j]);
  before = abandoned_now();
  for (int i = 1; i < WORKERS; i++)
    hak_free(left[i][0]);
  freer_older = before - abandoned_now();
  pthread_barrier_wait(&step); /* main runs new workers */
  pthread_barrier_wait(&step);
  before = abandoned_now();
  for (int i = 0; i < WORKERS; i++)
    hak_free(left[i][0]);
  freer_second = before - abandoned_now();
  return NULL;
}

int main(void) {
  void *mine = hak_malloc(256); /* main's heap exists and has allocated */

  /* 1. A thread that has not allocated since the exits frees all but one
   * block of each segment: nothing is reclaimed. */
  run_workers();
  size_t before = abandoned_now();
  CHECK_MSG(before >= WORKERS, "%zu abandoned segments after %d workers exited with live blocks",
            before, WORKERS);
  free_all_but_last("fresh segments");

  /* 2. The last block: each segment is reclaimed, and given back (it is
   * empty), not kept by main's heap. */
  struct hak_stats st;
  for (int i = 0; i < WORKERS; i++)
    hak_free(left[i][PER_WORKER - 1]);
  CHECK_MSG(abandoned_now() <= before - WORKERS,
            "segments whose every block was freed stayed abandoned (%zu of %zu)", abandoned_now(),
            before);
  hak_stats(&st);
  CHECK_MSG(st.segments - segment_cache_count() <= 1,
            "%zu segments mapped and in use (not cached) with no live block but main's",
            st.segments - segment_cache_count());
  CHECK_EQ(hak_heap_check(), 0);

  /* 2b. Part 1 again: the workers take part 2's segments from the cache,
   * whose counters must start again from this abandonment. */
  run_workers();
  free_all_but_last("segments reused from the cache");
  for (int i = 0; i < WORKERS; i++)
    hak_free(left[i][PER_WORKER - 1]);
  CHECK_EQ(hak_heap_check(), 0);

  /* 3. A thread that allocates (a slow path: a class it never used) after
   * the exits reclaims on its first free into each segment. */
  run_workers();
  before = abandoned_now();
  CHECK(before >= WORKERS);
  void *fresh = hak_malloc(3000);
  for (int i = 0; i < WORKERS; i++)
    hak_free(left[i][0]);
  CHECK_MSG(abandoned_now() <= before - WORKERS,
            "an allocating thread's frees left %zu of %zu segments abandoned", abandoned_now(),
            before);
  CHECK_EQ(hak_heap_check(), 0);
  for (int i = 0; i < WORKERS; i++)
    for (int j = 1; j < PER_WORKER; j++)
      hak_free(left[i][j]);
  hak_free(fresh);

  /* 3b. (above) */
  run_workers();
  REQUIRE(pthread_barrier_init(&step, NULL, 2) == 0);
  pthread_t f;
  REQUIRE(pthread_create(&f, NULL, freer, NULL) == 0);
  pthread_barrier_wait(&step);
  void *still[WORKERS][PER_WORKER];
  for (int i = 1; i < WORKERS; i++)
    for (int j = 1; j < PER_WORKER; j++)
      still[i][j] = left[i][j]; /* the first workers' blocks the freer left */
  run_workers();
  pthread_barrier_wait(&step);
  REQUIRE(pthread_join(f, NULL) == 0);
  CHECK_MSG(freer_first == 1,
            "a new thread's first free into an abandoned segment reclaimed %zu segments, not 1",
            freer_first);
  CHECK_MSG(freer_older == 0,
            "a thread that never allocated (its heap made by a reclaim on free) reclaimed %zu "
            "segments still holding live blocks",
            freer_older);
  CHECK_MSG(freer_second == 0,
            "a thread that never allocated (its heap made by a reclaim on free) reclaimed %zu "
            "segments abandoned later, still holding live blocks",
            freer_second);
  for (int i = 0; i < WORKERS; i++)
    for (int j = 1; j < PER_WORKER; j++)
      hak_free(left[i][j]);
  for (int i = 1; i < WORKERS; i++)
    for (int j = 1; j < PER_WORKER; j++)
      hak_free(still[i][j]);
  CHECK_EQ(hak_heap_check(), 0);

  /* 4. Allocating adopts what is still abandoned before mapping any new
   * segment (main's heap has free slices in the segments it reclaimed: it
   * uses those first, then adopts). */
  run_workers();
  size_t after = abandoned_now();
  CHECK(after >= WORKERS);
  hak_stats(&st);
  size_t mapped = st.segments;
  enum { MORE = 1024 };
  static void *more[MORE];
  int n = 0;
  while (n < MORE && abandoned_now() == after)
    more[n++] = hak_malloc(64 * 1024 - hak_test_redzone()); /* the last class (hak_test.h) */
  hak_stats(&st);
  CHECK_MSG(abandoned_now() < after, "%d allocations of 64 KiB adopted none of %zu abandoned", n,
            after);
  CHECK_MSG(st.segments <= mapped, "%zu segments mapped before adopting one (%zu before)",
            st.segments, mapped);
  while (n > 0)
    hak_free(more[--n]);
  for (int i = 0; i < WORKERS; i++)
    for (int j = 0; j < PER_WORKER; j++)
      hak_free(left[i][j]);
  hak_free(mine);
  CHECK_EQ(hak_heap_check(), 0);
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
