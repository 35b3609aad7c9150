/* Shared code of hakmem's multithreaded stress programs (larson, remote_free,
 * thread_churn, fork_stress, realloc_storm, aligned_storm).
 *
 * Builds on bench_common.h (RNG, timing, the hak_* -> libc mapping of the
 * .libc build) and adds:
 *   - a common command line (--threads --chunks --duration --seed --min
 *     --max --mode --deadline --hang --quiet --trim --clock, or the STRESS_*
 *     environment);
 *   - --trim=MS: a thread calls hak_trim (malloc_trim in the .libc build)
 *     every MS milliseconds while the workers run, so every free slice of
 *     every heap not in a slow path is purged under its owner's feet;
 *   - block patterns: every block is filled from a 64-bit tag unique to
 *     its allocation; its owner keeps the size and tag beside the pointer
 *     (stress_blk) and verifies the block byte for byte against that copy
 *     before it frees it, so a block handed to two owners at once fails;
 *   - live blocks: hak_stats (the preloaded hakmem's in the .libc build)
 *     at the start and at the end, after everything was freed: a block still
 *     live then is a lost free (stress_live_begin, stress_finish);
 *   - a thread registry with each thread's last operations;
 *   - a watchdog: when the deadline passes it prints every registered
 *     thread's stack (SIGUSR2 to each thread, backtrace_symbols_fd in the
 *     handler; gdb -batch -p as a fallback for threads that do not answer),
 *     their last operations and hak_stats_print(), then exits 3.
 *
 * Exit codes (documented in README.md, "Stress tests"):
 *   0 pass, 1 usage or setup error, 2 block contents damaged,
 *   3 watchdog (deadline passed: hang), 4 hak_heap_check() found violations,
 *   5 other failure (allocation returned NULL, bad alignment, child died). */
#ifndef HAK_STRESS_COMMON_H
#define HAK_STRESS_COMMON_H

#include "bench_common.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#define STRESS_EXIT_OK 0
#define STRESS_EXIT_USAGE 1
#define STRESS_EXIT_CORRUPT 2
#define STRESS_EXIT_WATCHDOG 3
#define STRESS_EXIT_HEAPCHECK 4
#define STRESS_EXIT_FAIL 5

/* ---- configuration ----------------------------------------------------- */

typedef struct {
  const char *prog;
  unsigned threads;
  unsigned chunks;
  double duration; /* seconds of work */
  double deadline; /* watchdog: seconds after start (0: duration*4 + 30) */
  uint64_t seed;
  size_t min_size, max_size; /* [min, max) */
  const char *mode;
  int hang; /* test-only: one thread blocks forever */
  int quiet;
  double trim_ms;  /* > 0: a thread calls hak_trim this often (stress_start) */
  double clock_ms; /* > 0: a thread moves hakmem's timer clock this often (stress_start) */
} stress_cfg;

static stress_cfg stress_conf;

static inline void stress_usage(const char *extra) {
  fprintf(
      stderr,
      "usage: %s [--threads=N] [--chunks=N] [--duration=S] [--seed=N] [--min=B] [--max=B]\n"
      "          [--mode=M] [--deadline=S] [--hang] [--quiet] [--trim=MS] [--clock=MS]%s\n"
      "environment: STRESS_THREADS STRESS_CHUNKS STRESS_DURATION STRESS_SEED STRESS_DEADLINE\n"
      "             STRESS_TRIM STRESS_CLOCK\n"
      "             STRESS_HANG=1 (test-only: a thread blocks forever; the watchdog must fire)\n",
      stress_conf.prog, extra ? extra : "");
  exit(STRESS_EXIT_USAGE);
}

static inline double stress_num(const char *name, const char *s) {
  char *end = NULL;
  double v = strtod(s, &end);
  if (!*s || *end || v < 0) {
    fprintf(stderr, "%s: %s: not a non-negative number: '%s'\n", stress_conf.prog, name, s);
    exit(STRESS_EXIT_USAGE);
  }
  return v;
}

