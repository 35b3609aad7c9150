/* A free into an abandoned segment decides whether it is the last of the
 * blocks live at the abandonment (reclaim_wanted: its count of frees against
 * abandoned_live) from the abandonment whose epoch it read. The epoch is
 * published (segment_abandon_locked's exchange) before that abandonment
 * collects its pages and stores abandoned_live: a free that read the owner
 * NULL before the segment was adopted, and reads the epoch of the adopter's
 * abandonment while it is still under way (waiting for another free in its
 * mark window, segment_wait_marks), compared its count with the previous
 * abandonment's abandoned_live. Its push then matched the new mark (the same
 * epoch): the segment's last free did not reclaim it, and the segment stayed
 * abandoned, carved and resident, with every block freed.
 *
 * On cue, with the test hooks: a producer allocates N blocks and exits (the
 * segment abandoned, N live). Freer F frees block 0 and is held after it read
 * the owner NULL (HAK_HOOK_FREE_UNOWNED). Freer G frees block 1 and is held in
 * its mark window (HAK_HOOK_MARK_CHECKED). An adopter thread takes the
 * segment (its malloc), frees blocks 2..N-1 (its own now) and exits: the
 * abandonment stores its epoch and waits for G. F goes on and, if it counts
 * the free, is held again before its push (HAK_HOOK_FREE_COUNTED); G goes,
 * the abandonment finishes (block 0 live), then F. Must hold: once every
 * block is freed nothing is live and no segment is abandoned. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

#define N 64
#define SIZE 64

static unsigned char *blocks[N];
static _Thread_local int who; /* 1: F, 2: G */
static atomic_int ready, start, f_unowned, f_go1, f_counted, f_go2, f_done, g_checked, g_go,
    adopted;

static void hook(enum hak_hook_point where, void *arg) {
  if (who == 1 && arg == blocks[0] && where == HAK_HOOK_FREE_UNOWNED && !atomic_load(&f_go1)) {
    atomic_store(&f_unowned, 1);
    HAK_WAIT_FLAG(&f_go1);
  } else if (who == 1 && arg == blocks[0] && where == HAK_HOOK_FREE_COUNTED) {
    atomic_store(&f_counted, 1);
    HAK_WAIT_FLAG(&f_go2);
  } else if (who == 2 && arg == blocks[1] && where == HAK_HOOK_MARK_CHECKED) {
    atomic_store(&g_checked, 1);
    HAK_WAIT_FLAG(&g_go);
  }
}

static void *producer(void *arg) {
  for (int i = 0; i < N; i++)
    REQUIRE((blocks[i] = hak_malloc(SIZE)) != NULL);
  return arg; /* exits with every block live: the segment is abandoned */
}

/* F (1) frees block 0, G (2) block 1. Their heaps allocated before the
 * producer's exit: they reclaim by neither rule 1 nor rule 2, only as the
 * last free. */
static void *freer(void *arg) {
  who = (int)(intptr_t)arg;
  hak_free(hak_malloc(16));
  atomic_fetch_add(&ready, 1);
  HAK_WAIT_FLAG(&start);
  if (who == 1) {
    hak_free(blocks[0]);
    atomic_store(&f_done, 1);
  } else {
    HAK_WAIT_FLAG(&f_unowned);
    hak_free(blocks[1]);
  }
  return arg;
}

static void *adopter(void *arg) {
  void *p = hak_malloc(SIZE);
  REQUIRE(p != NULL);
  if (ptr_segment_base(p) == ptr_segment_base(blocks[0]))
    atomic_store(&adopted, 1);
  for (int i = 2; i < N; i++)
    hak_free(blocks[i]); /* its own blocks now */
  hak_free(p);
  return arg; /* its exit abandons the segment again: blocks 0 and 1 live */
}

int main(void) {
  alarm(60);
  hak_free(hak_malloc(16));
  pthread_t f, g, t, a;
  REQUIRE(pthread_create(&f, NULL, freer, (void *)(intptr_t)1) == 0);
  REQUIRE(pthread_create(&g, NULL, freer, (void *)(intptr_t)2) == 0);
  HAK_SPIN_UNTIL(atomic_load(&ready) >= 2, "the freers did not set up their heaps");
  REQUIRE(pthread_create(&t, NULL, producer, NULL) == 0 && pthread_join(t, NULL) == 0);
  hak_segment_t *seg = ptr_segment_base(blocks[0]);
  uint64_t first = atomic_load(&seg->abandoned_epoch);
  atomic_store(&hak_test_hook, hook);
  atomic_store(&start, 1);
  HAK_WAIT_FLAG(&f_unowned); /* F read the owner NULL */
  HAK_WAIT_FLAG(&g_checked); /* G is in its mark window */
  REQUIRE(pthread_create(&a, NULL, adopter, NULL) == 0);
  /* the adopter's exit stores its epoch, then waits for G */
  HAK_SPIN_UNTIL(atomic_load(&seg->abandoned_epoch) != first,
                 "the adopter's exit did not abandon the segment again");
  /* no sleep: the abandonment cannot finish before G goes (g_go, below) */
  atomic_store(&f_go1, 1);
  /* F counts the free into the new abandonment, or (it read the owner
   * again) pushes it as a remote free */
  HAK_SPIN_UNTIL(atomic_load(&f_counted) || atomic_load(&f_done),
                 "F's free neither counted into the abandonment nor returned");
  atomic_store(&g_go, 1);
  REQUIRE(pthread_join(a, NULL) == 0);
  atomic_store(&f_go2, 1);
  REQUIRE(pthread_join(f, NULL) == 0 && pthread_join(g, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  CHECK_MSG(atomic_load(&adopted), "the adopter did not take the abandoned segment");
  /* the bug: the last free compared its count with the previous
   * abandonment's live blocks */
  CHECK_ALL_FREED("stale live");
  return hak_test_done();
}
