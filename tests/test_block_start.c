/* free's block-start check reads the 8-byte entry of the pointer's own
 * 64 KiB slice (hak_slice_t: the carved end within the slice, the slice's
 * phase, the class) and the class's division magic. For every class, at
 * every 16-byte offset of one of its pages, the entry must agree with the
 * page's geometry: accepted exactly at the starts of carved blocks,
 * whichever slice they lie in (for pages of several slices, block sizes
 * that divide 64 KiB give phase 0, the others not), with the page's
 * class; rejected in the middle of a block, past the carved end and in a
 * released page. Checked after the first block is carved, after half the
 * page and after all of it, and after everything is freed. Then, through
 * the public API, a valid block in a later slice of a page with a nonzero
 * phase is freed normally, and an interior pointer there is named. */
#include "hak_test.h"

#include <sys/mman.h>

#include "internal.h"

/* What the page says about q: a carved block start (slice map, start,
 * block size, capacity). */
static bool truth(hak_segment_t *seg, const uint8_t *q) {
  unsigned head = seg->slice_head[ptr_slice(seg, q)];
  if (head == 0)
    return false;
  hak_page_t *pg = &seg->pages[head];
  if (!pg->in_use || q < page_start(pg))
    return false;
  size_t off = (size_t)(q - page_start(pg));
  return off % pg->block_size == 0 &&
         off / pg->block_size < atomic_load_explicit(&pg->capacity, memory_order_relaxed);
}

static size_t checked, accepted;

/* Every 16-byte offset of the slices [first, first + n) of seg. */
static void check_slices(hak_segment_t *seg, unsigned first, unsigned n, size_t cls,
                         const char *when) {
  int reported = 0;
  for (const uint8_t *q = (uint8_t *)seg + (size_t)first * SLICE_SIZE;
       q < (uint8_t *)seg + (size_t)(first + n) * SLICE_SIZE; q += 16) {
    hak_slice_t *sl = ptr_slice_entry(seg, q);
    bool got = slice_is_block_start(sl, q), want = truth(seg, q);
    checked++;
    accepted += got;
    if ((got != want || (got && sl->cls != cls)) && reported++ < 3)
      FAIL("class %zu (%u B), %s: %p (slice %zu, phase %u, end %u) %s, the page says %s", cls,
           (unsigned)class_size(cls), when, (const void *)q, ptr_slice(seg, q), sl->phase,
           atomic_load(&sl->end), got ? "accepted" : "rejected",
           want ? "a block start" : "not one");
  }
}

static void one_class(size_t cls) {
  size_t bs = class_size(cls), n = class_slices(cls);
  uint8_t *first = hak_malloc(bs);
  REQUIRE(first != NULL);
  hak_segment_t *seg = ptr_segment_base(first);
  hak_page_t *pg = ptr_page(seg, first);
  REQUIRE(pg->cls == cls && pg->slice_count == n && page_start(pg) == first);
  size_t reserved = pg->reserved;
  /* not from hakmem: every class's first page must be fresh when its turn comes */
  void **blocks = mmap(NULL, reserved * sizeof(void *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(blocks != MAP_FAILED);
  blocks[0] = first;
  unsigned at = pg->slice_index;
  check_slices(seg, at, (unsigned)n, cls, "first block carved");
  for (size_t i = 1; i < reserved; i++) {
    blocks[i] = hak_malloc(bs);
    REQUIRE(blocks[i] != NULL);
    CHECK_MSG(ptr_page(seg, blocks[i]) == pg, "class %zu: block %zu of %zu not from the page", cls,
              i, reserved);
    if (i == reserved / 2)
      check_slices(seg, at, (unsigned)n, cls, "half the page carved");
  }
  check_slices(seg, at, (unsigned)n, cls, "the whole page carved");
  CHECK_EQ(atomic_load(&pg->capacity), reserved);
  for (size_t i = 0; i < reserved; i++)
    hak_free(blocks[i]); /* each would abort if its slice's entry rejected it */
  munmap(blocks, reserved * sizeof(void *));
  hak_thread_cache_flush();
  check_slices(seg, at, (unsigned)n, cls, "everything freed");
  CHECK_EQ(hak_heap_check(), 0);
}

static void do_free(void *p) {
  hak_free(p);
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
  size_t several = 0, phased = 0;
  for (size_t cls = 0; cls < NCLS; cls++) {
    several += class_slices(cls) > 1;
    phased += class_slices(cls) > 1 && SLICE_SIZE % class_size(cls) != 0;
    one_class(cls);
  }
  printf("%d classes, %zu of pages of several slices (%zu with a nonzero phase): %zu offsets "
         "checked, %zu block starts\n",
         NCLS, several, phased, checked, accepted);
  CHECK_GE(several, 20);
  CHECK_GE(phased, 10);
  CHECK_GT(accepted, 0);

  /* The public API in a later slice with a nonzero phase: 5120 B blocks
   * (pages of 4 slices; the second slice's phase is 65536 mod 5120 = 4096).
   * The first block that starts in a later slice has its usable size and is
   * freed normally; a pointer 16 bytes into it is named. */
  size_t cls = size_to_class(5000), bs = class_size(cls);
  REQUIRE(class_slices(cls) >= 2 && SLICE_SIZE % bs != 0);
  void *b[64];
  size_t nb = 0, later = SIZE_MAX;
  hak_segment_t *seg = NULL;
  while (nb < 64 && later == SIZE_MAX) {
    b[nb] = hak_malloc(bs);
    REQUIRE(b[nb] != NULL);
    seg = ptr_segment_base(b[nb]);
    hak_page_t *pg = ptr_page(seg, b[nb]);
    if (ptr_slice(seg, b[nb]) != pg->slice_index && ptr_slice_entry(seg, b[nb])->phase != 0)
      later = nb;
    nb++;
  }
  REQUIRE(later != SIZE_MAX);
  uint8_t *q = b[later];
  CHECK_EQ(hak_usable_size(q), bs);
  char want[256];
  snprintf(want, sizeof want,
           "hakmem: invalid free of %p: interior pointer into block %p (size class %zu)\n",
           (void *)(q + 16), (void *)q, bs);
  EXPECT_ABORT(do_free, q + 16, want);
  for (size_t i = 0; i < nb; i++)
    hak_free(b[i]);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
