/* hak_stats() counts exactly and hak_heap_check() finds nothing, throughout:
 * per-class live blocks after allocating N blocks of a class, total live
 * blocks/bytes (sum of usable sizes), large blocks/bytes, the effect of
 * calloc/realloc/aligned allocation, frees from other threads (pending remote
 * frees are not live), and all zeros after everything is freed. */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

#define MiB ((size_t)1 << 20)

/* Blocks carved in the pages of class `cls`, every segment's (read while
 * no other thread allocates or frees). */
static size_t carved(size_t cls) {
  size_t n = 0;
  for (hak_segment_t *s = hak_all_segments; s; s = s->gnext) {
    hak_page_t *pg;
    FOR_EACH_PAGE(s, pg) {
      if (pg->cls == cls)
        n += atomic_load(&pg->capacity);
    }
  }
  return n;
}

/* Each class's live blocks, and its free ones: carved, not live (hakmem.h;
 * a count of the pages' room, carved or not, passed every test: helper-69's
 * mutant stats-free-counts-reserved, 2026-11-28). */
static void check_classes(const struct hak_stats *st, size_t cls, size_t n, const char *what) {
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++) {
    size_t want = c == cls ? n : 0;
    CHECK_MSG(st->classes[c].live_blocks == want,
              "%s: class %zu (%zu B) has %zu live, expected %zu", what, c,
              st->classes[c].block_size, st->classes[c].live_blocks, want);
    size_t cv = carved(c);
    CHECK_MSG(cv >= want && st->classes[c].free_blocks == cv - want,
              "%s: class %zu (%zu B) has %zu free, expected %zu carved - %zu live", what, c,
              st->classes[c].block_size, st->classes[c].free_blocks, cv, want);
  }
}

static void check_empty(const char *what) {
  struct hak_stats st;
  hak_stats(&st);
  CHECK_MSG(st.live_blocks == 0 && st.live_bytes == 0, "%s: %zu blocks / %zu bytes still live",
            what, st.live_blocks, st.live_bytes);
  CHECK_MSG(st.large_blocks == 0 && st.large_bytes == 0, "%s: %zu large blocks / %zu bytes", what,
            st.large_blocks, st.large_bytes);
  check_classes(&st, (size_t)-1, 0, what);
  CHECK_EQ(hak_heap_check(), 0);
}

static void test_table(void) {
  struct hak_stats st;
  hak_stats(&st);
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++) {
    CHECK_MSG(st.classes[c].block_size == hak_size_class_size(c),
              "classes[%zu].block_size = %zu, class size %zu", c, st.classes[c].block_size,
              hak_size_class_size(c));
  }
  check_empty("at start");
}

static void test_one_class(size_t size) {
  size_t cls = hak_size_to_class(size), cs = hak_size_class_size(cls);
  size_t n = 1000;
  if (n * cs > 32 * MiB)
    n = 32 * MiB / cs;
  void **b = calloc(n, sizeof(void *));
  REQUIRE(b != NULL);
  for (size_t i = 0; i < n; i++) {
    b[i] = hak_malloc(size);
    REQUIRE(b[i] != NULL);
  }
  char what[64];
  snprintf(what, sizeof what, "%zu x malloc(%zu)", n, size);
  struct hak_stats st;
  hak_stats(&st);
  check_classes(&st, cls, n, what);
  CHECK_MSG(st.live_blocks == n, "%s: live_blocks %zu", what, st.live_blocks);
  CHECK_MSG(st.live_bytes == n * cs, "%s: live_bytes %zu, expected %zu", what, st.live_bytes,
            n * cs);
  CHECK_EQ(st.large_blocks, 0);
  CHECK_GE(st.classes[cls].pages, 1);
  CHECK_GE(st.segments, 1);
  CHECK_GE(st.mapped_bytes, st.live_bytes);
  CHECK_EQ(hak_heap_check(), 0);

  for (size_t i = 0; i < n; i += 2)
    hak_free(b[i]);
  hak_stats(&st);
  snprintf(what, sizeof what, "after freeing half of %zu x malloc(%zu)", n, size);
  check_classes(&st, cls, n / 2, what);
  CHECK_EQ(st.live_blocks, n / 2);
  CHECK_EQ(st.live_bytes, n / 2 * cs);
  CHECK_EQ(hak_heap_check(), 0);
  for (size_t i = 1; i < n; i += 2)
    hak_free(b[i]);
  snprintf(what, sizeof what, "after freeing all of %zu x malloc(%zu)", n, size);
  check_empty(what);
  free(b);
}

