/* The public API. Fast paths first, slow paths after them.
 *
 * malloc fast path: TLS heap -> pop the class's cache (tcache.c); when that
 *   is empty, the class queue head page -> pop its free list.
 * free fast path: registry bit -> segment -> page -> block index check
 *   (a multiply, no division) -> free marker check -> push on the heap's
 *   cache of the class (owner) or the page's remote-free stack (other
 *   threads).
 * Built with -DHAK_INTERPOSE=1 this file also exports malloc & co. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "trace.h"

#ifndef HAK_CONFIG_NAME
#define HAK_CONFIG_NAME "unknown"
#endif

static void *small_alloc_slow(hak_heap_t *h, size_t cls, size_t n, bool zero);

/* ---- allocation fast path ---------------------------------------------- */
/* A block taken off a list, handed to the caller: no longer marked free,
 * tracked (ASan/Valgrind), its first `zero_bytes` zeroed for calloc. */
static inline __attribute__((always_inline)) void *hand_out(hak_block_t *b, size_t n, size_t usable,
                                                            bool zero, size_t zero_bytes) {
  block_clear_marker(b);
  track_alloc(b, n, usable, zero);
  if (zero)
    return memset(b, 0, zero_bytes); /* a tail call: calloc's fast path needs no frame */
  return b;
}

/* The next block of a list the caller pops from: its line is fetched (for
 * writing: the caller's malloc will write it) while the program works on
 * the block just handed out. A block freed by another thread is in that
 * thread's cache, and each pop reads the next link from it: without the
 * prefetch, a producer thread's mallocs wait for one such miss each
 * (remote_free queue-t1, 1 producer and 1 consumer: +15%; with the
 * counted remote stack, +16% more). A NULL prefetch does not fault. */
static inline __attribute__((always_inline)) void prefetch_next(const hak_block_t *next) {
  __builtin_prefetch(next, 1);
}

static inline __attribute__((always_inline)) void *page_pop(hak_page_t *pg, hak_block_t *b,
                                                            size_t n, bool zero) {
  check_free_block(b);
  pg->free = block_next(b);
  prefetch_next(pg->free);
  pg->used++;
  hak_assert(pg->used <= atomic_load_explicit(&pg->capacity, memory_order_relaxed));
  return hand_out(b, n, pg->block_size, zero,
                  pg->free_is_zero ? (n < sizeof(hak_block_t) ? n : sizeof(hak_block_t)) : n);
}

static inline __attribute__((always_inline)) void *tcache_pop(hak_heap_t *h, hak_block_t *b,
                                                              size_t n, size_t cls, bool zero) {
  check_free_block(b);
  h->tc_head[cls] = block_next(b);
  prefetch_next(h->tc_head[cls]);
  h->tc_room[cls]++;
  return hand_out(b, n, class_size(cls), zero, n);
}

static inline __attribute__((always_inline)) void *small_alloc(size_t n, size_t cls, bool zero) {
  hak_heap_t *h = hak_tls_heap;
  hak_block_t *cached = h->tc_head[cls];
  if (likely(cached != NULL))
    return tcache_pop(h, cached, n, cls, zero);
  hak_page_t *pg = h->direct[cls];
  hak_block_t *b = pg->free;
  if (likely(b != NULL)) {
    h->tc_under[cls] = 1; /* a real heap: the empty heap's pages have no free block */
    return page_pop(pg, b, n, zero);
  }
  return small_alloc_slow(h, cls, n, zero);
}

static inline __attribute__((always_inline)) void *malloc_impl(size_t size) {
  /* the table-lookup sizes first, so they fall straight through; each
   * branch lets the compiler fold size_to_class to its table or formula */
  if (likely(size <= SMALL_LUT_MAX - TRACK_REDZONE))
    return small_alloc(size, size_to_class(track_need(size)), false);
  if (likely(size <= SMALL_REQ_MAX))
    return small_alloc(size, size_to_class(track_need(size)), false);
  return large_alloc(size, 16, false); /* adds the redzone itself */
}

static HAK_NOINLINE void free_not_owned(hak_heap_t *h, hak_segment_t *seg, hak_block_t *b);

/* NULL, a large block, or not ours (aborts). */
static HAK_NOINLINE void free_not_small(void *p) {
  if (!p)
    return;
  hak_large_t *lg = registry_large(p);
  if (!lg)
    err_invalid("free", p);
  large_free(lg, p, "free");
}

