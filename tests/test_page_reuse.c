/* Resident memory before new memory: the malloc slow path takes a free
 * block of any page of the class before it carves more of a page or takes
 * a new one (page_find_free in page.c), and a new page goes to committed
 * free slices before fresh ones (heap_take_run in segment.c).
 *
 * Before: the slow path carved the first page of the class queue as long
 * as it had room, while older pages behind it (an adopted segment's, a
 * page drained by frees) kept their free blocks: with Larson's thread
 * churn every class ended up with 6-7 half-free pages.
 *
 * Also: the only page of a class, in the heap's only segment, stays when
 * emptied; adoption keeps an adopted empty page that is the only one of
 * its class, and a malloc after adoption takes an adopted page that can
 * still be carved before a new page. */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

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

/* The only segment, the only page of its class: a page emptied by its
 * last free stays carved (page_kept_when_empty), and its segment, the
 * heap's only one, is not dropped as idle. Run in a fresh child: the heap
 * has nothing else. */
static void only_page_stays(void) {
  size_t cls = hak_size_to_class(100);
  void *p = hak_malloc(100);
  REQUIRE(p != NULL);
  hak_page_t *pg = hak_block_page(p);
  REQUIRE(pages(cls) == 1);
  hak_free(p);
  hak_thread_cache_flush(); /* the block goes back to its page: the page is empty */
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.classes[cls].live_blocks, 0);
  CHECK_MSG(st.classes[cls].pages == 1, "the only page of the class was given back when emptied");
  CHECK_MSG(st.segments == 1, "the heap's only segment was given back (%zu segments)", st.segments);
  CHECK(pg->in_use);
  /* the next malloc of the class reuses that page */
  void *q = hak_malloc(100);
  REQUIRE(q != NULL);
  CHECK_PTR_EQ(hak_block_page(q), pg);
  hak_free(q);
  CHECK_EQ(hak_heap_check(), 0);
}

/* A worker empties its page of 100 B blocks but keeps one 1000 B block
 * live, and exits: its segment is abandoned. The main thread (a fresh
 * child: no heap yet) adopts it when it allocates 1000 B: the empty 100 B
 * page is the only page of its class in the adopting heap, so it is kept
 * (segment_adopt), not given back. */
static void *keep_1000(void *arg) {
  void **out = arg;
  void *b[16];
  for (int i = 0; i < 16; i++)
    b[i] = hak_malloc(100);
  out[0] = hak_malloc(1000);
  for (int i = 0; i < 16; i++)
    hak_free(b[i]);
  return NULL;
}

static void adopt_keeps_only_page(void) {
  size_t cls = hak_size_to_class(100);
  void *kept[1] = {NULL};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, keep_1000, kept) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  REQUIRE(kept[0] != NULL);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments == 1);
  REQUIRE(st.classes[cls].pages == 1);
  void *p = hak_malloc(1000); /* no heap, no segment: adopts the worker's */
  REQUIRE(p != NULL);
  CHECK_PTR_EQ(ptr_segment_base(p), ptr_segment_base(kept[0]));
  hak_stats(&st);
  CHECK_EQ(st.abandoned_segments, 0);
  CHECK_MSG(st.classes[cls].pages == 1,
            "adoption gave back the empty page of 100 B blocks, the only one of its class "
            "(%zu pages)",
            st.classes[cls].pages);
  hak_free(p);
  hak_free(kept[0]);
  CHECK_EQ(hak_heap_check(), 0);
}

/* A worker allocates exactly one carve step of 100 B blocks (its page has
 * no free block but room to carve more) and exits with them live. The
 * main thread (a fresh child: no heap yet) adopts the segment on its
 * first malloc(100), which must land on that page (segment_page_alloc
 * takes an adopted page that can still be carved), not on a new one. */
static void *one_step(void *arg) {
  void **out = arg;
  size_t cls = hak_size_to_class(100);
  size_t step = EXTEND_BYTES / class_size(cls);
  for (size_t i = 0; i < step; i++)
    out[i] = hak_malloc(100);
  return NULL;
}

static void adopt_takes_carvable(void) {
  size_t cls = hak_size_to_class(100);
  size_t step = EXTEND_BYTES / class_size(cls);
  void **b = calloc(step, sizeof *b);
  REQUIRE(b != NULL);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, one_step, b) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  hak_page_t *pg = hak_block_page(b[0]);
  REQUIRE(pg->free == NULL);
  REQUIRE(atomic_load(&pg->capacity) == step && step < pg->reserved);
  REQUIRE(pages(cls) == 1);
  void *p = hak_malloc(100); /* no heap, no segment: adopts the worker's */
  REQUIRE(p != NULL);
  CHECK_MSG(hak_block_page(p) == pg,
            "malloc(100) after adopting a page with room to carve took another page");
  CHECK_EQ(pages(cls), 1);
  hak_free(p);
  for (size_t i = 0; i < step; i++)
    hak_free(b[i]);
  free(b);
  CHECK_EQ(hak_heap_check(), 0);
}

