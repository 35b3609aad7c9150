/* A range given back to the kernel is where the next one goes: the
 * address space does not drift. os.c's map_exact first tries the aligned
 * range next to the last one it returned (below it, top-down), where the
 * kernel would put a range while nothing was given back above it. Until
 * 2026-11-29 that hint was kept after the last range was unmapped: a
 * program that freed each big block before the next one (malloc(64 MiB),
 * free, in a loop: over OS_ZONE_MAX, so neither cached nor in the zone)
 * got each block 68 MiB below the one before, never the hole it had just
 * given back; within a minute of such a loop the blocks had walked down
 * the whole address space to the program's brk (taking, on the way, what
 * a later sbrk or a hint of the program's own would have found free) and
 * wrapped. The old over-map took the hole again each time. Now a range
 * of ours unmapped beyond the last one (above it top-down, below its end
 * bottom-up) makes the next range go where the kernel puts it.
 *
 * Each section maps and frees ROUNDS blocks in turn and checks that they
 * lie within SPAN_MAX ranges of each other (the walk: ROUNDS - 1): big
 * blocks (the large-block path), huge-aligned ones (alignment 8 MiB, an
 * over-map's alignment other than the segment's), and a big block between
 * two live ones freed in turn (a window that slides: a hole above the
 * last range, not the last range itself). Two more ways a range of ours
 * goes away, which until 2026-11-29 left the hint behind (os.c,
 * map_forget): a block whose munmap was refused (fuzz/fail_mmap.h, once
 * a block), an orphan unmapped by the retry at the next mapping just
 * before that mapping is placed (orphans: 68 MiB a round), and a block
 * moved by realloc to a bigger range (mremap), its old range gone; the
 * next block must go into that hole, not below the moved one (moved: the
 * new blocks walked down 144 MiB a round). Also under the legacy layout
 * (bottom-up: the walk went up), but in the TSan build, whose runtime
 * refuses that layout. Skipped under valgrind, which places mappings
 * itself. */
#include "hak_test.h"

#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>

#include "internal.h"

#include "../fuzz/fail_mmap.h"

#define MiB ((size_t)1 << 20)
#define BIG (64 * MiB) /* > OS_ZONE_MAX: mapped at each malloc, unmapped at each free */
#define ROUNDS 64
#define SPAN_MAX 4 /* ranges (of BIG plus a page, rounded to 4 MiB) */

_Static_assert(BIG > OS_ZONE_MAX, "a block the zone and the cache do not take");

static uintptr_t lo, hi;

static void seen(const void *p) {
  uintptr_t a = (uintptr_t)p;
  lo = a < lo ? a : lo;
  hi = a > hi ? a : hi;
}

static void check_span(const char *what) {
  size_t range = (BIG + OS_PAGE_SIZE + SEGMENT_SIZE - 1) & ~(size_t)(SEGMENT_SIZE - 1);
  CHECK_MSG(hi - lo <= SPAN_MAX * range,
            "%s: %d blocks, each freed before the next, span %zu MiB (at most %zu): [%#lx, %#lx]",
            what, ROUNDS, (size_t)(hi - lo) / MiB, SPAN_MAX * range / MiB, (unsigned long)lo,
            (unsigned long)hi);
}

/* ROUNDS blocks of BIG bytes (aligned to `align`, if not 0), each freed
 * before the next is allocated */
static void one_at_a_time(size_t align, const char *what) {
  lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < ROUNDS; i++) {
    char *p = align ? hak_aligned_alloc(align, BIG) : hak_malloc(BIG);
    REQUIRE(p != NULL && (!align || ((uintptr_t)p & (align - 1)) == 0));
    p[0] = 1;
    seen(p);
    hak_free(p);
  }
  check_span(what);
}

static void big(void) {
  one_at_a_time(0, "malloc(64 MiB)");
}

static void aligned(void) {
  one_at_a_time(8 * MiB, "aligned_alloc(8 MiB, 64 MiB)");
}

/* Two blocks live at once: the older one freed after the newer one is
 * mapped, so what is given back is never the last range. */
static void sliding(void) {
  lo = UINTPTR_MAX, hi = 0;
  char *old = hak_malloc(BIG);
  REQUIRE(old != NULL);
  old[0] = 1;
  seen(old);
  for (int i = 0; i < ROUNDS; i++) {
    char *p = hak_malloc(BIG);
    REQUIRE(p != NULL);
    p[0] = 1;
    seen(p);
    hak_free(old);
    old = p;
  }
  hak_free(old);
  check_span("two live 64 MiB blocks, the older freed");
}

