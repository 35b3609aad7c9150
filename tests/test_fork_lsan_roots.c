/* asan build: a fork while another thread registers a LeakSanitizer root
 * region leaves the child able to allocate.
 *
 * The asan build registers every segment and every large block with LSan
 * as a root region (track.h), and unregisters it when it goes. LSan keeps
 * its list of regions under one internal mutex. Until this test hakmem
 * called it outside any lock of its own, so a fork while another thread
 * was inside copied that mutex held into the child, whose next large
 * malloc or free then waited for ever (test_fork in CI: a fork child hung
 * in __lsan_register_root_region; 1 run of that test in 45 here). Now the
 * calls go through a lock fork_prepare takes.
 *
 * Here the window is made wide: the test registers REGIONS root regions
 * of its own first, so each unregister (LSan searches the list from its
 * start; hakmem's are the newest) holds that mutex for a scan of them all.
 * A thread allocates and frees a block aligned to 4 MiB in a loop (such a
 * block is mapped alone and unmapped when freed, never cached: its
 * unregister came after the large lock was let go), in that mutex most of
 * the time, while main forks; each child mallocs (its first: a new segment, a
 * region registered) and frees, and must exit within the deadline. The old
 * code hung in 3 runs of 3, by the 26th fork. */
#include "hak_test.h"

#ifdef HAK_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#define REGIONS 20000
#define BIG ((size_t)64 << 10)
#define ALIGN ((size_t)4 << 20) /* a segment's alignment: mapped alone, never cached */

#ifdef HAK_TEST_ASAN
static atomic_int stop;
static atomic_long churned;
static uint64_t words[REGIONS]; /* the test's own regions: one word each */

static void *churner(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    void *p = hak_aligned_alloc(ALIGN, BIG);
    REQUIRE(p != NULL);
    hak_free(p);
    atomic_fetch_add_explicit(&churned, 1, memory_order_relaxed);
  }
  return NULL;
}

static void child(void *arg) {
  (void)arg;
  void *p = hak_malloc(BIG);     /* main's first: a segment, registered */
  void *q = hak_malloc(BIG * 4); /* a large block, registered */
  if (!p || !q)
    _exit(4);
  hak_free(q); /* unregistered (cached) */
  hak_free(p);
  _exit(0);
}
#endif

int main(void) {
  if (!hak_config_is("asan"))
    hak_test_skip("LeakSanitizer root regions are registered only in the asan build");
#ifdef HAK_TEST_ASAN
  for (int i = 0; i < REGIONS; i++)
    __lsan_register_root_region(&words[i], sizeof words[i]);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, churner, NULL) == 0);
  while (atomic_load(&churned) < 10) /* the loop runs */
    hak_sleep_ms(1);
  const int forks = 60;
  double timeout = 10 * (hak_test_slowdown() > 1 ? hak_test_slowdown() : 1);
  int ok = 0;
  for (int f = 0; f < forks; f++) {
    long before = atomic_load(&churned);
    while (atomic_load(&churned) < before + 2) /* forks land at different points of the loop */
      hak_sleep_ms(0.1);
    int status;
    int ended = hak_fork_wait(child, NULL, timeout, &status);
    if (ended <= 0) {
      FAIL("fork %d: the child's malloc/free did not finish within %.0f s (LSan's "
           "root-region mutex copied held? stacks above)",
           f, timeout);
      break; /* one is enough: each costs the whole deadline */
    }
    if (CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork %d: child status %#x", f,
                  status))
      ok++;
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  for (int i = 0; i < REGIONS; i++) /* LSan's leak check at exit scans the rest */
    __lsan_unregister_root_region(&words[i], sizeof words[i]);
  printf("%d of %d fork children finished (the churning thread did %ld large malloc/free)\n", ok,
         forks, atomic_load(&churned));
#endif
  return hak_test_done();
}
