/* fuzz/ops_fork.h: the FZ_FORK op of the interpreter (included once, by
 * fuzz/ops.c; uses only the public ops.h/hakmem.h API, so ops.c's internals
 * may change freely).
 *
 * FZ_FORK forks the process (hakmem's pthread_atfork handlers run: locks held
 * across fork, and in the child the heaps of the threads that did not survive
 * are abandoned on their behalf). The child's stderr goes to a pipe that the
 * parent reads; the child runs one action, chosen by op->a, and ends with
 * _exit() (no atexit handlers, no leak check, no libFuzzer exit hooks):
 *
 *   FK_CLEAN          verifies every live block (the child's copy), frees them
 *                     all (blocks of threads that did not survive the fork live
 *                     in abandoned segments: reclaimed), allocates, writes and
 *                     frees a few blocks of its own (small and large),
 *                     requires hak_heap_check() == 0 and no live block in
 *                     hak_stats, prints hak_stats_print(); exits 0.
 *   FK_CHURN          FK_CLEAN that also allocates and frees a dozen segments'
 *                     worth of blocks (more empty segments than the segment
 *                     cache keeps, the purge threshold); costs ~60 ms, so it is
 *                     an action of its own. Under valgrind it is FK_CLEAN.
 *   FK_DOUBLE_FREE .. FK_NOT_START
 *                     one misuse from docs/SPEC-bad-input.md ("Fatal errors")
 *                     on the slot's block (or, if the slot is empty, on a block
 *                     of op->b bytes allocated by the child): the child must
 *                     die by SIGABRT after printing the right "hakmem: ..."
 *                     line with the right address. FK_DOUBLE_FREE on an empty
 *                     slot whose last block (fz_slot.stale) is no live block's
 *                     start now: the child frees that stale pointer, freed
 *                     any number of ops ago (its memory since cached, cut,
 *                     gathered, released, reused...), and must die by SIGABRT
 *                     with a "hakmem: double free of <p> (" or "hakmem:
 *                     invalid free of <p>: " line (since 2026-11-29; before, a second free
 *                     came right after the first, so a large mapping gathered
 *                     into another block and left registered, which a later
 *                     free follows into unmapped memory, passed every input:
 *                     large-gather-keeps-registration).
 *   FK_CORRUPT_*      a controlled write after free: the child allocates a run
 *                     of blocks, frees one whose page keeps a live neighbour
 *                     (the block is then on the thread's cache of its class,
 *                     or after hak_thread_cache_flush() on its page's free
 *                     list), overwrites its free marker or its link, and requires
 *                     hak_heap_check() to report it (count > 0 and the named
 *                     violation on stderr); exits 0.
 *
 * The parent asserts the child's exit status and output, then goes on with
 * its own state untouched. A child that hangs is killed by SIGALRM after
 * FK_CHILD_TIMEOUT s, which fails the check. At most FK_MAX_PER_INPUT forks run
 * per input (later FZ_FORK ops are no-ops) to keep inputs fast.
 *
 * Coverage builds (clang -fprofile-instr-generate): the child writes its own
 * profile (LLVM_PROFILE_FILE with its own %p; the counters inherited from the
 * parent are counted twice, which does not change what is covered) before
 * _exit and before dying by SIGABRT, so `make fuzz-coverage` counts the fork
 * handlers' child side, the fatal-error reporting and the heap check's
 * violation reporting. Everything is weak: other builds do not have it.
 *
 * valgrind config (hak_config() == "valgrind"): the write after free of the
 * FK_CORRUPT_* actions is itself a memcheck error, so those run FK_CLEAN. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "ops.h"

enum fz_fork_action {
  FK_CLEAN,
  FK_DOUBLE_FREE,    /* free(p) twice */
  FK_INTERIOR,       /* free(p + 8); with op->b odd, on the slot's block of 32 bytes or more
                        (fk_second): realloc(p + 16, usable - 16) */
  FK_FOREIGN,        /* free(&a stack variable) */
  FK_REALLOC_FREED,  /* free(p); realloc(p, 100) */
  FK_USABLE_FREED,   /* free(p); usable_size(p) */
  FK_SIZED_TOO_BIG,  /* free_sized(p, usable + 1); with op->b odd, on the slot's block
                        (fk_second): free_aligned_sized(p, a, usable), a twice the
                        largest power of two p is a multiple of */
  FK_NOT_START,      /* small: segment header memory; large: p + 4096 */
  FK_CORRUPT_MARKER, /* free block's marker flipped */
  FK_CORRUPT_SELF,   /* free block's link points to itself */
  FK_CORRUPT_LINK,   /* free block's link points into the middle of a block */
  FK_CHURN,          /* FK_CLEAN plus a dozen segments' worth of blocks */
  FK_ACTION_COUNT
};