/* Not a block start (cls FREE_BAD_NOT_BLOCK) or a double free of a block
 * of class `cls`: the named fatal errors.
 * noipa: gcc must not learn that it never returns, or the fast path calls
 * it instead of jumping and needs a stack frame (2 instructions).
 * The double free is named with the class the block-start check read (the
 * slice entry's), not the page's block_size read now: between the two the
 * page may have emptied and gone back to its segment (block_size 0, named
 * "(large block)"), or been taken for another class, by its owner, when
 * the second free is another thread's; or the segment given back and
 * unmapped (SIGSEGV, no report). Until 2026-11-28 it was the page's
 * (test_small_error_race, double_*, hook HAK_HOOK_DOUBLE_FREE). */
#if defined(__clang__)
#define HAK_NOIPA __attribute__((noinline))
#else
#define HAK_NOIPA __attribute__((noipa))
#endif
#define FREE_BAD_NOT_BLOCK NCLS
static HAK_NOIPA void free_bad(void *p, size_t cls) {
  if (cls == FREE_BAD_NOT_BLOCK)
    err_invalid("free", p);
  HAK_TEST_HOOK(HAK_HOOK_DOUBLE_FREE, p);
  err_double_free("free", p, class_size(cls));
}

/* A block start of class `cls` in `seg` (checked by the caller): the
 * double-free check and the push, on the thread's cache (owner) or the
 * page's remote stack. */
static inline __attribute__((always_inline)) void free_block(hak_segment_t *seg, size_t cls,
                                                             hak_block_t *b) {
  uintptr_t mark = block_marker_value(b);
  hak_heap_t *h = hak_tls_heap;
  /* Relaxed (a plain load on every CPU): only h's thread stores h there
   * (a new segment, an adoption), and the store that replaced an earlier
   * h (the abandonment by h's previous thread, before the heap pool gave
   * h to this one under the global lock) happens before this thread got
   * h: a stale value cannot read as h, nor h as another. What the push
   * below touches is this thread's own. */
  if (likely(atomic_load_explicit(&seg->owner, memory_order_relaxed) == h)) {
    if (unlikely(block_marker(b) == mark)) {
      free_bad(b, cls);
      return;
    }
    track_free(b, class_size(cls));
    block_set_free(b, h->tc_head[cls], mark);
    h->tc_head[cls] = b;
    if (unlikely(--h->tc_room[cls] < 0))
      tcache_overflow(h, cls); /* the list is one over its limit: back to half */
  } else {
    if (unlikely(block_marker_xchg(b, mark) == mark)) {
      free_bad(b, cls);
      return;
    }
    track_free(b, class_size(cls));
    free_not_owned(h, seg, b);
  }
}

/* ---- free fast path ---------------------------------------------------- */
static inline __attribute__((always_inline)) void free_impl(void *p) {
  hak_segment_t *seg = ptr_segment_base(p);
  if (unlikely(registry_kind(seg) != REG_SMALL)) {
    free_not_small(p);
    return;
  }
  hak_slice_t *sl = ptr_slice_entry(seg, p);
  if (unlikely(!slice_is_block_start_by(sl, p, hak_tls_heap->magic))) {
    free_bad(p, FREE_BAD_NOT_BLOCK); /* tail calls: the fast path needs no stack frame */
    return;
  }
  free_block(seg, sl->cls, p);
}

/* ---- slow paths -------------------------------------------------------- */
/* A call after this thread's heap was abandoned at its exit (from a later
 * TLS destructor or libc's own cleanup) made `h` (its lock held): no
 * destructor may run again to abandon it, so it serves this one call and
 * is abandoned at once. Whether it was. */
static bool abandon_if_exiting(hak_heap_t *h) {
  if (likely(!hak_tls_exiting))
    return false;
  hak_tls_heap = &hak_empty_heap;
  heap_abandon(h, false);
  return true;
}

static HAK_NOINLINE void *small_alloc_slow(hak_heap_t *h, size_t cls, size_t n, bool zero) {
  if (h == &hak_empty_heap) {
    h = heap_get_or_create();
    if (!h)
      goto oom;
  }
  heap_lock(h);
  h->tc_under[cls] = 1;
  /* relaxed: a count, compared by reclaim_wanted only (a stale, smaller
   * value makes a reclaim less likely, never wrong); it orders nothing */
  h->alloc_epoch = atomic_load_explicit(&hak_abandon_epoch, memory_order_relaxed);
  heap_drain_delayed(h);
  segment_purge_maybe(h);
  hak_page_t *pg = page_find_free(h, cls);
  void *p = NULL;
  if (pg) {
    hak_assert(pg->free != NULL && h->direct[cls] == pg);
    p = page_pop(pg, pg->free, n, zero);
  }
  abandon_if_exiting(h); /* the block stays valid and freeable anywhere */
  heap_unlock(h);
  if (p)
    return p;
oom:
  errno = ENOMEM;
  return NULL;
}