/* Sets the defaults, then the environment, then --name=value options. */
static inline void stress_parse(int argc, char **argv, unsigned threads, unsigned chunks,
                                double duration, size_t min_size, size_t max_size,
                                const char *mode) {
  stress_cfg *c = &stress_conf;
  const char *p = strrchr(argv[0], '/');
  c->prog = p ? p + 1 : argv[0];
  c->threads = threads;
  c->chunks = chunks;
  c->duration = duration;
  c->seed = 42;
  c->min_size = min_size;
  c->max_size = max_size;
  c->mode = mode;
  const char *e;
  if ((e = getenv("STRESS_THREADS")) && *e)
    c->threads = (unsigned)stress_num("STRESS_THREADS", e);
  if ((e = getenv("STRESS_CHUNKS")) && *e)
    c->chunks = (unsigned)stress_num("STRESS_CHUNKS", e);
  if ((e = getenv("STRESS_DURATION")) && *e)
    c->duration = stress_num("STRESS_DURATION", e);
  if ((e = getenv("STRESS_SEED")) && *e)
    c->seed = (uint64_t)stress_num("STRESS_SEED", e);
  if ((e = getenv("STRESS_DEADLINE")) && *e)
    c->deadline = stress_num("STRESS_DEADLINE", e);
  if ((e = getenv("STRESS_HANG")) && *e && strcmp(e, "0") != 0)
    c->hang = 1;
  if ((e = getenv("STRESS_TRIM")) && *e)
    c->trim_ms = stress_num("STRESS_TRIM", e);
  if ((e = getenv("STRESS_CLOCK")) && *e)
    c->clock_ms = stress_num("STRESS_CLOCK", e);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = strchr(a, '=');
    size_t n = v ? (size_t)(v - a) : strlen(a);
    v = v ? v + 1 : "";
#define OPT(s) (n == strlen(s) && strncmp(a, s, n) == 0)
    if (OPT("--threads"))
      c->threads = (unsigned)stress_num(a, v);
    else if (OPT("--chunks"))
      c->chunks = (unsigned)stress_num(a, v);
    else if (OPT("--duration"))
      c->duration = stress_num(a, v);
    else if (OPT("--seed"))
      c->seed = (uint64_t)stress_num(a, v);
    else if (OPT("--min"))
      c->min_size = (size_t)stress_num(a, v);
    else if (OPT("--max"))
      c->max_size = (size_t)stress_num(a, v);
    else if (OPT("--deadline"))
      c->deadline = stress_num(a, v);
    else if (OPT("--mode"))
      c->mode = v;
    else if (OPT("--hang"))
      c->hang = 1;
    else if (OPT("--quiet"))
      c->quiet = 1;
    else if (OPT("--trim"))
      c->trim_ms = stress_num(a, v);
    else if (OPT("--clock"))
      c->clock_ms = stress_num(a, v);
    else
      stress_usage(NULL);
#undef OPT
  }
  if (c->threads == 0 || c->chunks == 0 || c->min_size == 0 || c->max_size <= c->min_size) {
    fprintf(stderr, "%s: need threads >= 1, chunks >= 1, 1 <= min < max\n", c->prog);
    exit(STRESS_EXIT_USAGE);
  }
}

/* ---- thread registry and last operations -------------------------------- */

#define STRESS_MAX_THREADS 512
#define STRESS_LASTOPS 8

typedef struct {
  _Atomic int used;
  pthread_t tid;
  char name[24];
  _Atomic uint64_t nops;
  _Atomic uintptr_t op_ptr[STRESS_LASTOPS];
  _Atomic uint64_t op_info[STRESS_LASTOPS]; /* op char << 56 | size */
} stress_slot;

static stress_slot stress_threads[STRESS_MAX_THREADS];
static __thread stress_slot *stress_self;
static _Atomic int stress_acks;

/* Registers the calling thread (name is copied). Returns its slot or NULL
 * when the registry is full (the thread then runs unregistered). */