static void test_large(void) {
  static const size_t sizes[] = {HAK_SMALL_MAX + 1, 100000, 1 * MiB, 5 * MiB + 3};
  enum { PER = 10 };
  void *b[4][PER];
  size_t bytes = 0;
  for (size_t s = 0; s < 4; s++) {
    for (int i = 0; i < PER; i++) {
      b[s][i] = hak_malloc(sizes[s]);
      REQUIRE(b[s][i] != NULL);
      bytes += hak_usable_size(b[s][i]);
    }
  }
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.large_blocks, 4 * PER);
  CHECK_EQ(st.large_bytes, bytes);
  CHECK_EQ(st.live_blocks, 4 * PER);
  CHECK_EQ(st.live_bytes, bytes);
  CHECK_GE(st.mapped_bytes, bytes);
  check_classes(&st, (size_t)-1, 0, "large blocks only");
  CHECK_EQ(hak_heap_check(), 0);
  for (size_t s = 0; s < 4; s++) {
    for (int i = 0; i < PER; i++)
      hak_free(b[s][i]);
  }
  check_empty("after freeing large blocks");

  /* a block the cache served from a bigger mapping (4 MiB from a freed 5
   * MiB one) keeps the rest as room: large_bytes counts its usable size,
   * not the mapping */
  void *five = hak_malloc(5 * MiB);
  REQUIRE(five != NULL);
  hak_free(five);
  void *four = hak_malloc(4 * MiB);
  REQUIRE(four != NULL);
  hak_stats(&st);
  CHECK_EQ(st.large_blocks, 1);
  CHECK_EQ(st.large_bytes, hak_usable_size(four));
  CHECK_EQ(st.live_bytes, hak_usable_size(four));
  hak_free(four);
  check_empty("after the cache-served block");
}

static void test_every_class(void) {
  void *b[HAK_NUM_CLASSES];
  size_t bytes = 0;
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++) {
    b[c] = hak_malloc(hak_size_class_size(c));
    REQUIRE(b[c] != NULL);
    bytes += hak_usable_size(b[c]);
  }
  struct hak_stats st;
  hak_stats(&st);
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++) {
    CHECK_MSG(st.classes[c].live_blocks == 1, "class %zu: %zu live, expected 1", c,
              st.classes[c].live_blocks);
  }
  CHECK_EQ(st.live_blocks, HAK_NUM_CLASSES);
  CHECK_EQ(st.live_bytes, bytes);
  CHECK_EQ(hak_heap_check(), 0);
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++)
    hak_free(b[c]);
  check_empty("after one block per class");
}

static void test_other_apis(void) {
  size_t c100 = hak_size_to_class(100), c1000 = hak_size_to_class(1000);
  void *p = hak_calloc(10, 10);
  REQUIRE(p != NULL);
  struct hak_stats st;
  hak_stats(&st);
  check_classes(&st, c100, 1, "calloc(10, 10)");
  void *q = hak_realloc(p, 1000);
  REQUIRE(q != NULL);
  hak_stats(&st);
  check_classes(&st, c1000, 1, "realloc(100 -> 1000)");
  CHECK_EQ(st.live_blocks, 1);
  CHECK_EQ(st.live_bytes, hak_usable_size(q));
  q = hak_realloc(q, 200000);
  REQUIRE(q != NULL);
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 1);
  CHECK_EQ(st.large_blocks, 1);
  CHECK_EQ(st.live_bytes, hak_usable_size(q));
  CHECK_EQ(st.large_bytes, hak_usable_size(q));
  check_classes(&st, (size_t)-1, 0, "realloc(1000 -> 200000)");
  q = hak_realloc(q, 0); /* frees */
  CHECK(q == NULL);
  check_empty("after realloc(p, 0)");
}

static void test_aligned(void) {
  static const size_t aligns[] = {64, 4096, 65536, 1 * MiB, 4 * MiB};
  struct hak_stats st;
  void *a[5];
  size_t bytes = 0;
  for (int i = 0; i < 5; i++) {
    a[i] = hak_aligned_alloc(aligns[i], 100);
    REQUIRE(a[i] != NULL);
    bytes += hak_usable_size(a[i]);
  }
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 5);
  CHECK_EQ(st.live_bytes, bytes);
  /* up to the slice size (64 KiB: pages start at slices) a small block of
   * the smallest class that is a multiple of the alignment; 64 KiB went to
   * a large mapping of its own in a mutant that passed every test
   * (aligned-slice-size-goes-large, helper-69, 2026-11-28) */
  static const size_t small_usable[] = {128, 4096, 65536};
  for (int i = 0; i < 3; i++)
    CHECK_MSG(hak_usable_size(a[i]) == small_usable[i],
              "aligned_alloc(%zu, 100): usable size %zu, not the %zu B class", aligns[i],
              hak_usable_size(a[i]), small_usable[i]);
  CHECK_EQ(st.large_blocks, 2);
  CHECK_EQ(hak_heap_check(), 0);
  for (int i = 0; i < 5; i++)
    hak_free(a[i]);
  check_empty("after aligned blocks");
}

/* ---- frees by other threads ------------------------------------------------------- */

#define XN 2000
static void *xblocks[XN];
static pthread_barrier_t xbar;

static void *alloc_and_exit(void *arg) {
  for (int i = 0; i < XN; i++)
    xblocks[i] = hak_malloc(24 + (size_t)(i % 7) * 100);
  return arg;
}

static void *free_all(void *arg) {
  for (int i = 0; i < XN; i++)
    hak_free(xblocks[i]);
  return arg;
}