/* Whether a free into abandoned `seg` should make h adopt it:
 *  - h has allocated since seg was abandoned: it will reuse the segment's
 *    free blocks (a worker freeing its predecessor's blocks);
 *  - the thread has no heap yet: a new thread whose first call frees a
 *    block of an exited thread takes over that segment (a successor; the
 *    heap made for it counts as allocating once it allocates);
 *  - this free is the last of the blocks live at abandonment: the segment
 *    is empty, and adopting it gives it back (a main thread freeing what
 *    its joined workers left returns the memory even if nobody allocates
 *    again).
 * Otherwise the block is freed remotely: a thread that only frees must not
 * take over segments that still hold live blocks. It never allocates from
 * them, the frees of their blocks by the threads that do would pile up
 * there (Larson: 2.5 MB, 1.8x glibc's peak RSS), and its own frees would
 * sit in its thread cache, keeping each segment mapped. A thread whose
 * heap was abandoned at its exit reclaims only by the last rule (its heap
 * for the free is abandoned at once, free_not_owned). */
static bool reclaim_wanted(const hak_heap_t *h, hak_segment_t *seg, uint64_t epoch) {
  /* Relaxed: the RMW gives each free its own n, which is all the count
   * needs; abandoned_live was published by the abandonment's release store
   * of the owner (NULL), which free_not_owned loaded with acquire, after
   * the epoch (acquire) that orders this count after the reset. */
  uint32_t n = atomic_fetch_add_explicit(&seg->abandoned_frees, 1, memory_order_relaxed) + 1;
  return (h == &hak_empty_heap ? !hak_tls_exiting : h->alloc_epoch >= epoch) ||
         n >= atomic_load_explicit(&seg->abandoned_live, memory_order_relaxed);
}

/* A block of another heap's page, or of an abandoned segment (whose thread
 * exited): the latter is adopted by this heap first if reclaim_wanted;
 * else the block is freed remotely and an allocating heap adopts the
 * segment when it needs a page. */
