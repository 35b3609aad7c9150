/* The large-block zone (os.c, os_map_large): each new large-block range is
 * placed at the next slot of a zone of address space the kernel does not
 * hand out on its own, with OS_ZONE_ROOM left free after it, so that a
 * block can grow in place (realloc) and a cached mapping can grow to serve
 * a bigger block without its pages being moved. What must hold:
 *  - a new block is in the zone (release, debug, UBSan, valgrind, trace;
 *    never under ASan or TSan, whose shadow memory is there);
 *  - consecutive ranges are one slot apart: the size rounded up to 4 MiB
 *    plus OS_ZONE_ROOM;
 *  - a block grows in place into that room, contents kept;
 *  - a slot something else has taken is skipped and left alone; after
 *    OS_ZONE_TRIES taken slots in a row the range goes where the kernel
 *    puts it, and the zone is still used after that;
 *  - at its end the zone wraps to its start;
 *  - a hint the kernel does not honour (here: an address-space limit)
 *    turns the zone off for the rest of the process, and blocks still work;
 *  - two processes start at different slots (address-space randomisation).
 * Each section runs in a fresh child (no large block allocated before). */
#include "hak_test.h"

#include <sys/mman.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)
#define HDR 64 /* a large block's header (large.c) */
#define HAK_CONFIG_NAME_ (zone_expected() ? "this configuration" : "ASan/TSan")

static bool zone_expected(void) {
  return !hak_config_is("asan") && !hak_config_is("tsan");
}

static uintptr_t slot_of(size_t map) {
  return ((map + SEGMENT_MASK) & ~(uintptr_t)SEGMENT_MASK) + OS_ZONE_ROOM;
}

/* A 2 MiB block's range (header, whole pages) takes one 4 MiB slot. */
static uint8_t *range_of(void *p) {
  return (uint8_t *)p - HDR;
}

/* Maps a page of our own at `at`, PROT_NONE; NULL if it cannot be there. */
static void *squat(void *at) {
  void *q = mmap(at, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (q != MAP_FAILED && q != at) {
    munmap(q, 4096);
    return NULL;
  }
  return q == at ? q : NULL;
}

static bool mapped(const void *p) {
  unsigned char v;
  return mincore((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096, &v) == 0;
}

static void placed(void) {
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL);
  CHECK_MSG(os_zone_holds(a) == zone_expected(), "%s: a new large block at %p %s the zone",
            HAK_CONFIG_NAME_, (void *)a, os_zone_holds(a) ? "in" : "outside");
  if (!zone_expected())
    return;
  uint8_t *b = hak_malloc(2 * MiB), *c = hak_malloc(9 * MiB);
  REQUIRE(b && c);
  CHECK_MSG(range_of(b) == range_of(a) + slot_of(2 * MiB + HDR) &&
                range_of(c) == range_of(b) + slot_of(2 * MiB + HDR),
            "consecutive ranges %p %p %p are not one slot apart (%zu bytes)", (void *)a, (void *)b,
            (void *)c, (size_t)slot_of(2 * MiB + HDR));
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
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(g);
  hak_free(b);
  hak_free(c);
}

static void skips_taken(void) {
  if (!zone_expected())
    return;
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL && os_zone_holds(a));
  uintptr_t slot = slot_of(2 * MiB + HDR);
  /* the next slot taken: the one after it */
  void *sq = squat(range_of(a) + slot);
  REQUIRE(sq != NULL);
  uint8_t *b = hak_malloc(2 * MiB);
  REQUIRE(b != NULL);
  CHECK_MSG(range_of(b) == range_of(a) + 2 * slot,
            "with the next slot taken, a new range went to %p, not the slot after it (%p)",
            (void *)range_of(b), (void *)(range_of(a) + 2 * slot));
  CHECK_MSG(mapped(sq), "the page in the taken slot was unmapped");
  /* OS_ZONE_TRIES slots taken: where the kernel puts it; then the zone again */
  void *sqs[OS_ZONE_TRIES];
  for (int i = 0; i < OS_ZONE_TRIES; i++)
    REQUIRE((sqs[i] = squat(range_of(b) + (size_t)(i + 1) * slot)) != NULL);
  uint8_t *c = hak_malloc(2 * MiB);
  REQUIRE(c != NULL);
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
  uintptr_t slot = slot_of(2 * MiB + HDR);
  os_zone_seek(OS_ZONE_SIZE - slot / 2); /* the next slot would pass the end */
  uint8_t *a = hak_malloc(2 * MiB);
  REQUIRE(a != NULL);
  CHECK_MSG(range_of(a) == (uint8_t *)OS_ZONE_BASE,
            "a range past the zone's end went to %p, not its start %p", (void *)range_of(a),
            (void *)OS_ZONE_BASE);
  os_zone_seek(OS_ZONE_SIZE - slot); /* exactly the last slot */
  uint8_t *b = hak_malloc(2 * MiB);
  REQUIRE(b != NULL);
  CHECK_MSG(range_of(b) == (uint8_t *)OS_ZONE_BASE + OS_ZONE_SIZE - slot,
            "the zone's last slot was not used (%p)", (void *)b);
  hak_free(a);
  hak_free(b);
}

/* The next slot's mmap fails with ENOMEM (RLIMIT_AS): the zone is off from
 * then on, and blocks still come from where the kernel puts them. */
static void off_after_refusal(void) {
  if (!zone_expected()) {
    CHECK(!os_zone_on());
    return;
  }
  CHECK(os_zone_on());
  struct rlimit lim, was;
  REQUIRE(getrlimit(RLIMIT_AS, &was) == 0);
  lim = was;
  lim.rlim_cur = hak_statm_bytes(0) + MiB;
  REQUIRE(setrlimit(RLIMIT_AS, &lim) == 0);
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
  CHECK_MSG(os_zone_holds(p1) && os_zone_holds(p2) && p1 != p2,
            "two processes' first large blocks: %p and %p (want two places in the zone)", p1, p2);
  hak_child_free(&c1);
  hak_child_free(&c2);
}

int main(void) {
  if (hak_test_under_valgrind())
    hak_test_skip("valgrind treats MAP_FIXED_NOREPLACE as a hint and does not apply RLIMIT_AS");
  RUN_SECTION(placed);
  RUN_SECTION(skips_taken);
  RUN_SECTION(wraps);
  RUN_SECTION(off_after_refusal);
  RUN_SECTION(randomised);
  return hak_test_done();
}