#define FK_IS_CORRUPT(a) ((a) >= FK_CORRUPT_MARKER && (a) <= FK_CORRUPT_LINK)
#define FK_MAX_PER_INPUT 4
#define FK_CHILD_TIMEOUT 30
/* the child's stderr kept by the parent (the rest is read and dropped) */
#define FK_OUT_MAX 16384

extern void __llvm_profile_set_filename(const char *) __attribute__((weak));
extern int __llvm_profile_write_file(void) __attribute__((weak));

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define FK_UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#endif
#endif
#ifndef FK_UNPOISON
#define FK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static void fk_profile_dump(void) {
  if (__llvm_profile_write_file)
    __llvm_profile_write_file();
}

static void fk_on_abort(int sig) {
  fk_profile_dump();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void fk_say(const char *s) {
  ssize_t w = write(2, s, strlen(s));
  (void)w;
}

static __attribute__((noreturn)) void fk_child_exit(int code) {
  fk_profile_dump();
  _exit(code);
}

static __attribute__((noreturn, format(printf, 1, 2))) void fk_child_fail(const char *fmt, ...) {
  char buf[256];
  __builtin_va_list ap;
  __builtin_va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  __builtin_va_end(ap);
  fk_say("fuzz: fork child: ");
  fk_say(buf);
  fk_say("\n");
  fk_child_exit(3);
}

/* FK_CLEAN's own blocks: pattern written and verified before free. */
static void fk_own_blocks(size_t seed) {
  static const size_t sizes[] = {
      0, 16, 48, 100, 1024, 4000, 20000, HAK_SMALL_MAX, HAK_SMALL_MAX + 1, 300000};
  enum { N = sizeof sizes / sizeof sizes[0] };
  unsigned char *p[N];
  for (size_t i = 0; i < N; i++) {
    size_t n = sizes[(i + seed) % N];
    p[i] = hak_malloc(n);
    if (!p[i])
      fk_child_fail("malloc(%zu) returned NULL in the child", n);
    if ((uintptr_t)p[i] % 16 || hak_usable_size(p[i]) < n)
      fk_child_fail("child block %p of %zu bytes: misaligned or usable size %zu", (void *)p[i], n,
                    hak_usable_size(p[i]));
    memset(p[i], (int)(i + 1), n);
  }
  for (size_t i = 0; i < N; i++) {
    size_t n = sizes[(i + seed) % N];
    for (size_t j = 0; j < n; j += 97)
      if (p[i][j] != (unsigned char)(i + 1))
        fk_child_fail("child block %p byte %zu overwritten", (void *)p[i], j);
    if (i % 2)
      p[i] = hak_realloc(p[i], n + 200);
    hak_free(p[i]);
  }
}

/* FK_CHURN, not under valgrind: about 43 MiB of 30 KiB blocks (a dozen
 * segments), all freed: more empty segments than the segment cache keeps, so
 * some are unmapped, and enough free slices to reach the purge threshold. */
static void fk_segment_churn(void) {
  enum { N = 1400 };
  static void *p[N]; /* the child's own copy */
  for (int i = 0; i < N; i++)
    if (!(p[i] = hak_malloc(30000)))
      fk_child_fail("malloc(30000) number %d returned NULL in the child", i);
  for (int i = 0; i < N; i++)
    hak_free(p[N - 1 - i]);
}

static __attribute__((noreturn)) void fk_child_clean(struct fz_exec *x, int churn) {
  fz_exec_verify_all(x); /* a failed check aborts: the parent sees SIGABRT */
  hak_stats_print();     /* with the inherited blocks live (not checked) */
  for (int i = 0; i < x->nburst; i++)
    hak_free(x->burst[i].ptr);
  for (int i = 0; i < x->nlive; i++)
    hak_free(x->slots[x->order[i]].ptr);
  fk_own_blocks(x->ops);
  if (churn)
    fk_segment_churn();
  size_t v = hak_heap_check();
  if (v)
    fk_child_fail("hak_heap_check() found %zu violation(s) in the child", v);
  struct hak_stats st;
  hak_stats(&st);
  if (st.live_blocks != 0)
    fk_child_fail("%zu block(s) live in the child after freeing everything", st.live_blocks);
  hak_stats_print();
  const char *cfg = hak_config();
  if (!cfg || !*cfg)
    fk_child_fail("hak_config() is empty");
  for (size_t n = 0; n <= HAK_SMALL_MAX; n += 1 + n / 3) {
    size_t c = hak_size_to_class(n);
    if (c >= hak_size_class_count() || hak_size_class_size(c) < n ||
        (c > 0 && hak_size_class_size(c - 1) >= n && n > 0))
      fk_child_fail("hak_size_to_class(%zu) = %zu is not the smallest class that fits", n, c);
  }
  if (hak_size_to_class(HAK_SMALL_MAX + 1) != (size_t)-1)
    fk_child_fail("hak_size_to_class(HAK_SMALL_MAX + 1) is a class");
  fk_child_exit(0);
}

/* Finds two blocks of the run, a below b, b = a + usable, b not at a 64 KiB
 * boundary: they are in the same page, so freeing b leaves its page in use and
 * b on that page's free list. Returns b's index, or -1. */
static int fk_pick_neighbour(unsigned char **run, int n, size_t u) {
  for (int i = n - 1; i > 0; i--)
    for (int j = 0; j < n; j++)
      if (run[i] == run[j] + u && ((uintptr_t)run[i] & 0xffff) != 0)
        return i;
  return -1;
}

static __attribute__((noreturn)) void fk_child_corrupt(unsigned action, size_t size) {
  enum { RUN = 32 };
  unsigned char *run[RUN];
  if (size == 0 || size > 4096)
    size = 48;
  for (int i = 0; i < RUN; i++)
    if (!(run[i] = hak_malloc(size)))
      fk_child_fail("malloc(%zu) returned NULL in the child", size);
  size_t u = hak_usable_size(run[0]);
  int k = fk_pick_neighbour(run, RUN, u);
  if (k < 0) {
    fk_say("fuzz: fork child: no two neighbouring blocks in one page\n");
    fk_child_exit(4);
  }
  if (hak_heap_check() != 0)
    fk_child_fail("heap check failed before the corruption");
  unsigned char *b = run[k];
  hak_free(b);
  /* b now heads the thread's cache of its class; with an odd k the cache
   * is flushed first, so b is on its page's free list instead: both kinds
   * of list are checked */
  int in_page = k & 1;
  if (in_page)
    hak_thread_cache_flush();
  FK_UNPOISON(b, 16);
  uintptr_t *w = (uintptr_t *)(void *)b;
  const char *want;
  if (action == FK_CORRUPT_MARKER) {
    w[1] ^= 1;
    want = "free block lost its free marker";
  } else if (action == FK_CORRUPT_SELF) {
    w[0] = (uintptr_t)b;
    want = "block listed twice";
  } else {
    w[0] = (uintptr_t)b + 8;
    want = in_page ? "local free list entry outside the page"
                   : "thread cache entry outside the heap's pages of its class";
  }
  size_t v = hak_heap_check();
  if (v == 0)
    fk_child_fail("hak_heap_check() missed a corrupted free block %p (%s)", (void *)b, want);
  fk_say("fuzz: fork child: expect ");
  fk_say(want);
  fk_say("\n");
  fk_child_exit(0);
}

/* The second way of FK_SIZED_TOO_BIG and FK_INTERIOR, set before the fork
 * (since 2026-11-29: until then no fuzz input passed free_aligned_sized an
 * alignment its block lacks, or realloc an interior pointer, and a
 * free_aligned_sized that never checked it, or a realloc fast path that
 * took any pointer that fits for a block's start, passed every replay:
 * free-aligned-sized-alignment-unchecked, realloc-fast-no-block-start-check). */
static int fk_second;
static size_t fk_align_above(const void *p) {
  uintptr_t a = (uintptr_t)p;
  return (size_t)(a & (0 - a)) << 1;
}

/* The misuse actions: never return (hakmem aborts) unless hakmem misses it. */
static void fk_child_misuse(unsigned action, unsigned char *p, size_t usable, int *on_stack) {
  switch (action) {
  case FK_DOUBLE_FREE: /* freed already (fk_free_first) */
    hak_free(p);
    break;
  case FK_INTERIOR:
    if (fk_second)
      p = hak_realloc(p + 16, usable - 16);
    else
      hak_free(p + 8);
    break;
  case FK_FOREIGN:
    hak_free(on_stack);
    break;
  case FK_REALLOC_FREED:
    p = hak_realloc(p, 100);
    break;
  case FK_USABLE_FREED:
    usable = hak_usable_size(p);
    break;
  case FK_SIZED_TOO_BIG:
    if (fk_second)
      hak_free_aligned_sized(p, fk_align_above(p), usable);
    else
      hak_free_sized(p, usable + 1);
    break;
  default: /* FK_NOT_START */
    if (usable <= HAK_SMALL_MAX)
      hak_free((void *)(((uintptr_t)p & ~(uintptr_t)((4 << 20) - 1)) + 256));
    else
      hak_free(p + 4096);
    break;
  }
  fk_child_fail("misuse %u of block %p (usable %zu) was not reported", action, (void *)p, usable);
}

/* Expected first words of the fatal line for a misuse of p. */
/* The child's "fuzz: fork child: expect <line>" announcement: `prefix` +
 * <line> into want (empty if absent). Returns where <line> starts in `out`,
 * or NULL. */
static const char *fk_expected(const char *out, const char *prefix, char *want, size_t size) {
  static const char tag[] = "fuzz: fork child: expect ";
  const char *e = strstr(out, tag);
  want[0] = 0;
  if (!e)
    return NULL;
  e += sizeof tag - 1;
  snprintf(want, size, "%s%.*s", prefix, (int)strcspn(e, "\n"), e);
  return e;
}

/* The misuses of a freed block: their first step, the free. */
static int fk_frees_first(unsigned action) {
  return action == FK_DOUBLE_FREE || action == FK_REALLOC_FREED || action == FK_USABLE_FREED;
}

/* That free, in the child before it announces what hakmem will say: 1 when
 * it emptied a small block's page and the page went back to its segment
 * (the pages' count fell; the child is single-threaded). The second
 * use is then named for what that memory holds, `not the start of an
 * allocated block` (docs/SPEC-bad-input.md; no allocation comes between),
 * not as a use of a freed block. */
static int fk_free_first(unsigned char *p, size_t usable) {
  if (usable > HAK_SMALL_MAX) {
    hak_free(p);
    return 0;
  }
  /* all classes' pages: the block's class is not always the class of its
   * usable size (the asan and valgrind builds' redzones: malloc(48) takes a
   * 64-byte block with 48 usable bytes) */
  struct hak_stats st;
  hak_stats(&st);
  size_t before = 0, after = 0;
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++)
    before += st.classes[c].pages;
  hak_free(p);
  hak_stats(&st);
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++)
    after += st.classes[c].pages;
  return after < before;
}