static HAK_NOINLINE void free_not_owned(hak_heap_t *h, hak_segment_t *seg, hak_block_t *b) {
  hak_page_t *pg = ptr_page(seg, b);
  for (;;) {
    /* each wait starts with pauses: declared outside the loop (until
     * 2026-11-28), a second wait after the `continue` below began where the
     * first ended, at the sleeps, and took up to 1 ms to see the owner go */
    unsigned round = 0;
    /* acquire: pairs with segment_abandon_locked's release store of NULL,
     * so reclaim_wanted reads this abandonment's counters */
    while (atomic_load_explicit(&seg->owner, memory_order_acquire) != NULL) {
      if (page_free_remote(seg, pg, b, PAGE_NOT_COUNTED))
        return;
      /* TF_ABANDONED: the owner's abandonment counted this block live; wait
       * for it to finish (it holds the global lock), then count the free.
       * Or the segment's adopter owns it already and has not cleared the
       * page's mark yet (segment_adopt, no lock held): spin_wait, which
       * sleeps in the end. With the lock alone the loop never slept, and a
       * real-time thread spun for ever over a lower-priority adopter
       * preempted on its CPU (test_rt_spin_wait, adopt). */
      hak_lock(&hak_global_lock);
      hak_unlock(&hak_global_lock);
      spin_wait(&round);
    }
    HAK_TEST_HOOK(HAK_HOOK_FREE_UNOWNED, b);
    /* the abandonment this free is counted into, read before the count:
     * should the segment change hands between the two, the push below
     * counts it again (at worst twice: an early reclaim, never a lost one).
     * Acquire: pairs with segment_abandon_locked's release store, after its
     * reset of abandoned_frees, so the count is never one the reset wipes. */
    uint64_t epoch = atomic_load_explicit(&seg->abandoned_epoch, memory_order_acquire);
    /* The owner again, after the epoch: an abandonment publishes its epoch
     * before it collects its pages and stores abandoned_live, and clears the
     * owner (release) last. The read above may predate an adoption; had the
     * adopter's abandonment been under way here (waiting in
     * segment_wait_marks), reclaim_wanted compared the count with the
     * previous abandonment's abandoned_live, the push then matched this
     * epoch's mark, and the last free did not reclaim: the segment stayed
     * abandoned with every block freed (test_abandon_stale_live). NULL
     * here: this epoch's abandonment (or a later one, which the push's
     * check catches) is over. */
    if (atomic_load_explicit(&seg->owner, memory_order_acquire) != NULL)
      continue;
    /* a thread without a heap gets one to reclaim with; when none can be
     * made (out of memory) it stays without and frees remotely (before, h
     * became NULL and the push below dereferenced it: test_free_no_heap) */
    hak_heap_t *own = NULL;
    bool want = reclaim_wanted(h, seg, epoch);
    if (want && (own = h != &hak_empty_heap ? h : heap_get_or_create()) != NULL) {
      h = own;
      heap_lock(h);
      HAK_TEST_HOOK(HAK_HOOK_RECLAIMING, b);
      bool mine = segment_reclaim(h, seg);
      if (mine)
        page_free_block(h, seg, pg, b);
      /* an exiting thread's heap, made for this free, goes at once, giving
       * the emptied segment back. Before, an exiting thread never
       * reclaimed, and its last free left the segment abandoned with
       * nothing live (test_exit_free). */
      bool gone = abandon_if_exiting(h);
      heap_unlock(h);
      if (gone)
        h = &hak_empty_heap;
      if (mine)
        return;
    }
    HAK_TEST_HOOK(HAK_HOOK_FREE_COUNTED, b);
    /* The mark's check and the push are one step for an abandonment:
     * this heap names the segment in mark_seg before the check loads the
     * epoch (both seq_cst), and an abandonment stores its epoch, then waits
     * while a heap names its segment (segment_wait_marks). Without that the
     * segment could be adopted and abandoned again between the two, the
     * page's word back to the same empty TF_ABANDONED (hak_trim's collect
     * leaves it so), and the push's CAS put this free, counted into the
     * first abandonment, on the second's mark, which counted the block
     * live: the segment stranded with nothing live (helper-51's probe: 17
     * of 4200 rounds under TSan). 2a223c3 took the global lock here: a
     * consumer's frees of what exited threads left cost 1.5-2.1x the CPU
     * of the version before (bench_handoff); this store 1.25-1.45x. A
     * thread without a heap (exiting) takes the lock. */
    bool pushed;
    if (h != &hak_empty_heap) {
      atomic_store_explicit(&h->mark_seg, seg, memory_order_seq_cst);
      pushed = page_free_remote(seg, pg, b, epoch);
      /* release: the push is seen by the abandonment that saw this */
      atomic_store_explicit(&h->mark_seg, NULL, memory_order_release);
    } else {
      hak_lock(&hak_global_lock);
      pushed = page_free_remote(seg, pg, b, epoch);
      /* a reclaim wanted, no heap to do it with: if that was the last live
       * block, give the segment back here (test_free_no_heap, "last") */
      bool empty = pushed && want && !own && segment_unlink_if_empty_locked(seg);
      hak_unlock(&hak_global_lock);
      if (empty) {
        HAK_TEST_HOOK(HAK_HOOK_NO_HEAP_RELEASING, seg);
        segment_release(seg);
      }
    }
    if (pushed)
      return;
    /* The page carries a later abandonment's mark: since the count, the
     * segment was adopted and abandoned again, which counted this block
     * live. Wait for that abandonment to finish (it holds the global lock)
     * and count the free there. */
    hak_lock(&hak_global_lock);
    hak_unlock(&hak_global_lock);
  }
}

/* What a pointer passed to realloc/usable_size/free_sized refers to. Aborts
 * with a named error if it is not a live hakmem block. */
typedef struct {
  hak_segment_t *seg; /* small block: its segment and page */
  hak_page_t *page;
  hak_large_t *large; /* large block: its header */
  size_t usable;
} resolved_t;

static inline __attribute__((always_inline)) resolved_t resolve(void *p, const char *op) {
  resolved_t r = {0};
  void *base = ptr_segment_base(p);
  if (registry_kind(base) != REG_SMALL) {
    r.large = large_resolve(p, op, &r.usable);
    return r;
  }
  r.seg = base;
  r.page = ptr_page(r.seg, p);
  hak_slice_t *sl = ptr_slice_entry(r.seg, p);
  if (!slice_is_block_start(sl, p))
    err_invalid(op, p);
  /* the class the check above read, as free's (free_bad): a freed block's
   * page may go back or change class before the report, and until
   * 2026-11-28 its block_size, read there, named "(large block)" or
   * another class (test_small_error_race, double_*) */
  size_t usable = class_size(sl->cls);
  if (block_marker(p) == block_marker_value(p)) {
    HAK_TEST_HOOK(HAK_HOOK_DOUBLE_FREE, p);
    err_double_free(op, p, usable);
  }
  r.usable = track_usable(usable); /* the block's, less its redzone */
  return r;
}

