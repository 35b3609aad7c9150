/* Failed page moves in large.c, injected through fuzz/fail_mmap.h (its
 * mremap, which the static libhakmem.a calls instead of libc's). The move
 * (MREMAP_FIXED) the test chooses fails with ENOMEM in one of the ways a
 * kernel fails one, whatever this machine's kernel is:
 *  - before touching its destination (out of mappings: the map-count check
 *    comes first on every kernel): the destination is still the caller's;
 *  - after unmapping its destination (older kernels unmap it first, and a
 *    move can fail inside): the range is a hole ...
 *  - ... into which another thread maps something of its own before hakmem
 *    looks ("squatter"): over the whole hole, or one page in its middle.
 * For each of the four moves (realloc moving a block, the cache cutting a
 * mapping, the cache assembling a block in place and into a new range,
 * there also with the second of its moves failing, after pages were moved)
 * what must hold: the call still succeeds, or realloc returns NULL with
 * ENOMEM and the block is untouched; the block handed out is mapped all
 * through; hak_heap_check passes; no range is left behind (the process's
 * mapped size); and a squatter's mapping is neither unmapped nor written. */
#define _GNU_SOURCE
#include "hak_test.h"

#if defined(HAK_ASAN) && HAK_ASAN
#include <sanitizer/asan_interface.h>
#endif

#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)
#define PG ((size_t)4096)

#include "../fuzz/fail_mmap.h" /* mremap: fm_arm makes the chosen move fail */

static const char *const how_names[FM_HOW_COUNT] = {
    "fails before unmapping its destination", "fails after unmapping its destination",
    "the same, another thread maps the hole", "the same, another thread maps a page in it"};
static enum fm_how mode;

/* The mapped-size checks: not under TSan, which maps shadow for every new
 * mapping; and a destination kept by a failure before its unmap is known
 * to be ours only where process_vm_readv works (a seccomp filter may
 * forbid it: then hakmem leaks it rather than risk another's range). */
static bool vm_exact, can_read_self;

/* Whether the process's mapped size after (vm1) is at most `most`; where a
 * kept destination cannot be recognised, a range of `kept` more may stay. */
static void check_vm(const char *what, size_t vm0, size_t vm1, size_t most, size_t kept) {
  if (!vm_exact)
    return;
  if (mode == FM_BEFORE_UNMAP && !can_read_self)
    most += kept;
  CHECK_MSG(vm1 <= most, "%s (%s): %zu -> %zu bytes mapped (at most %zu)", what, how_names[mode],
            vm0, vm1, most);
}

static size_t bytes_not(const unsigned char *p, size_t n, unsigned char v) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i += 512)
    bad += p[i] != v;
  return bad + (n && p[n - 1] != v);
}

/* How many pages of [p, p + n) are not mapped (a block with a hole). */
static size_t pages_unmapped(const void *p, size_t n) {
  uintptr_t lo = (uintptr_t)p & ~(PG - 1), hi = ((uintptr_t)p + n + PG - 1) & ~(PG - 1);
  size_t holes = 0;
  unsigned char v;
  for (uintptr_t a = lo; a < hi; a += PG)
    holes += mincore((void *)a, PG, &v) != 0;
  return holes;
}

/* A fresh allocator state; nothing fails until the test arms a failure. */
static void start(enum fm_how m) {
  hak_test_reset();
  fm_reset();
  mode = m;
}

/* malloc(n) (calloc(1, n) with `zero`) with the delay-th next move failing
 * (0: the next); *err: errno after it (set to 0 before). */
static unsigned char *malloc_failing_move(size_t n, int delay, int *err, bool zero) {
  fm_arm(mode, delay);
  errno = 0;
  unsigned char *b = zero ? hak_calloc(1, n) : hak_malloc(n);
  *err = errno;
  REQUIRE(b != NULL);
  return b;
}

/* A large block of `n` bytes filled with `v` and freed into the cache. */
static unsigned char *cached(size_t n, unsigned char v) {
  unsigned char *b = hak_malloc(n);
  REQUIRE(b != NULL);
  memset(b, v, n);
  hak_free(b);
  return b;
}