/* Allocates, waits while others free and main looks, then exits. */
static void *alloc_and_wait(void *arg) {
  alloc_and_exit(arg);
  pthread_barrier_wait(&xbar); /* allocated */
  pthread_barrier_wait(&xbar); /* freed by another thread, main has checked */
  return arg;
}

static void test_threads(void) {
  pthread_t t, u;
  /* A thread allocates and exits; main sees them live, frees them. */
  REQUIRE(pthread_create(&t, NULL, alloc_and_exit, NULL) == 0);
  pthread_join(t, NULL);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, XN);
  CHECK_EQ(hak_heap_check(), 0);
  free_all(NULL);
  check_empty("blocks of an exited thread freed by main");

  /* Main allocates, a thread frees and exits: main's blocks are not live. */
  alloc_and_exit(NULL);
  REQUIRE(pthread_create(&t, NULL, free_all, NULL) == 0);
  pthread_join(t, NULL);
  check_empty("main's blocks freed by another thread");
  /* ...and main's heap reuses them without trouble. */
  alloc_and_exit(NULL);
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, XN);
  free_all(NULL);
  check_empty("reused after remote free");

  /* A live (idle) thread's blocks freed by a third thread. */
  REQUIRE(pthread_barrier_init(&xbar, NULL, 2) == 0);
  REQUIRE(pthread_create(&t, NULL, alloc_and_wait, NULL) == 0);
  pthread_barrier_wait(&xbar);
  REQUIRE(pthread_create(&u, NULL, free_all, NULL) == 0);
  pthread_join(u, NULL);
  check_empty("an idle thread's blocks freed by a third thread");
  pthread_barrier_wait(&xbar);
  pthread_join(t, NULL);
  pthread_barrier_destroy(&xbar);
  check_empty("after that thread exited");
}

static void print_stats(void *arg) {
  hak_stats_print();
}

