/* The large-block zone (os.c, os_map_large): each new large-block range is
 * placed at the next slot of a zone of address space the kernel does not
 * hand out on its own, with OS_ZONE_ROOM left free after it, so that a
 * block can grow in place (realloc) and a cached mapping can grow to serve
 * a bigger block without its pages being moved. What must hold:
 *  - a new block is in the zone (every build but TSan, whose shadow memory
 *    is there);
 *  - consecutive ranges are one slot apart: the size rounded up to 4 MiB
 *    plus OS_ZONE_ROOM;
 *  - a block grows in place into that room, contents kept;
 *  - a range over OS_ZONE_MAX goes where the kernel puts it, one of exactly
 *    OS_ZONE_MAX to the zone;
 *  - a slot something else has taken is skipped and left alone; after
 *    OS_ZONE_TRIES taken slots in a row the range goes where the kernel
 *    puts it, and the zone is still used after that;
 *  - at its end the zone wraps to its start;
 *  - a hint the kernel does not honour (here: an address-space limit)
 *    turns the zone off for the rest of the process, and blocks still work;
 *  - two processes start at different slots (address-space randomisation);
 *  - all of it also under the kernel's other two layouts, where it fills
 *    the address space bottom-up from 42.7 TiB (legacy: setarch -L) or
 *    top-down from 21.3 TiB (an unlimited stack limit): the program runs
 *    itself again in each, and checks there that a kernel-placed mapping
 *    went where that layout puts it, and never into the zone.
 * Each section starts from hak_test_reset (zone not placed yet); placed and
 * skips_taken then place it with its next slot at its start. */
#include "hak_test.h"

#include <sys/mman.h>
#include <sys/personality.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)

static bool zone_expected(void) {
  return !hak_config_is("tsan");
}

/* A large block's range starts with its header (registry_large). */
static uint8_t *range_of(void *p) {
  return (uint8_t *)registry_large(p);
}

/* The slot of a 2 MiB block's range (header, whole pages: 4 MiB). */
static uintptr_t slot_2m(void) {
  return os_zone_slot(2 * MiB + OS_PAGE_SIZE);
}

/* A page of the test's own at `at`, PROT_NONE; NULL if it cannot be there. */
static void *squat(void *at) {
  return hak_map_at(at, hak_page_size(), PROT_NONE);
}

static bool mapped(const void *p) {
  unsigned char v;
  return mincore(hak_page_start(p), hak_page_size(), &v) == 0;
}

/* Places the zone with its next slot at its start, so that the few slots a
 * section takes cannot reach its end and wrap: from a random start near the
 * end, skips_taken's fallback took the zone's first slot and the test failed
 * in 4 of 400 runs (three layouts each). wraps tests the wrap on its own,
 * randomised the random start. */
static void from_zone_start(void) {
  if (zone_expected())
    os_zone_seek(0);
}

static void placed(void) {
  hak_test_reset();
  from_zone_start();
  /* a range bigger than the cache keeps goes where the kernel puts it
   * (first: a cached mapping in the zone could grow to serve it) */
  uint8_t *big = hak_malloc(OS_ZONE_MAX + MiB);
  REQUIRE(big != NULL);
  CHECK_MSG(os_zone_holds(big) == false, "a %zu-byte block went to the zone", OS_ZONE_MAX + MiB);
  big[OS_ZONE_MAX] = 1;
  hak_free(big); /* not cached: unmapped */
  /* one of exactly OS_ZONE_MAX (header and whole pages; with redzones the
   * lead and the redzone too: hak_test.h) is the zone's */
  size_t exact = OS_ZONE_MAX - hak_test_large_offset() - hak_test_redzone();
  uint8_t *edge = hak_malloc(exact);
  REQUIRE(edge != NULL);
  CHECK_MSG(os_zone_holds(edge) == zone_expected(),
            "a range of exactly %zu bytes at %p %s the zone", (size_t)OS_ZONE_MAX, (void *)edge,
            os_zone_holds(edge) ? "in" : "outside");
  edge[exact - 1] = 1;
  hak_free(edge);
  hak_trim(0); /* its mapping, cached, must not serve the blocks below */
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL);
  CHECK_MSG(os_zone_holds(a) == zone_expected(), "a new large block at %p %s the zone%s", (void *)a,
            os_zone_holds(a) ? "in" : "outside", zone_expected() ? "" : " (TSan: it must be off)");
  if (!zone_expected())
    return;
  uint8_t *b = hak_malloc(2 * MiB), *c = hak_malloc(9 * MiB);
  REQUIRE(b && c);
  CHECK_MSG(range_of(b) == range_of(a) + slot_2m() && range_of(c) == range_of(b) + slot_2m(),
            "consecutive ranges %p %p %p are not one slot apart (%zu bytes)", (void *)a, (void *)b,
            (void *)c, (size_t)slot_2m());
  /* os_zone_slot is the allocator's own formula: the room checked apart */
  CHECK_MSG(range_of(b) - range_of(a) >= (ptrdiff_t)(4 * MiB + 32 * MiB),
            "ranges %p and %p: less than 32 MiB free after a 4 MiB slot", (void *)a, (void *)b);
  /* grows in place into the room: 2 MiB -> 4 MiB + OS_ZONE_ROOM - 1 MiB
   * (the valgrind build moves every realloc: memcheck keeps its own sizes) */
  hak_fill(a, 2 * MiB, 7);
  size_t to = 4 * MiB + OS_ZONE_ROOM - MiB;
  uint8_t *g = hak_realloc(a, to);
  REQUIRE(g != NULL);
  CHECK_MSG(g == a || hak_config_is("valgrind"),
            "realloc of a 2 MiB block to %zu bytes moved it (%p -> %p)", to, (void *)a, (void *)g);
  CHECK_PATTERN(g, 2 * MiB, 7);
  g[to - 1] = 1;
  /* the next block's range stays where it was: the room ended before it */
  CHECK(mapped(range_of(b)) && (range_of(b) >= a + to || hak_config_is("valgrind")));
  hak_free(g);
  hak_free(b);
  hak_free(c);
}