/* Each block's munmap refused once (the process at its map limit): the
 * range stays mapped, an orphan (os.c), and the next mapping's retry
 * unmaps it, just before that mapping is placed. */
static void orphans(void) {
  lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < ROUNDS; i++) {
    char *p = hak_malloc(BIG);
    REQUIRE(p != NULL);
    p[0] = 1;
    seen(p);
    fo_arm(FO_BIT(FO_MUNMAP), 1, false); /* this free's munmap */
    hak_free(p);
    CHECK_MSG(fo_disarm() == 1, "orphans: the free's munmap was not refused");
  }
  check_span("64 MiB blocks whose munmap was refused, each retried at the next mapping");
}

/* A big block moved by realloc (mremap: a page of the test's after it, so
 * that it cannot grow in place) to a range mapped below it (top-down), its
 * old range gone; the next block's range goes where the kernel puts it,
 * in that hole, not below the moved one. The moved blocks stay live: each
 * round's moved block lies below the one before, but the new blocks must
 * not walk down with them (twice the span). */
#define MOVED_TO (BIG + 8 * MiB)
static void moved(void) {
  static char *live[ROUNDS];
  uintptr_t plo = UINTPTR_MAX, phi = 0;
  int n = 0;
  for (int i = 0; i < ROUNDS; i++) {
    char *p = hak_malloc(BIG);
    REQUIRE(p != NULL);
    p[0] = 1;
    hak_large_t *lg = registry_large(p);
    REQUIRE(lg != NULL);
    void *stop = hak_map_at((uint8_t *)lg + lg->map_size, OS_PAGE_SIZE, PROT_NONE);
    char *q = hak_realloc(p, MOVED_TO);
    REQUIRE(q != NULL);
    if (stop)
      munmap(stop, OS_PAGE_SIZE);
    if (q == p) { /* grown in place: the page was taken already, nothing moved */
      hak_free(q);
      continue;
    }
    plo = (uintptr_t)p < plo ? (uintptr_t)p : plo;
    phi = (uintptr_t)p > phi ? (uintptr_t)p : phi;
    live[n++] = q;
  }
  for (int i = 0; i < n; i++)
    hak_free(live[i]);
  REQUIRE(n >= ROUNDS / 2); /* most did move */
  size_t range = (BIG + OS_PAGE_SIZE + SEGMENT_SIZE - 1) & ~(size_t)(SEGMENT_SIZE - 1);
  CHECK_MSG(phi - plo <= SPAN_MAX * range,
            "moved: %d blocks of 64 MiB, each moved by realloc to a bigger range, the new blocks "
            "span %zu MiB (at most %zu): [%#lx, %#lx]",
            n, (size_t)(phi - plo) / MiB, SPAN_MAX * range / MiB, (unsigned long)plo,
            (unsigned long)phi);
}

/* Whether this process fills its address space bottom-up (the legacy
 * layout: the personality's flag, or vm.legacy_va_layout). */
static bool bottom_up(void) {
  int pers = personality(0xffffffff);
  REQUIRE(pers != -1);
  if (pers & ADDR_COMPAT_LAYOUT)
    return true;
  char v[8] = {0};
  int fd = open("/proc/sys/vm/legacy_va_layout", O_RDONLY);
  if (fd >= 0) {
    if (read(fd, v, sizeof v - 1) < 0)
      v[0] = 0;
    close(fd);
  }
  return v[0] == '1';
}

/* The walk of os.c's map_aligned after a refused over-map, the way the
 * kernel fills the address space not known yet (a new process; a first
 * unaligned range). The test's region R (1 GiB) has two holes: a tight
 * one at the kernel's end of R (top-down its top, right below what the
 * kernel mapped before R), the only one the kernel's own choice of place
 * for the range can be, and whose aligned neighbours are taken; and an
 * aligned one WALK_AT alignments further into R, where the walk finds it.
 * RLIMIT_AS refuses the over-map. Until 2026-11-29 the walk went both ways
 * while the way was not known, and the wrong way (up, top-down) cleared R
 * and the libraries first, placed the range above mmap_base, in the room
 * the kernel keeps below the stack (bottom-up: below mmap_base), and
 * learnt that way. The block must lie in R's aligned hole. Not in the
 * asan and tsan builds (their runtimes' mappings pass any RLIMIT_AS; tsan
 * places no range exactly). */