static size_t usable_size_impl(const void *cp) {
  void *p = (void *)cp;
  if (!p)
    return 0;
  resolved_t r = resolve(p, "usable_size");
  /* the caller may now use every usable byte: expose the slack (asan/valgrind) */
  size_t req = track_requested(p, r.usable);
  if (req < r.usable)
    track_expose((uint8_t *)p + req, r.usable - req);
  return r.usable;
}

static void *alloc_aligned(size_t alignment, size_t size) {
  if (alignment <= 16)
    return malloc_impl(size);
  if (alignment <= SLICE_SIZE && size <= SMALL_REQ_MAX && alignment <= HAK_SMALL_MAX) {
    /* pages start 64 KiB aligned: a class whose size is a multiple of the
     * alignment has every block aligned. The alignment is a power of two
     * (every caller checks): a mask, not a division per class tried
     * (posix_memalign(64, 100) + free: 137 -> 132 instructions) */
    size_t need = track_need(size) > alignment ? track_need(size) : alignment;
    for (size_t cls = size_to_class(need); cls < NCLS; cls++)
      if ((class_size(cls) & (alignment - 1)) == 0)
        return small_alloc(size, cls, false);
  }
  return large_alloc(size, alignment, false);
}

static bool is_pow2(size_t x) {
  return x && !(x & (x - 1));
}

static inline __attribute__((always_inline)) void *calloc_impl(size_t count, size_t size) {
  size_t n;
  if (unlikely(__builtin_mul_overflow(count, size, &n))) {
    errno = ENOMEM;
    return NULL;
  }
  if (likely(n <= SMALL_REQ_MAX))
    return small_alloc(n, size_to_class(track_need(n)), true);
  return large_alloc(n, 16, true);
}

/* Frees `p`, already resolved (checked) by resolve(): no second lookup. */
static void release(void *p, const resolved_t *r, void **deferred) {
  if (deferred)
    *deferred = p;
  else if (r->page)
    free_block(r->seg, r->page->cls, p);
  else
    large_free(r->large, p, "realloc");
}

/* Whether a small block of `usable` bytes stays where it is for a
 * realloc to `size`: it holds it, and not more than twice it (a smaller
 * class then saves memory) unless it is 64 bytes or less. */
static inline bool small_stays(size_t size, size_t usable) {
  return size <= usable && (size > usable / 2 || usable <= 64);
}

/* The move of a realloc: a new block for `size`, the bytes the caller
 * had copied, the old block released. `r`: p, resolved and checked. */
static inline __attribute__((always_inline)) void *realloc_move(void *p, size_t size, resolved_t r,
                                                                void **deferred) {
  /* growing a small block by less than a quarter: take a class a quarter
   * bigger, so a buffer grown by small appends moves O(log n) times, not
   * once per class (bench_realloc: 54% of reallocs moved) */
  size_t grown = r.usable + r.usable / 4;
  void *q = r.page && size > r.usable && size < grown && grown <= SMALL_REQ_MAX
                ? small_alloc(size, size_to_class(track_need(grown)), false)
                : malloc_impl(size);
  if (!q)
    return NULL;
  size_t keep = track_requested(p, r.usable);
  track_copy(q, p, keep < size ? keep : size, keep);
  release(p, &r, deferred);
  return q;
}

/* realloc of a pointer whose range is not a small segment's: large_realloc
 * checks it and does the work under the same hold of the large lock (a
 * block for a small size allocated here first, so that the copy and the
 * free come under that hold too); what it leaves to the caller
 * (LARGE_MOVE_BY_COPY), a copy into a new block or the trace build's
 * release, is done here. When that small block cannot be had, p is
 * checked all the same (large_resolve: a bad p is named, a live one's
 * realloc fails with ENOMEM). Until 2026-11-29 realloc returned NULL and
 * ENOMEM before any check: out of memory, a pointer hakmem never handed
 * out, or a large block freed, went unnamed (test_realloc_invalid_oom). */
static HAK_NOINLINE void *realloc_large(void *p, size_t size, void **deferred) {
  void *small = NULL;
  if (size - 1 < SMALL_REQ_MAX && !(small = malloc_impl(size))) {
    size_t usable;
    (void)large_resolve(p, "realloc", &usable);
    return NULL;
  }
  resolved_t r = {0};
  void *q = large_realloc(p, size, small, deferred != NULL, &r.large, &r.usable);
  if (q != LARGE_MOVE_BY_COPY) {
    if (deferred && small && q == small)
      *deferred = p; /* the trace build: freed after realloc's record */
    return q;
  }
  if (!size) { /* the trace build */
    release(p, &r, deferred);
    return NULL;
  }
  return realloc_move(p, size, r, deferred);
}

