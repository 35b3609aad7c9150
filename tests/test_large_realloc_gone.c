/* A large block that realloc moved with mremap (its old range is gone)
 * and is then freed, or realloc'd, again by its old address: the error
 * names a double free, as for a block realloc copied (freed into the
 * cache or unmapped) and for a small block. Until this test the move did
 * not note the old address with the recently unmapped blocks, and the
 * second free was called "not allocated by hakmem".
 * Also: the moved block's neighbours in the list of live large blocks
 * point at its new header (a mutant that left the next block's back link
 * on the old, unmapped one crashed no test, only the fuzz replay).
 * Also: the moved block's usable size is its new size's (a mutant that
 * kept the old requested size in the moved header passed every release
 * test), and a block aligned to 4 MiB that cannot grow in place is copied,
 * not moved (mremap would unregister the range below it, where its header
 * page lies, and leave its own registered: the old address freed again
 * then read an unmapped header instead of naming a double free). */
#include "hak_test.h"

#include "internal.h"

#define MiB ((size_t)1 << 20)
#define PG hak_page_size() /* the kernel's: 4, 16 or 64 KiB on aarch64 */

/* A 1 MiB block that realloc must move to grow to 3 MiB: a page of the
 * test's own right after its mapping stops it growing in place. */
static unsigned char *moved_away(void) {
  unsigned char *b = hak_malloc(MiB);
  REQUIRE(b != NULL);
  memset(b, 0x31, MiB);
  unsigned char *end = hak_test_large_end(b, MiB); /* header, whole pages (hak_test.h) */
  void *stop = hak_map_at(end, PG, PROT_READ);
  unsigned char *q = hak_realloc(b, 3 * MiB);
  REQUIRE(q != NULL);
  CHECK_MSG(q != b || !stop, "realloc grew the block in place over a mapped page");
  CHECK_EQ(q[0], 0x31);
  CHECK_EQ(q[MiB - 1], 0x31);
  return b;
}

static void free_old(void *arg) {
  (void)arg;
  hak_free(moved_away());
}

static void realloc_old(void *arg) {
  (void)arg;
  hak_realloc(moved_away(), 4 * MiB);
}

/* Three live large blocks, the middle one moved by realloc: the list
 * still links all three (hak_heap_check walks it) and each can be freed,
 * the older neighbour first (its unlink follows its back link). */
static void list_after_move(void) {
  unsigned char *older = hak_malloc(2 * MiB);
  REQUIRE(older != NULL);
  unsigned char *b = hak_malloc(MiB);
  REQUIRE(b != NULL);
  unsigned char *newer = hak_malloc(2 * MiB);
  REQUIRE(newer != NULL);
  memset(b, 0x41, MiB);
  void *stop = hak_map_at(hak_test_large_end(b, MiB), PG, PROT_READ);
  unsigned char *q = hak_realloc(b, 3 * MiB);
  REQUIRE(q != NULL);
  CHECK_EQ(q[MiB - 1], 0x41);
  CHECK_MSG(q != b || !stop, "realloc grew the block in place over a mapped page");
  /* the header's requested size is the new one: 3 MiB after a 64-byte header, whole pages
   * (3 MiB + PG - 64, less the redzone and its lead with redzones: hak_test.h) */
  CHECK_MSG(hak_usable_size(q) == hak_test_large_usable(3 * MiB),
            "usable size %zu after the move to 3 MiB", hak_usable_size(q));
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(older);
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(newer);
  hak_free(q);
  CHECK_EQ(hak_heap_check(), 0);
  if (stop)
    munmap(stop, PG);
}

/* A block aligned to 4 MiB (its header a page below it) that cannot grow
 * in place: realloc copies it and frees the old one. */
static unsigned char *huge_moved_away(void) {
  unsigned char *b = hak_aligned_alloc(4 * MiB, 8 * MiB);
  REQUIRE(b != NULL);
  memset(b, 0x52, 8 * MiB);
  hak_large_t *lg = registry_large(b);
  REQUIRE(lg != NULL);
  void *stop = hak_map_at((uint8_t *)lg + lg->map_size, PG, PROT_READ);
  unsigned char *q = hak_realloc(b, 40 * MiB);
  REQUIRE(q != NULL);
  CHECK_MSG(q != b || !stop, "realloc grew the huge-aligned block in place over a mapped page");
  CHECK_EQ(q[0], 0x52);
  CHECK_EQ(q[8 * MiB - 1], 0x52);
  CHECK_MSG(hak_usable_size(q) >= 40 * MiB, "usable size %zu after the move to 40 MiB",
            hak_usable_size(q));
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(q);
  if (stop)
    munmap(stop, PG);
  return b;
}

static void free_huge_old(void *arg) {
  (void)arg;
  unsigned char *b = huge_moved_away();
  if (hak_test_failures()) /* the checks of the move, in this child: EXPECT_ABORT sees only
                            * how it dies (before, they could not fail the test) */
    _exit(1);
  hak_free(b);
}

int main(void) {
  hak_free(hak_malloc(100)); /* hakmem set up before the fork */
  EXPECT_ABORT(free_old, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(free_old, NULL, "(large block)");
  EXPECT_ABORT(realloc_old, NULL, "hakmem: realloc of freed block 0x");
  RUN_SECTION(list_after_move);
  EXPECT_ABORT(free_huge_old, NULL, "hakmem: double free of 0x");
  return hak_test_done();
}
