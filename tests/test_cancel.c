/* A thread with a cancellation request pending (pthread_cancel, deferred:
 * acted on at the next cancellation point the thread calls, such as write,
 * poll or nanosleep) that calls into hakmem:
 *   - a fatal error it makes is still reported and still ends the process
 *     by SIGABRT: the report's write(2), and the waits of the error path
 *     (large_holds' wait for the large lock, die's wait for another
 *     thread's abort), were cancellation points; the thread unwound there,
 *     silently, and the program went on after its double free (until
 *     2026-11-28: double_free, deep_interior);
 *   - hak_heap_check, whose reports are written under the global lock,
 *     returns with the lock let go: the thread unwound in the write with
 *     the lock held, and every later slow path, thread exit and fork
 *     waited for it for ever (until 2026-11-28: heap_check);
 *   - a thread's exit with the request pending gives its heap up whole
 *     (exit_wait: spin_wait's sleep, the raw system call since it was
 *     written, with no test of that until 2026-11-28).
 * The request is made pending by the thread itself, cancellation disabled
 * around pthread_cancel, so that the thread acts on it at the first
 * cancellation point it reaches, wherever that is. */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

#define MiB ((size_t)1 << 20)

/* A cancellation request of the calling thread, pending. */
static __attribute__((noinline)) void cancel_self(void) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  pthread_cancel(pthread_self());
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
}

/* The thread ran fn to its end or was cancelled: either way the fatal error
 * it was to make went unreported, and the child exits 0 (a failure of
 * EXPECT_ABORT). */
static void run_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, fn, arg) == 0);
  void *res = NULL;
  pthread_join(t, &res);
  fprintf(stderr, "the thread %s, its fatal error unreported\n",
          res == PTHREAD_CANCELED ? "was cancelled" : "returned");
}

/* ---- double_free: the report's write is a cancellation point ---------- */
static void *double_free_thread(void *arg) {
  (void)arg;
  void *p = hak_malloc(64);
  REQUIRE(p != NULL);
  hak_free(p);
  cancel_self();
  hak_free(p);
  return NULL;
}

static void double_free(void *arg) {
  (void)arg;
  run_thread(double_free_thread, NULL);
}

/* ---- deep_interior: large_holds waits (nanosleep) for the large lock ----
 * A pointer 5 MiB into a 10 MiB block: its 4 MiB range is not registered
 * (only the first one is), so err_invalid asks large_holds, which takes the
 * large lock with a trylock and a sleep between tries. The test holds the
 * lock until the thread is seen sleeping there, or gone. */
static _Atomic int interior_tid;

static void *deep_interior_thread(void *p) {
  atomic_store(&interior_tid, (int)syscall(SYS_gettid));
  cancel_self();
  hak_free(p);
  return NULL;
}

static void deep_interior(void *arg) {
  (void)arg;
  unsigned char *b = hak_malloc(10 * MiB);
  REQUIRE(b != NULL);
  pthread_mutex_lock(&hak_large_lock);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, deep_interior_thread, b + 5 * MiB) == 0);
  /* the thread gives up on the lock after 100 ms and aborts all the same
   * (then "not allocated by hakmem"): the lock is let go once it sleeps,
   * so that the error names the pointer for what it is */
  void *res = NULL;
  for (;;) {
    int tid = atomic_load(&interior_tid);
    if (tid && hak_thread_in_nanosleep(tid))
      break;
    if (pthread_tryjoin_np(t, &res) == 0) {
      pthread_mutex_unlock(&hak_large_lock);
      fprintf(stderr, "the thread %s, its fatal error unreported\n",
              res == PTHREAD_CANCELED ? "was cancelled" : "returned");
      return;
    }
    sched_yield();
  }
  pthread_mutex_unlock(&hak_large_lock);
  pthread_join(t, &res);
  fprintf(stderr, "the thread %s, its fatal error unreported\n",
          res == PTHREAD_CANCELED ? "was cancelled" : "returned");
}

/* ---- heap_check: its reports are written under the global lock -------- */
static _Atomic long checked = -1;

/* Not instrumented by ASan: the thread unwinds out of this frame
 * (pthread_testcancel), and an instrumented frame left its stack's shadow
 * poisoned, which ASan's own thread exit then wrote into (a false
 * stack-buffer-overflow in its sigaltstack interceptor). */
__attribute__((no_sanitize("address"))) static void *heap_check_thread(void *arg) {
  (void)arg;
  cancel_self();
  atomic_store(&checked, (long)hak_heap_check());
  pthread_testcancel(); /* the request is acted on here, after the check */
  return NULL;
}

