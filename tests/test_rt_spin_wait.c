/* hakmem's spin-waits must not livelock under real-time priorities.
 *
 * A few places wait for another thread to leave a window a few instructions
 * long: an abandonment waits (holding the global lock) while a freeing
 * thread's heap names the segment (segment_wait_marks); the owner of a full
 * page waits while a remote free hands a block over (TF_NOTIFYING:
 * page_set_notify, page_clear_notify); fork_prepare waits for a heap's lock
 * (heap_lock_wait). Each waited with sched_yield() alone. When the thread in
 * the window has a lower SCHED_FIFO/SCHED_RR priority than the waiter and
 * both can only run on the same CPU, sched_yield() never lets it run (it
 * only yields to threads of the waiter's own priority or higher; RT
 * throttling stops the whole RT class, the thread in the window too), so
 * the waiter spins for ever: a livelock. The wait now ends each round in
 * spin_wait (internal.h), which sleeps after many yields, and a sleeping
 * waiter lets the other thread run.
 *
 * One section per wait, each in a forked child whose threads are pinned:
 * a low-priority SCHED_FIFO thread and a high-priority one share CPU A, the
 * child's main thread (SCHED_OTHER) runs on CPU B. The low thread is put in
 * the window by the test hook (hak_test_hook) and held there busy-waiting
 * on a flag (runnable, as a preempted thread is); then the high thread
 * runs into the wait; main lets the low thread go (a flag, from CPU B) and
 * the high thread must finish within WAIT_S seconds:
 *   - marks: the low thread frees into an abandoned segment and is held
 *     between its mark check and its push (HAK_HOOK_MARK_CHECKED, its heap's
 *     mark_seg naming the segment); the high thread adopts the segment
 *     (its malloc) and exits, abandoning it again: segment_wait_marks.
 *   - notify: the high thread's page of 64 KiB blocks is full, with its
 *     notify request; the low thread frees one of them and is held after
 *     it took the request (HAK_HOOK_NOTIFYING); the high thread exits:
 *     page_clear_notify.
 *   - heap_lock: the low thread's malloc moves its full page to the full
 *     list and is held there (HAK_HOOK_PAGE_FULL), its heap's lock held;
 *     the high thread forks: fork_prepare's heap_lock_wait.
 *   - adopt: the low thread's first malloc adopts an exited thread's
 *     segment and is held after it took the segment, before it cleared
 *     the pages' abandonment marks (HAK_HOOK_ADOPTED); the high thread
 *     frees a block of the segment: free_not_owned waits for the mark to
 *     go. Until 2026-11-28 that wait took and dropped the global lock
 *     (which the adopter does not hold) in a loop that never slept: a
 *     livelock here (mutant free-adopt-wait-never-sleeps).
 * Checked in each: the low thread reached the window, the high thread did
 * not finish while the low one was held (it waited, through SIGUSR1s sent
 * to it every 2 ms, each of which cuts a sleep short), and it finished once
 * the low one was let go; then hak_heap_check. heap_lock also checks errno
 * after the fork: the interrupted sleeps left EINTR there until spin_wait
 * kept errno (3 of 3 runs). Before spin_wait the high
 * thread never finished: the child says so after WAIT_S and exits 1 (the
 * exit kills the spinning thread); the parent also kills a child that
 * outlives its deadline. Where SCHED_FIFO is not allowed (EPERM: no
 * CAP_SYS_NICE, RLIMIT_RTPRIO 0, a container) or fewer than 2 CPUs are
 * usable, or under valgrind (one thread at a time, its own scheduler), the
 * test skips. */
#include "hak_test.h"

#include <pthread.h>
#include <sched.h>

#include "hak_test_internal.h"

#define LOW_PRIO 10
#define HIGH_PRIO 20
#define WAIT_S 5.0   /* the high thread must finish within this once the low one goes */
#define CHILD_S 60.0 /* the parent kills a section's child after this */
#define HELD_MS 100  /* the high thread is in the wait this long before the low one goes */
#define SIZE 64      /* marks: the producer's blocks */
#define N 64         /* ... how many */
/* notify, heap_lock: a page of this class holds 8 blocks (the request: 65536 less the redzone,
 * hak_test.h) */
#define BIG (65536 - hak_test_redzone())
#define BIG_PER_PAGE 8

static int cpu_a, cpu_b;

/* the held thread, where, and on which block or page */
static _Thread_local int is_low;
static _Atomic enum hak_hook_point hold_at = (enum hak_hook_point) - 1;
static void *_Atomic hold_arg;
static atomic_int at_window, go, high_waiting;
/* set once the high thread is joined: only then does the low one exit */
static atomic_int low_may_exit;