static void test_print(void) {
  void *p = hak_malloc(100);
  REQUIRE(p != NULL);
  struct hak_child c;
  REQUIRE(hak_run_child(print_stats, NULL, 60, &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "hak_stats_print child: %s", hak_child_describe(&c, how, 128));
  CHECK_MSG(c.len > 0, "hak_stats_print printed nothing");
  hak_child_free(&c);
  hak_free(p);
}

/* Damage hak_heap_check must name, each in a child (the heap is left
 * corrupt), with hak_stats counting around it:
 *  0, 1. a write after free that points a cached block's link at
 *     unmapped memory or at the block itself (a cycle): never followed off
 *     the heap or forever (found by review: the cache walkers followed
 *     links before checking them, and crashed);
 *  2. a free block's link cut, so the page's free list loses the blocks
 *     after it (their markers intact: only the count shows it);
 *  3. a large block's header claiming more bytes than its mapping holds;
 *  4. a full page's notification request lost (its state cleared), so a
 *     remote free pushes its block on the page's stack where the owner
 *     never looks;
 *  5. a heap's purge count off by a slice from its segments' free dirty
 *     slices;
 *  6. a page in the full list with a free block on its list (its counts
 *     kept consistent: only the list it is in is wrong);
 *  7. the slice entry free reads (phase) no longer its page's;
 *  8. a class's cache one block longer than its limit - room says;
 *  9. the heap's total of grown cache limits off from its limits;
 *  10. a free slice's entry saying blocks are carved there (free would
 *      take a pointer into memory no page owns);
 *  11. a class queue's tail pointer lost;
 *  12. a segment's used page count one too high;
 *  13. a write after free into the marker word of a block on a page's
 *      free list (not a cached one: the cache's walk checks it apart);
 *  14. a page's free list linked on to its first uncarved block (made to
 *      look free: only the bound and the counts show it).
 * 6-14: a hak_heap_check that missed each of them passed every test
 * (helper-69's mutants check-*-unchecked, 2026-11-28).
 *  15-18. a block a remote free handed over to its heap (the heap's delayed
 *      list, which the heap's slow path frees without further checks): its
 *      link written after free to point at unmapped memory, its marker
 *      written after free, the block also put on its page's free list, the
 *      list's head moved into the block (not a block start); 19. a block of
 *      an exited thread's abandoned segment on the delayed list. Before,
 *      hak_heap_check walked the delayed lists only to count them and
 *      reported none of these but 17's full page with a free block
 *      (helper-85, mutants check-delayed-*, 2026-11-28).
 *  20. the segment of the thread's blocks dropped from its heap's list
 *      (named as such since 2026-11-28; the page counts differ too).
 *  21-38: every report hak_heap_check could make that no test or corpus
 *  input reached (make test-coverage, helper-103, 2026-11-28; mutants
 *  check-*, "never reached before"): 21. a write after free into the
 *  marker of a block in a thread cache (the cache's walk checks it apart
 *  from the page's); 22. a heap's copy of a class's division magic (free's
 *  fast path's interior-pointer check) changed; 23. a page left NOTIFYING
 *  (a remote free's hand-over that never ended); 24. more frees counted
 *  into an abandoned segment than blocks were live at its abandonment;
 *  25. an owned segment marked abandoned; 26, 27. a class's cache limit
 *  and room out of range; 28. a heap's delayed list made a cycle; 29. the
 *  metadata slice's entry saying blocks are carved there; 30. a page's
 *  block size not its class's; 31. a page's count of blocks it holds
 *  wrong; 32. a page's first slice index wrong; 33. a free slice marked
 *  used; 34. a queued page's back link wrong; 35. an exited thread's
 *  finished heap with a block in its cache; 36. a large block dropped
 *  from the registry; 37. a segment's header magic changed; 38. the
 *  metadata slice marked free; 39. a segment dropped from the registry;
 *  40-42. the calling thread's segment made owned by an exited thread's
 *  finished heap (named for the segment, its queued page and the heap that
 *  lists it); 43. a free slice mapped to a page; 44. a slice of a page of
 *  several mapped to another; 45. a class queue's pointer NULL; 46. a page
 *  in the full list not marked full; 47. a finished heap with a delayed
 *  block; 48-50. a cached large mapping's header (pieces) damaged, its
 *  registry entry dropped, its size changed (the cache's total then
 *  wrong). 51, 52: a thread cache's link into a live block of another
 *  class, and into the middle of a live block of its own class, in the
 *  thread's own pages (make test-coverage, 2026-11-28: the class and
 *  block-start checks of a cache entry never failed; mutants
 *  tcache-entry-ok-any-class, tcache-entry-ok-interior: the walk took
 *  the live block for a cached one). 53: an exited thread's finished heap
 *  whose segment list names a segment unmapped since (a stale link): the
 *  check names the heap and follows no such list (helper-114, 2026-11-28:
 *  the index check.c builds walked every heap's segment list, a finished
 *  heap's too, and died of SIGSEGV there; the check before the index
 *  walked active heaps' lists only). 54: the last block of the thread's
 *  cache of a class also on its page's free list; 55: that cache made a
 *  cycle, its last block linked to its first: each page's count of its
 *  blocks in its owner's cache stops at the block seen twice, with the
 *  index (its entries of the cache, since 2026-11-29) and without (the
 *  cache walked); no damage reached that report before. */
static const char *const corrupt_want[] = {
    "thread cache entry outside",
    "list cycle",
    "free + used != capacity",
    "bad large block header",
    "full page's remote frees stranded",
    "heap's purge counter differs",
    "page in the full list has free blocks",
    "slice entry differs from its page's",
    "heap cache length != limit - room",
    "heap cache limits grew by a wrong total",
    "free slice's entry has carved blocks",
    "class queue tail wrong",
    "segment used_pages wrong",
    "free block lost its free marker",
    "local free list entry outside the page",
    "delayed free list entry outside the small segments",
    "free block lost its free marker",
    "on a heap's delayed list and another list",
    "delayed free list entry not a carved block",
    "delayed free list entry in a segment its heap does not own",
    "segment owned by a heap that does not list it",
    "free block lost its free marker",
    "heap's copy of the class division magic wrong",
    "page stuck in NOTIFYING",
    "more frees into an abandoned segment than blocks live at abandonment",
    "segment ownership inconsistent",
    "heap cache limit out of range",
    "heap cache room out of range",
    "delayed free list longer than its bound",
    "metadata slice's entry has carved blocks",
    "page has a bad size class",
    "page counts inconsistent",
    "page geometry wrong",
    "used slice does not start a page",
    "class queue holds a wrong page",
    "finished heap still holds cached blocks",
    "large block missing from the registry",
    "bad segment header",
    "metadata slice marked free",
    "segment missing from the registry",
    "segment owned by a finished heap",
    "queued page not owned by heap",
    "heap lists a segment it does not own",
    "free slice mapped to a page",
    "page slice map inconsistent",
    "heap class queue pointer is NULL",
    "full list holds a wrong page",
    "finished heap still holds segments or delayed frees",
    "bad cached large mapping",
    "cached large mapping missing from the registry",
    "large cache totals wrong",
    "thread cache entry outside",
    "thread cache entry outside",
    "finished heap still holds segments or delayed frees",
    "block listed twice (in a thread cache and a free list)",
    "block listed twice (in a thread cache and a free list)"};

static void *alloc_in_thread(void *arg) {
  return hak_malloc(48);
}

static void *free_in_thread(void *p) {
  hak_free(p);
  return NULL;
}

/* Each block whose metadata a damage writes through escapes here: else
 * gcc takes a block from hak_malloc (attribute malloc) that nothing else
 * sees for the caller's alone, and drops those writes as dead stores. */
static void *volatile corrupt_escape;

/* A thread's heap, once the thread has exited: finished, its cache empty. */
static void *heap_of_thread(void *arg) {
  hak_free(hak_malloc(48));
  return hak_tls_heap;
}

/* Damages 21-55 (see corrupt_want); `keep` is a live 48-byte block of the
 * calling thread. */
static void corrupt_more(uintptr_t k, void *keep) {
  hak_segment_t *seg = ptr_segment_base(keep);
  hak_page_t *pg = ptr_page(seg, keep);
  size_t cls = size_to_class(48);
  unsigned last_free = seg->free_slices ? 63 - (unsigned)__builtin_clzll(seg->free_slices) : 0;
  if (k == 21) {
    uintptr_t *b = hak_malloc(48);
    hak_free(b);                       /* heads the thread's cache of its class */
    ((volatile uintptr_t *)b)[1] ^= 1; /* a write after free into its marker */
  } else if (k == 22) {
    hak_tls_heap->magic[cls] += 1;
  } else if (k == 23) {
    atomic_fetch_or(&pg->thread_free, TF_NOTIFYING);
  } else if (k == 24) {
    pthread_t t;
    void *b = NULL; /* live in the exited thread's abandoned segment */
    REQUIRE(pthread_create(&t, NULL, alloc_in_thread, NULL) == 0 && pthread_join(t, &b) == 0);
    hak_segment_t *s = ptr_segment_base(b);
    REQUIRE(b != NULL && s->abandoned);
    atomic_store(&s->abandoned_frees, atomic_load(&s->abandoned_live) + 1);
  } else if (k == 25) {
    seg->abandoned = true;
  } else if (k == 26) {
    hak_tls_heap->tc_limit[cls] = 0;
  } else if (k == 27) {
    hak_tls_heap->tc_room[cls] = hak_tls_heap->tc_limit[cls] + 1;
  } else if (k == 28) {
    unsigned char *b[9];
    for (int i = 0; i < 9; i++) /* a page of 8 blocks: full, in the full list */
      REQUIRE((b[i] = corrupt_escape = hak_malloc(65536)) != NULL);
    pthread_t t; /* its remote free hands b[2] over to this thread's heap */
    REQUIRE(pthread_create(&t, NULL, free_in_thread, b[2]) == 0 && pthread_join(t, NULL) == 0);
    REQUIRE(atomic_load(&hak_tls_heap->delayed) == (uintptr_t)b[2]);
    block_set_next((hak_block_t *)b[2], (hak_block_t *)b[2]); /* a cycle */
  } else if (k == 29) {
    atomic_store(&seg->slices[0].end, 64);
  } else if (k == 30) {
    pg->block_size += 16;
  } else if (k == 31) {
    pg->reserved--;
  } else if (k == 32) {
    pg->slice_index++;
  } else if (k == 33) {
    REQUIRE(last_free > 0);
    seg->free_slices &= ~((uint64_t)1 << last_free);
  } else if (k == 34) {
    REQUIRE(queue_first(hak_tls_heap, cls) == pg && pg->prev == NULL);
    pg->prev = pg;
  } else if (k == 35) {
    pthread_t t;
    hak_heap_t *h = NULL;
    REQUIRE(pthread_create(&t, NULL, heap_of_thread, NULL) == 0 &&
            pthread_join(t, (void **)&h) == 0);
    REQUIRE(h != NULL && h->state != HEAP_ACTIVE && h->tc_head[cls] == NULL);
    uintptr_t *b = hak_malloc(48);
    hak_free(b); /* a free block with its marker: only the list it is on is wrong */
    hak_tls_heap->tc_head[cls] = block_next((hak_block_t *)b);
    hak_tls_heap->tc_room[cls]++;
    h->tc_head[cls] = (hak_block_t *)b;
  } else if (k == 36) {
    unsigned char *p = corrupt_escape = hak_malloc(100000);
    hak_large_t *lg = registry_large(p);
    REQUIRE(lg != NULL && !lg->huge);
    registry_set(lg, REG_NONE);
  } else if (k == 37) {
    seg->magic ^= 1;
  } else if (k == 38) {
    seg->free_slices |= 1;
  } else if (k == 39) {
    registry_set(seg, REG_NONE);
  } else if (k >= 40 && k <= 42) {
    pthread_t t;
    hak_heap_t *h = NULL;
    REQUIRE(pthread_create(&t, NULL, heap_of_thread, NULL) == 0 &&
            pthread_join(t, (void **)&h) == 0);
    REQUIRE(h != NULL && h->state != HEAP_ACTIVE);
    atomic_store(&seg->owner, h);
  } else if (k == 43) {
    REQUIRE(last_free > 0);
    seg->slice_head[last_free] = 1;
  } else if (k == 44 || k == 46) {
    unsigned char *b[9];
    for (int i = 0; i < 9; i++) /* a page of 8 blocks (8 slices): full, in the full list */
      REQUIRE((b[i] = corrupt_escape = hak_malloc(65536)) != NULL);
    hak_segment_t *s = ptr_segment_base(b[0]);
    hak_page_t *p = ptr_page(s, b[0]);
    REQUIRE(p->in_full && p->slice_count > 1);
    if (k == 44)
      s->slice_head[p->slice_index + 1] = 0;
    else
      p->in_full = false;
  } else if (k == 45) {
    hak_tls_heap->direct[size_to_class(2000)] = NULL;
  } else if (k == 47) {
    pthread_t t;
    hak_heap_t *h = NULL;
    REQUIRE(pthread_create(&t, NULL, heap_of_thread, NULL) == 0 &&
            pthread_join(t, (void **)&h) == 0);
    REQUIRE(h != NULL && h->state != HEAP_ACTIVE && atomic_load(&h->delayed) == 0);
    hak_block_t *b = hak_malloc(48); /* a block with its free marker, no link */
    block_set_free(b, NULL, block_marker_value(b));
    atomic_store(&h->delayed, (uintptr_t)b);
  } else if (k == 51 || k == 52) {
    /* a live block the thread's cache of 48-byte blocks must not lead into,
     * zeroed (a link to nothing): 51 one of another class (1000 bytes), 52
     * a point 16 bytes into a 48-byte one (not a block start) */
    uintptr_t *o = corrupt_escape = hak_calloc(1, k == 51 ? 1000 : 48);
    uintptr_t *b = hak_malloc(48);
    REQUIRE(o != NULL && b != NULL);
    hak_free(b); /* heads the thread's cache of its class */
    b[0] = k == 51 ? (uintptr_t)o : (uintptr_t)(o + 2);
  } else if (k == 53) {
    /* a finished heap still listing a segment that has since been unmapped
     * (its link stale): named, never followed */
    pthread_t t;
    hak_heap_t *h = NULL;
    REQUIRE(pthread_create(&t, NULL, heap_of_thread, NULL) == 0 &&
            pthread_join(t, (void **)&h) == 0);
    REQUIRE(h != NULL && h->state != HEAP_ACTIVE && h->segments == NULL);
    uint8_t *m = mmap(NULL, 2 * SEGMENT_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED && munmap(m, 2 * SEGMENT_SIZE) == 0);
    h->segments = (hak_segment_t *)(((uintptr_t)m + SEGMENT_SIZE - 1) & ~(uintptr_t)SEGMENT_MASK);
  } else if (k == 54 || k == 55) {
    hak_block_t *a = hak_malloc(48), *b = hak_malloc(48);
    REQUIRE(a != NULL && b != NULL);
    hak_free(a);
    hak_free(b); /* the thread's cache of 48-byte blocks: b, a, ... */
    hak_block_t *last = hak_tls_heap->tc_head[cls];
    REQUIRE(last == b);
    while (block_next(last))
      last = block_next(last);
    if (k == 55) {
      block_set_next(last, b);
    } else { /* at the end of its page's free list: its link, NULL, ends both */
      hak_page_t *lp = ptr_page(ptr_segment_base(last), last);
      if (!lp->free) {
        lp->free = last;
      } else {
        hak_block_t *tail = lp->free;
        while (block_next(tail))
          tail = block_next(tail);
        block_set_next(tail, last);
      }
    }
  } else if (k >= 48) {
    unsigned char *p = hak_malloc(100000);
    hak_large_t *lg = registry_large(p);
    REQUIRE(lg != NULL && !lg->huge);
    hak_free(p); /* kept mapped in the large cache */
    REQUIRE(registry_large(p) == lg && atomic_load(&lg->freed));
    if (k == 48)
      lg->pieces = 0;
    else if (k == 49)
      registry_set(lg, REG_NONE);
    else
      lg->map_size += 4096;
  }
}

/* hak_heap_check looks segments and delayed blocks up in an index it maps
 * for the check (check.c, since 2026-11-28: before, each segment's check
 * walked lists, O(segments^2)), and walks the lists as before when that
 * mmap fails. Each damage is checked both ways: NO_INDEX added to its
 * number runs the check with the address space limited to what the
 * process has mapped. */
#define NO_INDEX 1000
/* The control: no damage, but an abandoned segment, a block handed over
 * to this thread's heap (delayed) and a cached segment, which the index
 * (or the walks) must place: no violation. */
#define CONTROL 999

/* Limits the address space to what is mapped now (no mmap succeeds);
 * returns the limit it replaced. */
static struct rlimit limit_address_space(void) {
  struct rlimit old = hak_limit_as(0);
  void *probe = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(probe == MAP_FAILED); /* the index's mmap fails too */
  return old;
}

static pthread_barrier_t control_bar;
static void *alloc_wait_exit(void *arg) {
  void *b = hak_malloc(48);
  pthread_barrier_wait(&control_bar); /* allocated */
  pthread_barrier_wait(&control_bar); /* may exit */
  return b;
}

static void control_damage(void) {
  unsigned char *b[9];
  for (int i = 0; i < 9; i++) /* a page of 8 blocks: full, in the full list */
    REQUIRE((b[i] = corrupt_escape = hak_malloc(65536)) != NULL);
  pthread_t t, u;
  REQUIRE(pthread_create(&t, NULL, free_in_thread, b[2]) == 0 && pthread_join(t, NULL) == 0);
  REQUIRE(atomic_load(&hak_tls_heap->delayed) == (uintptr_t)b[2]);
  /* t: a block live at its exit, its segment abandoned; u: a segment of
   * its own (t's not abandoned yet), nothing live at its exit: cached */
  REQUIRE(pthread_barrier_init(&control_bar, NULL, 2) == 0);
  REQUIRE(pthread_create(&t, NULL, alloc_wait_exit, NULL) == 0);
  pthread_barrier_wait(&control_bar);
  REQUIRE(pthread_create(&u, NULL, heap_of_thread, NULL) == 0 && pthread_join(u, NULL) == 0);
  pthread_barrier_wait(&control_bar);
  void *a = NULL;
  REQUIRE(pthread_join(t, &a) == 0 && a != NULL);
  REQUIRE(((hak_segment_t *)ptr_segment_base(a))->abandoned && hak_segment_cache != NULL);
}

static void corrupt_child(void *arg) {
  uintptr_t k = (uintptr_t)arg % NO_INDEX;
  bool no_index = (uintptr_t)arg >= NO_INDEX;
  void *keep = corrupt_escape = hak_malloc(48);
  if (k == CONTROL) {
    control_damage();
  } else if (k >= 21) {
    corrupt_more(k, keep);
  } else if (k < 2) {
    uintptr_t *b = hak_malloc(48);
    hak_free(b);                                 /* heads the thread's cache of its class */
    b[0] = k ? (uintptr_t)b : (uintptr_t)0x1000; /* its link: itself, or an unmapped page */
  } else if (k == 2) {
    unsigned char *p = hak_malloc(1000);
    hak_page_t *pg = hak_block_page(p);
    REQUIRE(pg->free != NULL && block_next(pg->free) != NULL); /* two free blocks at least */
    *(void *volatile *)pg->free = NULL;
  } else if (k == 5) {
    REQUIRE(hak_malloc(48) != NULL && hak_tls_heap != &hak_empty_heap);
    hak_tls_heap->dirty_free_bytes += SLICE_SIZE;
  } else if (k == 6) {
    void *b[9];
    for (int i = 0; i < 9; i++) /* a page of 8 blocks: full, in the full list */
      REQUIRE((b[i] = corrupt_escape = hak_malloc(65536)) != NULL);
    hak_page_t *pg = hak_block_page(b[0]);
    REQUIRE(pg->in_full && pg->free == NULL);
    block_set_free(b[3], NULL, block_marker_value(b[3])); /* freed behind the heap's back */
    pg->free = b[3];
    pg->used--;
  } else if (k == 7) {
    unsigned char *p = corrupt_escape = hak_malloc(1000);
    hak_segment_t *seg = ptr_segment_base(p);
    seg->slices[ptr_slice(seg, p)].phase += 16;
  } else if (k == 8 || k == 9) {
    void *b = hak_malloc(48);
    hak_free(b); /* the cache of its class holds one block */
    if (k == 8)
      hak_tls_heap->tc_room[size_to_class(48)]++;
    else
      hak_tls_heap->tc_grown += 16;
  } else if (k == 10) {
    hak_segment_t *seg = ptr_segment_base(keep);
    REQUIRE(seg->free_slices >> 1 != 0);
    unsigned i = 63 - (unsigned)__builtin_clzll(seg->free_slices); /* the last free slice */
    atomic_store(&seg->slices[i].end, 64);
  } else if (k == 11) {
    hak_tls_heap->tail[size_to_class(48)] = NULL;
  } else if (k == 12) {
    ((hak_segment_t *)ptr_segment_base(keep))->used_pages++;
  } else if (k == 13) {
    unsigned char *p = corrupt_escape = hak_malloc(1000);
    hak_page_t *pg = hak_block_page(p);
    REQUIRE(pg->free != NULL);
    ((volatile uintptr_t *)pg->free)[1] ^= 1; /* a write after free into the marker */
  } else if (k == 14) {
    unsigned char *p = corrupt_escape = hak_malloc(1000);
    hak_page_t *pg = hak_block_page(p);
    REQUIRE(pg->free != NULL && atomic_load(&pg->capacity) < pg->reserved);
    hak_block_t *tail = pg->free;
    while (block_next(tail))
      tail = block_next(tail);
    hak_block_t *past =
        (hak_block_t *)(page_start(pg) + atomic_load(&pg->capacity) * pg->block_size);
    block_set_free(past, NULL, block_marker_value(past));
    block_set_next(tail, past);
  } else if (k == 20) {
    /* the segment of this heap's blocks dropped from its list (the count of
     * pages listed against pages in listed segments differs too) */
    hak_segment_t *seg = ptr_segment_base(keep);
    REQUIRE(atomic_load(&seg->owner) == hak_tls_heap && hak_tls_heap->segments == seg &&
            seg->next == NULL);
    hak_tls_heap->segments = NULL;
  } else if (k == 19) {
    pthread_t t;
    void *b = NULL; /* live in the exited thread's abandoned segment */
    REQUIRE(pthread_create(&t, NULL, alloc_in_thread, NULL) == 0 && pthread_join(t, &b) == 0);
    REQUIRE(b != NULL && atomic_load(&((hak_segment_t *)ptr_segment_base(b))->owner) == NULL);
    block_set_free(b, NULL, block_marker_value(b));
    atomic_store(&hak_tls_heap->delayed, (uintptr_t)b);
  } else if (k >= 15) {
    unsigned char *b[9];
    for (int i = 0; i < 9; i++) /* a page of 8 blocks: full, in the full list */
      REQUIRE((b[i] = corrupt_escape = hak_malloc(65536)) != NULL);
    hak_page_t *pg = hak_block_page(b[0]);
    REQUIRE(pg->in_full && (atomic_load(&pg->thread_free) & TF_MASK) == TF_NOTIFY);
    pthread_t t; /* its remote free hands b[2] over to this thread's heap */
    REQUIRE(pthread_create(&t, NULL, free_in_thread, b[2]) == 0 && pthread_join(t, NULL) == 0);
    REQUIRE(atomic_load(&hak_tls_heap->delayed) == (uintptr_t)b[2]);
    if (k == 15)
      block_set_next((hak_block_t *)b[2], (hak_block_t *)(uintptr_t)0x1000);
    else if (k == 16)
      ((volatile uintptr_t *)b[2])[1] ^= 1; /* a write after free into the marker */
    else if (k == 17) { /* freed twice behind the heap's back: delayed and local */
      REQUIRE(pg->free == NULL && block_next((hak_block_t *)b[2]) == NULL);
      pg->free = (hak_block_t *)b[2];
      pg->used--;
    } else
      atomic_store(&hak_tls_heap->delayed, (uintptr_t)(b[2] + 16));
  } else if (k == 4) {
    void *b[9];
    for (int i = 0; i < 9; i++) /* a page of 8 blocks: full, in the full list */
      REQUIRE((b[i] = hak_malloc(65536)) != NULL);
    hak_page_t *pg = hak_block_page(b[0]);
    REQUIRE(pg->in_full && (atomic_load(&pg->thread_free) & TF_MASK) == TF_NOTIFY);
    atomic_fetch_and(&pg->thread_free, ~TF_MASK);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, free_in_thread, b[2]) == 0 && pthread_join(t, NULL) == 0);
  } else {
    unsigned char *p = hak_malloc(100000);
    hak_large_t *lg = registry_large(p);
    REQUIRE(lg != NULL && (unsigned char *)lg + lg->offset == p);
    *(volatile size_t *)&lg->requested = (size_t)1 << 30;
  }
  struct hak_stats st;
  hak_stats(&st);
  struct rlimit old;
  if (no_index)
    old = limit_address_space();
  size_t v = hak_heap_check();
  if (no_index)
    REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
  printf("violations %zu live %zu\n", v, st.live_blocks);
  fflush(stdout);
  _exit((k == CONTROL ? v == 0 : v > 0) && keep ? 0 : 1);
}

