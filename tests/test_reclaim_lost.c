/* A free into an abandoned segment that wants to reclaim it (reclaim on
 * free, free_not_owned) but loses the segment to another thread's reclaim
 * between its check of the owner and its segment_reclaim: the segment is
 * no longer abandoned there, this thread does not own it, and its block
 * must still be freed, once, as a remote free into the new owner's page.
 *
 * Set-up: a producer allocates three blocks of one page and exits (its
 * segment S abandoned, 3 live). Thread A, which has allocated since
 * (reclaim_wanted; its heap made before, so that it did not adopt S),
 * frees the first; it is held at HAK_HOOK_RECLAIMING,
 * its heap locked, while main (allocated since too) frees the second and
 * so reclaims S. A then goes on. Must hold: S stays main's, and once main
 * has freed the third and trimmed (collecting A's remote free) nothing is
 * live, hak_heap_check is clean and no segment is abandoned.
 *
 * Until 2026-11-28 no test lost that race (make test-coverage: segment_reclaim
 * never failed): mutants reclaim-lost-drops-free (the free returns as if
 * its reclaim had taken it: the block stays live for ever, and S with it)
 * and reclaim-lost-frees-twice (the block freed as if reclaimed, then
 * pushed again) survived. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

static void *blk[3];
static atomic_int parked, go, a_ready, a_free;

static void *producer(void *arg) {
  for (int i = 0; i < 3; i++) {
    blk[i] = hak_malloc(256);
    if (blk[i])
      memset(blk[i], 0x5a, 256);
  }
  return arg; /* exits with all three live: S is abandoned */
}

static void hold(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_RECLAIMING || arg != blk[0])
    return;
  atomic_store(&parked, 1);
  HAK_WAIT_FLAG(&go);
}

static void *thread_a(void *arg) {
  void *own = hak_malloc(64); /* a heap and a segment of its own, before S is abandoned */
  atomic_store(&a_ready, 1);
  HAK_WAIT_FLAG(&a_free);
  /* a slow path (a class it never used) after S's abandonment: it has
   * allocated since, and so wants S when it frees into it */
  void *since = hak_malloc(12000);
  hak_free(blk[0]); /* wants S, held before its reclaim */
  hak_free(since);
  hak_free(own);
  return arg;
}

int main(void) {
  hak_free(hak_malloc(16)); /* main's heap */
  pthread_t p, a;
  REQUIRE(pthread_create(&a, NULL, thread_a, NULL) == 0);
  HAK_WAIT_FLAG(&a_ready); /* else A's first malloc would adopt S */
  REQUIRE(pthread_create(&p, NULL, producer, NULL) == 0 && pthread_join(p, NULL) == 0);
  REQUIRE(blk[0] && blk[1] && blk[2]);
  hak_segment_t *s = ptr_segment_base(blk[0]);
  REQUIRE(ptr_segment_base(blk[2]) == s);
  REQUIRE(atomic_load_explicit(&s->owner, memory_order_relaxed) == NULL && s->abandoned);
  atomic_store(&hak_test_hook, hold);
  atomic_store(&a_free, 1);
  HAK_WAIT_FLAG(&parked);
  /* main's slow path (a class it never used): it has allocated since */
  void *t = hak_malloc(12000);
  REQUIRE(t != NULL);
  hak_free(blk[1]); /* main reclaims S (or had adopted it for t) */
  CHECK(atomic_load_explicit(&s->owner, memory_order_relaxed) == hak_tls_heap);
  atomic_store(&go, 1);
  REQUIRE(pthread_join(a, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  /* A's reclaim found S main's: A freed its block remotely, S stays main's */
  CHECK(atomic_load_explicit(&s->owner, memory_order_relaxed) == hak_tls_heap);
  CHECK(!s->abandoned);
  CHECK(((unsigned char *)blk[2])[0] == 0x5a && ((unsigned char *)blk[2])[255] == 0x5a);
  hak_free(blk[2]);
  hak_free(t);
  hak_trim(0); /* main collects A's remote free */
  CHECK_ALL_FREED("a free that lost its reclaim to another thread's");
  return hak_test_done();
}
