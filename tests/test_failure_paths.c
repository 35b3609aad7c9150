/* Fatal errors (docs/SPEC-bad-input.md, "Fatal errors"): each misuse runs in a
 * forked child that must die by SIGABRT after writing the exact one-line
 * message, including the offending address as 0x<lowercase hex>. The blocks
 * are allocated by the parent before the fork, so the parent knows every
 * address it expects to see. */
#include "hak_test.h"

#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)

static char global_buf[64] __attribute__((aligned(16)));

struct two {
  void *p;
  size_t n;
};

/* the class (the block size) a request of n bytes takes: with the asan
 * and valgrind builds' redzones, the request and 16 bytes (hak_test.h) */
static size_t class_of(size_t n) {
  return hak_test_small_usable(n) + hak_test_redzone();
}

/* "0x..." as the SPEC prints it; glibc's %p is exactly that for non-NULL pointers. */
static char *fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static char *fmt(char *buf, size_t n, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, n, f, ap);
  va_end(ap);
  return buf;
}

/* ---- child bodies ---------------------------------------------------------------------- */

static void do_free_twice(void *p) {
  hak_free(p);
  hak_free(p);
}

static void do_free(void *p) {
  hak_free(p);
}

/* free of p while another thread holds the large-block lock, until the
 * free is seen waiting for it (err_lock_wait's sleeps; past 10 s scaled
 * nothing was tested, and the child says so and exits 3). Until 2026-11-28 the hold was a fixed 20
 * ms: a free that came later found the lock free, and the wait went untested. */
static atomic_int lock_taken, freer_tid;
static void *hold_large_lock(void *arg) {
  (void)arg;
  pthread_mutex_lock(&hak_large_lock);
  atomic_store(&lock_taken, 1);
  double end = hak_now() + 10 * hak_test_slowdown();
  while (!hak_thread_in_nanosleep(atomic_load(&freer_tid)))
    if (hak_now() > end) { /* the free never waited: nothing tested, said so */
      hak_test_log("do_free_lock_held: the free never waited for the lock\n");
      _exit(3);
    } else
      sched_yield();
  pthread_mutex_unlock(&hak_large_lock);
  return NULL;
}
/* free of p while this very thread holds the large-block lock (a free
 * from a signal handler that interrupted a large call, say): the error
 * path gives the lock up after a while, and names p as best it can */
static void do_free_self_locked(void *p) {
  pthread_mutex_lock(&hak_large_lock);
  hak_free(p);
}
static void do_free_lock_held(void *p) {
  atomic_store(&freer_tid, (int)gettid());
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, hold_large_lock, NULL) == 0);
  HAK_SPIN_UNTIL(atomic_load(&lock_taken), NULL); /* not asleep: hold_large_lock waits for that */
  hak_free(p);
}

/* free, then free_sized of the same block: a double free as well */
static void do_free_then_free_sized(void *p) {
  size_t n = hak_usable_size(p);
  hak_free(p);
  hak_free_sized(p, n);
}

/* 64 large blocks that the cache does not keep (4 MiB-aligned: unmapped
 * at once) freed, then the `k`-th of them (counted back from the last)
 * freed again: hakmem remembers the last 64 unmapped blocks (a ring), so
 * each must still be named a double free, not "not allocated". */
#define UNMAPPED 64
static void *unmapped[UNMAPPED];
static void do_free_unmapped_again(void *arg) {
  size_t k = (size_t)(uintptr_t)arg;
  for (int i = 0; i < UNMAPPED; i++)
    hak_free(unmapped[i]);
  hak_free(unmapped[UNMAPPED - 1 - k]);
}

static void *thread_free(void *p) {
  hak_free(p);
  return NULL;
}

static void run_thread_free(void *p) {
  pthread_t t;
  if (pthread_create(&t, NULL, thread_free, p) != 0)
    _exit(3);
  pthread_join(t, NULL);
}

/* Thread A frees, then thread B frees again (neither is the owner). */
static void do_cross_thread_double_free(void *p) {
  run_thread_free(p);
  run_thread_free(p);
}

/* The owner frees, then another thread frees again. */
static void do_local_then_remote_free(void *p) {
  hak_free(p);
  run_thread_free(p);
}

/* Another thread frees, then the owner frees again. */
static void do_remote_then_local_free(void *p) {
  run_thread_free(p);
  hak_free(p);
}

static void do_realloc_freed(void *p) {
  hak_free(p);
  void *q = hak_realloc(p, 100);
  hak_test_log("realloc of a freed block returned %p\n", q);
}

static void do_realloc(void *p) {
  void *q = hak_realloc(p, 100);
  hak_test_log("realloc returned %p\n", q);
}

/* The same with sizes its block would hold in place (realloc's fast path:
 * it must make the same checks). */
static void do_realloc_fits(void *p) {
  void *q = hak_realloc(p, 40);
  hak_test_log("realloc returned %p\n", q);
}

static void do_realloc_freed_fits(void *p) {
  hak_free(p);
  void *q = hak_realloc(p, 40);
  hak_test_log("realloc of a freed block returned %p\n", q);
}

static void do_usable_size(void *p) {
  size_t u = hak_usable_size(p);
  hak_test_log("usable_size returned %zu\n", u);
}

static void do_usable_size_freed(void *p) {
  hak_free(p);
  size_t u = hak_usable_size(p);
  hak_test_log("usable_size of a freed block returned %zu\n", u);
}

/* A freed large block whose mapping the cache keeps: still registered, its
 * header marked freed, so resolve()'s check of that mark is all that names
 * it (free's exchange of the mark is never reached: usable_size answered
 * the cached size, a growing realloc resized the cached mapping in place
 * and handed it out). The premise checked: the mapping is still there. */