/* Segments the heap owns (no other thread has a heap: the rest are cached). */
static size_t owned_segments(void) {
  struct hak_stats st;
  hak_stats(&st);
  return st.segments - st.abandoned_segments - segment_cache_count();
}

/* A producer allocates 6 MiB of one class, another thread frees all of it
 * (remote frees: the blocks wait on their pages' stacks, or one per full
 * page on the heap's delayed list), then the producer moves on to the
 * next class, 6 classes in turn, never allocating an earlier class again.
 * The pages of the earlier classes hold no live block: before the heap
 * maps a new segment it takes those remote frees, and the pages that
 * empty give their slices to the next class. Before, they stayed carved
 * until their class was allocated again: 6 MiB more resident per phase
 * (2 segments after the first phase, 10 after the sixth; bench_handoff-like
 * pipelines whose message sizes change: 105 MiB resident for 8 MiB live
 * after 12 phases, glibc 2.6 MiB, mimalloc 13 MiB). */
static void remote_freed_pages_reused(void) {
  static const size_t sizes[] = {1024, 2048, 3072, 4096, 6144, 8192};
  enum { PHASE = 6 << 20 };
  size_t first = 0;
  for (size_t ph = 0; ph < sizeof sizes / sizeof sizes[0]; ph++) {
    size_t n = PHASE / sizes[ph];
    void **b = calloc(n, sizeof *b);
    REQUIRE(b != NULL);
    for (size_t i = 0; i < n; i++) {
      REQUIRE((b[i] = hak_malloc(sizes[ph])) != NULL);
      memset(b[i], 1, 64);
    }
    hak_free_remotely(b, n);
    free(b);
    if (ph == 0)
      first = owned_segments();
  }
  size_t last = owned_segments();
  CHECK_MSG(last <= first + 1,
            "6 phases of 6 MiB each, every block freed by another thread: the heap owns %zu "
            "segments, %zu after the first phase",
            last, first);
  CHECK_EQ(hak_heap_check(), 0);
}

/* The walk of remote_freed_pages_reused runs again and again: a heap that
 * keeps 20 MiB live (5 segments or more, so the next walk is due after a
 * segment or more) moves through 16 classes of 6 MiB each, every block
 * freed by another thread. Each walk gives the earlier classes' pages back:
 * 8 segments at most (6 with the live set alone). A walk that ran once and
 * never again (a new segment not counted in seg_joins): 30, every phase's
 * 6 MiB left carved; the next walk due after as many segments as the heap
 * kept, not a quarter of them: 16. */
static void remote_collect_repeats(void) {
  enum { LIVE = 20 << 20, PHASE = 6 << 20, PHASES = 16 };
  size_t nl = LIVE / 1024;
  void **live = calloc(nl, sizeof *live);
  REQUIRE(live != NULL);
  for (size_t i = 0; i < nl; i++) {
    REQUIRE((live[i] = hak_malloc(1024)) != NULL);
    memset(live[i], 2, 64);
  }
  size_t base = owned_segments(), most = base;
  for (size_t ph = 0; ph < PHASES; ph++) {
    size_t size = 2048 + ph * 512;
    size_t n = PHASE / size;
    void **b = calloc(n, sizeof *b);
    REQUIRE(b != NULL);
    for (size_t i = 0; i < n; i++) {
      REQUIRE((b[i] = hak_malloc(size)) != NULL);
      memset(b[i], 1, 64);
    }
    hak_free_remotely(b, n);
    free(b);
    size_t now = owned_segments();
    most = now > most ? now : most;
  }
  CHECK_MSG(most <= base + 6,
            "20 MiB live, then %d phases of 6 MiB each freed by another thread: the heap owned "
            "up to %zu segments, %zu with the live set alone",
            PHASES, most, base);
  for (size_t i = 0; i < nl; i++)
    hak_free(live[i]);
  free(live);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
  RUN_SECTION(free_blocks_before_carving);
  RUN_SECTION(committed_slices_first);
  RUN_SECTION(only_page_stays);
  RUN_SECTION(adopt_keeps_only_page);
  RUN_SECTION(adopt_takes_carvable);
  RUN_SECTION(remote_freed_pages_reused);
  RUN_SECTION(remote_collect_repeats);
  return hak_test_done();
}
