/* Reclaim on free is bounded: a thread that only frees (a main thread
 * joining its workers, freeing what they left) takes over at most
 * RECLAIM_CREDIT abandoned segments; the rest stay abandoned for a thread
 * that allocates. Before the bound, a joining main thread in LD_PRELOAD
 * Larson reclaimed every exited worker's segment, never allocated from
 * them, and remote frees piled up there while new threads mapped new
 * segments (2.5M allocs/s instead of 7M). An allocation slow path refills
 * the credit. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

#define WORKERS (RECLAIM_CREDIT + 4)

static pthread_barrier_t all_allocated;

static void *worker(void *arg) {
  /* all workers are alive at once, so each heap takes a segment of its own
   * (nothing is abandoned yet) and leaves it abandoned at exit */
  *(void **)arg = hak_malloc(256);
  pthread_barrier_wait(&all_allocated);
  return NULL;
}

static size_t abandoned_now(void) {
  struct hak_stats st;
  hak_stats(&st);
  return st.abandoned_segments;
}

int main(void) {
  void *mine = hak_malloc(256); /* main's heap exists; its credit is full */
  void *left[WORKERS];
  pthread_t t[WORKERS];
  REQUIRE(pthread_barrier_init(&all_allocated, NULL, WORKERS) == 0);
  for (int i = 0; i < WORKERS; i++)
    REQUIRE(pthread_create(&t[i], NULL, worker, &left[i]) == 0);
  for (int i = 0; i < WORKERS; i++)
    REQUIRE(pthread_join(t[i], NULL) == 0);
  size_t before = abandoned_now();
  CHECK_MSG(before >= WORKERS, "%zu abandoned segments after %d workers exited with live blocks",
            before, WORKERS);
  for (int i = 0; i < WORKERS; i++)
    hak_free(left[i]); /* main only frees: it may reclaim RECLAIM_CREDIT of them */
  size_t after = abandoned_now();
  CHECK_MSG(before - after == RECLAIM_CREDIT,
            "a thread that only frees reclaimed %zu abandoned segments (bound %d)", before - after,
            RECLAIM_CREDIT);
  CHECK_EQ(hak_heap_check(), 0);
  /* allocating again adopts what is left before mapping anything new */
  void *more[64];
  for (int i = 0; i < 64; i++)
    more[i] = hak_malloc(64 * 1024);
  CHECK_MSG(abandoned_now() < after, "allocating did not adopt abandoned segments (%zu left)",
            abandoned_now());
  for (int i = 0; i < 64; i++)
    hak_free(more[i]);
  hak_free(mine);
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