/* `deferred`: where the block to free goes in the trace build (the caller
 * records the op first, then frees it); NULL = free it here. */
static HAK_NOINLINE void *realloc_slow(void *p, size_t size, void **deferred) {
  if (!p)
    return malloc_impl(size);
  if (registry_kind(ptr_segment_base(p)) != REG_SMALL)
    return realloc_large(p, size, deferred);
  resolved_t r = resolve(p, "realloc");
  if (size == 0) {
    release(p, &r, deferred);
    return NULL;
  }
  if (size > (size_t)PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  if (TRACK_REALLOC_IN_PLACE) {
    if (r.page && small_stays(size, r.usable)) {
      track_resize(p, 0, size, r.usable);
      return p;
    }
  }
  return realloc_move(p, size, r, deferred);
}

/* realloc's fast path found p a live small block of class `cls` (a block
 * start, not free) that does not stay for `size` (1..PTRDIFF_MAX): it
 * outgrows its class or shrinks to half of it or less. The move, without
 * resolve()'s second round of the same checks. bench_realloc, where
 * a quarter of the reallocs move: 154.5 -> 143.9 instructions per op. */
static HAK_NOINLINE void *realloc_move_small(void *p, size_t size, hak_segment_t *seg, size_t cls,
                                             void **deferred) {
  resolved_t r = {.seg = seg, .page = ptr_page(seg, p), .usable = track_usable(class_size(cls))};
  return realloc_move(p, size, r, deferred);
}

/* realloc's fast path: a small block that stays where it is (its class
 * holds `size`, and not more than twice it) takes free's checks and
 * returns, with no stack frame; everything else, bad pointers included
 * (named there), goes to realloc_slow. The slice entry's class is read
 * only once the entry says p is a block start. bench_realloc, where most
 * appends fit: 173.5 -> 153.9 instructions per op (cachegrind; tcmalloc
 * 152.7, mimalloc 176.2). */
static inline __attribute__((always_inline)) void *realloc_impl(void *p, size_t size,
                                                                void **deferred) {
  hak_segment_t *seg = ptr_segment_base(p);
  if (TRACK_REALLOC_IN_PLACE && likely(registry_kind(seg) == REG_SMALL)) {
    hak_slice_t *sl = ptr_slice_entry(seg, p);
    if (likely(slice_is_block_start_by(sl, p, hak_tls_heap->magic) &&
               block_marker(p) != block_marker_value(p))) {
      size_t usable = track_usable(class_size(sl->cls));
      if (likely(small_stays(size, usable) && size != 0)) {
        track_resize(p, 0, size, usable);
        return p;
      }
      if (likely(size - 1 < (size_t)PTRDIFF_MAX)) /* not 0 (frees), not too big (ENOMEM) */
        return realloc_move_small(p, size, seg, sl->cls, deferred);
    }
  }
  return realloc_slow(p, size, deferred);
}

static void *reallocarray_impl(void *p, size_t count, size_t size, void **deferred) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc_impl(p, n, deferred);
}

static int posix_memalign_impl(void **out, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment < sizeof(void *))
    return EINVAL;
  int saved = errno;
  void *p = alloc_aligned(alignment, size);
  errno = saved;
  if (!p)
    return ENOMEM;
  *out = p;
  return 0;
}

static void *aligned_alloc_impl(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(alignment, size);
}

static void *valloc_impl(size_t size) {
  return alloc_aligned(OS_PAGE_SIZE, size);
}

static void *pvalloc_impl(size_t size) {
  size_t n = (size + OS_PAGE_SIZE - 1) & ~(OS_PAGE_SIZE - 1);
  if (n < size) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(OS_PAGE_SIZE, n ? n : OS_PAGE_SIZE);
}

/* free_sized (alignment 1) and free_aligned_sized: the size must not
 * exceed the block's usable size, the block must be aligned as said. */
static void free_sized_impl(void *p, size_t alignment, size_t size) {
  if (!p)
    return;
  if (registry_kind(ptr_segment_base(p)) != REG_SMALL) {
    large_free_sized(p, size, alignment); /* the same checks, one lock */
    return;
  }
  resolved_t r = resolve(p, "free_sized");
  /* the messages name the class, the block (SPEC-bad-input.md), as a
   * double free's does: with redzones (track.h) 16 bytes more than the
   * usable size checked; until 2026-11-29 "(size class 48)" for malloc(40)'s
   * 64-byte block in the asan and valgrind builds (test_failure_paths) */
  if (size > r.usable)
    err_size_mismatch("free_sized", p, size, r.usable + TRACK_REDZONE);
  /* not "size larger than block": it is not. An alignment that is not a
   * power of two (0 included) no block was made with (aligned_alloc refuses
   * it): until 2026-11-28 0 was named "not aligned to 0", and 3 passed for
   * any 4-aligned block (test_failure_paths) */
  if (misaligned(p, alignment))
    err_align_mismatch("free_sized", p, alignment, r.usable + TRACK_REDZONE);
  free_impl(p);
}