static void hook(enum hak_hook_point where, void *arg) {
  if (!is_low || where != atomic_load(&hold_at) || arg != atomic_load(&hold_arg) ||
      atomic_load(&at_window))
    return;
  atomic_store(&at_window, 1);
  /* runnable, as a thread preempted in the window is: it spins */
  while (!atomic_load(&go))
    cpu_relax();
}

static void pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  REQUIRE(sched_setaffinity(0, sizeof set, &set) == 0);
}

/* A thread on `cpu` with SCHED_FIFO priority `prio` (0: SCHED_OTHER).
 * Returns pthread_create's result. */
static int start(pthread_t *t, void *(*fn)(void *), void *arg, int cpu, int prio) {
  pthread_attr_t a;
  REQUIRE(pthread_attr_init(&a) == 0);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  REQUIRE(pthread_attr_setaffinity_np(&a, sizeof set, &set) == 0);
  if (prio) {
    struct sched_param sp = {.sched_priority = prio};
    REQUIRE(pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED) == 0);
    REQUIRE(pthread_attr_setschedpolicy(&a, SCHED_FIFO) == 0);
    REQUIRE(pthread_attr_setschedparam(&a, &sp) == 0);
  }
  int r = pthread_create(t, &a, fn, arg);
  pthread_attr_destroy(&a);
  return r;
}

/* 20 s, well inside CHILD_S (HAK_WAIT_FLAG's 30 s scaled is not, under
 * TSan), and _exit: no exit handler runs while a thread spins at RT
 * priority */
static void wait_flag(atomic_int *v, const char *what) {
  if (!hak_flag_within(v, 20)) {
    FAIL("%s: not within 20 s", what);
    _exit(1); /* the exit kills whatever spins */
  }
}

/* The low thread, its part done, waits (sleeping) for the high thread's
 * join before it exits. Both threads' exits run the sanitizer runtime's
 * thread teardown, which takes spin locks that only ever yield (ASan's
 * StaticSpinMutex, in Quarantine::Drain from AsanThread::Destroy): the
 * high thread, woken from hakmem's wait while the low one, on the same
 * CPU, was inside such a lock in its own exit, spun on it for ever
 * (sched_yield does not yield to a lower priority), a livelock outside
 * hakmem that failed the section after WAIT_S (asan, 2026-11-28: 2 in
 * about 1,800 sections on a loaded machine, the stacks showing just that;
 * 1 in 8 runs of a flake hunt). */
static void low_done(void) {
  wait_flag(&low_may_exit, "the low thread was never let exit");
}

/* The end of every section, on CPU B: the high thread must be waiting (not
 * done) while the low one is held, and done within WAIT_S once it goes. */
static void release_and_join(pthread_t high, const char *name) {
  wait_flag(&high_waiting, "the high-priority thread did not reach its wait");
  /* signals while it waits: each interrupts a sleep of the wait (EINTR),
   * which must neither end the wait early nor leave errno behind */
  for (int i = 0; i < HELD_MS / 2; i++) {
    pthread_kill(high, SIGUSR1);
    hak_sleep_ms(2);
  }
  if (pthread_tryjoin_np(high, NULL) == 0) {
    FAIL("%s: the high-priority thread finished while the low one was still in the window "
         "(it did not wait)",
         name);
    _exit(1);
  }
  double t0 = hak_now();
  atomic_store(&go, 1);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)WAIT_S;
  if (pthread_timedjoin_np(high, NULL, &dl) != 0) {
    FAIL("%s: the high-priority SCHED_FIFO thread did not finish within %.0f s after the "
         "low-priority one on its CPU was let go: it spins in its wait and the low one never "
         "runs (livelock)",
         name, WAIT_S);
    _exit(1); /* the exit kills the spinning thread */
  }
  printf("%s: the high-priority thread finished %.2f ms after the low one was let go\n", name,
         (hak_now() - t0) * 1e3);
  fflush(stdout);
  atomic_store(&low_may_exit, 1);
}

/* ---- marks: segment_wait_marks ---------------------------------------- */
static unsigned char *blocks[N];
static atomic_int low_ready, cue, adopted;

static void *producer(void *arg) {
  for (int i = 0; i < N; i++)
    REQUIRE((blocks[i] = hak_malloc(SIZE)) != NULL);
  return arg; /* exits with every block live: the segment is abandoned */
}

/* allocated before the abandonment, so its free only counts (no reclaim) */
static void *marks_low(void *arg) {
  is_low = 1;
  hak_free(hak_malloc(16));
  atomic_store(&low_ready, 1);
  while (!atomic_load(&cue))
    cpu_relax();
  hak_free(blocks[0]); /* held at the mark check */
  low_done();
  return arg;
}

