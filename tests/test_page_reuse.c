/* Resident memory before new memory: the malloc slow path takes a free
 * block of any page of the class before it carves more of a page or takes
 * a new one (page_find_free in page.c), and a new page goes to committed
 * free slices before fresh ones (heap_take_run in segment.c).
 *
 * Before: the slow path carved the first page of the class queue as long
 * as it had room, while older pages behind it (an adopted segment's, a
 * page drained by frees) kept their free blocks: with Larson's thread
 * churn every class ended up with 6-7 half-free pages. */
#include "hak_test.h"

#include "internal.h"

#define SIZE 64

static size_t carved(size_t cls) {
  struct hak_stats st;
  hak_stats(&st);
  return st.classes[cls].live_blocks + st.classes[cls].free_blocks;
}

static size_t pages(size_t cls) {
  struct hak_stats st;
  hak_stats(&st);
  return st.classes[cls].pages;
}

/* A page of an older generation with free blocks, behind a page that can
 * still be carved: its blocks are used first. */
static void free_blocks_before_carving(void) {
  size_t cls = hak_size_to_class(SIZE);
  size_t per_page = class_slices(cls) * SLICE_SIZE / SIZE;
  size_t n = per_page + 8; /* one full page and the start of a second */
  void **b = calloc(n, sizeof *b);
  REQUIRE(b != NULL);
  for (size_t i = 0; i < n; i++)
    b[i] = hak_malloc(SIZE);
  REQUIRE(pages(cls) == 2);
  /* free most of the first page (not all: an empty page is given back) */
  size_t keep = 16, freed = per_page - keep;
  for (size_t i = keep; i < per_page; i++)
    hak_free(b[i]);
  hak_thread_cache_flush(); /* the blocks are on their page's free list now */
  size_t before = carved(cls);
  /* the second page has a few carved blocks left and room to carve many
   * more; the first has `freed` free blocks: those come first */
  for (size_t i = keep; i < per_page; i++)
    b[i] = hak_malloc(SIZE);
  CHECK_MSG(carved(cls) == before,
            "%zu allocations carved %zu new blocks while %zu free blocks were on the first page",
            freed, carved(cls) - before, freed);
  CHECK_EQ(pages(cls), 2);
  for (size_t i = 0; i < n; i++)
    hak_free(b[i]);
  free(b);
  CHECK_EQ(hak_heap_check(), 0);
}

/* A page freed in an older segment while a newer one (first in the heap's
 * list) has never-touched slices: a new page of another class goes to the
 * freed, still committed slices. */
static void committed_slices_first(void) {
  size_t a = hak_size_to_class(4096), c = hak_size_to_class(2048);
  size_t na = class_slices(a) * SLICE_SIZE / 4096;
  size_t npages = (SLICES_PER_SEGMENT - 1) / class_slices(a) + 1; /* one more than fit */
  void **b = calloc(npages * na, sizeof *b);
  REQUIRE(b != NULL);
  for (size_t i = 0; i < npages * na; i++)
    b[i] = hak_malloc(4096);
  uint8_t *seg1 = ptr_segment_base(b[0]);
  REQUIRE(ptr_segment_base(b[npages * na - 1]) != (void *)seg1); /* the last page: a new segment */
  /* empty one page of the first segment: its slices are free and committed */
  uint8_t *freed = (uint8_t *)b[na];
  REQUIRE(ptr_segment_base(freed) == (void *)seg1);
  for (size_t i = na; i < 2 * na; i++)
    hak_free(b[i]);
  hak_thread_cache_flush();
  void *p = hak_malloc(2048);
  CHECK_MSG((uint8_t *)p >= freed && (uint8_t *)p < freed + class_slices(a) * SLICE_SIZE,
            "the new page of %zu B blocks is at %p, not in the freed (committed) slices at %p",
            class_size(c), p, (void *)freed);
  hak_free(p);
  for (size_t i = 0; i < npages * na; i++)
    if (i < na || i >= 2 * na)
      hak_free(b[i]);
  free(b);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  RUN_SECTION(free_blocks_before_carving);
  RUN_SECTION(committed_slices_first);
  return hak_test_done();
}