static void skips_taken(void) {
  if (!zone_expected())
    return;
  hak_test_reset();
  from_zone_start();
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL && os_zone_holds(a));
  uintptr_t slot = slot_2m();
  /* the next slot taken: the one after it */
  void *sq = squat(range_of(a) + slot);
  REQUIRE(sq != NULL);
  errno = 0;
  uint8_t *b = hak_malloc(2 * MiB);
  REQUIRE(b != NULL);
  CHECK_MSG(errno == 0, "a malloc that skipped a taken slot left errno %d", errno);
  CHECK_MSG(range_of(b) == range_of(a) + 2 * slot,
            "with the next slot taken, a new range went to %p, not the slot after it (%p)",
            (void *)range_of(b), (void *)(range_of(a) + 2 * slot));
  CHECK_MSG(mapped(sq), "the page in the taken slot was unmapped");
  /* OS_ZONE_TRIES slots taken: where the kernel puts it; then the zone again */
  void *sqs[OS_ZONE_TRIES];
  for (int i = 0; i < OS_ZONE_TRIES; i++)
    REQUIRE((sqs[i] = squat(range_of(b) + (size_t)(i + 1) * slot)) != NULL);
  errno = 0;
  uint8_t *c = hak_malloc(2 * MiB);
  REQUIRE(c != NULL);
  CHECK_MSG(errno == 0, "a malloc that fell back from the zone left errno %d", errno);
  CHECK_MSG(!os_zone_holds(c), "with %d slots taken, a new range still went to the zone (%p)",
            OS_ZONE_TRIES, (void *)c);
  uint8_t *d = hak_malloc(2 * MiB);
  REQUIRE(d != NULL);
  CHECK_MSG(range_of(d) == range_of(b) + (size_t)(OS_ZONE_TRIES + 1) * slot,
            "after %d taken slots the zone was not used again (%p)", OS_ZONE_TRIES, (void *)d);
  for (int i = 0; i < OS_ZONE_TRIES; i++)
    CHECK_MSG(mapped(sqs[i]), "taken slot %d was unmapped", i);
  memset(c, 1, 2 * MiB);
  memset(d, 2, 2 * MiB);
  CHECK_EQ(hak_heap_check(), 0);
}

static void wraps(void) {
  if (!zone_expected())
    return;
  hak_test_reset();
  uintptr_t slot = slot_2m();
  /* the next slot would pass the end */
  uint8_t *base = (uint8_t *)os_zone_seek(OS_ZONE_SIZE - slot / 2);
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL);
  CHECK_MSG(range_of(a) == base, "a range past the zone's end went to %p, not its start %p",
            (void *)range_of(a), (void *)base);
  os_zone_seek(OS_ZONE_SIZE - slot); /* exactly the last slot */
  uint8_t *b = hak_malloc(2 * MiB);
  REQUIRE(b != NULL);
  CHECK_MSG(range_of(b) == base + OS_ZONE_SIZE - slot, "the zone's last slot was not used (%p)",
            (void *)b);
  hak_free(a);
  hak_free(b);
}

/* The next slot's mmap fails with ENOMEM (RLIMIT_AS): the zone is off from
 * then on, and blocks still come from where the kernel puts them. */
static void off_after_refusal(void) {
  hak_test_reset();
  if (!zone_expected()) {
    CHECK(!os_zone_on());
    return;
  }
  CHECK(os_zone_on());
  struct rlimit was = hak_limit_as(MiB);
  errno = 0;
  void *none = hak_malloc(2 * MiB);
  int e = errno;
  REQUIRE(setrlimit(RLIMIT_AS, &was) == 0);
  CHECK_MSG(none == NULL && e == ENOMEM, "malloc past RLIMIT_AS: %p, errno %d", none, e);
  CHECK_MSG(!os_zone_on(), "the zone is still on after its mmap failed with ENOMEM");
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL);
  CHECK_MSG(!os_zone_holds(a), "a block went to the zone after it was turned off (%p)", (void *)a);
  hak_fill(a, 2 * MiB, 3);
  uint8_t *g = hak_realloc(a, 6 * MiB);
  REQUIRE(g != NULL);
  CHECK_PATTERN(g, 2 * MiB, 3);
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(g);
}