/* The squatter (if the mode places one) is still mapped and unchanged;
 * then the test gives it back. */
static void check_squatter(const char *what) {
  if (mode != FM_SQUAT_WHOLE && mode != FM_SQUAT_MIDDLE)
    return;
  CHECK_MSG(fo.nsquat == 1, "%s (%s): the injected failure placed %d squatters", what,
            how_names[mode], fo.nsquat);
  int unmapped = 0;
  const void *q = fm_squatter_damaged(&unmapped);
  CHECK_MSG(q == NULL, "%s (%s): hakmem %s another thread's mapping at %p", what, how_names[mode],
            unmapped ? "unmapped" : "wrote", q);
  fm_reset();
}

/* A large block of `size` bytes with the `room` bytes of address space
 * after its mapping free (another mapping may have gone there: then
 * another block; those tried before are given back by free_tried). */
static unsigned char *tried[8];
static size_t ntried;
static unsigned char *block_with_room(size_t size, size_t room) {
  ntried = 0;
  while (ntried < 8) {
    unsigned char *b = tried[ntried++] = hak_malloc(size);
    REQUIRE(b != NULL);
    unsigned char *end = hak_test_large_end(b, size); /* header, whole pages (hak_test.h) */
    void *r = hak_map_at(end, room, PROT_NONE);
    if (r) {
      munmap(r, room);
      return b;
    }
  }
  REQUIRE(!"no large block with free address space after it");
  return NULL;
}
static void free_tried(void) {
  for (size_t i = 0; i + 1 < ntried; i++)
    hak_free(tried[i]);
  ntried = 0;
}

/* realloc must move a 1 MiB block (a page of ours right after it stops it
 * growing in place); the move fails: NULL, ENOMEM, the block as it was,
 * and the range reserved for it given back. Then the same realloc without
 * a failure moves it. */
static void realloc_move_fails(enum fm_how m) {
  start(m);
  unsigned char *b = block_with_room(MiB, PG);
  unsigned char *stop = hak_map_at(hak_test_large_end(b, MiB), PG, PROT_READ);
  REQUIRE(stop != NULL);
  memset(b, 0x31, MiB);
  size_t vm0 = hak_statm_bytes(0);
  fm_arm(mode, 0);
  errno = 0;
  void *q = hak_realloc(b, 3 * MiB);
  int e = errno;
  CHECK_MSG(q == NULL && e == ENOMEM, "realloc whose move failed (%s): returned %p, errno %d",
            how_names[mode], q, e);
  CHECK_MSG(fo_fired() == 1, "realloc (%s): the move was not tried", how_names[mode]);
  CHECK_EQ(bytes_not(b, MiB, 0x31), 0);
#if defined(HAK_ASAN) && HAK_ASAN
  /* the block's shadow, cleared for the move, is restored: its slack is
   * poisoned again (usable_size below exposes it) */
  CHECK_MSG(__asan_address_is_poisoned(b + MiB),
            "ASan: the slack after a failed move is addressable (%s)", how_names[mode]);
#endif
  CHECK_EQ(hak_usable_size(b), hak_test_large_usable(MiB)); /* MiB + PG - 64 without redzones */
  check_vm("realloc whose move failed", vm0, hak_statm_bytes(0), vm0 + fm_squatted(), 3 * MiB + PG);
  check_squatter("realloc whose move failed");
  CHECK_EQ(hak_heap_check(), 0);
  unsigned char *moved = hak_realloc(b, 3 * MiB);
  CHECK_MSG(moved != NULL && moved != b, "realloc after the failure (%s): %p from %p",
            how_names[mode], (void *)moved, (void *)b);
  if (moved) {
    CHECK_EQ(bytes_not(moved, MiB, 0x31), 0);
    memset(moved, 0x32, 3 * MiB);
    hak_free(moved);
  }
  munmap(stop, PG);
  free_tried();
  CHECK_EQ(hak_heap_check(), 0);
}