static void free_large_cached(void *p) {
  hak_free(p);
  if (registry_kind(p) == REG_NONE) {
    hak_test_log("the freed large block %p was not cached\n", p);
    _exit(3);
  }
}

static void do_usable_size_freed_cached(void *p) {
  free_large_cached(p);
  size_t u = hak_usable_size(p);
  hak_test_log("usable_size of a freed cached block returned %zu\n", u);
}

static void do_realloc_freed_cached(void *p) {
  free_large_cached(p);
  void *q = hak_realloc(p, 2 << 20);
  hak_test_log("realloc of a freed cached block returned %p\n", q);
}

static void do_free_sized(void *arg) {
  struct two *t = arg;
  hak_free_sized(t->p, t->n);
}

struct three {
  void *p;
  size_t a, n;
};
static void do_free_aligned_sized(void *arg) {
  struct three *t = arg;
  hak_free_aligned_sized(t->p, t->a, t->n);
}

/* realloc moves the block; freeing the old pointer again is a double free. */
static void do_free_after_realloc(void *p) {
  void *q = hak_realloc(p, 4000);
  if (q == p)
    _exit(4);
  hak_free(p);
}

/* Not fatal: the child must exit normally (control case). */
static void do_valid_frees(void *arg) {
  struct two *t = arg;
  hak_free_sized(t->p, t->n);
  void *q = hak_malloc(40);
  hak_free(q);
}

/* A write after free into the free marker of a block in the thread's
 * cache, found by the debug build when the block leaves the cache: handed
 * out again by malloc (n == 0) or given back to its page by a flush
 * (n == 1); or a write into a block on its page's free list (a flush put
 * it there), found when malloc takes it off that list (n == 2; that check
 * of page_pop's was not tested). */
static void do_write_after_free(void *arg) {
  struct two *t = arg;
  uintptr_t *b = t->p;
  hak_free(b);
  if (t->n == 2)
    hak_thread_cache_flush();
  b[1] ^= 1;
  if (t->n == 1)
    hak_thread_cache_flush();
  else if (t->n == 0 && hak_malloc(40) == NULL)
    _exit(4);
  for (int i = 0; t->n == 2 && i < 100000; i++) {
    void *q = hak_malloc(40); /* the page's list, from its head: b comes up */
    if (q == NULL)
      _exit(4);
    if (q == (void *)b)
      break;
  }
  _exit(3); /* not found */
}

/* A fatal error's line written to an fd 2 that takes it only after a
 * while, or not at all: a full non-blocking pipe (STDERR_NONBLOCKING), a
 * full pipe and a timer signal that interrupts the write (no SA_RESTART:
 * STDERR_INTERRUPTED), a pipe whose reader has gone (STDERR_READER_GONE),
 * a full non-blocking pipe nobody empties (STDERR_STUCK: the line is given
 * up after a while, and the process still aborts; it must not wait for
 * ever).
 * A grandchild double-frees the block with that fd 2; this child empties
 * the pipe once the grandchild is in its free, passes on what follows the
 * filler to its own stderr, and dies by the signal the grandchild died by.
 * Until 2026-11-28 msg_flush gave the line up at the first failed write
 * (EAGAIN, EINTR: the line lost), and a closed pipe's SIGPIPE ended the
 * process instead of the SIGABRT README promises. */
enum { STDERR_NONBLOCKING, STDERR_INTERRUPTED, STDERR_READER_GONE, STDERR_STUCK };
static int stderr_mode;
static void on_timer(int sig) {
  (void)sig;
}
static void do_free_twice_hard_stderr(void *p) {
  int out[2], sync[2];
  REQUIRE(pipe(out) == 0 && pipe(sync) == 0);
  if (stderr_mode == STDERR_READER_GONE)
    close(out[0]);
  pid_t g = fork();
  REQUIRE(g >= 0);
  if (g == 0) {
    if (stderr_mode != STDERR_READER_GONE)
      close(out[0]);
    close(sync[0]);
    dup2(out[1], 2);
    close(out[1]);
    if (stderr_mode != STDERR_READER_GONE) {
      int fl = fcntl(2, F_GETFL);
      fcntl(2, F_SETFL, fl | O_NONBLOCK);
      static char fill[4096];
      memset(fill, '.', sizeof fill);
      while (write(2, fill, sizeof fill) > 0) {
      }
      while (write(2, fill, 1) > 0) { /* full to the last byte */
      }
      if (stderr_mode == STDERR_INTERRUPTED) {
        fcntl(2, F_SETFL, fl);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_timer; /* no SA_RESTART: a blocked write returns EINTR */
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = {{0, 5000}, {0, 5000}};
        setitimer(ITIMER_REAL, &it, NULL);
      }
    }
    if (write(sync[1], "g", 1) != 1)
      _exit(5);
    hak_free(p);
    hak_free(p);
    _exit(0);
  }
  close(out[1]);
  close(sync[1]);
  char c;
  if (read(sync[0], &c, 1) != 1)
    _exit(6);
  int st;
  if (stderr_mode == STDERR_STUCK) /* emptied only once the grandchild is gone */
    while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
    }
  else { /* until the grandchild is in its write or poll, or gone (the old
          * code gave up at once); before: a fixed 100 ms, after which a
          * loaded machine's grandchild might not have written yet, and the
          * old code passed */
    double end = hak_now() + 10 * hak_test_slowdown();
    for (;;) {
      long nr = hak_task_syscall(g);
      if (nr == SYS_write || nr == SYS_ppoll || nr == -2 || hak_now() > end ||
#ifdef SYS_poll /* not on aarch64, where poll() is ppoll */
          nr == SYS_poll ||
#endif
          false) {
        if (stderr_mode == STDERR_INTERRUPTED) /* its timer (5 ms) interrupts the write */
          hak_sleep_ms(50 * hak_test_slowdown());
        break;
      }
      hak_sleep_ms(1); /* -2: gone, or exited and not reaped (a zombie) */
    }
  }
  char buf[4096];
  ssize_t r;
  while (stderr_mode != STDERR_READER_GONE && (r = read(out[0], buf, sizeof buf)) > 0) {
    ssize_t i = 0;
    while (i < r && buf[i] == '.')
      i++;
    if (i < r && write(2, buf + i, (size_t)(r - i)) < 0)
      _exit(7);
  }
  while (stderr_mode != STDERR_STUCK && waitpid(g, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFSIGNALED(st)) {
    hak_test_log("the grandchild exited %d\n", WEXITSTATUS(st));
    _exit(8);
  }
  signal(WTERMSIG(st), SIG_DFL);
  raise(WTERMSIG(st));
  _exit(9);
}