static inline stress_slot *stress_register(const char *name) {
  for (int i = 0; i < STRESS_MAX_THREADS; i++) {
    stress_slot *s = &stress_threads[i];
    int z = 0;
    if (atomic_load_explicit(&s->used, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong(&s->used, &z, -1)) {
      s->tid = pthread_self();
      snprintf(s->name, sizeof s->name, "%s", name);
      atomic_store_explicit(&s->nops, 0, memory_order_relaxed);
      for (int k = 0; k < STRESS_LASTOPS; k++) {
        atomic_store_explicit(&s->op_ptr[k], 0, memory_order_relaxed);
        atomic_store_explicit(&s->op_info[k], 0, memory_order_relaxed);
      }
      atomic_store_explicit(&s->used, 1, memory_order_release);
      stress_self = s;
      return s;
    }
  }
  return NULL;
}

static inline void stress_unregister(void) {
  if (stress_self)
    atomic_store_explicit(&stress_self->used, 0, memory_order_release);
  stress_self = NULL;
}

/* Records an operation ('m' malloc, 'f' free, 'r' realloc, 'a' aligned...). */
static inline void stress_op(char op, const void *p, size_t size) {
  stress_slot *s = stress_self;
  if (!s)
    return;
  uint64_t n = atomic_load_explicit(&s->nops, memory_order_relaxed);
  atomic_store_explicit(&s->op_ptr[n % STRESS_LASTOPS], (uintptr_t)p, memory_order_relaxed);
  atomic_store_explicit(&s->op_info[n % STRESS_LASTOPS], ((uint64_t)(unsigned char)op << 56) | size,
                        memory_order_relaxed);
  atomic_store_explicit(&s->nops, n + 1, memory_order_relaxed);
}

/* ---- async-signal-safe output ------------------------------------------- */

static inline void stress_puts(const char *s) {
  size_t n = strlen(s);
  while (n) {
    ssize_t w = write(2, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

static inline void stress_putu(uint64_t v, int base) {
  char buf[24];
  int i = (int)sizeof buf - 1;
  buf[i] = 0;
  do {
    buf[--i] = "0123456789abcdef"[v % (unsigned)base];
    v /= (unsigned)base;
  } while (v && i > 0);
  if (base == 16)
    stress_puts("0x");
  stress_puts(buf + i);
}

/* ---- failure reporting --------------------------------------------------- */

/* Writes the op trace now (trace build with HAKMEM_TRACE set; a no-op
 * otherwise), so a run that ends with _exit keeps its ops for repro/replay.
 * Under LD_PRELOAD the function is looked up: other allocators lack it. */
static inline void stress_trace_flush(void) {
#if HAK_BENCH_PREFIXED
  hak_trace_flush();
#else
  void (*flush)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "hak_trace_flush");
  if (flush)
    flush();
#endif
}

static inline void stress_fail(int code, const char *what) __attribute__((noreturn));
static inline void stress_fail(int code, const char *what) {
  fprintf(stderr, "%s: FAIL (exit %d): %s\n", stress_conf.prog, code, what);
  fflush(stderr);
  stress_trace_flush();
  _exit(code);
}

/* ---- block patterns ------------------------------------------------------ */

static inline uint64_t stress_mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x | 1;
}

/* Fills n bytes at p from tag: the first and last 8 bytes hold the tag, the
 * bytes between a tag-dependent byte. */
static inline void stress_fill(void *p, size_t n, uint64_t tag) {
  unsigned char *b = (unsigned char *)p;
  memset(b, (int)(tag >> 8) & 0xff, n);
  memcpy(b, &tag, n < 8 ? n : 8);
  if (n >= 16)
    memcpy(b + n - 8, &tag, 8);
}

/* Verifies the first n bytes of a block filled by stress_fill(p, full, tag)
 * (n <= full; full is the size it was filled with). Exits 2 on damage. */
static inline void stress_verify_prefix(const void *p, size_t n, size_t full, uint64_t tag,
                                        const char *where) {
  const unsigned char *b = (const unsigned char *)p;
  unsigned char mid = (unsigned char)(tag >> 8);
  unsigned char t[8];
  memcpy(t, &tag, 8);
  /* fast path with memcmp (one range access for the sanitizers); the byte
   * loop below runs only to name the first damaged byte */
  size_t head = full < 8 ? full : 8, tail = full >= 16 ? 8 : 0;
  if (n == full && n >= head + tail) {
    unsigned char ref[256];
    memset(ref, mid, sizeof ref);
    int ok = memcmp(b, t, head) == 0 && (!tail || memcmp(b + n - 8, t, 8) == 0);
    for (size_t i = head; ok && i < n - tail; i += sizeof ref) {
      size_t k = n - tail - i < sizeof ref ? n - tail - i : sizeof ref;
      ok = memcmp(b + i, ref, k) == 0;
    }
    if (ok)
      return;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char want = mid;
    if (i < 8 && i < full)
      want = t[i];
    else if (full >= 16 && i >= full - 8)
      want = t[i - (full - 8)];
    if (b[i] != want) {
      fprintf(stderr,
              "%s: CORRUPTION (%s): block %p size %zu tag %#llx: byte %zu is 0x%02x, expected "
              "0x%02x\n",
              stress_conf.prog, where, p, full, (unsigned long long)tag, i, b[i], want);
      stress_fail(STRESS_EXIT_CORRUPT, "block contents damaged");
    }
  }
}

static inline void stress_verify(const void *p, size_t n, uint64_t tag, const char *where) {
  stress_verify_prefix(p, n, n, tag, where);
}

/* ---- blocks and their owners' copies ------------------------------------ */

/* A unique tag for each allocation: the calling thread's serial number (in
 * order of first use) and its own count, scrambled by a bijection (so two
 * allocations never share a tag, and the fill byte varies). A block the
 * allocator hands to two owners at once then holds the later owner's tag,
 * which the earlier owner's copy does not match. */
static _Atomic uint64_t stress_tag_threads;
static __thread uint64_t stress_tag_self, stress_tag_count;

static inline uint64_t stress_tag_new(void) {
  if (!stress_tag_self)
    stress_tag_self = atomic_fetch_add_explicit(&stress_tag_threads, 1, memory_order_relaxed) + 1;
  uint64_t x = (stress_tag_self << 40) ^ ++stress_tag_count; /* 2^24 threads, 2^40 each */
  x ^= x >> 31;
  x *= 0x9E3779B97F4A7C15ull; /* odd: invertible */
  x ^= x >> 29;
  return x;
}

/* A block as its owner knows it: pointer, size and tag, kept by the owner
 * beside the pointer (slot, ring or chain entry) and passed on with it.
 * The block holds the size and tag in its first 16 bytes and the rest is
 * filled from the tag; stress_block_check compares all of it with the
 * owner's copy, so a block that another owner rewrote (the allocator handed
 * it out twice) fails even when its contents are consistent in themselves.
 * p == NULL: no block. Sizes >= 16. */
typedef struct {
  void *p;
  size_t size;
  uint64_t tag;
} stress_blk;

#define STRESS_BLK_NONE ((stress_blk){NULL, 0, 0})

/* Writes the header and pattern of a new tag into the n bytes at p. */
static inline stress_blk stress_block_init(void *p, size_t n) {
  stress_blk b = {p, n, stress_tag_new()};
  uint64_t sz = n;
  memcpy(p, &sz, 8);
  memcpy((unsigned char *)p + 8, &b.tag, 8);
  stress_fill((unsigned char *)p + 16, n - 16, b.tag);
  return b;
}

static inline stress_blk stress_block_new(size_t n) {
  if (n < 16)
    n = 16;
  void *p = hak_malloc(n);
  stress_op('m', p, n);
  if (!p)
    stress_fail(STRESS_EXIT_FAIL, "hak_malloc returned NULL");
  return stress_block_init(p, n);
}

/* The block's header against its owner's copy (exits 2 on a mismatch). */
static inline void stress_header_check(const void *p, size_t size, uint64_t tag,
                                       const char *where) {
  uint64_t sz, t;
  memcpy(&sz, p, 8);
  memcpy(&t, (const unsigned char *)p + 8, 8);
  if (sz == size && t == tag)
    return;
  fprintf(stderr,
          "%s: CORRUPTION (%s): block %p: its header holds size %llu tag %#llx, its owner wrote "
          "size %zu tag %#llx (%s)\n",
          stress_conf.prog, where, p, (unsigned long long)sz, (unsigned long long)t, size,
          (unsigned long long)tag,
          sz >= 16 && sz <= ((uint64_t)1 << 40) && t != tag
              ? "another owner's header: the block was handed out twice?"
              : "overwritten: freed under its owner, or a stray write?");
  stress_fail(STRESS_EXIT_CORRUPT, "block header is not its owner's");
}

static inline void stress_block_check(stress_blk b, const char *where) {
  stress_header_check(b.p, b.size, b.tag, where);
  stress_verify((const unsigned char *)b.p + 16, b.size - 16, b.tag, where);
}

static inline void stress_block_free(stress_blk b, const char *where) {
  stress_block_check(b, where);
  stress_op('f', b.p, 0);
  hak_free(b.p);
}

/* A slot shared by threads that swap blocks through it (the owner's copy
 * travels with the pointer, so the swap is three words under a spin flag;
 * the allocation and free stay outside it). */
typedef struct {
  _Atomic int busy;
  stress_blk b;
} stress_xslot;

/* Puts `in` into the slot; returns what it held (STRESS_BLK_NONE: nothing). */
static inline stress_blk stress_xslot_swap(stress_xslot *s, stress_blk in) {
  while (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire))
    sched_yield();
  stress_blk out = s->b;
  s->b = in;
  atomic_store_explicit(&s->busy, 0, memory_order_release);
  return out;
}

/* Random size in [lo, hi), biased towards small (log-uniform-ish). */
static inline size_t stress_size(bench_rng *r, size_t lo, size_t hi) {
  uint64_t x = bench_rng_next(r);
  if (x & 1)
    return lo + (size_t)((x >> 8) % (hi - lo));
  size_t span = hi - lo, lim = 1;
  while (lim < span && (x >> 60) > 0 && (lim << 2) < span) {
    lim <<= 2;
    x -= (uint64_t)1 << 60;
  }
  return lo + (size_t)((x >> 8) % (lim < span ? lim : span));
}

/* ---- the allocator's own checks ------------------------------------------ */
/* hakmem's hak_heap_check, hak_stats and hak_stats_print: the prefixed
 * build's, or in the .libc build a preloaded hakmem's (looked up by
 * stress_live_begin; NULL under glibc or another allocator). */
static size_t (*stress_heap_check_fn)(void);
static void (*stress_stats_fn)(struct hak_stats *);
static void (*stress_stats_print_fn)(void);

/* Live blocks at the start that the program does not free: none of hakmem's
 * in the prefixed build (libc's own blocks are not hakmem's), and no more
 * at the end. Preloaded, hakmem serves libc too, and libc keeps a few blocks
 * it allocated during the run (stress_preload_slack). */
static size_t stress_live_base, stress_live_slack;

/* What libc allocates during a preloaded run and still holds at the end:
 * the TLS vector (dtv, a malloc'd block) of every thread stack glibc keeps
 * cached for reuse, up to 40 MiB of stacks (its stack_cache_maxsize), so
 * about 40 MiB / stack size of them; the watchdog thread's (still running);
 * stdout's buffer when --quiet printed nothing before the start. Measured
 * (glibc 2.36): at 8 MiB stacks 3..5 blocks over the start in each of the
 * six programs at 1..16 threads, 6 with --quiet: 13 allowed; at 1 MiB
 * stacks 18 with 16 threads (48 allowed); at 2 MiB (ulimit -s unlimited)
 * 18 (28 allowed). drop-on-drain loses 10000..50000 blocks in 1 s. */
static inline size_t stress_preload_slack(void) {
  size_t stack = (size_t)8 << 20;
  pthread_attr_t a;
  if (pthread_getattr_default_np(&a) == 0) {
    pthread_attr_getstacksize(&a, &stack);
    pthread_attr_destroy(&a);
  }
  if (stack < ((size_t)1 << 20))
    stack = (size_t)1 << 20;
  return 8 + ((size_t)40 << 20) / stack;
}

/* At the start of the work (stress_start), before the program allocates. */
static inline void stress_live_begin(void) {
#if HAK_BENCH_PREFIXED
  stress_heap_check_fn = hak_heap_check;
  stress_stats_fn = hak_stats;
  stress_stats_print_fn = hak_stats_print;
#else
  stress_heap_check_fn = (size_t(*)(void))dlsym(RTLD_DEFAULT, "hak_heap_check");
  stress_stats_fn = (void (*)(struct hak_stats *))dlsym(RTLD_DEFAULT, "hak_stats");
  stress_stats_print_fn = (void (*)(void))dlsym(RTLD_DEFAULT, "hak_stats_print");
  if (stress_stats_fn) {
    struct hak_stats st;
    stress_stats_fn(&st);
    stress_live_base = st.live_blocks;
    stress_live_slack = stress_preload_slack();
  }
#endif
}

/* ---- watchdog ------------------------------------------------------------ */

static _Atomic int stress_done;
static _Atomic int stress_stop; /* set when the work time is over */
static double stress_t0;
static double stress_work_t0; /* start of the timed work (after set-up) */

static void stress_bt_handler(int sig) {
  (void)sig;
  int saved = errno;
  void *frames[64];
  int n = backtrace(frames, 64);
  stress_slot *s = stress_self;
  stress_puts("---- stack of thread ");
  stress_puts(s ? s->name : "(unregistered)");
  stress_puts(" ----\n");
  backtrace_symbols_fd(frames, n, 2);
  atomic_fetch_add(&stress_acks, 1);
  errno = saved;
}

static void stress_alarm_exit(int sig) {
  (void)sig;
  stress_puts("watchdog: report itself hung; exiting\n");
  _exit(STRESS_EXIT_WATCHDOG);
}

static inline void stress_gdb_dump(void) {
  static char pidbuf[24];
  snprintf(pidbuf, sizeof pidbuf, "%d", (int)getpid());
  if (access("/usr/bin/gdb", X_OK) != 0)
    return;
  char *argv[] = {"gdb", "-batch", "-nx", "-q", "-ex", "thread apply all bt 30",
                  "-p",  pidbuf,   NULL};
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, 2, 1);
  extern char **environ;
  if (posix_spawn(&pid, "/usr/bin/gdb", &fa, NULL, argv, environ) == 0) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  posix_spawn_file_actions_destroy(&fa);
}