static void heap_check(void) {
  void *p = hak_malloc(64); /* this thread's heap */
  REQUIRE(p != NULL);
  /* a violation for the check to report: this heap's count of what its
   * cache limits grew by, off by one class's worth (put back below) */
  hak_tls_heap->tc_grown += 16;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, heap_check_thread, NULL) == 0);
  void *res = NULL;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(30 * hak_test_slowdown());
  if (pthread_timedjoin_np(t, &res, &until) != 0) {
    FAIL("the thread that called hak_heap_check never ended");
    _exit(1);
  }
  hak_tls_heap->tc_grown -= 16;
  CHECK_PTR_EQ(res, PTHREAD_CANCELED);
  CHECK_MSG(atomic_load(&checked) >= 1,
            "hak_heap_check did not return (%ld): the thread unwound inside it", checked);
  int r = pthread_mutex_trylock(&hak_global_lock);
  CHECK_MSG(r == 0, "the global lock is left held (trylock: %d)", r);
  if (r == 0) {
    pthread_mutex_unlock(&hak_global_lock);
    CHECK_EQ(hak_heap_check(), 0);
    hak_free(p);
  }
}

/* ---- exit_wait: a thread's exit, its request pending, waits in spin_wait
 * A thread that returns from its start routine with a cancellation request
 * pending acts on it at the first cancellation point of its exit, TSD
 * destructors included (glibc), so hakmem's heap abandonment runs with
 * cancellation live. Here the owner of a full page of 64 KiB blocks exits
 * while another thread's free of one of them is held (HAK_HOOK_NOTIFYING)
 * in its hand-over: the exit waits for it in page_clear_notify, the heap's
 * lock held, and sleeps (spin_wait) until the hook sees it sleeping. A
 * sleep that was a cancellation point unwound the exit there: the heap's
 * lock left held (every later fork waits for it for ever), the heap never
 * given up. */
/* a page of this class holds 8 blocks (the request: 65536 less the redzone, hak_test.h) */
#define BIG (65536 - hak_test_redzone())
#define BIG_PER_PAGE 8
static void *big[BIG_PER_PAGE + 1];
static _Atomic int filled, may_exit, owner_tid, hook_ran;
static hak_heap_t *_Atomic owner_heap;
static pthread_t owner;
static void *owner_res;
static int owner_arg; /* what the owner returns */
static int owner_joined;

static void *exit_wait_owner(void *arg) {
  /* the page of big[0..7] is full: in the full list, its notify request set */
  hak_page_t *pg = hak_fill_full_page(big, BIG_PER_PAGE, BIG);
  REQUIRE(hak_block_page(big[BIG_PER_PAGE - 1]) == pg);
  atomic_store(&owner_heap, hak_tls_heap);
  atomic_store(&owner_tid, (int)syscall(SYS_gettid));
  atomic_store(&filled, 1);
  /* yields, never sleeps: the hook waits for its sleep in hakmem */
  HAK_SPIN_UNTIL(atomic_load(&may_exit), NULL);
  cancel_self();
  return arg; /* the exit withdraws the request: waits for the hand-over */
}

static void exit_wait_hook(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_NOTIFYING || arg != big[3] || atomic_load(&hook_ran))
    return;
  atomic_store(&hook_ran, 1);
  atomic_store(&may_exit, 1);
  double deadline = hak_now() + 30 * hak_test_slowdown();
  while (!hak_thread_in_nanosleep(atomic_load(&owner_tid))) {
    if (pthread_tryjoin_np(owner, &owner_res) == 0) {
      owner_joined = 1; /* its exit did not wait for this hand-over */
      return;
    }
    if (hak_now() > deadline) {
      FAIL("the exiting thread neither slept nor ended in 30 s");
      _exit(1);
    }
    sched_yield();
  }
}

static void exit_wait(void) {
  REQUIRE(pthread_create(&owner, NULL, exit_wait_owner, &owner_arg) == 0);
  HAK_WAIT_FLAG(&filled);
  atomic_store(&hak_test_hook, exit_wait_hook);
  hak_free(big[3]); /* held in its hand-over to the owner's heap */
  atomic_store(&hak_test_hook, NULL);
  CHECK(atomic_load(&hook_ran));
  if (!owner_joined)
    REQUIRE(pthread_join(owner, &owner_res) == 0);
  CHECK_MSG(owner_res == (void *)&owner_arg,
            "the exit unwound in its heap's abandonment (result %p, PTHREAD_CANCELED %p)",
            owner_res, PTHREAD_CANCELED);
  hak_heap_t *h = atomic_load(&owner_heap);
  CHECK_MSG(atomic_load(&h->lock.held) == 0, "the exited thread's heap lock is left held");
  CHECK_MSG(h->state == HEAP_FREE, "the exited thread's heap was not given up");
  for (int i = 0; i <= BIG_PER_PAGE; i++)
    if (i != 3)
      hak_free(big[i]);
  CHECK_ALL_FREED("exit_wait");
}

int main(void) {
  EXPECT_ABORT(double_free, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(deep_interior, NULL, "hakmem: invalid free of 0x");
  RUN_SECTION(heap_check);
  RUN_SECTION(exit_wait);
  return hak_test_done();
}