/* In a SIGABRT handler: waits until the `n` threads `tids` all sleep
 * (die()'s wait for the end), 10 s (scaled) at most; past that nothing was
 * tested, which the child says, and exits 3. */
static int all_asleep(atomic_int *tids, int n) {
  for (int i = 0; i < n; i++)
    if (!hak_thread_in_nanosleep(atomic_load(&tids[i])))
      return 0;
  return 1;
}
static void wait_asleep(atomic_int *tids, int n, const char *who) {
  double end = hak_now() + 10 * hak_test_slowdown();
  while (!all_asleep(tids, n))
    if (hak_now() > end) {
      hak_test_log("%s never slept\n", who);
      _exit(3);
    } else
      sched_yield();
}

/* The second (or third) thread of these tests: publishes its tid in *tid,
 * waits for *go (A's SIGABRT handler), then double-frees p. */
static void double_free_on_cue(atomic_int *tid, atomic_int *go, void *p) {
  atomic_store(tid, (int)gettid());
  HAK_SPIN_UNTIL(atomic_load(go), NULL); /* not asleep: A waits for this thread's sleep */
  hak_free(p);
  hak_free(p);
}

/* Installs handler for SIGABRT (sigaction: no SA_RESETHAND). */
static void on_sigabrt(void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  REQUIRE(sigaction(SIGABRT, &sa, NULL) == 0);
}

/* In A's SIGABRT handler: lets the other threads go (*go), waits until the
 * `n` threads `tids` sleep in die()'s wait, says "A recovers" and recovers
 * A with siglongjmp to env. */
__attribute__((noreturn)) static void a_recovers(sigjmp_buf env, atomic_int *go, atomic_int *tids,
                                                 int n, const char *who) {
  atomic_store(go, 1);
  wait_asleep(tids, n, who);
  static const char says[] = "A recovers\n";
  if (write(2, says, sizeof says - 1) < 0)
    _exit(4);
  siglongjmp(env, 1);
}

/* Two threads' fatal errors at once: one line. Thread A double-frees;
 * this SIGABRT handler, which runs in A once A's line is written (as a
 * crash reporter's would), lets thread B double-free another block, and
 * returns once B sleeps (abort then ends the process): in die()'s wait for
 * the end, or, had B written its line and aborted, in this handler. B's
 * line would be a second one: B must wait for the end instead (until
 * 2026-11-28 both lines were written). Before, the handler returned after
 * a fixed 300 ms, in which a loaded machine might not run B at all. */
static atomic_int abrt_handled, b_tid;
static void on_abrt(int sig) {
  (void)sig;
  if (atomic_exchange(&abrt_handled, 1)) { /* B's own abort (the old code): A sees it sleep */
    for (;;) {
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL);
    }
  }
  wait_asleep(&b_tid, 1, "do_two_errors: thread B");
}
static void *second_error(void *p) {
  double_free_on_cue(&b_tid, &abrt_handled, p);
  return NULL;
}
static void do_two_errors(void *arg) {
  struct two *t = arg; /* t->p: A's block; t->n: B's, as an address */
  signal(SIGABRT, on_abrt);
  pthread_t b;
  REQUIRE(pthread_create(&b, NULL, second_error, (void *)t->n) == 0);
  hak_free(t->p);
  hak_free(t->p);
}

/* Two threads' fatal errors, the first one's abort survived: A
 * double-frees; this SIGABRT handler, in A, lets thread B double-free
 * another block, waits until B waits for A's end (die()'s sleep), says
 * "A recovers" and recovers A with siglongjmp. B must notice and report
 * at once (its line after A's "recovers", not before: while A was in its
 * handler B waited), then end the process by SIGABRT (its own abort's
 * handler restores the default action and returns). Until 2026-11-28 B
 * waited its full 10 s first: A's survival left no trace. */