static void *stress_watchdog(void *arg) {
  double limit = *(double *)arg;
  while (!atomic_load(&stress_done)) {
    if (bench_now() - stress_t0 > limit)
      break;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (atomic_load(&stress_done))
    return NULL;
  /* Any lock the hung threads hold could stop the report too: a second
   * timer ends the process with the same code. */
  signal(SIGALRM, stress_alarm_exit);
  alarm(20);
  /* the op trace (trace build with HAKMEM_TRACE set) is written now, before
   * _exit: the ops up to the hang are kept for repro/replay */
  stress_trace_flush();
  fprintf(stderr, "\n%s: WATCHDOG: deadline of %.1fs passed; the run is hung. Thread stacks:\n",
          stress_conf.prog, limit);
  fflush(stderr);
  int sent = 0;
  for (int i = 0; i < STRESS_MAX_THREADS; i++) {
    stress_slot *s = &stress_threads[i];
    if (atomic_load_explicit(&s->used, memory_order_acquire) == 1 &&
        !pthread_equal(s->tid, pthread_self()) && pthread_kill(s->tid, SIGUSR2) == 0)
      sent++;
  }
  double t = bench_now();
  while (atomic_load(&stress_acks) < sent && bench_now() - t < 3.0) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  int acks = atomic_load(&stress_acks);
  fprintf(stderr, "%s: WATCHDOG: %d of %d thread(s) printed their stack\n", stress_conf.prog, acks,
          sent);
  if (acks < sent || getenv("STRESS_WATCHDOG_GDB")) {
    fprintf(stderr, "%s: WATCHDOG: gdb -batch -p %d:\n", stress_conf.prog, (int)getpid());
    fflush(stderr);
    stress_gdb_dump();
  }
  fprintf(stderr, "%s: WATCHDOG: last operations per thread (newest last):\n", stress_conf.prog);
  for (int i = 0; i < STRESS_MAX_THREADS; i++) {
    stress_slot *s = &stress_threads[i];
    if (atomic_load_explicit(&s->used, memory_order_acquire) != 1)
      continue;
    uint64_t n = atomic_load_explicit(&s->nops, memory_order_relaxed);
    fprintf(stderr, "  %s: %llu ops:", s->name, (unsigned long long)n);
    for (uint64_t k = n > STRESS_LASTOPS ? n - STRESS_LASTOPS : 0; k < n; k++) {
      uint64_t info = atomic_load_explicit(&s->op_info[k % STRESS_LASTOPS], memory_order_relaxed);
      uintptr_t p = atomic_load_explicit(&s->op_ptr[k % STRESS_LASTOPS], memory_order_relaxed);
      fprintf(stderr, " %c(%#lx,%llu)", (char)(info >> 56), (unsigned long)p,
              (unsigned long long)(info & ((1ull << 56) - 1)));
    }
    fprintf(stderr, "\n");
  }
  if (stress_stats_print_fn) {
    fprintf(stderr, "%s: WATCHDOG: hak_stats_print():\n", stress_conf.prog);
    fflush(stderr);
    stress_stats_print_fn();
  }
  fprintf(stderr, "%s: FAIL (exit %d): watchdog deadline passed\n", stress_conf.prog,
          STRESS_EXIT_WATCHDOG);
  fflush(stderr);
  _exit(STRESS_EXIT_WATCHDOG);
}

/* Test-only (--hang): the calling thread blocks forever. */
static inline void stress_maybe_hang(void) {
  static _Atomic int once;
  if (!stress_conf.hang || atomic_exchange(&once, 1))
    return;
  fprintf(stderr, "%s: --hang: this thread now blocks forever (watchdog test)\n", stress_conf.prog);
  sem_t never;
  sem_init(&never, 0, 0);
  for (;;)
    sem_wait(&never);
}

/* ---- periodic helper threads (--trim, --clock) ----------------------------
 * A thread that calls tick() every `ms` real milliseconds while the workers
 * run, and is joined before the final checks (hak_heap_check needs a quiet
 * heap). tick() counts what it did for the report. */
typedef struct {
  const char *name;
  void (*tick)(void);
  double ms;
  _Atomic int stop;
  pthread_t thread;
  bool running;
} stress_periodic;

static void *stress_periodic_run(void *arg) {
  stress_periodic *p = arg;
  stress_register(p->name);
  long long ns = (long long)(p->ms * 1e6);
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
    p->tick();
    nanosleep(&ts, NULL);
  }
  stress_unregister();
  return NULL;
}

