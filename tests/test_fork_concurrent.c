/* Two threads call fork() at the same time while other threads allocate.
 *
 * glibc runs the prepare handlers of concurrent forks at the same time
 * (it drops its atfork lock around each handler). hakmem's fork handlers
 * lock every heap and mark each one locked for the fork; two forkers shared
 * those marks: one skipped heaps the other had marked, whose fork_parent
 * then unlocked them, so the first forked with heaps unlocked or locked by
 * threads that do not exist in its child. Found by a helper: 3-4 of 2000
 * children hung (a heap lock held for ever, or a cycle in the abandoned
 * list), and TSan reported the marks. Now a fork lock lets one fork at a
 * time through the handlers.
 *
 * Each child checks the heap, allocates and frees, checks again and exits;
 * a child that does not finish before the deadline is a failure (killed),
 * not a hang of the test. */
#include "hak_test.h"

#include <pthread.h>

#define NFORKERS 2
#define NWORKERS 2

static atomic_int stop;
static atomic_int forks, failed;
static double deadline_s;

static void *worker(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + 1;
  void *v[512];
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    size_t n = 64 + hak_rand_below(&rng, 448);
    for (size_t i = 0; i < n; i++)
      REQUIRE((v[i] = hak_malloc(16 + hak_rand_below(&rng, 3000))) != NULL);
    for (size_t i = 0; i < n; i++)
      hak_free(v[i]);
    hak_thread_cache_flush(); /* slow paths: the heap lock taken often */
  }
  return NULL;
}

static void *short_lived(void *arg) {
  hak_free(hak_malloc((size_t)(uintptr_t)arg));
  return NULL;
}

/* threads that start and exit: heaps made, abandoned and reused */
static void *churner(void *arg) {
  (void)arg;
  uint64_t rng = 99;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, short_lived,
                           (void *)(uintptr_t)(16 + hak_rand_below(&rng, 500))) == 0);
    pthread_join(t, NULL);
  }
  return NULL;
}

static void child(void) {
  alarm(60); /* a last resort: the parent kills it at its deadline */
  size_t v = hak_heap_check();
  void *q[100];
  for (int i = 0; i < 100; i++)
    if (!(q[i] = hak_malloc(16 + (size_t)i * 37)))
      _exit(4);
  for (int i = 0; i < 100; i++)
    hak_free(q[i]);
  v += hak_heap_check();
  _exit(v ? 3 : 0);
}

static void *forker(void *arg) {
  int n = *(int *)arg;
  for (int f = 0; f < n; f++) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
      child();
    int status = 0;
    int ended = hak_wait_child(pid, deadline_s, &status, atomic_load(&failed) < 5);
    if (ended <= 0) {
      if (atomic_fetch_add(&failed, 1) < 5)
        hak_test_log(ended ? "fork child %d could not be waited for (waitpid, above)\n"
                           : "fork child %d did not finish within %.0f s (a lock held for ever? "
                             "stacks above)\n",
                     (int)pid, deadline_s);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (atomic_fetch_add(&failed, 1) < 5)
        hak_test_log("fork child %d: status %#x (exit 3: heap check, 4: no memory)\n", (int)pid,
                     status);
    }
    atomic_fetch_add(&forks, 1);
  }
  return NULL;
}

int main(void) {
  deadline_s = 10 * (hak_test_slowdown() > 1 ? hak_test_slowdown() : 1);
  int n = (int)hak_iters(150);
  if (n < 20)
    n = 20;
  pthread_t w[NWORKERS], c, f[NFORKERS];
  for (int i = 0; i < NWORKERS; i++)
    REQUIRE(pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
  REQUIRE(pthread_create(&c, NULL, churner, NULL) == 0);
  for (int i = 0; i < NFORKERS; i++)
    REQUIRE(pthread_create(&f[i], NULL, forker, &n) == 0);
  for (int i = 0; i < NFORKERS; i++)
    pthread_join(f[i], NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < NWORKERS; i++)
    pthread_join(w[i], NULL);
  pthread_join(c, NULL);
  CHECK_MSG(atomic_load(&failed) == 0, "%d of %d fork children failed or hung",
            atomic_load(&failed), atomic_load(&forks));
  CHECK_EQ(hak_heap_check(), 0);
  printf("%d forks from %d threads at once, %d failed\n", atomic_load(&forks), NFORKERS,
         atomic_load(&failed));
  return hak_test_done();
}