static void *marks_high(void *arg) {
  void *p = hak_malloc(SIZE); /* adopts the abandoned segment */
  REQUIRE(p != NULL);
  atomic_store(&adopted, ptr_segment_base(p) == ptr_segment_base(blocks[0]));
  hak_free(p);
  atomic_store(&high_waiting, 1);
  return arg; /* the exit abandons it again: waits for the low thread's push */
}

static void marks(void) {
  pthread_t low, high, t;
  hak_free(hak_malloc(16));
  REQUIRE(start(&low, marks_low, NULL, cpu_a, LOW_PRIO) == 0);
  wait_flag(&low_ready, "marks: the low thread did not start");
  REQUIRE(start(&t, producer, NULL, cpu_b, 0) == 0 && pthread_join(t, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments == 1);
  atomic_store(&hold_at, HAK_HOOK_MARK_CHECKED);
  atomic_store(&hold_arg, blocks[0]);
  atomic_store(&cue, 1);
  wait_flag(&at_window, "marks: the low thread's free never reached the hook");
  REQUIRE(start(&high, marks_high, NULL, cpu_a, HIGH_PRIO) == 0);
  release_and_join(high, "marks");
  REQUIRE(pthread_join(low, NULL) == 0);
  CHECK_MSG(atomic_load(&adopted), "marks: the high thread did not adopt the segment");
  for (int i = 1; i < N; i++)
    hak_free(blocks[i]);
  CHECK_ALL_FREED("marks");
}

/* ---- notify: page_clear_notify ----------------------------------------- */
static void *big[BIG_PER_PAGE + 1];
static atomic_int filled, may_exit;

static void *notify_high(void *arg) {
  /* the page of big[0..7] is full: in the full list, its notify request set */
  hak_page_t *pg = hak_fill_full_page(big, BIG_PER_PAGE, BIG);
  REQUIRE(hak_block_page(big[BIG_PER_PAGE - 1]) == pg);
  atomic_store(&filled, 1);
  while (!atomic_load(&may_exit))
    hak_sleep_ms(1); /* sleeps: the low thread on this CPU runs */
  atomic_store(&high_waiting, 1);
  return arg; /* the exit withdraws the request: waits for the hand-over */
}

static void *notify_low(void *arg) {
  is_low = 1;
  hak_free(big[3]); /* held with the page in TF_NOTIFYING */
  low_done();
  return arg;
}

static void notify(void) {
  pthread_t low, high;
  REQUIRE(start(&high, notify_high, NULL, cpu_a, HIGH_PRIO) == 0);
  wait_flag(&filled, "notify: the high thread did not fill its page");
  atomic_store(&hold_at, HAK_HOOK_NOTIFYING);
  atomic_store(&hold_arg, big[3]);
  REQUIRE(start(&low, notify_low, NULL, cpu_a, LOW_PRIO) == 0);
  wait_flag(&at_window, "notify: the low thread's free never reached the hook");
  atomic_store(&may_exit, 1);
  release_and_join(high, "notify");
  REQUIRE(pthread_join(low, NULL) == 0);
  for (int i = 0; i <= BIG_PER_PAGE; i++)
    if (i != 3) /* the low thread's */
      hak_free(big[i]);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_MSG(st.live_blocks == 0, "notify: %zu blocks live after every block was freed",
            st.live_blocks);
  CHECK_EQ(hak_heap_check(), 0);
}

/* ---- heap_lock: fork_prepare's heap_lock_wait -------------------------- */
static atomic_int fork_status = -1;

static void *lock_low(void *arg) {
  is_low = 1;
  for (int i = 0; i < BIG_PER_PAGE; i++)
    REQUIRE((big[i] = hak_malloc(BIG)) != NULL);
  atomic_store(&hold_arg, hak_block_page(big[0]));
  atomic_store(&hold_at, HAK_HOOK_PAGE_FULL);
  /* the page goes to the full list: held there, the heap's lock held */
  REQUIRE((big[BIG_PER_PAGE] = hak_malloc(BIG)) != NULL);
  for (int i = 0; i <= BIG_PER_PAGE; i++)
    hak_free(big[i]);
  low_done();
  return arg;
}

static atomic_int fork_errno = -1;

static void *lock_high(void *arg) {
  atomic_store(&high_waiting, 1);
  errno = 4242;
  pid_t pid = fork(); /* fork_prepare takes every heap's lock */
  atomic_store(&fork_errno, errno);
  if (pid == 0)
    _exit(0);
  int status = -1;
  if (pid > 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  atomic_store(&fork_status, pid > 0 ? status : -1);
  return arg;
}

static void lock_section(void) {
  pthread_t low, high;
  hak_free(hak_malloc(16));
  REQUIRE(start(&low, lock_low, NULL, cpu_a, LOW_PRIO) == 0);
  wait_flag(&at_window, "heap_lock: the low thread's malloc never reached the hook");
  REQUIRE(start(&high, lock_high, NULL, cpu_a, HIGH_PRIO) == 0);
  release_and_join(high, "heap_lock");
  REQUIRE(pthread_join(low, NULL) == 0);
  CHECK_MSG(atomic_load(&fork_status) == 0, "heap_lock: fork's child ended with status %d",
            atomic_load(&fork_status));
  /* the signals interrupted the wait's sleeps: a successful fork leaves
   * errno alone, and so must hakmem's wait inside it (before: EINTR) */
  CHECK_MSG(atomic_load(&fork_errno) == 4242,
            "heap_lock: errno %d after a successful fork whose heap_lock_wait was signalled "
            "(expected 4242, as set before it)",
            atomic_load(&fork_errno));
  CHECK_EQ(hak_heap_check(), 0);
}

/* ---- adopt: a free waiting for an adoption's marks to go ---------------- */
static void *adopt_low(void *arg) {
  is_low = 1;
  void *p = hak_malloc(SIZE); /* a new heap: adopts the abandoned segment, held there */
  REQUIRE(p != NULL);
  atomic_store(&adopted, ptr_segment_base(p) == ptr_segment_base(blocks[0]));
  hak_free(p);
  low_done();
  return arg; /* the exit abandons the segment again */
}

static void *adopt_high(void *arg) {
  atomic_store(&high_waiting, 1);
  hak_free(blocks[0]); /* reads the adopter as the owner: waits for the page's mark to go */
  return arg;
}

static void adopt_section(void) {
  pthread_t low, high, t;
  hak_free(hak_malloc(16));
  REQUIRE(start(&t, producer, NULL, cpu_b, 0) == 0 && pthread_join(t, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments == 1);
  atomic_store(&hold_at, HAK_HOOK_ADOPTED);
  atomic_store(&hold_arg, ptr_segment_base(blocks[0]));
  REQUIRE(start(&low, adopt_low, NULL, cpu_a, LOW_PRIO) == 0);
  wait_flag(&at_window, "adopt: the low thread's malloc never reached the hook");
  REQUIRE(start(&high, adopt_high, NULL, cpu_a, HIGH_PRIO) == 0);
  release_and_join(high, "adopt");
  REQUIRE(pthread_join(low, NULL) == 0);
  CHECK_MSG(atomic_load(&adopted), "adopt: the low thread did not adopt the segment");
  for (int i = 1; i < N; i++)
    hak_free(blocks[i]);
  CHECK_ALL_FREED("adopt");
}

/* ---- driver -------------------------------------------------------------- */
static void on_signal(int sig) {
  (void)sig;
}

static void run_section(void *fn) {
  pin_self(cpu_b);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: a sleep it interrupts fails with EINTR */
  sigemptyset(&sa.sa_mask);
  REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
  atomic_store(&hak_test_hook, hook);
  ((void (*)(void))fn)();
  atomic_store(&hak_test_hook, NULL);
}

static void section(const char *name, void (*fn)(void)) {
  struct hak_child c;
  double t0 = hak_now();
  REQUIRE(hak_run_child(run_section, (void *)fn, CHILD_S, &c));
  if (c.len)
    hak_test_write_(c.out, c.len);
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "section %s: child %s after %.1f s", name,
            hak_child_describe(&c, how, sizeof how), hak_now() - t0);
  hak_child_free(&c);
}

static void *nothing(void *arg) {
  return arg;
}

int main(void) {
  if (hak_test_under_valgrind())
    hak_test_skip("valgrind runs one thread at a time under its own scheduler");
  cpu_set_t set;
  REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
  if (CPU_COUNT(&set) < 2)
    hak_test_skip("needs 2 CPUs, has %d", CPU_COUNT(&set));
  for (cpu_a = 0; !CPU_ISSET(cpu_a, &set); cpu_a++) {
  }
  for (cpu_b = cpu_a + 1; !CPU_ISSET(cpu_b, &set); cpu_b++) {
  }
  pthread_t t;
  int r = start(&t, nothing, NULL, cpu_a, HIGH_PRIO);
  if (r == EPERM)
    hak_test_skip("SCHED_FIFO not permitted (EPERM)");
  REQUIRE(r == 0 && pthread_join(t, NULL) == 0);
  /* the children print to the same stdout: unbuffered, no line is written twice */
  setvbuf(stdout, NULL, _IONBF, 0);
  section("marks", marks);
  section("notify", notify);
  section("heap_lock", lock_section);
  section("adopt", adopt_section);
  return hak_test_done();
}