static inline void stress_periodic_start(stress_periodic *p) {
  if (pthread_create(&p->thread, NULL, stress_periodic_run, p) != 0)
    stress_fail(STRESS_EXIT_USAGE, "cannot start a helper thread");
  p->running = true;
}

/* Whether it ran (then it is stopped and joined now). */
static inline bool stress_periodic_end(stress_periodic *p) {
  if (!p->running)
    return false;
  atomic_store_explicit(&p->stop, 1, memory_order_relaxed);
  pthread_join(p->thread, NULL);
  p->running = false;
  return true;
}

/* --trim: hak_trim (malloc_trim in the .libc builds) every trim_ms. */
static size_t stress_trim_calls, stress_trim_gave;
static void stress_trim_tick(void) {
  stress_trim_gave += (size_t)(hak_trim(0) != 0);
  stress_trim_calls++;
}
static stress_periodic stress_trimmer = {.name = "trimmer", .tick = stress_trim_tick};

/* --clock: every clock_ms, hakmem's timer clock (the purge delay's, the
 * segment and large caches' aging's) moves STRESS_CLOCK_STEP_MS ahead (a
 * test-only call of the statically linked library), so that the workers'
 * own slow paths purge and age their caches hundreds of times a second,
 * beside the remote frees, thread exits and adoptions, instead of about
 * once a run. Only where hakmem is linked in (not the .libc builds,
 * preloaded or glibc: there the option is noted and ignored). */