/* page_gone: fk_free_first's answer (freed-block misuses only). */
static void fk_expect(char *buf, size_t n, unsigned action, const unsigned char *p, size_t usable,
                      const void *stack, int page_gone) {
  if (page_gone) {
    snprintf(buf, n, "hakmem: invalid %s of %p: not the start of an allocated block",
             action == FK_DOUBLE_FREE     ? "free"
             : action == FK_REALLOC_FREED ? "realloc"
                                          : "usable_size",
             (const void *)p);
    return;
  }
  switch (action) {
  case FK_DOUBLE_FREE:
    snprintf(buf, n, "hakmem: double free of %p (", (const void *)p);
    break;
  case FK_INTERIOR:
    if (fk_second)
      snprintf(buf, n, "hakmem: invalid realloc of %p: ", (const void *)(p + 16));
    else
      snprintf(buf, n, "hakmem: invalid free of %p: ", (const void *)(p + 8));
    break;
  case FK_FOREIGN:
    snprintf(buf, n, "hakmem: invalid free of %p: not allocated by hakmem", stack);
    break;
  case FK_REALLOC_FREED:
    snprintf(buf, n, "hakmem: realloc of freed block %p (", (const void *)p);
    break;
  case FK_USABLE_FREED:
    snprintf(buf, n, "hakmem: usable_size of freed block %p (", (const void *)p);
    break;
  case FK_SIZED_TOO_BIG:
    if (fk_second)
      snprintf(buf, n, "hakmem: invalid free_sized of %p: block not aligned to %zu (",
               (const void *)p, fk_align_above(p));
    else
      snprintf(buf, n, "hakmem: invalid free_sized of %p: size %zu larger than block",
               (const void *)p, usable + 1);
    break;
  default:
    snprintf(buf, n, "hakmem: invalid free of %p: not the start of an allocated block",
             usable <= HAK_SMALL_MAX
                 ? (const void *)(((uintptr_t)p & ~(uintptr_t)((4 << 20) - 1)) + 256)
                 : (const void *)(p + 4096));
    break;
  }
}

