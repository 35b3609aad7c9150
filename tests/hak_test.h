/* hak_test.h: a tiny header-only harness for hakmem's test programs.
 *
 * One program per behaviour. A program exits 0 when every check passed, 1 when
 * any failed and 77 when it does not apply to this configuration (it prints a
 * one-line reason). Include this header first: it defines _GNU_SOURCE.
 *
 *   CHECK(cond)                   records a failure (file:line, expression); is an expression
 *   CHECK_EQ/NE/LT/LE/GT/GE(a, b) unsigned integer comparisons, print both values
 *   CHECK_INT_EQ(a, b)            signed comparison
 *   CHECK_PTR_EQ(a, b)            pointer comparison
 *   CHECK_CONTAINS(text, sub)     substring check, prints the text on mismatch
 *   CHECK_PATTERN(p, n, seed)     verifies bytes written by hak_fill(p, n, seed)
 *   REQUIRE(cond)                 like CHECK but exits(1) at once
 *   EXPECT_ABORT(fn, arg, sub)    fn(arg) in a forked child must die by SIGABRT printing sub
 *   hak_run_child / hak_run_cmd   fork a function / an external command, capture status+output
 *   RUN_SECTION(fn)               runs void fn(void) in a forked child: a crash fails only it
 *   HAK_WAIT_FLAG(flag)           waits for another thread's flag; fails the test after 30 s
 *                                 (scaled); hak_flag_within(flag, s): the loop, for waits that
 *                                 report a timeout their own way
 *   HAK_SPIN_UNTIL(cond, what)    the same bound on a wait for any condition, yielding, never
 *                                 sleeping (HAK_BUSY_UNTIL: a pure spin)
 *   hak_statm_bytes / hak_limit_as  the mapped (resident) size; RLIMIT_AS set to the mapped
 *                                 size plus some room
 *
 * Tests that reach into internals (internal.h) share their set-up in
 * hak_test_internal.h.
 *
 * The harness itself only uses libc (its malloc is glibc's: tests call hakmem
 * through the prefixed hak_* API only). Failure messages are formatted on the
 * stack and written with write(2), so they work from any thread and from
 * forked children. */
#ifndef HAK_TEST_H
#define HAK_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

/* HAK_TEST_ASAN: compiled with AddressSanitizer (the asan build's tests) */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAK_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HAK_TEST_ASAN 1
#endif

#if defined(HAK_VALGRIND) && HAK_VALGRIND && defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define HAK_TEST_HAVE_VALGRIND_H 1
#endif
#endif

#define HAK_TEST_SKIP_CODE 77
#define HAK_TEST_MAX_REPORTS 50

static atomic_int hak_test_failures_;
static atomic_int hak_test_reports_;

/* ---- reporting ----------------------------------------------------------- */