#define STRESS_CLOCK_STEP_MS 250
#if HAK_BENCH_PREFIXED
void os_test_advance_ms(uint64_t ms); /* alloc/src/internal.h (hidden: static link only) */
static size_t stress_clock_moves;
static void stress_clock_tick(void) {
  os_test_advance_ms(STRESS_CLOCK_STEP_MS);
  stress_clock_moves++;
}
static stress_periodic stress_clocker = {.name = "clock", .tick = stress_clock_tick};
#endif

/* The helper threads, joined before the final checks. */
static inline void stress_helpers_end(void) {
#if HAK_BENCH_PREFIXED
  if (stress_periodic_end(&stress_clocker) && !stress_conf.quiet)
    printf("%s: clock: moved %zu times by %d ms\n", stress_conf.prog, stress_clock_moves,
           STRESS_CLOCK_STEP_MS);
#endif
  if (stress_periodic_end(&stress_trimmer) && !stress_conf.quiet)
    printf("%s: trim: %zu hak_trim calls, %zu of them gave memory back\n", stress_conf.prog,
           stress_trim_calls, stress_trim_gave);
}

/* Call after stress_parse(): registers main, installs the stack dumper and
 * starts the watchdog (and the helper threads of --trim and --clock). */
static inline void stress_start(void) {
  static double limit;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = stress_bt_handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
  void *warm[2];
  backtrace(warm, 2); /* loads libgcc now, not in the signal handler */
  stress_t0 = stress_work_t0 = bench_now();
  limit = stress_conf.deadline > 0 ? stress_conf.deadline : stress_conf.duration * 4 + 30;
  stress_register("main");
  if (!stress_conf.quiet)
    printf("%s: allocator=%s threads=%u chunks=%u duration=%.2fs seed=%llu size=[%zu,%zu) "
           "mode=%s deadline=%.0fs\n",
           stress_conf.prog, bench_allocator_name(), stress_conf.threads, stress_conf.chunks,
           stress_conf.duration, (unsigned long long)stress_conf.seed, stress_conf.min_size,
           stress_conf.max_size, stress_conf.mode ? stress_conf.mode : "-", limit);
  fflush(stdout);
  /* after the output above (stdout's buffer is libc's to keep), before the
   * threads below (hak_stats needs a quiet heap) */
  stress_live_begin();
  pthread_t w;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&w, &at, stress_watchdog, &limit) != 0)
    stress_fail(STRESS_EXIT_USAGE, "cannot start the watchdog thread");
  pthread_attr_destroy(&at);
  if (stress_conf.trim_ms > 0) {
    stress_trimmer.ms = stress_conf.trim_ms;
    stress_periodic_start(&stress_trimmer);
  }
