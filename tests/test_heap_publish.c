/* A new heap is listed active only once it is reset.
 *
 * hak_trim (heap_trim_all) walks every active heap under the global lock and
 * reads its segment lists. A thread's first malloc takes a heap struct
 * (heap_alloc_struct), resets it and lists it active, all under that lock;
 * listed first and reset after the lock is released, the new thread writes
 * the fields another thread's hak_trim may be reading. That window is a few
 * instructions after the thread's first allocation, so the trim is put
 * there on cue: heap_alloc_struct calls the test hook (HAK_HOOK_HEAP_PUBLISHED)
 * once the heap is listed and the lock released, and the hook has a
 * trimmer thread run hak_trim while the new thread waits.
 *
 * The two threads hand over with relaxed stores only, which give TSan no
 * happens-before edge (whatever order the waits load with): the trim is
 * ordered before the new thread's later writes only by the global lock, as
 * in a real program. So under TSan a reset after the listing is a data
 * race report (the mutant heap-active-before-reset; test_mt_smoke part 5
 * saw it by chance, in 3 of 4 runs). In every build: the trim ran in the
 * window, the new thread's allocations work, and hak_heap_check finds
 * nothing. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

static _Thread_local int is_new_thread;
static atomic_int go, done, hooked;

static void *trimmer(void *arg) {
  (void)arg;
  HAK_WAIT_FLAG(&go);
  hak_trim(0);
  atomic_store_explicit(&done, 1, memory_order_relaxed);
  return NULL;
}

static void hook(enum hak_hook_point where, void *arg) {
  (void)arg;
  if (where != HAK_HOOK_HEAP_PUBLISHED || !is_new_thread || atomic_load(&hooked))
    return;
  atomic_store(&hooked, 1);
  atomic_store_explicit(&go, 1, memory_order_relaxed);
  HAK_WAIT_FLAG_MSG(&done, "the trimmer's hak_trim did not return");
}

static void *new_thread(void *arg) {
  (void)arg;
  is_new_thread = 1;
  unsigned char *p[64];
  for (int i = 0; i < 64; i++) {
    p[i] = hak_malloc(24 + 40 * (size_t)i);
    REQUIRE(p[i] != NULL);
    memset(p[i], i, 24 + 40 * (size_t)i);
  }
  for (int i = 0; i < 64; i++) {
    CHECK_MSG(p[i][0] == i && p[i][23 + 40 * i] == i, "block %d lost its bytes", i);
    hak_free(p[i]);
  }
  return NULL;
}

int main(void) {
  void *keep = hak_malloc(100); /* this thread's heap exists before the hook */
  REQUIRE(keep != NULL);
  pthread_t tr, nt;
  REQUIRE(pthread_create(&tr, NULL, trimmer, NULL) == 0);
  hak_test_hook = hook;
  REQUIRE(pthread_create(&nt, NULL, new_thread, NULL) == 0);
  REQUIRE(pthread_join(nt, NULL) == 0);
  hak_test_hook = NULL;
  CHECK_MSG(atomic_load(&hooked), "the new thread's heap was never published through the hook");
  atomic_store(&go, 1); /* without the hook, the trimmer still waits: a FAIL, not a hang */
  REQUIRE(pthread_join(tr, NULL) == 0);
  hak_free(keep);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
