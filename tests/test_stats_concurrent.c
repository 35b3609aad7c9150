/* hak_stats may be called while other threads allocate, free each other's
 * blocks and exit (a monitoring thread's metrics); its figures are then a
 * snapshot in motion, exact again once the others are still.
 *
 * It walks, under the global lock, lists other threads change without it: a
 * heap's delayed list (blocks a remote free handed over for a full page)
 * and its thread cache. Until 2026-11-28 it followed every link it read: the
 * owner took the list, reused the block and the program wrote over its link,
 * and hak_stats followed the program's bytes (helper-53's probe: SIGSEGV in
 * each of 3 runs of 10 s, in the delayed-list walk). Now a link is followed
 * only into a registered small segment (mapped while the lock is held: a
 * segment leaves the registry under it before it is unmapped), and each walk
 * is bounded.
 *
 * Each round a new owner thread fills pages of six classes (full pages ask
 * to be told of a remote free), idles while main frees every block (the
 * first free into each full page is handed to the owner's delayed list),
 * allocates as many again (draining the list and writing over the blocks)
 * and exits with them live (abandonment; main's frees of them go into the
 * abandoned segments). Every block is filled with 0xa5 bytes and its size,
 * words that are no mapped address, so a link followed into a reused block
 * points nowhere. Two monitor threads call hak_stats all the while. Must
 * hold: no crash or hang (the watchdog aborts after 60 s), the monitors made
 * at least 20 calls while an owner ran, each call's figures are possible
 * ones (live bytes within the mapped ones, abandoned segments among the
 * segments), every block keeps its bytes, and once the threads are still
 * the figures are exact (the last round's blocks) and hak_heap_check finds
 * nothing. The old code died by SIGSEGV in 6 of 6 runs. */
#include "hak_test.h"

#include <pthread.h>

#define CLASSES 6
#define PER_CLASS 600
#define NBLOCKS (CLASSES * PER_CLASS)
#define MONITORS 2
#define RUN_MS 1500

static const size_t sizes[CLASSES] = {256, 512, 1024, 1536, 2048, 3072};
static unsigned char *blocks[NBLOCKS];
static atomic_int stop, phase, bad_blocks, bad_figures;
static atomic_long stats_calls, stats_calls_busy, rounds;
static atomic_int owner_running;

static void fill(unsigned char *p, size_t n) {
  memset(p, 0xa5, n); /* 0xa5a5...: no mapped address */
  memcpy(p, &n, sizeof n);
}

static void check_and_free(unsigned char *p) {
  size_t n;
  memcpy(&n, p, sizeof n);
  for (size_t i = sizeof n; i < n; i++)
    if (p[i] != 0xa5) {
      if (atomic_fetch_add(&bad_blocks, 1) < 5)
        CHECK_MSG(0, "block %p of %zu bytes: byte %zu is 0x%02x", (void *)p, n, i, p[i]);
      break;
    }
  hak_free(p);
}

static void alloc_all(void) {
  for (int i = 0; i < NBLOCKS; i++) {
    size_t n = sizes[i % CLASSES];
    REQUIRE((blocks[i] = hak_malloc(n)) != NULL);
    fill(blocks[i], n);
  }
}

/* A new thread each round: fills its pages (full pages ask to be told of a
 * remote free), idles while main frees every block (the first free into
 * each full page is handed to this heap's delayed list: one per page), then
 * allocates as many again, which drains that list and writes over the
 * blocks, and exits with them live (its segments abandoned). */
static void *owner(void *arg) {
  alloc_all();
  atomic_store(&phase, 1);
  HAK_SPIN_UNTIL(atomic_load(&phase) == 2, "main did not free this owner's blocks");
  alloc_all();
  atomic_fetch_sub(&owner_running, 1);
  return arg;
}

static void *monitor(void *arg) {
  while (!atomic_load(&stop)) {
    int busy = atomic_load(&owner_running) > 0;
    struct hak_stats st;
    hak_stats(&st);
    /* possible figures, however the counts moved during the call: every
     * live block lies in a mapping it counts, every abandoned segment is
     * one of its segments */
    if (st.live_bytes > st.mapped_bytes || st.abandoned_segments > st.segments) {
      if (atomic_fetch_add(&bad_figures, 1) < 5)
        CHECK_MSG(0, "impossible figures: live bytes %zu, mapped %zu, segments %zu (abandoned %zu)",
                  st.live_bytes, st.mapped_bytes, st.segments, st.abandoned_segments);
    }
    atomic_fetch_add(&stats_calls, 1);
    if (busy && atomic_load(&owner_running) > 0)
      atomic_fetch_add(&stats_calls_busy, 1);
  }
  return arg;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(void) {
  alarm(60);                /* a hang (a walk that never ends) dies by SIGALRM */
  hak_free(hak_malloc(16)); /* main's heap allocated before the owners' abandonments */
  pthread_t m[MONITORS];
  for (int i = 0; i < MONITORS; i++)
    REQUIRE(pthread_create(&m[i], NULL, monitor, NULL) == 0);
  long end = now_ms() + RUN_MS;
  do {
    pthread_t t;
    atomic_store(&phase, 0);
    atomic_store(&owner_running, 1);
    REQUIRE(pthread_create(&t, NULL, owner, NULL) == 0);
    HAK_SPIN_UNTIL(atomic_load(&phase) == 1, "the owner did not fill its pages");
    for (int i = 0; i < NBLOCKS; i++) /* remote frees, into full pages first */
      check_and_free(blocks[i]);
    atomic_store(&phase, 2);
    REQUIRE(pthread_join(t, NULL) == 0);
    atomic_fetch_add(&rounds, 1);
    if (now_ms() >= end)
      break;                          /* the last round's blocks stay live for the still figures */
    for (int i = 0; i < NBLOCKS; i++) /* frees into abandoned segments */
      check_and_free(blocks[i]);
  } while (1);
  atomic_store(&stop, 1);
  for (int i = 0; i < MONITORS; i++)
    REQUIRE(pthread_join(m[i], NULL) == 0);
  hak_test_log("hak_stats calls: %ld (%ld while an owner ran), rounds: %ld\n",
               atomic_load(&stats_calls), atomic_load(&stats_calls_busy), atomic_load(&rounds));
  CHECK_MSG(atomic_load(&stats_calls_busy) >= 20,
            "only %ld hak_stats calls overlapped an owner: nothing was tested",
            atomic_load(&stats_calls_busy));
  /* still: the last round's blocks are exactly what is live */
  size_t bytes = 0;
  for (int i = 0; i < NBLOCKS; i++)
    bytes += hak_usable_size(blocks[i]);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, NBLOCKS);
  CHECK_EQ(st.live_bytes, bytes);
  CHECK_EQ(hak_heap_check(), 0);
  for (int i = 0; i < NBLOCKS; i++)
    check_and_free(blocks[i]);
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