/* A 5 MiB request cuts a cached 8 MiB mapping; moving the 3 MiB tail to a
 * range of its own fails: the block is served, the tail and the range are
 * given back. (A 3 MiB request would not cut it: a tail bigger than the
 * block stays, and the block's pages are moved out instead.) */
static void split_fails(enum fm_how m) {
  start(m);
  unsigned char *big = cached(8 * MiB, 0x41);
  size_t vm0 = hak_statm_bytes(0);
  int e;
  unsigned char *b = malloc_failing_move(5 * MiB, 0, &e, false);
  CHECK_MSG(fo_fired() == 1, "split (%s): the move was not tried", how_names[mode]);
  CHECK_MSG(e == 0, "split (%s): malloc succeeded with errno %d", how_names[mode], e);
  CHECK_MSG(b == big, "split (%s): the cached mapping at %p was not used (got %p)", how_names[mode],
            (void *)big, (void *)b);
  size_t us = hak_usable_size(b);
  CHECK_EQ(pages_unmapped(b, us), 0);
  memset(b, 0x42, us);
  /* the 3 MiB tail is given back, and so is the range it was to move to */
  check_vm("split whose move failed", vm0, hak_statm_bytes(0), vm0 - 2 * MiB + fm_squatted(),
           3 * MiB);
  check_squatter("split whose move failed");
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(b);
  CHECK_EQ(hak_heap_check(), 0);
}

/* The same cut, where the range for the tail cannot even be reserved (an
 * address-space limit): the tail is given back and malloc succeeds with
 * errno as it was. With `req` 3 MiB the 5 MiB excess is bigger than the
 * block, so the block's pages would be moved out to a new range instead;
 * that range cannot be reserved either, and the cached mapping is cut
 * after all (a review found malloc failing with ENOMEM there). In a child
 * (the limit). */
static void reservation_fails(size_t req) {
  start(FM_BEFORE_UNMAP);
  unsigned char *big = cached(8 * MiB, 0x41);
  size_t vm0 = hak_statm_bytes(0);
  hak_limit_as(2 * MiB); /* no range of 3 MiB or more, plus alignment, fits */
  errno = 0;
  unsigned char *b = hak_malloc(req);
  int e = errno;
  CHECK_MSG(b != NULL, "%zu MiB of a cached 8 MiB mapping with no room for a new range: ENOMEM",
            req / MiB);
  if (!b)
    return;
  CHECK_MSG(e == 0, "split with no room for the tail's range: malloc succeeded with errno %d", e);
  CHECK_MSG(b == big, "split with no room for the tail's range: got %p, not the cached %p",
            (void *)b, (void *)big);
  CHECK_EQ(pages_unmapped(b, hak_usable_size(b)), 0);
  memset(b, 0x42, hak_usable_size(b));
  size_t vm1 = hak_statm_bytes(0);
  CHECK_MSG(vm1 + (8 * MiB - req) - MiB <= vm0,
            "split with no room for the tail's range: %zu -> %zu bytes", vm0, vm1);
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(b);
}

static void split_reservation_fails(void) {
  reservation_fails(5 * MiB);
}

static void gather_reservation_fails(void) {
  reservation_fails(3 * MiB);
}

/* A 3 MiB request finds only smaller cached mappings (2 MiB and 1.5 MiB).
 * in_place: the bigger grows in place and takes 1 MiB of the other's pages;
 * else (a page of ours after it stops that) a new range takes the bigger
 * one's pages, then 1 MiB of the other's. The first move fails, or with
 * `second` (a new range only) the second, after 2 MiB were moved there:
 * the request still gets a whole block (new pages where the gather did not
 * finish), what was not moved is given back, and the cache keeps its
 * invariants (hak_heap_check). With `zero` the request is a calloc, whose
 * block must read zero all through: a move that failed before touching its
 * destination left its token there (os_move_mapping), in the block. */