static sigjmp_buf rec_env;
static atomic_int rec_armed, rec_go, rec_b_tid;
static void on_abrt_recover(int sig) {
  (void)sig;
  if (!atomic_exchange(&rec_armed, 0)) { /* B's abort: the process ends */
    signal(SIGABRT, SIG_DFL);
    return;
  }
  a_recovers(rec_env, &rec_go, &rec_b_tid, 1, "do_two_errors_recovered: thread B");
}
static void *second_error_after_recovery(void *p) {
  double_free_on_cue(&rec_b_tid, &rec_go, p);
  return NULL;
}
static void do_two_errors_recovered(void *arg) {
  struct two *t = arg; /* t->p: A's block; t->n: B's, as an address */
  on_sigabrt(on_abrt_recover);
  pthread_t b;
  REQUIRE(pthread_create(&b, NULL, second_error_after_recovery, (void *)t->n) == 0);
  if (sigsetjmp(rec_env, 1) == 0) {
    atomic_store(&rec_armed, 1);
    hak_free(t->p);
    hak_free(t->p);
    _exit(5); /* not reached: the double free aborts */
  }
  for (int i = 0; i < 60; i++) { /* A goes on; B's abort ends the process */
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
  }
  _exit(6);
}

/* Three threads' fatal errors, the first one's abort survived: A
 * double-frees; this SIGABRT handler, in A, lets B and C double-free a
 * block each, waits until both wait for A's end, says "A recovers" and
 * recovers A (siglongjmp). One of B and C then writes its line and
 * aborts; its SIGABRT handler here stands for a crash reporter at work
 * (up to 1 s): the other must wait for that end, not write a
 * second line. Were it to write it (the code until 2026-11-28: every
 * waiting thread reported once A was seen recovered), its own abort comes
 * here too, and the crash reporter stops waiting. */
static sigjmp_buf rec3_env;
static atomic_int rec3_aborts, rec3_go, rec3_tid[2], rec3_other;
static void on_abrt_three(int sig) {
  (void)sig;
  int n = atomic_fetch_add(&rec3_aborts, 1);
  if (n == 0) /* A */
    a_recovers(rec3_env, &rec3_go, rec3_tid, 2, "do_three_errors_recovered: threads B and C");
  if (n == 1) {                 /* the first of B and C to report: its crash report */
    double end = hak_now() + 1; /* not scaled: the other's wait is 10 s at most */
    while (hak_now() < end && !atomic_load(&rec3_other))
      hak_sleep_ms(5);
    signal(SIGABRT, SIG_DFL);
    return; /* abort ends the process */
  }
  atomic_store(&rec3_other, 1); /* the other one reported too (a bug) */
  for (;;)
    hak_sleep_ms(1000);
}
static void *third_error(void *arg) {
  void **p = arg;
  double_free_on_cue(&rec3_tid[p[1] != NULL], &rec3_go, p[0]);
  return NULL;
}
static void do_three_errors_recovered(void *arg) {
  void **blocks = arg; /* A's, B's and C's blocks */
  on_sigabrt(on_abrt_three);
  static void *b_arg[2], *c_arg[2];
  b_arg[0] = blocks[1];
  c_arg[0] = blocks[2];
  c_arg[1] = c_arg; /* C's tid goes to rec3_tid[1] */
  pthread_t b, c;
  REQUIRE(pthread_create(&b, NULL, third_error, b_arg) == 0);
  REQUIRE(pthread_create(&c, NULL, third_error, c_arg) == 0);
  if (sigsetjmp(rec3_env, 1) == 0) {
    hak_free(blocks[0]);
    hak_free(blocks[0]);
    _exit(5); /* not reached: the double free aborts */
  }
  for (int i = 0; i < 60; i++) /* A goes on; B's or C's abort ends the process */
    hak_sleep_ms(1000);
  _exit(6);
}

/* ---- the cases ---------------------------------------------------------------------- */

static void expect_not_allocated(const char *op, void (*fn)(void *), void *p) {
  char want[256];
  fmt(want, sizeof want, "hakmem: invalid %s of %p: not allocated by hakmem\n", op, p);
  EXPECT_ABORT(fn, p, want);
}

