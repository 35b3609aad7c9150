/* A free counted into one abandonment of a segment must not be lost when
 * the segment is adopted and abandoned again before the block is pushed.
 *
 * A thread that frees into an abandoned segment (owner NULL) counts the
 * free (reclaim_wanted: abandoned_frees, against abandoned_live) and then
 * pushes the block on its page's remote-free stack; the last of the blocks
 * live at the abandonment reclaims the segment, which gives it back
 * (README, Thread exit, rule 3). Between the count and the push another
 * thread may adopt the segment (its malloc needed a page) and exit: that
 * second abandonment resets the counters and counts the block, not yet
 * pushed, live. The push then went onto the page's new TF_ABANDONED mark
 * as a free counted already, so the second abandonment never counted it:
 * the last free fell one short of abandoned_live and the segment stayed
 * abandoned, carved and resident, with every block freed. Found by a
 * helper's probe: 10-30 of 1000 rounds (in 6 of 8 runs) of a consumer
 * freeing on a CPU shared with a busy thread while short-lived threads
 * adopted and left the segment (live = frees + 1, every block on the
 * stacks). Now a counted push that finds the page marked by a later
 * abandonment than the one it counted for (abandoned_epoch) counts the
 * free again, there.
 *
 * The window is a few instructions, so the adoption is put there on cue:
 * free_not_owned calls the test hook (HAK_HOOK_FREE_COUNTED) between the
 * count and the push, and the hook has a new thread adopt the segment and
 * exit while the freeing thread waits. Checked each round: the new thread
 * took its block from the segment (so it was adopted and abandoned again),
 * every block keeps its bytes, and once all are freed nothing is live and
 * no segment is abandoned; hak_heap_check finds nothing. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

#define N 64
#define SIZE 64
#define ROUNDS 4

static unsigned char *blocks[N];
static _Thread_local int is_freer;
static atomic_int cue, counted, go, freed, hooked;
static atomic_int adopted, ready;

static void *producer(void *arg) {
  (void)arg;
  for (int i = 0; i < N; i++) {
    REQUIRE((blocks[i] = hak_malloc(SIZE)) != NULL);
    memset(blocks[i], i + 1, SIZE);
  }
  return NULL; /* exits with every block live: the segment is abandoned */
}

/* A new thread: its first malloc finds no segment of its own and adopts the
 * abandoned one; its exit abandons it again. */
static void *adopter(void *arg) {
  (void)arg;
  void *p = hak_malloc(SIZE);
  REQUIRE(p != NULL);
  if (ptr_segment_base(p) == ptr_segment_base(blocks[0]))
    atomic_fetch_add(&adopted, 1);
  hak_free(p);
  return NULL;
}

static void hook(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_FREE_COUNTED || !is_freer || arg != blocks[0] || atomic_load(&hooked))
    return;
  atomic_store(&hooked, 1);
  atomic_store(&counted, 1);
  while (!atomic_load(&go))
    sched_yield();
}

/* Has a heap that allocated before any of the abandonments, so its frees
 * into them only count (no reclaim) until the last. */
static void *freer(void *arg) {
  (void)arg;
  is_freer = 1;
  hak_free(hak_malloc(16));
  atomic_store(&ready, 1); /* its heap is set up before main's hak_stats reads it */
  for (int seen = 0;;) {
    int c;
    while ((c = atomic_load(&cue)) == seen)
      sched_yield();
    if (c < 0)
      return NULL;
    seen = c;
    CHECK_MSG(blocks[0][0] == 1 && blocks[0][SIZE - 1] == 1, "block 0 lost its bytes");
    hak_free(blocks[0]);
    atomic_fetch_add(&freed, 1);
  }
}

int main(void) {
  hak_free(hak_malloc(16)); /* this thread frees the rest: its heap allocated before */
  pthread_t f;
  REQUIRE(pthread_create(&f, NULL, freer, NULL) == 0);
  while (!atomic_load(&ready))
    sched_yield();
  hak_test_hook = hook;
  for (int r = 0; r < ROUNDS; r++) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, producer, NULL) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    struct hak_stats st;
    hak_stats(&st);
    REQUIRE(st.abandoned_segments == 1); /* the producer's segment, alone */
    atomic_store(&hooked, 0);
    atomic_store(&counted, 0);
    atomic_store(&go, 0);
    atomic_store(&cue, r + 1); /* the freer counts its free of block 0 ... */
    for (int spins = 0; !atomic_load(&counted); spins++) {
      if (spins > 20000000) {
        CHECK_MSG(0, "round %d: the free of block 0 never reached the hook", r);
        break;
      }
      sched_yield();
    }
    int before = atomic_load(&adopted);
    REQUIRE(pthread_create(&t, NULL, adopter, NULL) == 0); /* ... the segment changes hands ... */
    REQUIRE(pthread_join(t, NULL) == 0);
    CHECK_MSG(atomic_load(&adopted) == before + 1, "round %d: the new thread did not adopt", r);
    atomic_store(&go, 1); /* ... and the freer pushes the block */
    while (atomic_load(&freed) < r + 1)
      sched_yield();
    for (int i = 1; i < N; i++) {
      CHECK_MSG(blocks[i][0] == i + 1 && blocks[i][SIZE - 1] == i + 1, "block %d lost its bytes",
                i);
      hak_free(blocks[i]);
    }
    hak_stats(&st);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_MSG(st.abandoned_segments == 0,
              "round %d: every block freed, %zu segment(s) still abandoned (a free counted into "
              "the first abandonment was lost to the second)",
              r, st.abandoned_segments);
    if (st.abandoned_segments) { /* an allocating thread adopts it: the next round starts clean */
      REQUIRE(pthread_create(&t, NULL, adopter, NULL) == 0);
      REQUIRE(pthread_join(t, NULL) == 0);
    }
  }
  hak_test_hook = NULL;
  atomic_store(&cue, -1);
  REQUIRE(pthread_join(f, NULL) == 0);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