static void print_first(void *arg) {
  (void)arg;
  hak_test_reset();
  void *p = hak_malloc(2 * MiB);
  dprintf(2, "%p\n", p);
}

static void randomised(void) {
  if (!zone_expected())
    return;
  struct hak_child c1, c2;
  REQUIRE(hak_run_child(print_first, NULL, 60, &c1) && hak_run_child(print_first, NULL, 60, &c2));
  CHECK(hak_child_exited(&c1, 0) && hak_child_exited(&c2, 0));
  void *p1 = NULL, *p2 = NULL;
  CHECK(c1.out && sscanf(c1.out, "%p", &p1) == 1 && c2.out && sscanf(c2.out, "%p", &p2) == 1);
  uintptr_t a1 = (uintptr_t)p1 - OS_ZONE_LO, a2 = (uintptr_t)p2 - OS_ZONE_LO;
  CHECK_MSG(a1 < OS_ZONE_HI - OS_ZONE_LO && a2 < OS_ZONE_HI - OS_ZONE_LO && p1 != p2,
            "two processes' first large blocks: %p and %p (want two places in [%#lx, %#lx))", p1,
            p2, (unsigned long)OS_ZONE_LO, (unsigned long)OS_ZONE_HI);
  hak_child_free(&c1);
  hak_child_free(&c2);
}

static void sections(void) {
  RUN_SECTION(placed);
  RUN_SECTION(skips_taken);
  RUN_SECTION(wraps);
  RUN_SECTION(randomised);
  RUN_SECTION(off_after_refusal);
}

/* Runs this program's sections again in a process started with `layout`
 * (personality flags) and, unless 0, `stack` (RLIMIT_STACK); its first
 * line says where the kernel put a mapping of its own, which must lie in
 * [lo, hi): the layout took effect. */
static void in_layout(const char *what, unsigned long layout, rlim_t stack, uintptr_t lo,
                      uintptr_t hi) {
  int was = personality(0xffffffff);
  struct rlimit old, lim;
  REQUIRE(was != -1 && getrlimit(RLIMIT_STACK, &old) == 0);
  lim = old;
  lim.rlim_cur = stack ? stack : old.rlim_cur;
  if (lim.rlim_cur != old.rlim_cur && setrlimit(RLIMIT_STACK, &lim) != 0) {
    hak_test_log("%s: cannot set the stack limit (%s): not run\n", what, strerror(errno));
    return;
  }
  REQUIRE(personality((unsigned long)was | layout) != -1);
  char *argv[] = {(char *)hak_self_exe(), "--sections", NULL};
  struct hak_child c;
  int ran = hak_run_cmd(argv, 300, &c);
  personality((unsigned long)was);
  setrlimit(RLIMIT_STACK, &old);
  REQUIRE(ran);
  void *where = NULL;
  CHECK_MSG(c.out && sscanf(c.out, "kernel placed %p", &where) == 1 && (uintptr_t)where >= lo &&
                (uintptr_t)where < hi,
            "%s: the kernel did not place a mapping in [%#lx, %#lx): %s", what, (unsigned long)lo,
            (unsigned long)hi, c.out ? c.out : "(no output)");
  CHECK_MSG(hak_child_exited(&c, 0), "%s: the sections failed:\n%s", what,
            c.out ? c.out : "(no output)");
  hak_child_free(&c);
}

int main(int argc, char **argv) {
  if (hak_test_under_valgrind())
    hak_test_skip("valgrind treats MAP_FIXED_NOREPLACE as a hint and does not apply RLIMIT_AS");
  if (argc > 1 && !strcmp(argv[1], "--sections")) {
    void *k = mmap(NULL, 4 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("kernel placed %p\n", k);
    fflush(stdout); /* before the sections fork */
    CHECK_MSG(k != MAP_FAILED && (uintptr_t)k + 4 * MiB - OS_ZONE_LO > OS_ZONE_HI - OS_ZONE_LO,
              "the kernel placed a mapping at %p, in the zone's window", k);
    sections();
    return hak_test_done();
  }
  sections();
  if (!hak_config_is("tsan")) { /* TSan maps its shadow where the layouts would put things */
    in_layout("legacy layout (bottom-up from 42.7 TiB)", ADDR_COMPAT_LAYOUT, 0, (uintptr_t)40 << 40,
              (uintptr_t)128 << 40);
    in_layout("unlimited stack (top-down from 21.3 TiB)", 0, RLIM_INFINITY, 0, (uintptr_t)24 << 40);
  }
  return hak_test_done();
}
