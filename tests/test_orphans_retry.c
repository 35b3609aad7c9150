/* The ranges a refused munmap left mapped (os.c, orphans) are unmapped
 * again once the kernel lets go of them, whatever the other ranges of the
 * table hold (README, Using hakmem: the limit of mappings).
 *
 * At the kernel's limit of mappings (vm.max_map_count) a munmap that would
 * split a mapping fails; hakmem gives such a range's pages back and keeps
 * the range in a table, retried a few at each new mapping and successful
 * unmap, all at hak_trim. Until 2026-11-28 the few were always the newest:
 * ranges whose neighbours stay live can never be unmapped, and once the
 * newest ORPHANS_RETRY were such, an older range whose neighbours had gone
 * was never tried again but by hak_trim (part `rotate`); and a malloc that
 * needed a new mapping at the limit tried only those few before its mmap
 * failed with ENOMEM, the table holding a range that could be unmapped to
 * make room for it (part `malloc`); and a fork while another thread held
 * the table (a retry) left it held for good in the child, which then
 * neither kept a refused munmap's range nor tried any again (part `fork`).
 *
 * Each part (all three in one process, each after the one before has left
 * the limit) fills the table of mappings with the test's own (single pages of
 * alternating protections, which the kernel cannot merge), after making
 * triples of pages, each one mapping: the middle page of each is handed to
 * os_munmap, which the kernel refuses (it would split the triple), so each
 * becomes an orphan, in the order of the triples. Then the outer pages of
 * triple FREED, in the middle, are unmapped (at a mapping's end: no split,
 * allowed at the limit), so its middle page is a mapping of its own that
 * the kernel now lets go;
 * the others stay as they are. */
#include "hak_test.h"
#include "hak_test_internal.h"

#define KiB ((size_t)1 << 10)
#define TRIPLES 11
#define FREED 5 /* the triple whose orphan the kernel lets go */

/* more stuck orphans before it and after it than a partial retry tries */
_Static_assert(FREED > ORPHANS_RETRY && TRIPLES - 1 - FREED >= ORPHANS_RETRY, "orphans' layout");

static size_t pg;
static unsigned char *tri;   /* TRIPLES triples of pages */
static unsigned char *freed; /* FREED's middle page */
static unsigned char *spare; /* a triple more, no orphan (part fork) */

static bool mapped(const void *p) {
  unsigned char v;
  return mincore((void *)p, pg, &v) == 0; /* else ENOMEM: not mapped */
}

/* At the limit, with TRIPLES orphans in the table, added in the order of
 * their triples: FREED's retryable, the others not. Skips the test where
 * the kernel does not refuse the split. */