#if HAK_BENCH_PREFIXED
  if (stress_conf.clock_ms > 0) {
    stress_clocker.ms = stress_conf.clock_ms;
    stress_periodic_start(&stress_clocker);
  }
#else
  if (stress_conf.clock_ms > 0 && !stress_conf.quiet)
    printf("%s: --clock ignored: hakmem's timer clock is reached only where it is linked in\n",
           stress_conf.prog);
#endif
}

/* Starts the work clock again (after a long set-up, e.g. larson's fill). */
static inline void stress_work_begins(void) {
  stress_work_t0 = bench_now();
}

static inline bool stress_time_up(void) {
  if (atomic_load_explicit(&stress_stop, memory_order_relaxed))
    return true;
  if (bench_now() - stress_work_t0 >= stress_conf.duration) {
    atomic_store_explicit(&stress_stop, 1, memory_order_relaxed);
    return true;
  }
  return false;
}

/* Call with every worker joined and every block freed: runs
 * hak_heap_check and checks that hak_stats counts no more live blocks than
 * at the start (plus libc's slack when preloaded; exactly none in the
 * prefixed build), stops the watchdog and returns the exit code. */
static inline int stress_finish(void) {
  stress_helpers_end();
  size_t bad = stress_heap_check_fn ? stress_heap_check_fn() : 0;
  if (bad) {
    fprintf(stderr, "%s: HEAP CHECK: hak_heap_check() found %zu violation(s)\n", stress_conf.prog,
            bad);
    if (stress_stats_print_fn)
      stress_stats_print_fn();
    stress_fail(STRESS_EXIT_HEAPCHECK, "heap check failed");
  }
  /* Every program has freed every block it allocated by now: a block still
   * live was lost by the allocator (a dropped free). */
  if (stress_stats_fn) {
    struct hak_stats st;
    stress_stats_fn(&st);
    if (st.live_blocks > stress_live_base + stress_live_slack) {
      fprintf(stderr,
              "%s: HEAP CHECK: %zu block(s) (%zu bytes) still live after every block was freed, "
              "%zu at the start, %zu allowed for libc's own (lost frees)\n",
              stress_conf.prog, st.live_blocks, st.live_bytes, stress_live_base, stress_live_slack);
      if (stress_stats_print_fn)
        stress_stats_print_fn();
      stress_fail(STRESS_EXIT_HEAPCHECK, "blocks lost");
    }
    if (stress_live_slack && !stress_conf.quiet)
      printf("%s: live blocks: %zu at the start, %zu at the end (libc's: %zu allowed)\n",
             stress_conf.prog, stress_live_base, st.live_blocks, stress_live_slack);
  }
  atomic_store(&stress_done, 1);
  printf("%s: PASS (%.2fs)\n", stress_conf.prog, bench_now() - stress_t0);
  fflush(stdout);
  return STRESS_EXIT_OK;
}