static inline void hak_test_write_(const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(2, s, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

__attribute__((format(printf, 1, 2))) static inline void hak_test_log(const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
  hak_test_write_(buf, len);
}

/* Records a failure and prints it; returns 0 so that checks can be expressions. */
__attribute__((format(printf, 3, 4))) static inline int hak_test_fail_(const char *file, int line,
                                                                       const char *fmt, ...) {
  atomic_fetch_add(&hak_test_failures_, 1);
  int r = atomic_fetch_add(&hak_test_reports_, 1);
  if (r > HAK_TEST_MAX_REPORTS)
    return 0;
  if (r == HAK_TEST_MAX_REPORTS) {
    hak_test_log("%s:%d: ... further failures are counted but not printed\n", file, line);
    return 0;
  }
  char buf[4096];
  int n = snprintf(buf, sizeof buf, "%s:%d: FAILED ", file, line);
  if (n < 0 || (size_t)n >= sizeof buf)
    n = 0;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
  if (len > sizeof buf - 2)
    len = sizeof buf - 2;
  buf[len++] = '\n';
  hak_test_write_(buf, len);
  return 0;
}

static inline int hak_test_failures(void) {
  return atomic_load(&hak_test_failures_);
}

#define CHECK(cond) ((cond) ? 1 : hak_test_fail_(__FILE__, __LINE__, "CHECK(%s)", #cond))

/* CHECK with a printf-style explanation appended. */
#define CHECK_MSG(cond, fmt, ...)                                                                  \
  ((cond) ? 1 : hak_test_fail_(__FILE__, __LINE__, "CHECK(%s): " fmt, #cond, ##__VA_ARGS__))

/* An unconditional failure with a printf-style message. */
#define FAIL(fmt, ...) hak_test_fail_(__FILE__, __LINE__, fmt, ##__VA_ARGS__)

#define HAK_TEST_CMP_(a, op, b)                                                                    \
  __extension__({                                                                                  \
    uintmax_t hak_a_ = (uintmax_t)(a), hak_b_ = (uintmax_t)(b);                                    \
    int hak_ok_ = hak_a_ op hak_b_;                                                                \
    if (!hak_ok_)                                                                                  \
      hak_test_fail_(__FILE__, __LINE__, "CHECK(%s %s %s): %ju (0x%jx) vs %ju (0x%jx)", #a, #op,   \
                     #b, hak_a_, hak_a_, hak_b_, hak_b_);                                          \
    hak_ok_;                                                                                       \
  })
#define CHECK_EQ(a, b) HAK_TEST_CMP_(a, ==, b)
#define CHECK_NE(a, b) HAK_TEST_CMP_(a, !=, b)
#define CHECK_LT(a, b) HAK_TEST_CMP_(a, <, b)
#define CHECK_LE(a, b) HAK_TEST_CMP_(a, <=, b)
#define CHECK_GT(a, b) HAK_TEST_CMP_(a, >, b)
#define CHECK_GE(a, b) HAK_TEST_CMP_(a, >=, b)

#define CHECK_INT_EQ(a, b)                                                                         \
  __extension__({                                                                                  \
    intmax_t hak_a_ = (intmax_t)(a), hak_b_ = (intmax_t)(b);                                       \
    int hak_ok_ = hak_a_ == hak_b_;                                                                \
    if (!hak_ok_)                                                                                  \
      hak_test_fail_(__FILE__, __LINE__, "CHECK(%s == %s): %jd vs %jd", #a, #b, hak_a_, hak_b_);   \
    hak_ok_;                                                                                       \
  })

#define CHECK_PTR_EQ(a, b)                                                                         \
  __extension__({                                                                                  \
    const void *hak_a_ = (const void *)(a), *hak_b_ = (const void *)(b);                           \
    int hak_ok_ = hak_a_ == hak_b_;                                                                \
    if (!hak_ok_)                                                                                  \
      hak_test_fail_(__FILE__, __LINE__, "CHECK(%s == %s): %p vs %p", #a, #b, hak_a_, hak_b_);     \
    hak_ok_;                                                                                       \
  })

/* errno checks print the symbolic description too. */
#define CHECK_ERRNO(expected)                                                                      \
  __extension__({                                                                                  \
    int hak_e_ = errno, hak_x_ = (expected);                                                       \
    int hak_ok_ = hak_e_ == hak_x_;                                                                \
    if (!hak_ok_)                                                                                  \
      hak_test_fail_(__FILE__, __LINE__, "errno == %s: got %d (%s), expected %d (%s)", #expected,  \
                     hak_e_, strerror(hak_e_), hak_x_, strerror(hak_x_));                          \
    errno = hak_e_;                                                                                \
    hak_ok_;                                                                                       \
  })

#define CHECK_CONTAINS(text, sub)                                                                  \
  __extension__({                                                                                  \
    const char *hak_t_ = (text), *hak_s_ = (sub);                                                  \
    int hak_ok_ = hak_t_ != NULL && strstr(hak_t_, hak_s_) != NULL;                                \
    if (!hak_ok_)                                                                                  \
      hak_test_fail_(__FILE__, __LINE__, "%s does not contain \"%s\"; it is:\n---\n%s---", #text,  \
                     hak_s_, hak_t_ ? hak_t_ : "(null)");                                          \
    hak_ok_;                                                                                       \
  })

#define CHECK_NOT_CONTAINS(text, sub)                                                              \
  __extension__({                                                                                  \
    const char *hak_t_ = (text), *hak_s_ = (sub);                                                  \
    int hak_ok_ = hak_t_ == NULL || strstr(hak_t_, hak_s_) == NULL;                                \
    if (!hak_ok_)                                                                                  \
      hak_test_fail_(__FILE__, __LINE__, "%s unexpectedly contains \"%s\"; it is:\n---\n%s---",    \
                     #text, hak_s_, hak_t_);                                                       \
    hak_ok_;                                                                                       \
  })

/* After every block was freed: none live, no segment left abandoned (a
 * free lost to an abandonment keeps it so), and hak_heap_check() clean.
 * `what` names the point in a failure. Returns whether all held. */
#define CHECK_ALL_FREED(what) hak_check_all_freed_(__FILE__, __LINE__, (what))
static inline int hak_check_all_freed_(const char *file, int line, const char *what) {
  struct hak_stats st;
  hak_stats(&st);
  int ok = 1;
  if (st.live_blocks != 0 || st.abandoned_segments != 0)
    ok = hak_test_fail_(file, line,
                        "%s: every block freed, yet %zu live and %zu segment(s) abandoned", what,
                        st.live_blocks, st.abandoned_segments);
  int v = hak_heap_check();
  if (v != 0)
    ok = hak_test_fail_(file, line, "%s: hak_heap_check() found %d violation(s)", what, v);
  return ok;
}

#define REQUIRE(cond)                                                                              \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      hak_test_fail_(__FILE__, __LINE__, "REQUIRE(%s), giving up", #cond);                         \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

__attribute__((noreturn, format(printf, 1, 2))) static inline void hak_test_skip(const char *fmt,
                                                                                 ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  printf("SKIP %s: %s\n", program_invocation_short_name, buf);
  fflush(stdout);
  exit(HAK_TEST_SKIP_CODE);
}

/* Ends main(): prints one PASS/FAIL line and returns the exit code. */
static inline int hak_test_done(void) {
  int f = hak_test_failures();
  if (f) {
    printf("FAIL %s: %d check(s) failed\n", program_invocation_short_name, f);
  } else {
    printf("PASS %s\n", program_invocation_short_name);
  }
  fflush(stdout);
  return f ? 1 : 0;
}

/* ---- configuration, scale, time -------------------------------------------- */

/* The kernel's page size: 4 KiB on x86-64; 4, 16 or 64 KiB on aarch64.
 * What a test maps, unmaps or asks mincore about next to a block is whole
 * pages of it (a 4 KiB range there is refused, or lands a page away). */
static inline size_t hak_page_size(void) {
  return (size_t)sysconf(_SC_PAGESIZE);
}
/* The start of the kernel's page that holds p. */
static inline void *hak_page_start(const void *p) {
  return (void *)((uintptr_t)p & ~(uintptr_t)(hak_page_size() - 1));
}

static inline double hak_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The system call thread or process `tid` is blocked in now, as /proc's
 * syscall file names it; -1 while it runs, -2 when it cannot be read (it
 * is gone, or a zombie). For tests that hold a window open until another
 * thread or process has reached a wait inside hakmem, instead of for a
 * fixed time that a loaded machine may not honour. hak_task_syscall_arg
 * also stores the call's first argument in *arg0 (unless NULL). Raw
 * system calls: a test polls this while another thread forks, and in the
 * TSan build (clang 14) the intercepted open and close allocate and free
 * from TSan's allocator, whose lock the fork did not take; a fork child
 * then hung in its first allocation (test_fork_hooks, fork_waiting:
 * 2 of 30 runs before, 2026-11-28). */
static inline long hak_task_syscall_arg(int tid, unsigned long *arg0) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/syscall", tid);
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -2;
  ssize_t n = (ssize_t)syscall(SYS_read, fd, buf, sizeof buf - 1);
  syscall(SYS_close, fd);
  if (n <= 0)
    return -2;
  buf[n] = 0;
  if (strncmp(buf, "running", 7) == 0)
    return -1;
  char *end;
  long nr = strtol(buf, &end, 10);
  if (end == buf || nr < 0)
    return -2; /* a zombie reads "-1 ...": gone */
  if (arg0) {  /* "NR 0xARG0 0xARG1 ... 0xSP 0xPC" */
    char *after;
    *arg0 = strtoul(end, &after, 16);
    if (after == end)
      return -2;
  }
  return nr;
}
static inline long hak_task_syscall(int tid) {
  return hak_task_syscall_arg(tid, NULL);
}

/* Whether this process's thread `tid` (gettid) is blocked in a nanosleep
 * now (a thread waiting for valgrind's lock, whose scheduler state alone
 * would not tell it apart, is in another call). */
static inline int hak_thread_in_nanosleep(int tid) {
  long nr = hak_task_syscall(tid);
  return nr == SYS_clock_nanosleep || nr == SYS_nanosleep;
}

/* Whether this process's thread `tid` is blocked in a futex wait on the
 * word at `word`: for a pthread mutex (its lock word is its first), a
 * thread that waits for it in pthread_mutex_lock. */
static inline int hak_thread_in_futex(int tid, const void *word) {
  unsigned long a0 = 0;
  return hak_task_syscall_arg(tid, &a0) == SYS_futex && a0 == (uintptr_t)word;
}

static inline void hak_sleep_ms(double ms) {
  long long ns = (long long)(ms * 1e6);
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static inline int hak_config_is(const char *name) {
  return strcmp(hak_config(), name) == 0;
}

/* True when this process runs under valgrind (whatever the configuration). */
static inline int hak_test_under_valgrind(void) {
#ifdef HAK_TEST_HAVE_VALGRIND_H
  if (RUNNING_ON_VALGRIND)
    return 1;
#endif
  const char *pre = getenv("LD_PRELOAD");
  return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

/* Skips the test unless this process can fill its limit of mappings
 * (vm.max_map_count) in a moment: not in the asan or tsan build, whose
 * runtimes map memory of their own at every step, not under valgrind,
 * which manages the address space itself, and not with a limit above
 * 300000 (a million on some distributions: too slow to fill). */
static inline void hak_skip_unless_map_limit_fillable(void) {
  if (hak_config_is("asan") || hak_config_is("tsan"))
    hak_test_skip("the sanitizer's runtime maps memory of its own at every step");
  if (hak_test_under_valgrind())
    hak_test_skip("valgrind manages the address space itself");
  char lim[32] = {0};
  int fd = open("/proc/sys/vm/max_map_count", O_RDONLY);
  if (fd >= 0) {
    if (read(fd, lim, sizeof lim - 1) < 0)
      lim[0] = 0;
    close(fd);
  }
  if (strtoul(lim, NULL, 10) > 300000)
    hak_test_skip("vm.max_map_count is %s", lim);
}

/* The limit of mappings reached by the test itself: single pages,
 * PROT_NONE and PROT_READ in turn so that no two merge into one mapping,
 * mapped until the kernel refuses one. Their list is mapped too, not
 * taken from the allocator under test, and unmapped with the last page. */
#define HAK_MAP_FILL_MAX 400000
struct hak_map_fill_ {
  void **page;
  size_t n;
};
static inline struct hak_map_fill_ *hak_map_fill_state_(void) {
  static struct hak_map_fill_ f;
  return &f;
}
/* Maps pages until the kernel refuses one; returns how many the test
 * holds (HAK_MAP_FILL_MAX: no limit reached). */
static inline size_t hak_map_fill(void) {
  struct hak_map_fill_ *f = hak_map_fill_state_();
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  if (!f->page) {
    void *list = mmap(NULL, HAK_MAP_FILL_MAX * sizeof *f->page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(list != MAP_FAILED);
    f->page = (void **)list;
  }
  while (f->n < HAK_MAP_FILL_MAX) {
    void *q =
        mmap(NULL, pg, (f->n & 1) ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED)
      break;
    f->page[f->n++] = q;
  }
  return f->n;
}
/* Unmaps the last `n` of the pages (SIZE_MAX: all, and their list). */
static inline void hak_map_unfill(size_t n) {
  struct hak_map_fill_ *f = hak_map_fill_state_();
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  while (n-- && f->n)
    munmap(f->page[--f->n], pg);
  if (!f->n && f->page) {
    munmap((void *)f->page, HAK_MAP_FILL_MAX * sizeof *f->page);
    f->page = NULL;
  }
}

/* HAK_TEST_SCALE (default 1) multiplies iteration counts. */
static inline double hak_test_scale(void) {
  static double scale = -1;
  if (scale < 0) {
    const char *s = getenv("HAK_TEST_SCALE");
    double v = s && *s ? strtod(s, NULL) : 1.0;
    scale = v > 0 ? v : 1.0;
  }
  return scale;
}

/* How much slower than release this process is expected to run. */
static inline double hak_test_slowdown(void) {
  if (hak_test_under_valgrind())
    return 10;
  if (hak_config_is("tsan"))
    return 8;
  if (hak_config_is("asan"))
    return 2;
  if (hak_config_is("debug") || hak_config_is("ubsan"))
    return 2;
  return 1;
}

/* Waits up to `seconds` for another thread to set *flag, polling every
 * millisecond; returns whether it did. For a test that reports a wait that
 * timed out its own way (and goes on, or exits otherwise); else
 * HAK_WAIT_FLAG. */
static inline int hak_flag_within(atomic_int *flag, double seconds) {
  double end = hak_now() + seconds;
  while (!atomic_load(flag)) {
    if (hak_now() > end)
      return atomic_load(flag) != 0;
    usleep(1000);
  }
  return 1;
}

/* The bound on HAK_WAIT_FLAG and HAK_SPIN_UNTIL: 30 s scaled by the
 * build's slowdown. Past it the wait fails the test, naming what it waited
 * for (and saying `what` went wrong, unless NULL), and exits. */
static inline double hak_wait_limit_s(void) {
  return 30 * hak_test_slowdown();
}
__attribute__((noreturn)) static inline void hak_wait_failed_(const char *file, int line,
                                                              const char *name, const char *what) {
  hak_test_fail_(file, line, "%s%swaited 30 s (scaled) for %s", what ? what : "", what ? ": " : "",
                 name);
  exit(1); /* as REQUIRE */
}

/* Waits until another thread sets *flag; a wait past 30 s (scaled by the
 * build's slowdown) fails the test, naming the flag (HAK_WAIT_FLAG_MSG: and
 * saying `what` went wrong), instead of hanging until the harness's
 * timeout. It sleeps between looks: a thread whose state another watches
 * (hak_thread_in_nanosleep) must not wait with it (HAK_SPIN_UNTIL). Nor
 * a thread whose cue comes only after longer bounded waits of another's
 * (a fork child's, its stacks printed at the end): its exit(1) would end
 * the process under the child being diagnosed (test_fork_hooks). */
#define HAK_WAIT_FLAG(flag) hak_wait_flag_(__FILE__, __LINE__, #flag, NULL, (flag))
#define HAK_WAIT_FLAG_MSG(flag, what) hak_wait_flag_(__FILE__, __LINE__, #flag, (what), (flag))
static inline void hak_wait_flag_(const char *file, int line, const char *name, const char *what,
                                  atomic_int *flag) {
  if (!hak_flag_within(flag, hak_wait_limit_s()))
    hak_wait_failed_(file, line, name, what);
}

/* Waits until `cond` (re-evaluated at each look; it may assign) holds,
 * bounded as HAK_WAIT_FLAG, but without sleeping: sched_yield() between
 * looks (HAK_BUSY_UNTIL: nothing, a pure spin). For a thread that another
 * watches (hak_thread_in_nanosleep: a sleep here would read as the wait
 * under test), for waits inside a loop of rounds that a 1 ms sleep would
 * slow down, and for a spin meant to act the moment another thread does.
 * `what` (or NULL) says what went wrong. The clock is read every 64th look
 * only, the first taken when the condition first does not hold. */
#define HAK_SPIN_UNTIL(cond, what) HAK_SPIN_UNTIL_(cond, #cond, what, sched_yield())
#define HAK_BUSY_UNTIL(cond, what) HAK_SPIN_UNTIL_(cond, #cond, what, (void)0)
#define HAK_SPIN_UNTIL_(cond, name, what, pause)                                                   \
  do {                                                                                             \
    double hak_spin_end_ = 0;                                                                      \
    for (unsigned long hak_spin_n_ = 0; !(cond); hak_spin_n_++) {                                  \
      if (hak_spin_n_ % 64 == 0) {                                                                 \
        if (hak_spin_n_ == 0)                                                                      \
          hak_spin_end_ = hak_now() + hak_wait_limit_s();                                          \
        else if (hak_now() > hak_spin_end_)                                                        \
          hak_wait_failed_(__FILE__, __LINE__, name, (what));                                      \
      }                                                                                            \
      pause;                                                                                       \
    }                                                                                              \
  } while (0)

/* An iteration count: n in release, scaled by HAK_TEST_SCALE and down by slowdown. */
static inline size_t hak_iters(size_t n) {
  double v = (double)n * hak_test_scale() / hak_test_slowdown();
  return v < 1 ? 1 : (size_t)v;
}

/* ---- random numbers and patterns --------------------------------------------- */

static inline uint64_t hak_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/* splitmix64; *state is any seed. */
static inline uint64_t hak_rand(uint64_t *state) {
  *state += 0x9e3779b97f4a7c15ull;
  return hak_mix64(*state);
}

static inline size_t hak_rand_below(uint64_t *state, size_t n) {
  return n ? (size_t)(hak_rand(state) % n) : 0;
}

/* Pattern byte i of hak_fill(p, n, seed) depends on (seed, i) only, so a prefix
 * of a filled block stays valid when the block is resized. */
static inline uint64_t hak_pattern_word_(uint64_t seed, size_t word) {
  return (hak_mix64(seed) + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)word * 0xd6e8feb86659fd93ull);
}

static inline void hak_fill(void *p, size_t n, uint64_t seed) {
  unsigned char *b = (unsigned char *)p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = hak_pattern_word_(seed, i / 8);
    memcpy(b + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = hak_pattern_word_(seed, i / 8);
    memcpy(b + i, &v, n - i);
  }
}

/* Offset of the first byte that differs from hak_fill(p, n, seed), or SIZE_MAX. */
static inline size_t hak_pattern_mismatch(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = (const unsigned char *)p;
  size_t i = 0;
  for (; i < n; i += 8) {
    uint64_t v = hak_pattern_word_(seed, i / 8), got = 0;
    size_t k = n - i < 8 ? n - i : 8;
    memcpy(&got, b + i, k);
    if (k < 8)
      v &= (((uint64_t)1 << (8 * k)) - 1);
    if (got != v) {
      for (size_t j = 0; j < k; j++) {
        if (((got >> (8 * j)) & 0xff) != ((v >> (8 * j)) & 0xff))
          return i + j;
      }
    }
  }
  return SIZE_MAX;
}

static inline int hak_check_pattern_(const char *file, int line, const char *what, const void *p,
                                     size_t n, uint64_t seed) {
  size_t off = hak_pattern_mismatch(p, n, seed);
  if (off == SIZE_MAX)
    return 1;
  uint64_t v = hak_pattern_word_(seed, off / 8);
  unsigned expect = (unsigned)((v >> (8 * (off % 8))) & 0xff);
  hak_test_fail_(file, line,
                 "pattern of %s (%p, %zu bytes, seed %#" PRIx64 ") differs at offset %zu: "
                 "0x%02x, expected 0x%02x",
                 what, p, n, seed, off, ((const unsigned char *)p)[off], expect);
  return 0;
}
#define CHECK_PATTERN(p, n, seed) hak_check_pattern_(__FILE__, __LINE__, #p, (p), (n), (seed))

/* Offset of the first byte of p[0..n) that is not `byte`, or SIZE_MAX. */
static inline size_t hak_find_not_byte(const void *p, size_t n, unsigned char byte) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != byte)
      return i;
  }
  return SIZE_MAX;
}

static inline int hak_is_aligned(const void *p, size_t a) {
  return ((uintptr_t)p & (a - 1)) == 0;
}

/* ---- forked children and external commands ------------------------------------ */

struct hak_child {
  int status;    /* waitpid() status; meaningful unless timed_out */
  int timed_out; /* it ran past its deadline and was killed */
  char *out;     /* what it wrote (stderr; stdout too for commands), NUL-terminated */
  size_t len;
};

static inline void hak_child_free(struct hak_child *c) {
  free(c->out);
  c->out = NULL;
  c->len = 0;
}

static inline int hak_child_exited(const struct hak_child *c, int code) {
  return !c->timed_out && WIFEXITED(c->status) && WEXITSTATUS(c->status) == code;
}

static inline int hak_child_signaled(const struct hak_child *c, int sig) {
  return !c->timed_out && WIFSIGNALED(c->status) && WTERMSIG(c->status) == sig;
}

/* "exited with 1", "killed by signal 6 (Aborted)", "timed out". */
static inline const char *hak_child_describe(const struct hak_child *c, char *buf, size_t n) {
  if (c->timed_out) {
    snprintf(buf, n, "timed out (killed)");
  } else if (WIFEXITED(c->status)) {
    snprintf(buf, n, "exited with %d", WEXITSTATUS(c->status));
  } else if (WIFSIGNALED(c->status)) {
    snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(c->status),
             strsignal(WTERMSIG(c->status)));
  } else {
    snprintf(buf, n, "status %#x", c->status);
  }
  return buf;
}

#define HAK_CHILD_OUT_MAX ((size_t)4 << 20)

static inline void hak_dump_stacks(pid_t pid);

/* Reads fd until EOF or the deadline, then reaps pid (killing it at the
 * deadline, after printing its stacks if `dump`). */
static inline void hak_collect_(pid_t pid, int fd, double timeout_s, struct hak_child *res,
                                int dump) {
  double deadline = hak_now() + timeout_s;
  size_t cap = 4096;
  res->out = (char *)malloc(cap);
  res->len = 0;
  res->timed_out = 0;
  res->status = 0;
  for (;;) {
    double left = deadline - hak_now();
    if (left <= 0) {
      res->timed_out = 1;
      break;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue;
    char tmp[4096];
    ssize_t got = read(fd, tmp, sizeof tmp);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break; /* EOF: the child (and anything it forked) closed its end */
    if (res->out && res->len + (size_t)got + 1 > cap && cap < HAK_CHILD_OUT_MAX) {
      size_t ncap = cap;
      while (ncap < res->len + (size_t)got + 1 && ncap < HAK_CHILD_OUT_MAX)
        ncap *= 2;
      char *n = (char *)realloc(res->out, ncap);
      if (n) {
        res->out = n;
        cap = ncap;
      }
    }
    if (res->out) {
      size_t room = cap - 1 - res->len;
      size_t k = (size_t)got < room ? (size_t)got : room;
      memcpy(res->out + res->len, tmp, k);
      res->len += k;
    }
  }
  close(fd);
  if (res->out)
    res->out[res->len] = '\0';
  /* Reap it; its output is closed, so it should be exiting. */
  for (;;) {
    pid_t w = waitpid(pid, &res->status, WNOHANG);
    if (w == pid)
      break;
    if (w < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (res->timed_out || hak_now() > deadline) {
      res->timed_out = 1;
      if (dump)
        hak_dump_stacks(pid); /* a hung child is diagnosed from the log */
      kill(-pid, SIGKILL);    /* its process group too, if it made one */
      kill(pid, SIGKILL);
      while (waitpid(pid, &res->status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    hak_sleep_ms(1);
  }
}

static inline void hak_child_prepare_(void) {
  struct rlimit rl = {0, 0};
  setrlimit(RLIMIT_CORE, &rl); /* expected crashes leave no core files */
  setpgid(0, 0);
}

/* Forks a child whose stderr (and stdout if `with_stdout`) goes to a pipe.
 * In the child returns 0 (output redirected); in the parent the child's pid,
 * with *read_fd set to the pipe's read end; -1 if the pipe or fork failed. */
static inline pid_t hak_fork_piped_(int with_stdout, int *read_fd) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    hak_child_prepare_();
    if (with_stdout)
      dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  close(fds[1]);
  *read_fd = fds[0];
  return pid;
}

/* Runs fn(arg) in a forked child whose stderr goes to a pipe. The child exits 1
 * if any CHECK failed in it, else 0, unless fn exits or dies first. Returns 0
 * if the fork itself failed (res then holds nothing), else 1. A child still
 * running at the timeout has its stacks printed (hak_dump_stacks), then is
 * killed. */
static inline int hak_run_child(void (*fn)(void *), void *arg, double timeout_s,
                                struct hak_child *res) {
  int fd = -1;
  memset(res, 0, sizeof *res);
  pid_t pid = hak_fork_piped_(0, &fd);
  if (pid < 0)
    return 0;
  if (pid == 0) {
    atomic_store(&hak_test_failures_, 0);
    atomic_store(&hak_test_reports_, 0);
    fn(arg);
    fflush(stdout);
    _exit(hak_test_failures() ? 1 : 0);
  }
  hak_collect_(pid, fd, timeout_s, res, 1);
  return 1;
}

/* Runs fn() as one section of a test in a forked child, so that a crash (an
 * allocator abort, say) fails that section and the program goes on with the
 * next. The child's stderr is passed through. HAK_TEST_NOFORK=1 runs sections
 * in-process (for debuggers). */
static inline void hak_section_trampoline_(void *fn) {
  ((void (*)(void))fn)();
}

static inline int hak_run_section_(const char *file, int line, const char *name, void (*fn)(void)) {
  const char *nofork = getenv("HAK_TEST_NOFORK");
  if (nofork && *nofork == '1') {
    int before = hak_test_failures();
    fn();
    return hak_test_failures() == before;
  }
  struct hak_child c;
  double timeout = 300, t0 = hak_now();
  if (!hak_run_child(hak_section_trampoline_, (void *)fn, timeout, &c)) {
    hak_test_fail_(file, line, "section %s: fork failed: %s", name, strerror(errno));
    return 0;
  }
  if (c.len)
    hak_test_write_(c.out, c.len);
  int ok = hak_child_exited(&c, 0);
  printf("section %s: %s (%.2f s)\n", name, ok ? "ok" : "FAILED", hak_now() - t0);
  fflush(stdout);
  if (!ok) {
    char how[128];
    if (hak_child_exited(&c, 1)) {
      hak_test_fail_(file, line, "section %s failed", name);
    } else {
      hak_test_fail_(file, line, "section %s: child %s", name,
                     hak_child_describe(&c, how, sizeof how));
    }
  }
  hak_child_free(&c);
  return ok;
}
#define RUN_SECTION(fn) hak_run_section_(__FILE__, __LINE__, #fn, (fn))

/* Runs argv (PATH lookup) with stdout and stderr captured together. A child
 * that could not exec exits 127. Returns 0 if the fork failed. */
static inline int hak_run_cmd(char *const argv[], double timeout_s, struct hak_child *res) {
  int fd = -1;
  memset(res, 0, sizeof *res);
  pid_t pid = hak_fork_piped_(1, &fd);
  if (pid < 0)
    return 0;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      dup2(devnull, 0);
    execvp(argv[0], argv);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  hak_collect_(pid, fd, timeout_s, res, 0); /* (gdb itself runs here) */
  return 1;
}

/* True if `prog` is an executable somewhere on PATH. */
static inline int hak_have_program(const char *prog) {
  const char *path = getenv("PATH");
  if (!path)
    path = "/usr/bin:/bin";
  char buf[4096];
  while (*path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    if (n > 0 && n + strlen(prog) + 2 < sizeof buf) {
      memcpy(buf, path, n);
      buf[n] = '/';
      strcpy(buf + n + 1, prog);
      if (access(buf, X_OK) == 0)
        return 1;
    }
    path += n;
    if (*path == ':')
      path++;
  }
  return 0;
}

/* Prints every thread's stack of the (hung) process pid to stderr, the test's
 * log, with gdb if there is one: a deadlock found in CI is then diagnosed from
 * the log, not by reproducing it. Says why when it cannot. */
static inline void hak_dump_stacks(pid_t pid) {
  if (!hak_have_program("gdb")) {
    hak_test_log("(no gdb: no stacks of process %d)\n", (int)pid);
    return;
  }
  char pidbuf[24];
  snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
  char *argv[] = {"gdb", "-batch", "-nx", "-q", "-ex", "thread apply all bt 40",
                  "-p",  pidbuf,   NULL};
  struct hak_child c;
  hak_test_log("stacks of process %d:\n", (int)pid);
  if (hak_run_cmd(argv, 60, &c)) {
    hak_test_write_(c.out ? c.out : "", c.out ? c.len : 0);
    hak_child_free(&c);
  }
}

/* Waits up to timeout_s for the child pid to end. Returns 1 if it did
 * (*status set); 0 if it did not: it is killed and reaped, after its stacks
 * were printed if `dump` (a deadlock is then diagnosed from the log); -1 if
 * waitpid failed (said in the log). */
static inline int hak_wait_child(pid_t pid, double timeout_s, int *status, int dump) {
  double deadline = hak_now() + timeout_s;
  for (;;) {
    pid_t w = waitpid(pid, status, WNOHANG);
    if (w == pid)
      return 1;
    if (w < 0 && errno != EINTR) {
      hak_test_log("waitpid(%d): %s\n", (int)pid, strerror(errno));
      return -1;
    }
    if (hak_now() > deadline)
      break;
    hak_sleep_ms(0.5);
  }
  if (dump)
    hak_dump_stacks(pid);
  kill(pid, SIGKILL);
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

/* Waits for the fork child pid as hak_wait_child does (60 s, scaled by
 * hak_test_slowdown; a child still running has its stacks printed and is
 * killed) and checks that it exited 0. fmt says what a failure means; the
 * status follows it. */
#define CHECK_CHILD_OK(pid, fmt, ...)                                                              \
  __extension__({                                                                                  \
    int hak_st_ = 0;                                                                               \
    int hak_w_ = hak_wait_child((pid), 60 * hak_test_slowdown(), &hak_st_, 1);                     \
    CHECK_MSG(hak_w_ == 1 && WIFEXITED(hak_st_) && WEXITSTATUS(hak_st_) == 0,                      \
              fmt " (child %s, status %#x)", ##__VA_ARGS__,                                        \
              hak_w_ == 1 ? "ended" : "hung: killed", (unsigned)hak_st_);                          \
  })

/* Forks (stdio flushed first, so the child repeats no buffered output);
 * the child runs child(arg), which must _exit. The parent waits for it as
 * hak_wait_child does, with the stacks of a child still running at the
 * timeout printed, and returns what hak_wait_child returned. Unlike
 * hak_run_child, no pipe and no reader: the fork tests time their forks
 * against other threads' allocations. */
static inline int hak_fork_wait(void (*child)(void *), void *arg, double timeout_s, int *status) {
  fflush(NULL);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    child(arg);
    _exit(0);
  }
  *status = 0;
  return hak_wait_child(pid, timeout_s, status, 1);
}

/* fn(arg) must die by SIGABRT with `expected` somewhere in its stderr. */
static inline int hak_expect_abort_(const char *file, int line, const char *fname,
                                    void (*fn)(void *), void *arg, const char *expected) {
  struct hak_child c;
  double timeout = 60 * (hak_test_slowdown() > 8 ? 4 : 1);
  if (!hak_run_child(fn, arg, timeout, &c)) {
    hak_test_fail_(file, line, "EXPECT_ABORT(%s): fork failed: %s", fname, strerror(errno));
    return 0;
  }
  int ok = hak_child_signaled(&c, SIGABRT);
  int has = c.out != NULL && strstr(c.out, expected) != NULL;
  if (!ok || !has) {
    char how[128];
    hak_test_fail_(file, line,
                   "EXPECT_ABORT(%s): wanted SIGABRT and stderr containing\n  \"%s\"\n"
                   "got: %s, stderr:\n---\n%s---",
                   fname, expected, hak_child_describe(&c, how, sizeof how), c.out ? c.out : "");
  }
  hak_child_free(&c);
  return ok && has;
}
#define EXPECT_ABORT(fn, arg, expected)                                                            \
  hak_expect_abort_(__FILE__, __LINE__, #fn, (fn), (arg), (expected))

/* Frees blocks[0..n) with hak_free in a new thread, which does not own
 * them (remote frees, onto their pages' remote-free stacks), and waits. */
struct hak_free_job_ {
  void **blocks;
  size_t n;
};
static inline void *hak_free_job_run_(void *arg) {
  struct hak_free_job_ *j = (struct hak_free_job_ *)arg;
  for (size_t i = 0; i < j->n; i++)
    hak_free(j->blocks[i]);
  return NULL;
}
static inline void hak_free_remotely(void **blocks, size_t n) {
  struct hak_free_job_ j = {blocks, n};
  pthread_t t;
  if (pthread_create(&t, NULL, hak_free_job_run_, &j) != 0) {
    hak_test_fail_(__FILE__, __LINE__, "hak_free_remotely: pthread_create failed");
    return;
  }
  pthread_join(t, NULL);
}

/* Maps `n` bytes of the test's own at `at` (where nothing may be mapped)
 * with `prot`; NULL if something is there, or if the kernel (before 4.17)
 * took MAP_FIXED_NOREPLACE as a hint and put it elsewhere. */
static inline void *hak_map_at(void *at, size_t n, int prot) {
  void *q = mmap(at, n, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (q != at && q != MAP_FAILED)
    munmap(q, n);
  return q == at ? q : NULL;
}

/* A field of /proc/self/statm in bytes: 0 the mapped size, 1 the resident
 * size. Read with open/read, no stdio (a test may run it under an
 * address-space limit, where glibc's malloc can fail); a test that cannot
 * read it stops, rather than comparing zeros. */
static inline size_t hak_statm_bytes(int field) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0)
    close(fd);
  REQUIRE(n > 0);
  buf[n] = 0;
  char *p = buf;
  unsigned long long v = strtoull(p, &p, 10);
  for (int i = 0; i < field; i++)
    v = strtoull(p, &p, 10);
  return (size_t)v * (size_t)sysconf(_SC_PAGESIZE);
}

/* Sets the soft RLIMIT_AS to the process's mapped size now (field 0 of
 * statm) plus `more` bytes, 0: no new mapping fits. Returns the limit it
 * replaced, for setrlimit to put back. */
static inline struct rlimit hak_limit_as(size_t more) {
  struct rlimit old;
  REQUIRE(getrlimit(RLIMIT_AS, &old) == 0);
  struct rlimit lim = {(rlim_t)(hak_statm_bytes(0) + more), old.rlim_max};
  REQUIRE(setrlimit(RLIMIT_AS, &lim) == 0);
  return old;
}

/* Resident-memory tests: every empty slot of blk[0..n) gets a block of
 * `size` bytes, every page of it touched (filled with its index). */
static inline void hak_fill_touched(unsigned char **blk, int n, size_t size) {
  for (int i = 0; i < n; i++)
    if (!blk[i]) {
      blk[i] = (unsigned char *)hak_malloc(size);
      REQUIRE(blk[i] != NULL);
      memset(blk[i], i | 1, size);
    }
}

/* Minor page faults of this process so far (pages first touched). */
static inline long hak_minflt(void) {
  struct rusage ru;
  REQUIRE(getrusage(RUSAGE_SELF, &ru) == 0);
  return ru.ru_minflt;
}

/* Path of this program, for re-executing itself. */
static inline const char *hak_self_exe(void) {
  static char path[4096];
  if (!path[0]) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
      return NULL;
    path[n] = '\0';
  }
  return path;
}

/* Redzones (alloc/src/track.h): in the asan and valgrind builds every
 * block is sized for its request and 16 bytes more, which moves each
 * request to a bigger class (malloc(48) takes a 64-byte block) or a
 * large block's range a page on. A test of the allocator's own geometry
 * (which class or page a size takes, how many blocks a page holds, where a
 * large block's range ends, what a message or a statistic names), written
 * for the block sizes of the other builds, turns them off first, before
 * its first allocation; the checks of what the instrumented builds report
 * (test_asan_catches, test_valgrind_catches, test_track_sweep, test_api)
 * keep them. A no-op in the other builds. */
#if (defined(HAK_ASAN) && HAK_ASAN) || (defined(HAK_VALGRIND) && HAK_VALGRIND)
extern size_t hak_redzone;
static inline void hak_test_no_redzones(void) {
  hak_redzone = 0;
}
static inline size_t hak_test_redzone(void) {
  return hak_redzone;
}
#else
static inline void hak_test_no_redzones(void) {}
static inline size_t hak_test_redzone(void) {
  return 0;
}
#endif
/* The usable size of a small block for a request of n bytes (at most
 * HAK_SMALL_MAX - hak_test_redzone()): its class's block, less the
 * redzone (track_need, track_usable). */
static inline size_t hak_test_small_usable(size_t n) {
  size_t rz = hak_test_redzone();
  return hak_size_class_size(hak_size_to_class(rz ? (n ? n : 1) + rz : n)) - rz;
}
/* A large block aligned to 16 (malloc's, calloc's, realloc's): where it
 * starts in its range (after the 64-byte header, and 64 poisoned bytes
 * more with redzones: LARGE_OFFSET), its usable size for a request of n
 * bytes (at least 16: whole kernel pages from the range's start, less
 * that offset and the redzone) and where its range ends. */
static inline size_t hak_test_large_offset(void) {
  return hak_test_redzone() ? 128 : 64;
}
static inline size_t hak_test_large_span(size_t n) { /* the range's bytes */
  size_t pg = hak_page_size();
  return (hak_test_large_offset() + (n < 16 ? 16 : n) + hak_test_redzone() + pg - 1) & ~(pg - 1);
}
static inline size_t hak_test_large_usable(size_t n) {
  return hak_test_large_span(n) - hak_test_large_offset() - hak_test_redzone();
}
static inline void *hak_test_large_end(const void *p, size_t n) {
  return (unsigned char *)p - hak_test_large_offset() + hak_test_large_span(n);
}

/* Of HAK_TEST_NEIGHBOURS live blocks of 48 bytes (in `blocks`, filled with
 * their index), the two closest, *lo below *hi: neighbours in one page,
 * nothing of theirs between them (test_asan_catches and
 * test_valgrind_catches write just past *lo and just before *hi). */
#define HAK_TEST_NEIGHBOURS 64
static inline void hak_test_closest_pair(unsigned char **blocks, unsigned char **lo,
                                         unsigned char **hi) {
  for (int i = 0; i < HAK_TEST_NEIGHBOURS; i++) {
    blocks[i] = hak_malloc(48);
    REQUIRE(blocks[i] != NULL);
    memset(blocks[i], i, 48);
  }
  size_t best = SIZE_MAX;
  for (int i = 0; i < HAK_TEST_NEIGHBOURS; i++) {
    for (int j = 0; j < HAK_TEST_NEIGHBOURS; j++) {
      size_t gap = (size_t)(blocks[j] - blocks[i]);
      if (blocks[j] > blocks[i] && gap < best) {
        best = gap;
        *lo = blocks[i];
        *hi = blocks[j];
      }
    }
  }
  REQUIRE(best <= 64); /* the next block of the page (48 + the redzone; 48 without) */
}

#endif /* HAK_TEST_H */