/* ---- the public API ------------------------------------------------------
 * Each entry point is its implementation above, inlined. The trace build
 * records every call (trace.h explains when each takes its sequence number). */
#if HAK_TRACE_ON
#define TRACE_ACQUIRE(op, arg, a1, a2, res, err)                                                   \
  hak_trace_emit(hak_trace_next_seq(), (op), (arg), (a1), (a2), (res), (err))
/* An op recorded after the call: should the thread die in the call, the
 * crash handler writes it as the trace's last record (until 2026-11-28 the
 * trace ended before it: a realloc of a freed block, or a crash inside
 * malloc, was missing from its own crash trace, and the replay said NOT
 * REPRODUCED; repro/tests/steps.sh trace-inflight). */
#define TRACE_BEGIN(op, arg, a1, a2)                                                               \
  struct hak_trace_call outer_ = hak_trace_begin((op), (arg), (a1), (a2))
#define TRACE_END() hak_trace_end(outer_) /* after the call's record */
#else
#define TRACE_ACQUIRE(op, arg, a1, a2, res, err) ((void)0)
#define TRACE_BEGIN(op, arg, a1, a2) ((void)0)
#define TRACE_END() ((void)0)
#endif
#define TRACE_RELEASE TRACE_ACQUIRE /* the number is taken before the call */
#define TRACED_ALLOC(op, a1, a2, call)                                                             \
  do {                                                                                             \
    TRACE_BEGIN(op, NULL, a1, a2);                                                                 \
    void *res_ = (call);                                                                           \
    TRACE_ACQUIRE(op, NULL, a1, a2, res_, res_ ? 0 : errno);                                       \
    TRACE_END();                                                                                   \
    return res_;                                                                                   \
  } while (0)

void *hak_malloc(size_t size) {
  TRACED_ALLOC(TR_MALLOC, size, 0, malloc_impl(size));
}

void *hak_calloc(size_t count, size_t size) {
  TRACED_ALLOC(TR_CALLOC, count, size, calloc_impl(count, size));
}

void *hak_aligned_alloc(size_t alignment, size_t size) {
  TRACED_ALLOC(TR_ALIGNED_ALLOC, size, alignment, aligned_alloc_impl(alignment, size));
}

void *hak_memalign(size_t alignment, size_t size) {
  TRACED_ALLOC(TR_MEMALIGN, size, alignment, aligned_alloc_impl(alignment, size));
}

void *hak_valloc(size_t size) {
  TRACED_ALLOC(TR_VALLOC, size, 0, valloc_impl(size));
}

void *hak_pvalloc(size_t size) {
  TRACED_ALLOC(TR_PVALLOC, size, 0, pvalloc_impl(size));
}

int hak_posix_memalign(void **out, size_t alignment, size_t size) {
  TRACE_BEGIN(TR_POSIX_MEMALIGN, NULL, size, alignment);
  int rc = posix_memalign_impl(out, alignment, size);
  TRACE_ACQUIRE(TR_POSIX_MEMALIGN, NULL, size, alignment, rc ? NULL : *out, rc);
  TRACE_END();
  return rc;
}

#if HAK_TRACE_ON
/* realloc: the old block is freed only after the record is written. */
static void *realloc_traced(unsigned op, void *p, size_t a1, size_t a2, void *res, void *old) {
  TRACE_ACQUIRE(op, p, a1, a2, res, res ? 0 : errno);
  if (old) {
    int saved = errno;
    free_impl(old);
    errno = saved;
  }
  return res;
}

void *hak_realloc(void *p, size_t size) {
  void *old = NULL;
  TRACE_BEGIN(TR_REALLOC, p, size, 0);
  void *res = realloc_impl(p, size, &old);
  res = realloc_traced(TR_REALLOC, p, size, 0, res, old);
  TRACE_END();
  return res;
}

void *hak_reallocarray(void *p, size_t count, size_t size) {
  void *old = NULL;
  TRACE_BEGIN(TR_REALLOCARRAY, p, count, size);
  void *res = reallocarray_impl(p, count, size, &old);
  res = realloc_traced(TR_REALLOCARRAY, p, count, size, res, old);
  TRACE_END();
  return res;
}
#else
void *hak_realloc(void *p, size_t size) {
  return realloc_impl(p, size, NULL);
}