static void gather_fails(enum fm_how m, bool in_place, bool second, bool zero) {
  start(m);
  unsigned char *a = block_with_room(2 * MiB, in_place ? 3 * MiB / 2 : PG);
  unsigned char *stop = in_place ? NULL : hak_map_at(hak_test_large_end(a, 2 * MiB), PG, PROT_READ);
  REQUIRE(in_place || stop != NULL);
  memset(a, 0x51, 2 * MiB);
  cached(3 * MiB / 2, 0x52);
  hak_free(a);
  size_t vm0 = hak_statm_bytes(0);
  int e;
  unsigned char *b = malloc_failing_move(3 * MiB, second ? 1 : 0, &e, zero);
  const char *what = in_place ? "gather in place whose move failed"
                     : second ? "gather into a new range whose second move failed"
                              : "gather into a new range whose move failed";
  if (zero) {
    size_t nz = hak_find_not_byte(b, 3 * MiB, 0);
    CHECK_MSG(nz == SIZE_MAX, "calloc, %s (%s): byte %zu is %#x, not zero", what, how_names[mode],
              nz, nz == SIZE_MAX ? 0 : b[nz]);
  }
  CHECK_MSG(fo_fired() == 1, "%s (%s): no move was tried", what, how_names[mode]);
  CHECK_MSG(e == 0, "%s (%s): malloc succeeded with errno %d", what, how_names[mode], e);
  CHECK_MSG(pages_unmapped(b, 3 * MiB) == 0, "%s (%s): the block has a hole", what,
            how_names[mode]);
  /* second, with no squatter (and the destination known to be still ours):
   * the gather keeps its range, the 2 MiB moved there first, then new pages */
  if (second && !zero && mode != FM_SQUAT_WHOLE && mode != FM_SQUAT_MIDDLE && can_read_self)
    CHECK_MSG(b[0] == 0x51 && b[2 * MiB - 1] == 0x51 && b[3 * MiB - 1] == 0,
              "%s (%s): the block is not the moved 2 MiB then new pages (%#x %#x %#x)", what,
              how_names[mode], b[0], b[2 * MiB - 1], b[3 * MiB - 1]);
  memset(b, 0x53, 3 * MiB);
  /* in place: the 2 MiB mapping grew by 1 MiB and 1 MiB of the other, not
   * moved, went; else the 2 MiB mapping, not moved, went and the new range
   * is 3 MiB; second: the 2 MiB mapping moved into the new range, which the
   * block keeps (or, where a squatter took the hole, gives up: new pages),
   * and 1 MiB of the other, not moved, went. A squatter's pages come
   * besides. Where a kept destination cannot be recognised, the 1 MiB not
   * moved into may stay. */
  size_t grew = in_place || second ? 0 : MiB;
  check_vm(what, vm0, hak_statm_bytes(0), vm0 + grew + fm_squatted() + 2 * PG,
           in_place || second ? MiB : 2 * MiB + PG);
  check_squatter(what);
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(b);
  /* the cache still serves: no moves fail now */
  unsigned char *d = hak_malloc(3 * MiB);
  REQUIRE(d != NULL);
  memset(d, 0x54, 3 * MiB);
  hak_free(d);
  if (stop)
    munmap(stop, PG);
  free_tried();
  CHECK_EQ(hak_heap_check(), 0);
}

/* ASan: a block realloc shrank in place keeps the tail of its mapping as
 * room, poisoned; realloc's move clears the whole range's shadow, and a
 * failed move must poison that tail again, not only the slack (until
 * 2026-11-28 a write into it after the failure went unreported). */
