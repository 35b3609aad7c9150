/* A thread may allocate after hakmem abandoned its heap at thread exit: from
 * a later round of pthread key destructors or from libc's own cleanup. The
 * block must be valid and freeable anywhere, and no heap may stay behind
 * owned by the dead thread (found by review: each such thread leaked an
 * active heap and the segments it owned).
 *
 * Then two threads alive at once must have a heap each. The exiting
 * thread's TLS heap is reset before its heap is abandoned (heap_thread_done):
 * kept, a later destructor's malloc allocated from the heap already back in
 * the pool and abandoned it a second time, pushing it on the pool twice (a
 * cycle), and every later thread took the same heap; threads one after the
 * other did not notice, two at once shared one heap (its thread cache and
 * queues, without a lock). Mutant thread-done-keeps-tls-heap. */
#include "hak_test.h"

#include <pthread.h>

#define THREADS 64

static pthread_key_t key;
static void *late[THREADS];
static _Atomic int next_slot;

static void destructor(void *v) {
  uintptr_t round = (uintptr_t)v;
  if (round < 4) { /* glibc runs at most 4 rounds (PTHREAD_DESTRUCTOR_ITERATIONS) */
    /* ask for another round: by the last one hakmem's destructor has run and none follows */
    pthread_setspecific(key, (void *)(round + 1));
    return;
  }
  int slot = atomic_fetch_add(&next_slot, 1);
  void *p = hak_malloc(24 + (size_t)slot);
  memset(p, 0x5a, 24);
  late[slot] = p;
}

static void *thread_fn(void *arg) {
  (void)arg;
  void *p = hak_malloc(100); /* the thread gets a heap */
  hak_free(p);
  pthread_setspecific(key, (void *)1);
  return NULL;
}

/* A thread that holds a block until told to exit. */
static atomic_int holders_alive, holders_go;
static void *holder(void *arg) {
  void *p = hak_malloc(100);
  REQUIRE(p != NULL);
  atomic_fetch_add(&holders_alive, 1);
  while (!atomic_load(&holders_go))
    hak_sleep_ms(1);
  hak_free(p);
  return arg;
}

int main(void) {
  if (hak_config_is("tsan"))
    hak_test_skip("ThreadSanitizer tears its thread state down in a key destructor; code in the "
                  "last destructor round crashes inside TSan itself");
  REQUIRE(pthread_key_create(&key, destructor) == 0);
  void *warm = hak_malloc(8);
  struct hak_stats before, after;
  hak_stats(&before);
  for (int i = 0; i < THREADS; i++) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, thread_fn, NULL) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
  }
  CHECK_EQ(atomic_load(&next_slot), THREADS);
  hak_stats(&after);
  CHECK_MSG(after.heaps_active == before.heaps_active,
            "%zu heaps active after %d threads allocated while exiting (%zu before)",
            after.heaps_active, THREADS, before.heaps_active);
  for (int i = 0; i < THREADS; i++) {
    CHECK(late[i] != NULL && ((unsigned char *)late[i])[23] == 0x5a);
    hak_free(late[i]);
  }
  hak_free(warm);
  CHECK_EQ(hak_heap_check(), 0);
  hak_stats(&after);
  CHECK_EQ(after.live_blocks, 0);

  /* two threads at once: a heap each */
  hak_stats(&before);
  pthread_t h1, h2;
  REQUIRE(pthread_create(&h1, NULL, holder, NULL) == 0);
  REQUIRE(pthread_create(&h2, NULL, holder, NULL) == 0);
  for (int i = 0; i < 10000 && atomic_load(&holders_alive) < 2; i++)
    hak_sleep_ms(1);
  REQUIRE(atomic_load(&holders_alive) == 2);
  hak_stats(&after);
  CHECK_MSG(after.heaps_active == before.heaps_active + 2,
            "two threads alive at once have %zu heaps between them (a heap pushed twice on "
            "the pool at an exit?)",
            after.heaps_active - before.heaps_active);
  atomic_store(&holders_go, 1);
  REQUIRE(pthread_join(h1, NULL) == 0 && pthread_join(h2, NULL) == 0);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
