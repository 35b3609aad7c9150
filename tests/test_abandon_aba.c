/* A free into an abandoned segment is counted into that abandonment, then
 * pushed on its page's remote-free stack past the page's TF_ABANDONED mark,
 * once page_free_remote has checked that the mark is that abandonment's.
 * Between the check and the push's CAS the segment must not change hands:
 * adopted and abandoned again, the page's word is the same empty
 * TF_ABANDONED (hak_trim's collect leaves it so too), the CAS succeeds, and
 * the free, counted into the first abandonment, lands on the second one's
 * mark, which counted the block live: the segment's last free falls one
 * short and it stays abandoned, resident, with nothing live (helper-51:
 * 17 of 4200 rounds of a stress probe under TSan). The check and the push
 * are one step under the global lock.
 *
 * Each round: a producer thread allocates N blocks and exits (its segment
 * abandoned); a freer thread frees block 0 and is held at the hook between
 * the check and the push (HAK_HOOK_MARK_CHECKED); an adopter thread's
 * malloc adopts the segment and it exits (abandoned again), which must not
 * finish before the push (it waits for the lock: the test gives it 300 ms,
 * then lets the freer go); then every other block is freed. Must hold: the
 * adopter took the segment, and at the end no segment is abandoned. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

#define N 64
#define SIZE 64
#define ROUNDS 4

static unsigned char *blocks[N];
static _Thread_local int is_freer;
static atomic_int cue, freed, ready, hooked, at_window, go, adopted, adopter_done;

static void *producer(void *arg) {
  for (int i = 0; i < N; i++) {
    REQUIRE((blocks[i] = hak_malloc(SIZE)) != NULL);
    memset(blocks[i], i + 1, SIZE);
  }
  return arg;
}

static void *adopter(void *arg) {
  void *p = hak_malloc(SIZE);
  REQUIRE(p != NULL);
  if (ptr_segment_base(p) == ptr_segment_base(blocks[0]))
    atomic_fetch_add(&adopted, 1);
  hak_free(p);
  atomic_store(&adopter_done, 1);
  return arg;
}

static void wait_for(atomic_int *v) {
  while (!atomic_load(v))
    sched_yield();
}

static void hook(enum hak_hook_point where, void *arg) {
  if (where == HAK_HOOK_MARK_CHECKED && is_freer && arg == blocks[0] && !atomic_load(&hooked)) {
    atomic_store(&hooked, 1);
    atomic_store(&at_window, 1);
    wait_for(&go);
  }
}

static void *freer(void *arg) {
  is_freer = 1;
  hak_free(hak_malloc(16)); /* a heap of its own: it does not reclaim by rule 2 */
  atomic_store(&ready, 1);
  for (int seen = 0;;) {
    int c;
    while ((c = atomic_load(&cue)) == seen)
      sched_yield();
    if (c < 0)
      return arg;
    seen = c;
    hak_free(blocks[0]);
    atomic_fetch_add(&freed, 1);
  }
}

int main(void) {
  hak_free(hak_malloc(16));
  pthread_t f, t;
  REQUIRE(pthread_create(&f, NULL, freer, NULL) == 0);
  wait_for(&ready);
  atomic_store(&hak_test_hook, hook);
  for (int r = 0; r < ROUNDS; r++) {
    REQUIRE(pthread_create(&t, NULL, producer, NULL) == 0 && pthread_join(t, NULL) == 0);
    struct hak_stats st;
    hak_stats(&st);
    REQUIRE(st.abandoned_segments == 1);
    atomic_store(&hooked, 0);
    atomic_store(&at_window, 0);
    atomic_store(&go, 0);
    atomic_store(&adopter_done, 0);
    int before = atomic_load(&adopted);
    atomic_store(&cue, r + 1);
    wait_for(&at_window); /* the freer is between the check and the push */
    REQUIRE(pthread_create(&t, NULL, adopter, NULL) == 0);
    /* the adopter must wait for the push (the lock): 300 ms, then go on */
    for (int i = 0; i < 300 && !atomic_load(&adopter_done); i++)
      usleep(1000);
    atomic_store(&go, 1);
    REQUIRE(pthread_join(t, NULL) == 0);
    while (atomic_load(&freed) < r + 1)
      sched_yield();
    CHECK_MSG(atomic_load(&hooked) == 1, "round %d: the freer never reached the hook", r);
    CHECK_MSG(atomic_load(&adopted) == before + 1, "round %d: the adopter did not take the segment",
              r);
    for (int i = 1; i < N; i++)
      hak_free(blocks[i]);
    hak_stats(&st);
    CHECK_MSG(st.live_blocks == 0 && st.abandoned_segments == 0,
              "round %d: every block freed, %zu live and %zu segment(s) still abandoned (a free "
              "counted into one abandonment pushed onto the next one's mark)",
              r, st.live_blocks, st.abandoned_segments);
    if (st.abandoned_segments) { /* take it back, so the next round starts clean */
      REQUIRE(pthread_create(&t, NULL, adopter, NULL) == 0 && pthread_join(t, NULL) == 0);
    }
  }
  atomic_store(&hak_test_hook, NULL);
  atomic_store(&cue, -1);
  REQUIRE(pthread_join(f, NULL) == 0);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