static void orphans_at_limit(void) {
  pg = (size_t)sysconf(_SC_PAGESIZE);
  /* hakmem set up (heap, segment), its caches empty, the table empty */
  hak_free(hak_malloc(100));
  hak_free(hak_malloc(300 * KiB));
  hak_trim(0);
  tri = mmap(NULL, 3 * (TRIPLES + 1) * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
  REQUIRE(tri != MAP_FAILED);
  freed = tri + ((size_t)FREED * 3 + 1) * pg;
  spare = tri + (size_t)TRIPLES * 3 * pg;
  for (int t = 1; t <= TRIPLES; t += 2) /* one mapping each */
    REQUIRE(mprotect(tri + (size_t)t * 3 * pg, 3 * pg, PROT_READ) == 0);
  size_t n = hak_map_fill();
  if (n >= HAK_MAP_FILL_MAX)
    hak_test_skip("no limit of mappings reached");
  for (int t = 0; t < TRIPLES; t++) {
    unsigned char *mid = tri + ((size_t)t * 3 + 1) * pg;
    errno = 4321;
    os_munmap(mid, pg);
    CHECK_INT_EQ(errno, 4321);
    if (!mapped(mid))
      hak_test_skip("the kernel splits a mapping at the limit (munmap did not fail)");
  }
  /* FREED's ends go: its middle page is a mapping of its own */
  REQUIRE(munmap(freed - pg, pg) == 0);
  REQUIRE(munmap(freed + pg, pg) == 0);
  REQUIRE(mapped(freed));
  printf("at the limit after %zu mappings of the test's own, %d orphans\n", n, TRIPLES);
}

/* the stuck ones stay mapped (the kernel still refuses), and go once the
 * limit is left and hak_trim retries them all */
static void stuck_stay_then_go(void) {
  for (int t = 0; t < TRIPLES; t++)
    CHECK_MSG(t == FREED || mapped(tri + ((size_t)t * 3 + 1) * pg),
              "orphan %d unmapped at the limit", t);
  hak_map_unfill(SIZE_MAX);
  for (int t = 0; t < TRIPLES; t++) { /* its ends: the middle a mapping of its own */
    if (t == FREED)
      continue;
    REQUIRE(munmap(tri + (size_t)t * 3 * pg, pg) == 0);
    REQUIRE(munmap(tri + ((size_t)t * 3 + 2) * pg, pg) == 0);
  }
  hak_trim(0);
  for (int t = 0; t < TRIPLES; t++)
    CHECK_MSG(!mapped(tri + ((size_t)t * 3 + 1) * pg), "orphan %d left mapped after hak_trim", t);
  munmap(spare, 3 * pg);
  CHECK_EQ(hak_heap_check(), 0);
}

/* Partial retries (as at each new mapping or unmap) reach the orphan the
 * kernel lets go past the ones it does not, older and newer. */
static void part_rotate(void) {
  orphans_at_limit();
  for (int i = 0; i < 2 * TRIPLES; i++) {
    errno = 4321;
    os_orphans_retry(ORPHANS_RETRY);
    CHECK_INT_EQ(errno, 4321);
  }
  CHECK_MSG(!mapped(freed),
            "%d partial retries of %u left an orphan mapped that the kernel lets go", 2 * TRIPLES,
            ORPHANS_RETRY);
  stuck_stay_then_go();
}

/* A malloc that needs a new mapping at the limit gets it once an orphan
 * is unmapped. Its mapping's partial retry (the table's first ORPHANS_RETRY:
 * a table started empty starts its rotation at its start) reaches none
 * the kernel lets go: the mmap is refused, and the retry of all of them
 * must make the room. */
static void part_malloc(void) {
  orphans_at_limit();
  errno = 4321;
  void *p = hak_malloc(1024 * KiB);
  CHECK_MSG(p != NULL, "a malloc at the limit failed (errno %d) with a retryable orphan", errno);
  CHECK_INT_EQ(errno, 4321);
  CHECK(!mapped(freed));
  if (p) {
    memset(p, 0x5a, 1024 * KiB);
    errno = 4321; /* mincore's ENOMEM above */
    hak_free(p);
    CHECK_INT_EQ(errno, 4321);
  }
  stuck_stay_then_go();
}

/* A fork while another thread holds the table (a retry): the child's
 * refused munmaps still go into its table, and are retried. */
static atomic_int go, held_seen, forked;

static void hook(enum hak_hook_point where, void *arg) {
  (void)arg;
  if (where != HAK_HOOK_ORPHANS_HELD || atomic_exchange(&held_seen, 1))
    return;
  HAK_WAIT_FLAG(&forked);
}

static void *trimmer(void *arg) {
  (void)arg;
  HAK_WAIT_FLAG(&go);
  hak_trim(0);
  return NULL;
}

static void part_fork(void) {
  pthread_t t; /* before the limit: its stack is a mapping */
  REQUIRE(pthread_create(&t, NULL, trimmer, NULL) == 0);
  orphans_at_limit();
  atomic_store(&hak_test_hook, hook);
  atomic_store(&go, 1);
  HAK_WAIT_FLAG(&held_seen);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    atomic_store(&hak_test_hook, NULL);
    unsigned char *mid = spare + pg;
    errno = 4321;
    os_munmap(mid, pg); /* refused: an orphan of the child's */
    if (errno != 4321 || !mapped(mid))
      _exit(2);
    if (munmap(spare, pg) != 0 || munmap(spare + 2 * pg, pg) != 0)
      _exit(3);
    hak_trim(0); /* its middle page a mapping of its own: unmapped */
    _exit(mapped(mid) ? 1 : 0);
  }
  atomic_store(&forked, 1);
  REQUIRE(pthread_join(t, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  CHECK_CHILD_OK(pid, "fork child (forked while a retry held the table; exit 1: its orphan "
                      "left mapped after hak_trim)");
  CHECK(!mapped(freed)); /* the parent's retry went on */
  stuck_stay_then_go();
}

int main(void) {
  hak_skip_unless_map_limit_fillable();
  /* one after the other in this process (not RUN_SECTION: a part may
   * skip the test, which a section's child cannot) */
  part_rotate();
  printf("part rotate: done\n");
  part_malloc();
  printf("part malloc: done\n");
  part_fork();
  printf("part fork: done\n");
  return hak_test_done();
}