static inline pthread_t stress_spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  int e;
  while ((e = pthread_create(&t, NULL, fn, arg)) == EAGAIN) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (e != 0) {
    fprintf(stderr, "%s: pthread_create: %s\n", stress_conf.prog, strerror(e));
    stress_fail(STRESS_EXIT_FAIL, "cannot create a thread");
  }
  return t;
}

/* The shape shared by the "storm" programs: stress_conf.threads threads run
 * fn (arg = thread index) over stress_conf.chunks shared slots, which are
 * published in *slots before the threads start; afterwards whatever the
 * slots still hold is verified and freed. Returns the elapsed seconds. */
static inline double stress_run_over_slots(void *(*fn)(void *), stress_xslot **slots,
                                           const char *what) {
  unsigned T = stress_conf.threads;
  *slots = (stress_xslot *)calloc(stress_conf.chunks, sizeof **slots);
  pthread_t *th = (pthread_t *)calloc(T, sizeof *th);
  if (!*slots || !th)
    stress_fail(STRESS_EXIT_FAIL, "out of memory for the slot array");
  double t0 = bench_now();
  for (unsigned i = 0; i < T; i++)
    th[i] = stress_spawn(fn, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  double el = bench_now() - t0;
  for (unsigned i = 0; i < stress_conf.chunks; i++)
    if ((*slots)[i].b.p)
      stress_block_free((*slots)[i].b, what);
  free(*slots);
  *slots = NULL;
  free(th);
  return el;
}

#endif /* HAK_STRESS_COMMON_H */