static void test_corrupt(void) {
  if (hak_config_is("valgrind") || hak_config_is("asan"))
    return; /* the stray writes are themselves the errors those builds report */
  /* TSan's shadow memory is mapped as it is needed: no address-space limit */
  int ways = hak_config_is("tsan") ? 1 : 2;
  for (int way = 0; way < ways; way++) {
    const char *how_checked = way ? "without its index" : "with its index";
    for (uintptr_t k = 0; k < sizeof corrupt_want / sizeof corrupt_want[0]; k++) {
      struct hak_child c;
      REQUIRE(hak_run_child(corrupt_child, (void *)(k + (uintptr_t)way * NO_INDEX), 60, &c));
      char how[128];
      CHECK_MSG(hak_child_exited(&c, 0), "heap check %s of damage %zu (%s): %s; output: %.400s",
                how_checked, (size_t)k, corrupt_want[k], hak_child_describe(&c, how, 128),
                c.out ? c.out : "");
      CHECK_MSG(c.out && strstr(c.out, corrupt_want[k]),
                "hak_heap_check %s did not report \"%s\": %.400s", how_checked, corrupt_want[k],
                c.out ? c.out : "");
      hak_child_free(&c);
    }
    struct hak_child c;
    REQUIRE(hak_run_child(corrupt_child, (void *)(CONTROL + (uintptr_t)way * NO_INDEX), 60, &c));
    char how[128];
    CHECK_MSG(hak_child_exited(&c, 0),
              "heap check %s of an abandoned, a cached segment and a delayed block: %s; output: "
              "%.400s",
              how_checked, hak_child_describe(&c, how, 128), c.out ? c.out : "");
    hak_child_free(&c);
  }
}

static void test_classes(void) {
  static const size_t sizes[] = {0,    1,    16,   40,    48,    100,          129,
                                 1000, 4096, 5000, 16384, 30000, HAK_SMALL_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    test_one_class(sizes[i]);
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
  test_table();
  RUN_SECTION(test_classes);
  RUN_SECTION(test_large);
  RUN_SECTION(test_every_class);
  RUN_SECTION(test_other_apis);
  RUN_SECTION(test_aligned);
  RUN_SECTION(test_threads);
  RUN_SECTION(test_print);
  RUN_SECTION(test_corrupt);
  check_empty("at exit");
  return hak_test_done();
}