#define WALK_SIZE (36 * MiB) /* > OS_ZONE_MAX; the walk's 16 alignments reach past it */
#define WALK_AT 14           /* < the walk's 16 alignments */
static void walk(void) {
  if (hak_config_is("asan") || hak_config_is("tsan")) {
    printf("walk: not in the %s build\n", hak_config());
    return;
  }
  bool up = bottom_up();
  size_t map = WALK_SIZE + OS_PAGE_SIZE; /* the block's range: its header's page more */
  size_t rlen = (size_t)1 << 30;
  uint8_t *r = mmap(NULL, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  REQUIRE(r != MAP_FAILED);
  /* the free pages between R and the kernel's mapping beyond it (a kernel
   * that aligns big anonymous mappings leaves up to 2 MiB) taken too: the
   * tight hole must be the whole gap */
  uint8_t *fill = up ? r - 4 * MiB : r + rlen, *fill_end = up ? r : r + rlen + 4 * MiB;
  size_t filled = 0;
  if (up) /* downwards from R's start */
    while (fill_end - filled > fill &&
           hak_map_at(fill_end - filled - OS_PAGE_SIZE, OS_PAGE_SIZE, PROT_NONE))
      filled += OS_PAGE_SIZE;
  else
    while (fill + filled < fill_end && hak_map_at(fill + filled, OS_PAGE_SIZE, PROT_NONE))
      filled += OS_PAGE_SIZE;
  /* the tight hole, its start not aligned (else the range is kept where
   * the kernel puts it), and the aligned one */
  uint8_t *hole = up ? r : r + rlen - map;
  if (((uintptr_t)hole & SEGMENT_MASK) == 0)
    hole += up ? OS_PAGE_SIZE : -OS_PAGE_SIZE;
  uint8_t *down = (uint8_t *)((uintptr_t)hole & ~(uintptr_t)SEGMENT_MASK);
  uint8_t *aligned = up ? down + (WALK_AT + 1) * SEGMENT_SIZE : down - WALK_AT * SEGMENT_SIZE;
  REQUIRE(munmap(hole, map) == 0 && munmap(aligned, map) == 0);
  /* the kernel's own choice must be the tight hole (else a gap beyond R
   * holds the range: nothing to test) */
  void *k = mmap(NULL, map, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  REQUIRE(k != MAP_FAILED);
  munmap(k, map);
  char *p = NULL;
  if (k == hole) {
    os_test_forget_layout();                         /* as in a new process */
    struct rlimit was = hak_limit_as(map + 2 * MiB); /* the range fits, the over-map does not */
    p = hak_malloc(WALK_SIZE);
    REQUIRE(setrlimit(RLIMIT_AS, &was) == 0);
    CHECK_MSG(p && (uint8_t *)p >= aligned && (uint8_t *)p < aligned + map,
              "walk (%s): a %zu MiB block placed at %p, not in the aligned hole at %p of the "
              "region [%p, %p) whose tight hole the kernel chose%s",
              up ? "bottom-up" : "top-down", map / MiB, (void *)p, (void *)aligned, (void *)r,
              (void *)(r + rlen),
              !p                                                   ? ""
              : (up ? (uint8_t *)p < r : (uint8_t *)p >= r + rlen) ? ": past the kernel's end"
                                                                   : "");
  } else {
    printf("walk: the kernel put %zu MiB at %p, not in the hole at %p; not tested\n", map / MiB, k,
           (void *)hole);
  }
  if (p)
    hak_free(p);
  munmap(r, rlen);
  if (filled)
    munmap(up ? fill_end - filled : fill, filled);
}

/* Threads that learn the way the kernel fills the address space at once
 * (os.c's map_learn_dir: a process whose threads map their first
 * segments together). Each probes single pages and takes two next to each
 * other for the way; another learner's probes, given back meanwhile, leave
 * one-page holes on the kernel's side of a page just placed, and the next
 * page there reads as the other way. Until 2026-11-29 they all probed
 * together, and a thread learnt the wrong way (9 runs of this section in
 * 10, 8 threads, between round 4 and 9526 of 12000) and kept it for the
 * process (map_dir is set once): every exact mapping went the wrong way
 * from then on (map_near past the kernel's end of the address space). Now one thread probes at a
 * time (the others do without the way for that call). Each round forgets
 * the way, the threads learn it at once, and every thread's answer and the
 * way kept must be the one learnt alone, or none (0). */
#define LEARNERS 8
static pthread_barrier_t learn_start, learn_end;
static atomic_int learn_stop;
static int learnt[LEARNERS];
static void *learner(void *arg) {
  int i = (int)(intptr_t)arg;
  for (;;) {
    pthread_barrier_wait(&learn_start);
    if (atomic_load(&learn_stop))
      return NULL;
    learnt[i] = os_test_learn_dir();
    pthread_barrier_wait(&learn_end);
  }
}
static void learn_race(void) {
  os_test_forget_layout();
  int alone = os_test_learn_dir();
  REQUIRE(alone == -1 || alone == 1);
  REQUIRE(pthread_barrier_init(&learn_start, NULL, LEARNERS + 1) == 0 &&
          pthread_barrier_init(&learn_end, NULL, LEARNERS + 1) == 0);
  pthread_t t[LEARNERS];
  for (int i = 0; i < LEARNERS; i++)
    REQUIRE(pthread_create(&t[i], NULL, learner, (void *)(intptr_t)i) == 0);
  size_t rounds = hak_iters(12000), r, wrong = 0;
  int kept = alone;
  double end = hak_now() + 1.0 * hak_test_slowdown();
  for (r = 0; r < rounds && !wrong && hak_now() < end; r++) {
    os_test_forget_layout();
    pthread_barrier_wait(&learn_start); /* a sleeping barrier: the threads wake together */
    pthread_barrier_wait(&learn_end);
    for (int i = 0; i < LEARNERS; i++)
      wrong += learnt[i] == -alone;
    kept = os_test_learn_dir(); /* the way kept (or, none kept, learnt alone) */
    wrong += kept == -alone;
  }
  atomic_store(&learn_stop, 1);
  pthread_barrier_wait(&learn_start);
  for (int i = 0; i < LEARNERS; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&learn_start);
  pthread_barrier_destroy(&learn_end);
  CHECK_MSG(!wrong,
            "learn_race: %d threads learning the way at once (%s alone): round %zu learnt the "
            "other way (kept: %d)",
            LEARNERS, alone < 0 ? "top-down" : "bottom-up", r, kept);
  os_test_forget_layout();
}

/* A fork while another thread probes for the way (held at
 * HAK_HOOK_MAP_LEARNING): the child, where that thread does not exist,
 * must learn the way itself (map_learner holds the parent's pid, which
 * the child's first learner takes over; a flag would stay set there for
 * good, and the child would never learn it). */
static atomic_int learn_held, learn_forked;
static void learn_hold(enum hak_hook_point where, void *arg) {
  (void)arg;
  if (where != HAK_HOOK_MAP_LEARNING || atomic_exchange(&learn_held, 1))
    return;
  HAK_WAIT_FLAG(&learn_forked);
}
static void *learn_once(void *arg) {
  *(int *)arg = os_test_learn_dir();
  return NULL;
}
static void learn_fork(void) {
  os_test_forget_layout();
  int alone = os_test_learn_dir(), theirs = 0;
  REQUIRE(alone == -1 || alone == 1);
  os_test_forget_layout();
  atomic_store(&hak_test_hook, learn_hold);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, learn_once, &theirs) == 0);
  HAK_WAIT_FLAG(&learn_held);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    atomic_store(&hak_test_hook, NULL);
    _exit(os_test_learn_dir() == alone ? 0 : 1);
  }
  atomic_store(&learn_forked, 1);
  REQUIRE(pthread_join(t, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  CHECK_INT_EQ(theirs, alone);
  CHECK_CHILD_OK(pid, "learn_fork: a child forked while another thread probed for the way (exit "
                      "1: it did not learn the way)");
}

static void sections(void) {
  RUN_SECTION(big);
  RUN_SECTION(aligned);
  RUN_SECTION(sliding);
  RUN_SECTION(orphans);
  RUN_SECTION(moved);
  RUN_SECTION(walk);
  RUN_SECTION(learn_race);
  RUN_SECTION(learn_fork);
}

int main(int argc, char **argv) {
  if (hak_test_under_valgrind())
    hak_test_skip("valgrind places mappings itself");
  if (argc > 1 && !strcmp(argv[1], "--sections")) {
    sections();
    return hak_test_done();
  }
  sections();
  if (hak_config_is("tsan")) /* whose runtime refuses the legacy layout's mappings */
    return hak_test_done();
  /* the legacy layout (bottom-up), where the walk went up */
  int was = personality(0xffffffff);
  REQUIRE(was != -1 && personality((unsigned long)was | ADDR_COMPAT_LAYOUT) != -1);
  char *cmd[] = {(char *)hak_self_exe(), "--sections", NULL};
  struct hak_child c;
  int ran = hak_run_cmd(cmd, 300, &c);
  personality((unsigned long)was);
  REQUIRE(ran);
  CHECK_MSG(hak_child_exited(&c, 0), "legacy layout: the sections failed:\n%s",
            c.out ? c.out : "(no output)");
  hak_child_free(&c);
  return hak_test_done();
}