/* Same format as ops.c's checks: "fuzz: check failed at op N: ...", then abort. */
static __attribute__((noreturn, format(printf, 2, 3))) void fk_fail(const struct fz_exec *x,
                                                                    const char *fmt, ...) {
  char buf[2048];
  int n = snprintf(buf, sizeof buf, "fuzz: check failed at op %u: ", x->ops);
  __builtin_va_list ap;
  __builtin_va_start(ap, fmt);
  vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  __builtin_va_end(ap);
  fk_say(buf);
  fk_say("\n");
  abort();
}

static void fk_mix(struct fz_exec *x, uint64_t v) {
  x->digest ^= v + 0x9e3779b97f4a7c15ull + (x->digest << 6) + (x->digest >> 2);
  x->digest *= 0xff51afd7ed558ccdull;
}

/* One edge per action and per kind of block: libFuzzer cannot see the child's
 * coverage, but this way it keeps (and -merge=1 keeps) an input per outcome.
 * The asm statements keep the compiler from turning the switch into a table. */
#define FK_EDGE(n)                                                                                 \
  case n:                                                                                          \
    __asm__ volatile("" ::"r"(n));                                                                 \
    break;
static __attribute__((noinline)) void fk_edge(unsigned action, unsigned kind) {
  // clang-format off
  switch (action) {
    FK_EDGE(0) FK_EDGE(1) FK_EDGE(2) FK_EDGE(3) FK_EDGE(4) FK_EDGE(5) FK_EDGE(6) FK_EDGE(7)
    FK_EDGE(8) FK_EDGE(9) FK_EDGE(10) FK_EDGE(11) FK_EDGE(24) FK_EDGE(25) FK_EDGE(26)
    FK_EDGE(33) FK_EDGE(36) FK_EDGE(37) FK_EDGE(50) FK_EDGE(54)
    default : break;
  }
  switch (kind) {
    FK_EDGE(0) FK_EDGE(1) FK_EDGE(2) FK_EDGE(3) FK_EDGE(4) default : break;
  }
  // clang-format on
}