static void realloc_move_fails_kept_tail(void) {
#if defined(HAK_ASAN) && HAK_ASAN
  start(FM_BEFORE_UNMAP);
  size_t big = MiB + 128 * 1024; /* shrunk to 1 MiB: a 128 KiB tail, under SPLIT_MIN, stays */
  unsigned char *b = block_with_room(big, PG);
  unsigned char *stop = hak_map_at(hak_test_large_end(b, big), PG, PROT_READ);
  REQUIRE(stop != NULL);
  REQUIRE(hak_realloc(b, MiB) == b);
  unsigned char *tail = hak_test_large_end(b, MiB); /* past the shrunk block's pages */
  CHECK_MSG(__asan_address_is_poisoned(tail), "ASan: the kept tail is addressable");
  fm_arm(mode, 0);
  errno = 0;
  void *q = hak_realloc(b, 3 * MiB);
  CHECK_MSG(q == NULL && errno == ENOMEM && fo_fired() == 1, "realloc whose move failed: %p", q);
  CHECK_MSG(__asan_address_is_poisoned(b + MiB) && __asan_address_is_poisoned(tail) &&
                __asan_address_is_poisoned(tail + 64 * 1024),
            "ASan: after a failed move the slack %d, the kept tail %d, %d (1: poisoned)",
            __asan_address_is_poisoned(b + MiB), __asan_address_is_poisoned(tail),
            __asan_address_is_poisoned(tail + 64 * 1024));
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(b);
  munmap(stop, PG);
  free_tried();
  CHECK_EQ(hak_heap_check(), 0);
#endif
}

/* ASan: the slack usable_size exposed stays addressable after a failed
 * move: the move clears the block's shadow, and the failure restores what
 * was addressable before it, not only the request (until 2026-11-28 the
 * request: the program's write into its usable bytes reported a
 * use-after-poison). */
static void realloc_move_fails_exposed(void) {
#if defined(HAK_ASAN) && HAK_ASAN
  start(FM_BEFORE_UNMAP);
  unsigned char *b = block_with_room(MiB, PG);
  unsigned char *stop = hak_map_at(hak_test_large_end(b, MiB), PG, PROT_READ);
  REQUIRE(stop != NULL);
  size_t u = hak_usable_size(b), rz = hak_test_redzone();
  REQUIRE(u == hak_test_large_usable(MiB) && __asan_region_is_poisoned(b, u) == NULL);
  fm_arm(mode, 0);
  errno = 0;
  void *q = hak_realloc(b, 3 * MiB);
  CHECK_MSG(q == NULL && errno == ENOMEM && fo_fired() == 1, "realloc whose move failed: %p", q);
  void *bad = __asan_region_is_poisoned(b, u);
  CHECK_MSG(bad == NULL,
            "ASan: after a failed move, byte %td of the %zu usable bytes usable_size exposed is "
            "poisoned",
            bad ? (unsigned char *)bad - b : (ptrdiff_t)-1, u);
  /* and the redzone after them is not: the failure restores the usable
   * bytes, not the whole block (track.h) */
  for (size_t i = 0; i < rz; i++)
    CHECK_MSG(__asan_address_is_poisoned(b + u + i),
              "ASan: after a failed move, redzone byte %zu (usable %zu) is addressable", i, u);
  hak_free(b);
  munmap(stop, PG);
  free_tried();
  CHECK_EQ(hak_heap_check(), 0);
#endif
}

int main(void) {
  if (!os_moves())
    hak_test_skip("hakmem moves no pages here (valgrind)");
  vm_exact = !hak_config_is("tsan");
  uint64_t probe = 42, got = 0;
  struct iovec l = {&got, sizeof got}, r = {&probe, sizeof probe};
  can_read_self = process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)sizeof got && got == 42;
  if (!can_read_self)
    hak_test_log("process_vm_readv is not allowed here: a kept destination is leaked\n");
  /* the valgrind and trace builds copy every realloc (track.h, trace.h) */
  bool realloc_moves = !hak_config_is("valgrind") && !hak_config_is("trace");
  for (int m = 0; m < FM_HOW_COUNT; m++) {
    if (realloc_moves)
      realloc_move_fails((enum fm_how)m);
    split_fails((enum fm_how)m);
    for (int zero = 0; zero < 2; zero++) {
      gather_fails((enum fm_how)m, true, false, zero);
      gather_fails((enum fm_how)m, false, false, zero);
      gather_fails((enum fm_how)m, false, true, zero);
    }
  }
  realloc_move_fails_kept_tail();
  realloc_move_fails_exposed();
  /* not under ASan and TSan, whose runtimes map memory of their own */
  if (!hak_config_is("asan") && !hak_config_is("tsan")) {
    RUN_SECTION(split_reservation_fails);
    RUN_SECTION(gather_reservation_fails);
  }
  return hak_test_done();
}
