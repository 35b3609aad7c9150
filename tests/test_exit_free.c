/* A thread's frees after hakmem abandoned its heap at thread exit (from a
 * later pthread key destructor, as a library's per-thread state is freed,
 * or from libc's own cleanup) follow the rules of every other free: the
 * one that frees the last block live in an abandoned segment reclaims the
 * segment, which gives it back (README, Thread exit, rule 3).
 *
 * Before, an exiting thread never reclaimed (it may not make a heap that
 * no destructor would abandon again), so such a last free left the
 * segment abandoned with nothing live: its pages carved and resident,
 * beyond hak_trim's reach (it gives back only the pages that were empty at
 * the abandonment), until some thread's malloc adopted it. Found by a
 * helper's probe: a key destructor that frees the blocks its thread left
 * kept one segment abandoned after every thread was joined. Now the
 * exiting thread reclaims into a heap made for the free and abandons that
 * heap at once, as a malloc there does.
 *
 * Part 1: each thread leaves blocks of several classes to its key
 * destructor, which frees them all (the thread's own segment). Part 2: a
 * thread exits with blocks live; a second thread's destructor frees them
 * (an exited thread's segment). Part 3: the destructor also allocates,
 * reallocates and frees. After each: nothing live, no segment abandoned,
 * no heap left active, hak_heap_check finds nothing. */
#include "hak_test.h"

#include <pthread.h>

#define N 300
#define THREADS 8

static pthread_key_t key;
static unsigned char *left[N];
static atomic_int late_ops;

static void fill_left(void) {
  for (int i = 0; i < N; i++) {
    size_t n = 48 + (size_t)(i % 7) * 200;
    REQUIRE((left[i] = hak_malloc(n)) != NULL);
    memset(left[i], i & 0xff, n);
  }
}

static void free_left(void) {
  for (int i = 0; i < N; i++) {
    size_t n = 48 + (size_t)(i % 7) * 200;
    CHECK_MSG(left[i][0] == (i & 0xff) && left[i][n - 1] == (i & 0xff), "block %d lost its bytes",
              i);
    hak_free(left[i]);
    left[i] = NULL;
  }
}

/* Round 1 asks for a round 2: by then hakmem's own destructor has run,
 * whichever key glibc visits first. */
static void destructor(void *v) {
  uintptr_t what = (uintptr_t)v;
  if (!(what & 1)) {
    pthread_setspecific(key, (void *)(what | 1));
    return;
  }
  free_left();
  if (what & 4) { /* part 3: allocations at exit as well */
    unsigned char *p = hak_malloc(100);
    REQUIRE(p != NULL);
    memset(p, 7, 100);
    REQUIRE((p = hak_realloc(p, 5000)) != NULL);
    CHECK(p[0] == 7 && p[99] == 7);
    hak_free(p);
  }
  atomic_fetch_add(&late_ops, 1);
}

static void *own_blocks(void *arg) {
  fill_left();
  pthread_setspecific(key, arg);
  return NULL;
}

static void *leave_blocks(void *arg) {
  (void)arg;
  fill_left();
  return NULL; /* its segment is abandoned with the blocks live */
}

static void *free_at_exit(void *arg) {
  hak_free(hak_malloc(16)); /* a heap of its own, abandoned before the destructor frees */
  pthread_setspecific(key, arg);
  return NULL;
}

static void check_clean(const char *part, size_t heaps_before) {
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 1); /* main's own block */
  CHECK_MSG(st.abandoned_segments == 0,
            "%s: every block freed at exit, %zu segment(s) still abandoned", part,
            st.abandoned_segments);
  CHECK_MSG(st.heaps_active == heaps_before, "%s: %zu heaps active (%zu before)", part,
            st.heaps_active, heaps_before);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  REQUIRE(pthread_key_create(&key, destructor) == 0);
  void *warm = hak_malloc(8); /* main's heap: it never frees into the segments */
  REQUIRE(warm != NULL);
  struct hak_stats st;
  hak_stats(&st);
  size_t heaps = st.heaps_active;
  pthread_t t;

  for (int i = 0; i < THREADS; i++) { /* part 1 */
    REQUIRE(pthread_create(&t, NULL, own_blocks, (void *)(uintptr_t)2) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
  }
  check_clean("part 1 (the thread's own blocks)", heaps);

  for (int i = 0; i < THREADS; i++) { /* part 2 */
    REQUIRE(pthread_create(&t, NULL, leave_blocks, NULL) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    REQUIRE(pthread_create(&t, NULL, free_at_exit, (void *)(uintptr_t)2) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
  }
  check_clean("part 2 (an exited thread's blocks)", heaps);

  for (int i = 0; i < THREADS; i++) { /* part 3 */
    REQUIRE(pthread_create(&t, NULL, own_blocks, (void *)(uintptr_t)6) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
  }
  check_clean("part 3 (with a malloc and a realloc at exit)", heaps);

  CHECK_EQ(atomic_load(&late_ops), 3 * THREADS);
  hak_free(warm);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