int main(void) {
  char want[256];
  size_t c48 = class_of(40), c64 = class_of(64); /* 48 and 64; 64 and 80 with redzones */
  CHECK_EQ(c48, hak_test_redzone() ? 64 : 48);
  CHECK_EQ(c64, hak_test_redzone() ? 80 : 64);

  /* Double frees of small blocks, same thread and across threads. */
  void *p = hak_malloc(40);
  REQUIRE(p != NULL);
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", p, c48);
  EXPECT_ABORT(do_free_twice, p, want);
  EXPECT_ABORT(do_cross_thread_double_free, p, want);
  EXPECT_ABORT(do_local_then_remote_free, p, want);
  EXPECT_ABORT(do_remote_then_local_free, p, want);

  /* A block in the middle of a busy page, with freed neighbours on its list. */
  void *many[64];
  for (int i = 0; i < 64; i++) {
    many[i] = hak_malloc(200);
    REQUIRE(many[i] != NULL);
  }
  for (int i = 0; i < 64; i += 2)
    hak_free(many[i]);
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", many[33], class_of(200));
  EXPECT_ABORT(do_free_twice, many[33], want);
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", many[33], class_of(200));
  EXPECT_ABORT(do_cross_thread_double_free, many[33], want);

  /* The old pointer of a moved realloc is freed. */
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", p, c48);
  EXPECT_ABORT(do_free_after_realloc, p, want);

  /* free, then free_sized: the same message (not "free_sized of freed block") */
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", p, c48);
  EXPECT_ABORT(do_free_then_free_sized, p, want);

  /* A second free after the block's page was emptied and given back: the
   * memory holds no block any more, and the free is named for what it finds
   * there (README, Bad input: a double free is named while the page still
   * holds the block's class). */
  enum { NREL = 5000 };
  void **rel = calloc(NREL, sizeof *rel);
  REQUIRE(rel != NULL);
  for (int i = 0; i < NREL; i++)
    REQUIRE((rel[i] = hak_malloc(40)) != NULL);
  for (int i = 0; i < NREL; i++)
    hak_free(rel[i]);
  hak_thread_cache_flush(); /* the pages are empty: all but one are given back */
  void *gone = NULL;
  for (int i = 0; i < NREL && !gone; i++) {
    hak_segment_t *seg = ptr_segment_base(rel[i]);
    if (registry_kind(seg) == REG_SMALL &&
        !slice_is_block_start(ptr_slice_entry(seg, rel[i]), rel[i]))
      gone = rel[i];
  }
  free(rel);
  CHECK_MSG(gone != NULL, "no page of 5000 freed 40-byte blocks was given back");
  if (gone) {
    fmt(want, sizeof want, "hakmem: invalid free of %p: not the start of an allocated block\n",
        gone);
    EXPECT_ABORT(do_free, gone, want);
  }

  /* ... with an fd 2 that is hard to write to (do_free_twice_hard_stderr) */
  static const int hard[] = {STDERR_NONBLOCKING, STDERR_INTERRUPTED, STDERR_READER_GONE,
                             STDERR_STUCK};
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", p, c48);
  for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++) {
    stderr_mode = hard[i];
    /* with the reader gone or stuck, the line goes nowhere: SIGABRT (not
     * SIGPIPE, not a hang) is all there is */
    int lost = stderr_mode == STDERR_READER_GONE || stderr_mode == STDERR_STUCK;
    EXPECT_ABORT(do_free_twice_hard_stderr, p, lost ? "" : want);
  }

  /* ... by two threads at once (do_two_errors): A's line, and no other */
  void *q2 = hak_malloc(40);
  REQUIRE(q2 != NULL);
  struct two both = {p, (size_t)(uintptr_t)q2};
  struct hak_child two_c;
  REQUIRE(hak_run_child(do_two_errors, &both, 60, &two_c));
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", p, c48);
  const char *first_line = two_c.out ? strstr(two_c.out, "hakmem: ") : NULL;
  char two_how[128];
  CHECK_MSG(hak_child_signaled(&two_c, SIGABRT) && first_line &&
                strncmp(first_line, want, strlen(want)) == 0 && !strstr(first_line + 1, "hakmem: "),
            "two threads' double frees: wanted SIGABRT and the one line\n  %sgot: %s, stderr:\n%s",
            want, hak_child_describe(&two_c, two_how, sizeof two_how), two_c.out ? two_c.out : "");
  hak_child_free(&two_c);

  /* ... and when A's SIGABRT handler recovers A (siglongjmp): B's line at
   * once, after A's, and B's abort ends the process (do_two_errors_recovered) */
  void *q3 = hak_malloc(40);
  REQUIRE(q3 != NULL);
  struct two recovered = {p, (size_t)(uintptr_t)q3};
  double rec_start = hak_now();
  REQUIRE(hak_run_child(do_two_errors_recovered, &recovered, 60, &two_c));
  double rec_took = hak_now() - rec_start;
  char want_b[256];
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", p, c48);
  fmt(want_b, sizeof want_b, "hakmem: double free of %p (size class %zu)\n", q3, c48);
  const char *a_line = two_c.out ? strstr(two_c.out, want) : NULL;
  const char *recovers = a_line ? strstr(a_line, "A recovers\n") : NULL;
  const char *b_line = recovers ? strstr(recovers, want_b) : NULL;
  CHECK_MSG(hak_child_signaled(&two_c, SIGABRT) && b_line && !strstr(b_line + 1, "hakmem: "),
            "a second thread's double free after the first's abort was survived: wanted SIGABRT "
            "and, in order, A's line, \"A recovers\", B's line\n  %s  %sgot: %s, stderr:\n%s",
            want, want_b, hak_child_describe(&two_c, two_how, sizeof two_how),
            two_c.out ? two_c.out : "");
  /* B no longer waits out die()'s 10 s for an end that is not coming */
  CHECK_MSG(rec_took < 5, "the second error took %.1f s after the first's abort was survived",
            rec_took);
  hak_child_free(&two_c);

  /* ... and with a third thread: once A recovered, one of B and C reports,
   * and the other waits for that one's end (do_three_errors_recovered) */
  void *q4 = hak_malloc(40), *q5 = hak_malloc(40);
  REQUIRE(q4 != NULL && q5 != NULL);
  void *three[3] = {p, q4, q5};
  REQUIRE(hak_run_child(do_three_errors_recovered, three, 60, &two_c));
  char want_a[256];
  fmt(want_a, sizeof want_a, "hakmem: double free of %p (size class %zu)\n", p, c48);
  fmt(want, sizeof want, "hakmem: double free of %p (size class %zu)\n", q4, c48);
  fmt(want_b, sizeof want_b, "hakmem: double free of %p (size class %zu)\n", q5, c48);
  /* A's line, "A recovers", then B's or C's, and no other */
  const char *l1 = two_c.out ? strstr(two_c.out, "hakmem: ") : NULL;
  const char *l2 = l1 ? strstr(l1 + 1, "hakmem: ") : NULL;
  recovers = l1 ? strstr(l1, "A recovers\n") : NULL;
  CHECK_MSG(
      hak_child_signaled(&two_c, SIGABRT) && l1 && strncmp(l1, want_a, strlen(want_a)) == 0 &&
          recovers && l2 > recovers &&
          (strncmp(l2, want, strlen(want)) == 0 || strncmp(l2, want_b, strlen(want_b)) == 0) &&
          !strstr(l2 + 1, "hakmem: "),
      "three threads' double frees, the first's abort survived: wanted SIGABRT and, in "
      "order, A's line, \"A recovers\" and one of these two lines, not both:\n  %s  %sgot: "
      "%s, stderr:\n%s",
      want, want_b, hak_child_describe(&two_c, two_how, sizeof two_how),
      two_c.out ? two_c.out : "");
  hak_child_free(&two_c);

  /* Double free of a large block. */
  void *big = hak_malloc(1 * MiB);
  REQUIRE(big != NULL);
  fmt(want, sizeof want, "hakmem: double free of %p (large block)\n", big);
  EXPECT_ABORT(do_free_twice, big, want);
  EXPECT_ABORT(do_cross_thread_double_free, big, want);
  EXPECT_ABORT(do_free_then_free_sized, big, want);
  /* ... of each of the last 64 large blocks unmapped (in children: the
   * parent's blocks stay) */
  for (int i = 0; i < UNMAPPED; i++)
    REQUIRE((unmapped[i] = hak_aligned_alloc(4 * MiB, 100)) != NULL);
  for (size_t k = 0; k < UNMAPPED; k++) {
    fmt(want, sizeof want, "hakmem: double free of %p (large block)\n", unmapped[UNMAPPED - 1 - k]);
    EXPECT_ABORT(do_free_unmapped_again, (void *)(uintptr_t)k, want);
  }
  void *big_aligned = hak_aligned_alloc(2 * MiB, 100000);
  REQUIRE(big_aligned != NULL);
  fmt(want, sizeof want, "hakmem: double free of %p (large block)\n", big_aligned);
  EXPECT_ABORT(do_free_twice, big_aligned, want);

  /* Pointers hakmem never handed out. */
  char stack_buf[64] __attribute__((aligned(16)));
  memset(stack_buf, 0, sizeof stack_buf);
  expect_not_allocated("free", do_free, stack_buf);
  expect_not_allocated("free", do_free, global_buf);
  expect_not_allocated("free", do_free, global_buf + 16);
  void *libc_small = malloc(64);
  void *libc_big = malloc(4 * MiB);
  REQUIRE(libc_small != NULL && libc_big != NULL);
  expect_not_allocated("free", do_free, libc_small);
  expect_not_allocated("free", do_free, libc_big);
  expect_not_allocated("realloc", do_realloc, stack_buf);
  expect_not_allocated("realloc", do_realloc, libc_small);
  expect_not_allocated("usable_size", do_usable_size, stack_buf);
  expect_not_allocated("usable_size", do_usable_size, global_buf);
  expect_not_allocated("usable_size", do_usable_size, libc_small);
  struct two foreign = {libc_small, 8};
  fmt(want, sizeof want, "hakmem: invalid free_sized of %p: not allocated by hakmem\n", libc_small);
  EXPECT_ABORT(do_free_sized, &foreign, want);
  /* addresses past the registry's 2^48 bytes (kernel addresses, a
   * corrupted pointer): every lookup bounds its index (the fast paths'
   * too), or it reads far past the registry (SIGSEGV) */
  static const uintptr_t far[] = {(uintptr_t)0xffff800000001000u, (uintptr_t)0xffffffffffffff00u,
                                  (uintptr_t)1 << 63};
  for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
    expect_not_allocated("free", do_free, (void *)far[i]);
    expect_not_allocated("realloc", do_realloc, (void *)far[i]);
    expect_not_allocated("realloc", do_realloc_fits, (void *)far[i]);
    expect_not_allocated("usable_size", do_usable_size, (void *)far[i]);
    struct two far_sized = {(void *)far[i], 8};
    fmt(want, sizeof want, "hakmem: invalid free_sized of %p: not allocated by hakmem\n",
        (void *)far[i]);
    EXPECT_ABORT(do_free_sized, &far_sized, want);
  }

  /* A foreign mapping placed right after the end of a large block's mapping, in the
   * same 4 MiB-aligned range: still not hakmem's memory. */
  unsigned char *lb = hak_malloc(100000);
  REQUIRE(lb != NULL);
  uintptr_t lb_end = ((uintptr_t)lb + hak_usable_size(lb) + 4095) & ~(uintptr_t)4095;
  unsigned char *fm = mmap((void *)lb_end, 8192, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (fm == (void *)lb_end) {
    expect_not_allocated("free", do_free, fm);
    expect_not_allocated("free", do_free, fm + 64);
    expect_not_allocated("usable_size", do_usable_size, fm + 64);
    munmap(fm, 8192);
  } else {
    printf("note: could not map a page at %p after a large block (%s); case skipped\n",
           (void *)lb_end, fm == MAP_FAILED ? strerror(errno) : "placed elsewhere");
    if (fm != MAP_FAILED)
      munmap(fm, 8192);
  }
  hak_free(lb);

  /* Interior pointers into a small block. */
  unsigned char *b64 = hak_malloc(64);
  REQUIRE(b64 != NULL);
  static const size_t offs[] = {16, 8, 1, 63};
  for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
    fmt(want, sizeof want,
        "hakmem: invalid free of %p: interior pointer into block %p (size class %zu)\n",
        (void *)(b64 + offs[i]), (void *)b64, c64);
    EXPECT_ABORT(do_free, b64 + offs[i], want);
  }
  fmt(want, sizeof want,
      "hakmem: invalid realloc of %p: interior pointer into block %p (size class %zu)\n",
      (void *)(b64 + 16), (void *)b64, c64);
  EXPECT_ABORT(do_realloc, b64 + 16, want);
  EXPECT_ABORT(do_realloc_fits, b64 + 16, want);
  fmt(want, sizeof want,
      "hakmem: invalid usable_size of %p: interior pointer into block %p (size class %zu)\n",
      (void *)(b64 + 16), (void *)b64, c64);
  EXPECT_ABORT(do_usable_size, b64 + 16, want);

  /* A pointer into the first block of a page that is not carved yet: no
   * block there (not an interior pointer into one) */
  unsigned char *k1 = hak_malloc(1000);
  REQUIRE(k1 != NULL);
  hak_segment_t *kseg = ptr_segment_base(k1);
  hak_page_t *kpg = ptr_page(kseg, k1);
  size_t kcap = atomic_load_explicit(&kpg->capacity, memory_order_relaxed);
  REQUIRE(kcap < kpg->reserved); /* a new page is carved a few blocks at a time */
  unsigned char *uncarved = page_start(kpg) + kcap * kpg->block_size + 8;
  fmt(want, sizeof want, "hakmem: invalid free of %p: not the start of an allocated block\n",
      (void *)uncarved);
  EXPECT_ABORT(do_free, uncarved, want);
  hak_free(k1);

  /* Pointers into the middle of a large block. */
  unsigned char *lg = hak_malloc(1 * MiB);
  REQUIRE(lg != NULL);
  static const size_t loffs[] = {16, 4096, 65536, 1 * MiB - 16};
  for (size_t i = 0; i < sizeof loffs / sizeof loffs[0]; i++) {
    fmt(want, sizeof want, "hakmem: invalid free of %p: not the start of an allocated block\n",
        (void *)(lg + loffs[i]));
    EXPECT_ABORT(do_free, lg + loffs[i], want);
  }
  fmt(want, sizeof want, "hakmem: invalid realloc of %p: not the start of an allocated block\n",
      (void *)(lg + 4096));
  EXPECT_ABORT(do_realloc, lg + 4096, want);
  /* ... and past the first 4 MiB of the block's range, which the registry
   * does not mark (err_invalid asks the large-block lists): an 8 MiB block,
   * and a 4 MiB-aligned one, whose header is the page below it. */
  unsigned char *lg8 = hak_malloc(8 * MiB), *lga = hak_aligned_alloc(4 * MiB, 10 * MiB);
  REQUIRE(lg8 != NULL && lga != NULL);
  /* a mapping in the large cache too: the lists' walk, having found the
   * live block, must not let the cache's walk after it undo the find
   * (until 2026-11-28 no test walked both with the block found: mutant
   * large-holds-cache-overwrites) */
  hak_free(hak_malloc(2 * MiB));
  struct {
    void (*fn)(void *);
    const char *op;
    unsigned char *p;
  } deep[] = {{do_free, "free", lg8 + 5 * MiB},
              {do_realloc, "realloc", lg8 + 7 * MiB},
              {do_usable_size, "usable_size", lg8 + 6 * MiB},
              {do_free, "free", lga + 9 * MiB},
              {do_realloc, "realloc", lga + 5 * MiB + 64},
              /* the lists' lock held by another thread for a moment: waited
               * for (it was tried once: "not allocated by hakmem") */
              {do_free_lock_held, "free", lg8 + 5 * MiB}};
  for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
    fmt(want, sizeof want, "hakmem: invalid %s of %p: not the start of an allocated block\n",
        deep[i].op, (void *)deep[i].p);
    EXPECT_ABORT(deep[i].fn, deep[i].p, want);
  }
  /* The header page of a block aligned to 4 MiB lies in the 4 MiB range
   * below the block, where another such block may start (the kernel packs
   * mappings: two aligned_alloc(4 MiB) in a row). That range's registry
   * names the other block, the header lies past its mapping, and it is
   * still hakmem's memory: not the start of a block (until 2026-11-28 "not
   * allocated by hakmem"). */
  enum { NHZ = 8 };
  unsigned char *hz[NHZ];
  int pair = -1;
  for (int i = 0; i < NHZ; i++)
    REQUIRE((hz[i] = hak_aligned_alloc(4 * MiB, 100)) != NULL);
  for (int i = 0; i < NHZ && pair < 0; i++) {
    hak_large_t *below = registry_large(hz[i] - OS_PAGE_SIZE);
    if (below && below != registry_large(hz[i]))
      pair = i;
  }
  if (pair >= 0) {
    unsigned char *hdr = hz[pair] - OS_PAGE_SIZE;
    struct {
      void (*fn)(void *);
      const char *op;
      unsigned char *p;
    } hdrs[] = {{do_free, "free", hdr},
                {do_usable_size, "usable_size", hdr + 64},
                {do_realloc, "realloc", hdr + OS_PAGE_SIZE - 16}};
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
      fmt(want, sizeof want, "hakmem: invalid %s of %p: not the start of an allocated block\n",
          hdrs[i].op, (void *)hdrs[i].p);
      EXPECT_ABORT(hdrs[i].fn, hdrs[i].p, want);
    }
  } else {
    printf("note: no 4 MiB-aligned block's header lies in another's range; case skipped\n");
  }
  for (int i = 0; i < NHZ; i++)
    hak_free(hz[i]);
  /* the lock held by the freeing thread itself: not waited for for ever
   * (the lists cannot be read: "not allocated by hakmem" is the best name) */
  fmt(want, sizeof want, "hakmem: invalid free of %p: not allocated by hakmem\n",
      (void *)(lg8 + 5 * MiB));
  EXPECT_ABORT(do_free_self_locked, lg8 + 5 * MiB, want);
  hak_free(lga);
  hak_free(lg8);

  /* realloc / usable_size of a freed block. */
  void *r = hak_malloc(40);
  REQUIRE(r != NULL);
  fmt(want, sizeof want, "hakmem: realloc of freed block %p (size class %zu)\n", r, c48);
  EXPECT_ABORT(do_realloc_freed, r, want);
  void *r2 = hak_malloc(40);
  REQUIRE(r2 != NULL);
  fmt(want, sizeof want, "hakmem: realloc of freed block %p (size class %zu)\n", r2, c48);
  EXPECT_ABORT(do_realloc_freed_fits, r2, want);
  fmt(want, sizeof want, "hakmem: usable_size of freed block %p (size class %zu)\n", r, c48);
  EXPECT_ABORT(do_usable_size_freed, r, want);
  void *lc = hak_malloc(1 * MiB);
  REQUIRE(lc != NULL);
  fmt(want, sizeof want, "hakmem: usable_size of freed block %p (large block)\n", lc);
  EXPECT_ABORT(do_usable_size_freed_cached, lc, want);
  fmt(want, sizeof want, "hakmem: realloc of freed block %p (large block)\n", lc);
  EXPECT_ABORT(do_realloc_freed_cached, lc, want);
  hak_free(lc);

  /* free_sized with a size larger than the block. */
  struct two too_big = {r, 49};
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: size 49 larger than block (size class %zu)\n", r, c48);
  EXPECT_ABORT(do_free_sized, &too_big, want);
  struct two way_too_big = {r, 100000};
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: size 100000 larger than block (size class %zu)\n", r, c48);
  EXPECT_ABORT(do_free_sized, &way_too_big, want);
  /* ... of a large block; and free_aligned_sized of a block not aligned to
   * its alignment, whose size fits (not "larger than block": it is not) */
  unsigned char *lfs = hak_malloc(100000);
  REQUIRE(lfs != NULL);
  struct two large_too_big = {lfs, hak_usable_size(lfs) + 1};
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: size %zu larger than block (large block)\n", (void *)lfs,
      large_too_big.n);
  EXPECT_ABORT(do_free_sized, &large_too_big, want);
  unsigned char *a16[4] = {NULL}; /* 16-byte blocks: one of any four is not 64-aligned */
  int mis = 0;
  for (int i = 0; i < 4; i++) {
    a16[i] = hak_malloc(16);
    REQUIRE(a16[i] != NULL);
    if ((uintptr_t)a16[i] & 63)
      mis = i;
  }
  REQUIRE(((uintptr_t)a16[mis] & 63) != 0);
  struct three misaligned = {a16[mis], 64, 16};
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: block not aligned to 64 (size class %zu)\n",
      (void *)a16[mis], class_of(16));
  EXPECT_ABORT(do_free_aligned_sized, &misaligned, want);
  REQUIRE(((uintptr_t)lfs & 4095) != 0); /* a large block starts past its header */
  struct three large_misaligned = {lfs, 4096, 100000};
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: block not aligned to 4096 (large block)\n", (void *)lfs);
  EXPECT_ABORT(do_free_aligned_sized, &large_misaligned, want);
  /* an alignment no block is made with: 0, and 3 for a 16-aligned block
   * (until 2026-11-28: "not aligned to 0", and 3 passed) */
  unsigned char *al16 = hak_malloc(16);
  REQUIRE(al16 != NULL);
  struct three align0 = {al16, 0, 16}, align3 = {al16, 3, 16};
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: alignment 0 is not a power of two (size class %zu)\n",
      (void *)al16, class_of(16));
  EXPECT_ABORT(do_free_aligned_sized, &align0, want);
  fmt(want, sizeof want,
      "hakmem: invalid free_sized of %p: alignment 3 is not a power of two (size class %zu)\n",
      (void *)al16, class_of(16));
  EXPECT_ABORT(do_free_aligned_sized, &align3, want);
  hak_free(al16);

  /* Control: the valid neighbours of those cases do not abort. */
  struct two ok = {r, 48};
  struct hak_child c;
  REQUIRE(hak_run_child(do_valid_frees, &ok, 60, &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "valid free_sized(p, usable size): %s, stderr:\n%s",
            hak_child_describe(&c, how, sizeof how), c.out);
  hak_child_free(&c);

  /* The debug checks of a cached block (the builds with HAK_DEBUG but not
   * ASan, which reports the write itself). */
  void *u = hak_malloc(40);
  REQUIRE(u != NULL);
  if (hak_config_is("debug") || hak_config_is("ubsan")) {
    fmt(want, sizeof want,
        "hakmem: heap corruption at %p: free block modified after it was freed (use after free?)\n",
        u);
    for (size_t flush = 0; flush < 3; flush++) {
      struct two w = {u, flush};
      EXPECT_ABORT(do_write_after_free, &w, want);
    }
  }

  /* Everything the parent holds is still fine and can be freed here. */
  hak_free(p);
  hak_free(q2);
  hak_free(q3);
  hak_free(q4);
  hak_free(q5);
  for (int i = 1; i < 64; i += 2)
    hak_free(many[i]);
  hak_free(big);
  hak_free(lfs);
  for (int i = 0; i < 4; i++)
    hak_free(a16[i]);
  /* freed last: their addresses go to the ring of recently unmapped blocks,
   * where a foreign pointer mapped there later (the libc blocks above, under
   * TSan) would be named a double free */
  for (int i = 0; i < UNMAPPED; i++)
    hak_free(unmapped[i]);
  hak_free(big_aligned);
  hak_free(b64);
  hak_free(lg);
  hak_free(r);
  hak_free(r2);
  hak_free(u);
  free(libc_small);
  free(libc_big);
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