void *hak_reallocarray(void *p, size_t count, size_t size) {
  return reallocarray_impl(p, count, size, NULL);
}
#endif

void hak_free(void *p) {
  TRACE_RELEASE(TR_FREE, p, 0, 0, NULL, 0);
  free_impl(p);
}

void hak_free_sized(void *p, size_t size) {
  TRACE_RELEASE(TR_FREE_SIZED, p, size, 0, NULL, 0);
  free_sized_impl(p, 1, size);
}

void hak_free_aligned_sized(void *p, size_t alignment, size_t size) {
  TRACE_RELEASE(TR_FREE_ALIGNED_SIZED, p, size, alignment, NULL, 0);
  free_sized_impl(p, alignment, size);
}

size_t hak_usable_size(const void *p) {
  TRACE_BEGIN(TR_USABLE_SIZE, p, 0, 0);
  size_t n = usable_size_impl(p);
  TRACE_ACQUIRE(TR_USABLE_SIZE, p, 0, 0, (void *)n, 0);
  TRACE_END();
  return n;
}

/* Not traced: it changes which pages hold memory, not any block, so a
 * replay that leaves it out makes the same calls with the same results.
 * 1 when this call gave memory back, in whichever step (hak_tls_given_back). */
int hak_trim(size_t pad) {
  (void)pad; /* glibc keeps `pad` bytes at the top of its main heap; hakmem has no such heap */
  size_t before = hak_tls_given_back;
  heap_trim_all();
  large_trim();
  os_orphans_retry(~0u);
  return hak_tls_given_back != before;
}

const char *hak_config(void) {
  return HAK_CONFIG_NAME;
}

/* ---- interposition (libhakmem.so) -------------------------------------- */
#if defined(HAK_INTERPOSE) && HAK_INTERPOSE
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wattributes"
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#define HAK_ALIAS(fn) __attribute__((alias(#fn), visibility("default"), used))
void *malloc(size_t size) HAK_ALIAS(hak_malloc);
void free(void *p) HAK_ALIAS(hak_free);
void *calloc(size_t count, size_t size) HAK_ALIAS(hak_calloc);
void *realloc(void *p, size_t size) HAK_ALIAS(hak_realloc);
void *reallocarray(void *p, size_t count, size_t size) HAK_ALIAS(hak_reallocarray);
int posix_memalign(void **out, size_t alignment, size_t size) HAK_ALIAS(hak_posix_memalign);
void *aligned_alloc(size_t alignment, size_t size) HAK_ALIAS(hak_aligned_alloc);
void *memalign(size_t alignment, size_t size) HAK_ALIAS(hak_memalign);
void *valloc(size_t size) HAK_ALIAS(hak_valloc);
void *pvalloc(size_t size) HAK_ALIAS(hak_pvalloc);
size_t malloc_usable_size(const void *p) HAK_ALIAS(hak_usable_size);
int malloc_trim(size_t pad) HAK_ALIAS(hak_trim);
void free_sized(void *p, size_t size) HAK_ALIAS(hak_free_sized);
void free_aligned_sized(void *p, size_t alignment, size_t size) HAK_ALIAS(hak_free_aligned_sized);
/* glibc's own names of its allocator, which libc.so.6 exports and some
 * programs and libraries call (malloc hooks, old code): without them a
 * block from __libc_malloc reached hakmem's free ("not allocated by
 * hakmem"), and one from malloc glibc's __libc_free. cfree is glibc's old
 * name of free, a compatibility symbol old binaries still call. */
void *__libc_malloc(size_t size) HAK_ALIAS(hak_malloc);
void *__libc_calloc(size_t count, size_t size) HAK_ALIAS(hak_calloc);
void *__libc_realloc(void *p, size_t size) HAK_ALIAS(hak_realloc);
void __libc_free(void *p) HAK_ALIAS(hak_free);
void *__libc_memalign(size_t alignment, size_t size) HAK_ALIAS(hak_memalign);
void *__libc_valloc(size_t size) HAK_ALIAS(hak_valloc);
void *__libc_pvalloc(size_t size) HAK_ALIAS(hak_pvalloc);
void cfree(void *p) HAK_ALIAS(hak_free);
#endif

#if (defined(HAK_ASAN) && HAK_ASAN) || (defined(HAK_VALGRIND) && HAK_VALGRIND)
size_t hak_redzone = 16; /* track.h (at the end: no line of the code above moves) */
#endif