static void fz_exec_fork(struct fz_exec *x, const struct fz_op *op) {
  /* under valgrind a fork costs about a second: one per input */
  int valgrind = strcmp(hak_config(), "valgrind") == 0;
  if (x->forks >= (valgrind ? 1 : FK_MAX_PER_INPUT))
    return;
  x->forks++;
  unsigned action = (unsigned)(op->a % FK_ACTION_COUNT);
  if (valgrind && action >= FK_CORRUPT_MARKER)
    action = FK_CLEAN;
  struct fz_slot *s = &x->slots[op->slot];
  unsigned char *p = s->ptr;
  size_t usable = s->usable;
  size_t own = op->b;
  if (action >= FK_DOUBLE_FREE && action < FK_CORRUPT_MARKER && !p && own > ((size_t)8 << 20))
    action = FK_CLEAN; /* no block to misuse and the child's own would be too big */
  if (action == FK_FOREIGN)
    p = NULL;
  fk_second = (action == FK_SIZED_TOO_BIG || (action == FK_INTERIOR && s->usable >= 32)) && p &&
              (op->b & 1);
  unsigned char *stale = action == FK_DOUBLE_FREE && !p ? s->stale : NULL;
  for (int i = 0; stale && i < x->nlive; i++)
    if (x->slots[x->order[i]].ptr == stale)
      stale = NULL; /* its memory is a live block again: a valid free */
  for (int i = 0; stale && i < x->nburst; i++)
    if (x->burst[i].ptr == stale)
      stale = NULL;
  int clean = action == FK_CLEAN || action == FK_CHURN;
  int fds[2];
  if (pipe(fds) != 0) {
    perror("fuzz: pipe");
    abort();
  }
  int stack_var = 0;
  pid_t pid = fork();
  if (pid < 0) {
    perror("fuzz: fork");
    abort();
  }
  if (pid == 0) {
    /* counters are not reset: the atfork child handler has already run */
    const char *prof = getenv("LLVM_PROFILE_FILE");
    if (__llvm_profile_set_filename && prof && *prof)
      __llvm_profile_set_filename(prof); /* re-expands %p with the child's pid */
    signal(SIGALRM, SIG_DFL);
    alarm(FK_CHILD_TIMEOUT);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fk_on_abort;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    if (clean)
      fk_child_clean(x, action == FK_CHURN);
    if (FK_IS_CORRUPT(action))
      fk_child_corrupt(action, usable && usable <= HAK_SMALL_MAX ? usable : own);
    if (stale) {
      fk_say("fuzz: fork child: expect hakmem: \n");
      hak_free(stale);
      fk_child_fail("free of the stale pointer %p (its slot's last block) was not reported",
                    (void *)stale);
    }
    if (action != FK_FOREIGN && !p) {
      p = hak_malloc(own);
      if (!p)
        fk_child_fail("malloc(%zu) returned NULL in the child", own);
      usable = hak_usable_size(p);
    }
    /* the misuse's expected line, for the parent: it cannot know a child's block */
    char want[200];
    int page_gone = fk_frees_first(action) ? fk_free_first(p, usable) : 0;
    fk_expect(want, sizeof want, action, p, usable, &stack_var, page_gone);
    fk_say("fuzz: fork child: expect ");
    fk_say(want);
    fk_say("\n");
    fk_child_misuse(action, p, usable, &stack_var);
    fk_child_exit(3);
  }
  close(fds[1]);
  char out[FK_OUT_MAX + 1];
  size_t len = 0;
  for (;;) {
    char tmp[512];
    ssize_t r = read(fds[0], tmp, sizeof tmp);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    size_t take = (size_t)r < FK_OUT_MAX - len ? (size_t)r : FK_OUT_MAX - len;
    memcpy(out + len, tmp, take);
    len += take;
  }
  out[len] = 0;
  close(fds[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      perror("fuzz: waitpid");
      abort();
    }
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
  if (clean) {
    /* the child checked hak_stats itself; its printout must say so too, unless cut off */
    if (code != 0 || (len < FK_OUT_MAX && !strstr(out, "hakmem stats: live blocks 0,")))
      fk_fail(x, "fork child (clean) ended with status %d signal %d; its stderr:\n%.1500s", code,
              sig, out);
  } else if (FK_IS_CORRUPT(action)) {
    /* exit 4: the run had no two neighbouring blocks in a page (nothing checked) */
    char want[96];
    const char *e = fk_expected(out, "hakmem: heap check: ", want, sizeof want);
    if (!(code == 4 || (code == 0 && e && strstr(out, want))))
      fk_fail(x, "fork child (corruption %u) ended with status %d signal %d; its stderr:\n%.1500s",
              action, code, sig, out);
    action += code == 4 ? 16 : 0;
  } else {
    char want[200];
    const char *e = fk_expected(out, "", want, sizeof want);
    /* hakmem's own line comes after the announcement, which itself starts with
     * "hakmem: ": searched from e, it found the announcement, compared it with
     * itself and passed whatever hakmem printed (before 2026-11-27) */
    const char *got = e ? strstr(e + strcspn(e, "\n"), "hakmem: ") : NULL;
    /* a stale pointer's free: hakmem's line names a double free or an
     * invalid free of that very pointer (until 2026-11-29 "free of <p>"
     * anywhere on the line, which a longer pointer starting with p's digits,
     * or "free of <p>" after some other error's text, also passed) */
    int stale_named = 1;
    if (stale && got) {
      char d[64], v[64];
      snprintf(d, sizeof d, "hakmem: double free of %p (", (void *)stale);
      snprintf(v, sizeof v, "hakmem: invalid free of %p: ", (void *)stale);
      stale_named = strncmp(got, d, strlen(d)) == 0 || strncmp(got, v, strlen(v)) == 0;
    }
    if (sig != SIGABRT || !*want || !got || strncmp(got, want, strlen(want)) != 0 || !stale_named)
      fk_fail(x,
              "fork child (misuse %u) ended with status %d signal %d, expected SIGABRT and '%s'; "
              "its stderr:\n%.1500s",
              action, code, sig, want, out);
    /* a freed block whose page went back (fk_free_first): an outcome of its own */
    action += fk_frees_first(action) && strstr(want, ": not the start") ? 32 : 0;
  }
  /* kind: 0 the slot's small block, 1 its large block, 2 the child's own, 3 none, 4 a stale pointer
   */
  action += fk_second ? 48 : 0; /* an outcome of its own */
  unsigned kind = stale ? 4 : !p ? (action == FK_FOREIGN || clean ? 3 : 2) : usable > HAK_SMALL_MAX;
  fk_edge(action, kind);
  fk_mix(x, 0xf0 | (uint64_t)action << 8);
}
