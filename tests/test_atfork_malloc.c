/* A program's own pthread_atfork handlers may allocate. Handlers registered
 * before hakmem's (here: from a constructor that runs before hakmem's) run
 * after hakmem's prepare, which holds every hakmem lock, and before its
 * parent/child unlock: allocating from them must not deadlock (the locks are
 * no-ops for the forking thread in that window). Found by review: before the
 * fix the prepare-phase malloc below blocked for ever.
 *
 * Also: a bad free in that window is named as anywhere else. A pointer past
 * the first 4 MiB of a large block is looked up in the large-block lists
 * under their lock, which the forking thread holds there: before, the
 * lookup waited 100 ms for it and then called the pointer "not allocated
 * by hakmem" (found by review). */
#include "hak_test.h"

#include <pthread.h>

static void *blocks[3];

static void churn(int slot) {
  /* a small slow path (new class) and a large block: every lock kind */
  void *p = hak_malloc(4000 + (size_t)slot * 16);
  void *q = hak_malloc(300000);
  if (!p || !q)
    _exit(5);
  memset(p, slot, 4000);
  hak_free(q);
  blocks[slot] = p;
}

static volatile int armed;      /* only the fork under test allocates in the handlers */
static unsigned char *bad_free; /* armed == 2: the prepare handler frees this */
static void prep(void) {
  if (armed == 2)
    hak_free(bad_free);
  if (armed)
    churn(0);
}
static void parent(void) {
  if (armed)
    churn(1);
}
static void child(void) {
  if (armed)
    churn(2);
}

__attribute__((constructor(101))) static void register_early(void) {
  if (pthread_atfork(prep, parent, child) != 0)
    abort();
}

static void fork_once(void *arg) {
  (void)arg;
  armed = 1;
  pid_t pid = fork();
  if (pid < 0)
    _exit(6);
  if (pid == 0) {
    armed = 0;
    void *p = hak_malloc(100);
    hak_free(p);
    hak_free(blocks[2]);
    _exit(hak_heap_check() == 0 ? 0 : 3);
  }
  armed = 0;
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
    _exit(7);
  hak_free(blocks[0]);
  hak_free(blocks[1]);
  _exit(WEXITSTATUS(st) == 0 && hak_heap_check() == 0 ? 0 : 8);
}

static void fork_bad_free(void *arg) {
  bad_free = arg;
  armed = 2;
  fork(); /* the prepare handler aborts */
  _exit(9);
}

int main(void) {
  void *warm = hak_malloc(32); /* this thread has a heap before the fork */
  struct hak_child c;
  /* run in a child with a deadline: a deadlock is a failure, not a hang */
  hak_run_child(fork_once, NULL, 20.0, &c);
  char buf[128];
  CHECK_MSG(hak_child_exited(&c, 0), "fork with allocating atfork handlers: %s",
            hak_child_describe(&c, buf, sizeof buf));
  hak_child_free(&c);
  unsigned char *lg = hak_malloc(8 << 20);
  REQUIRE(lg != NULL);
  char want[128];
  snprintf(want, sizeof want, "hakmem: invalid free of %p: not the start of an allocated block\n",
           (void *)(lg + (5 << 20)));
  EXPECT_ABORT(fork_bad_free, lg + (5 << 20), want);
  hak_free(lg);
  hak_free(warm);
  return hak_test_done();
}
