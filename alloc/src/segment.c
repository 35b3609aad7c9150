/* Segments: 4 MiB, aligned to 4 MiB, so the segment of any small block is
 * its address with the low 22 bits cleared. Slice 0 holds this header and
 * the page descriptors; slices 1..63 hold pages (runs of 1..8 slices).
 *
 * A segment belongs to one heap. Empty pages go back to the segment, where
 * any size class can reuse their slices. Memory-return policy:
 *   - freed slices stay committed ("dirty") for fast reuse until the heap's
 *     dirty free slices have been at or above PURGE_THRESHOLD (8 MiB) for
 *     PURGE_DELAY_MS (500 ms); then, at the heap's next page free or
 *     allocation slow path, every free dirty slice of the heap is
 *     madvise(MADV_DONTNEED)ed (at once when they reach 8x the threshold). A program that
 *     frees everything and builds it up again within the delay (a request
 *     loop, a compiler's passes) reuses committed memory instead of faulting
 *     it in again; falling below the threshold restarts the delay;
 *   - a segment whose pages are all free is released when the heap has
 *     another segment into a global cache of up to SEGMENT_CACHE_MAX
 *     segments (unmapped beyond that), the newest SEGMENT_CACHE_DIRTY of
 *     them still committed, the others purged once they have waited
 *     PURGE_DELAY_MS (checked at every segment release and take and heap
 *     purge): a program that frees everything and builds it up again
 *     within the delay takes its segments back committed;
 *   - an exiting thread's segments that still hold live blocks are
 *     abandoned (free slices left committed: the adopter reuses them); the
 *     next heap that needs a page adopts them before it maps new memory,
 *     and a free may reclaim one (reclaim_wanted in api.c);
 *   - a new page goes to free slices that are still committed before
 *     never-touched ones (heap_take_run). */
#include <string.h>

#include "internal.h"

hak_segment_t *hak_abandoned;     /* guarded by hak_global_lock */
hak_segment_t *hak_all_segments;  /* guarded by hak_global_lock */
hak_segment_t *hak_segment_cache; /* guarded by hak_global_lock */
static size_t segment_cache_n;
static void segment_cache_age_locked(uint64_t now);

_Static_assert(sizeof(hak_segment_t) <= SLICE_SIZE, "segment header must fit in slice 0");

#define ALL_SLICES (~(uint64_t)1) /* slices 1..63 */

/* Bit mask of slices [at, at + n); n <= 63 since slice 0 is never included. */
static inline uint64_t slice_mask(unsigned at, size_t n) {
  return (n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << at;
}

static void heap_link_segment(hak_heap_t *h, hak_segment_t *seg) {
  seg->prev = NULL;
  seg->next = h->segments;
  if (h->segments)
    h->segments->prev = seg;
  h->segments = seg;
}

static void heap_unlink_segment(hak_heap_t *h, hak_segment_t *seg) {
  if (seg->prev)
    seg->prev->next = seg->next;
  else
    h->segments = seg->next;
  if (seg->next)
    seg->next->prev = seg->prev;
  seg->next = seg->prev = NULL;
}

/* Waits (global lock held, seg's new epoch stored seq_cst) until no
 * thread is between a check of seg's mark and its push (heap->mark_seg,
 * stored seq_cst by free_not_owned before its check loads the epoch): a
 * few instructions each, no lock taken in between, but the thread may be
 * preempted there: spin_wait ends by sleeping, so it runs even when it has
 * a lower real-time priority than this one on the same CPU. Heaps are
 * never freed, and the global lock guards the list. Only active heaps:
 * a heap names a segment only while its thread has it (mark_seg is
 * cleared before its thread's exit pools it, and a fork child clears the
 * dead threads' marks), and it turns active or pooled under the global
 * lock, which this holds. */
static void segment_wait_marks(hak_segment_t *seg) {
  unsigned round = 0;
  for (hak_heap_t *h = hak_active_heaps; h; h = h->act_next)
    while (atomic_load_explicit(&h->mark_seg, memory_order_seq_cst) == seg)
      spin_wait(&round);
}

/* The abandoned list (hak_global_lock held; by the owner thread, or the one
 * thread of a fork child). Each page's remote frees are collected and the
 * page marked TF_ABANDONED in one exchange (page_collect_abandoned), so
 * `abandoned_live` counts exactly the blocks still live: a remote free
 * either landed before (collected) or sees the mark and, once this is
 * done, counts itself as a free into the abandoned segment
 * (free_not_owned), and the last one reclaims it. Without the mark, the
 * frees of threads that had read the owner before it was cleared were
 * counted live and never as frees (10-57 per exit while two threads
 * freed), and the segment stayed abandoned, carved and resident, after
 * its last block was freed. Returns false, listing nothing, when no block
 * is live (unless `even_empty`): no free would come to reclaim it, so the
 * caller gives it back. */
bool segment_abandon_locked(hak_segment_t *seg, bool even_empty) {
  uint32_t live = 0;
  /* reset before any page is marked: a free that sees a mark counts itself
   * (after taking this lock, so it also reads `live`). The count is reset
   * before the epoch is published (release; free_not_owned loads it with
   * acquire): a free that reads this epoch counts after the reset. In the
   * other order a count made between the two stores was wiped, and its
   * push then matched this epoch: a lost free (helper-51, on cue). */
  atomic_store_explicit(&seg->abandoned_frees, 0, memory_order_relaxed);
  /* seq_cst, then the heaps' mark_seg: a free counted into an earlier
   * abandonment either sees this epoch after it named the segment
   * (page_mark_counted: no push) or is seen here, and its push lands
   * before the exchanges below collect it; never on this abandonment's
   * mark, which counts its block live (test_abandon_handover). A segment never
   * abandoned before has no such free. */
  uint64_t before = atomic_exchange_explicit(
      &seg->abandoned_epoch, atomic_load_explicit(&hak_abandon_epoch, memory_order_relaxed),
      memory_order_seq_cst);
  if (before != 0)
    segment_wait_marks(seg);
  hak_page_t *pg;
  FOR_EACH_PAGE(seg, pg) {
    page_collect_abandoned(pg);
    live += pg->used;
  }
  /* relaxed: published by the release store of `owner` below, which
   * free_not_owned loads (acquire) before it reads this */
  atomic_store_explicit(&seg->abandoned_live, live, memory_order_relaxed);
  /* nothing live: no free would ever come to reclaim it; the caller gives
   * it back instead (its pages all empty, no remote free can arrive) */
  if (live == 0 && !even_empty)
    return false;
  atomic_store_explicit(&seg->owner, NULL, memory_order_release);
  seg->abandoned = 1;
  seg->abandoned_at_ms = os_now_ms();
  seg->prev = NULL;
  seg->next = hak_abandoned;
  if (hak_abandoned)
    hak_abandoned->prev = seg;
  hak_abandoned = seg;
  return true;
}

/* Where adopt_abandoned's scan of the list goes on (global lock held):
 * the segment after the last one it looked at, NULL for the start. */
static hak_segment_t *abandoned_cursor;

static void abandoned_unlink_locked(hak_segment_t *seg) {
  if (abandoned_cursor == seg)
    abandoned_cursor = seg->next;
  if (seg->prev)
    seg->prev->next = seg->next;
  else
    hak_abandoned = seg->next;
  if (seg->next)
    seg->next->prev = seg->prev;
  seg->next = seg->prev = NULL;
  seg->abandoned = 0;
}

static hak_segment_t *segment_new(void) {
  uint64_t now = os_now_ms();
  hak_lock(&hak_global_lock);
  hak_segment_t *seg = hak_segment_cache;
  if (seg) {
    hak_segment_cache = seg->next;
    segment_cache_n--;
  }
  segment_cache_age_locked(now);
  hak_unlock(&hak_global_lock);
  if (seg) {
    seg->next = seg->prev = NULL;
    return seg;
  }
  seg = os_map_aligned(SEGMENT_SIZE, SEGMENT_SIZE, 0);
  if (!seg && large_cache_drop()) /* an address-space limit (RLIMIT_AS): the large
                                   * cache's ranges make room (before: ENOMEM) */
    seg = os_map_aligned(SEGMENT_SIZE, SEGMENT_SIZE, 0);
  if (!seg)
    return NULL;                      /* the caller says ENOMEM (os_map_aligned keeps errno) */
  track_roots_add(seg, SEGMENT_SIZE); /* LeakSanitizer scans its blocks (asan) */
  os_advise_huge(seg, SEGMENT_SIZE);  /* HAKMEM_THP; before the header's first touch */
  /* fresh mmap memory is zero: only non-zero fields need setting */
  seg->magic = SEG_MAGIC;
  seg->kind = KIND_SMALL;
  seg->free_slices = ALL_SLICES;
  seg->dirty_slices = 0;
  for (size_t i = 0; i < SLICES_PER_SEGMENT; i++)
    seg->pages[i].slice_index = (uint8_t)i;
  /* every byte but the header's: the slices, and the header slice's unused
   * rest, which the first page's first block follows (a write before that
   * block, the process's first malloc among them, went unreported in the
   * asan and valgrind builds until 2026-11-29: test_asan_catches,
   * test_valgrind_catches segment_first) */
  track_noaccess((uint8_t *)seg + sizeof(hak_segment_t), SEGMENT_SIZE - sizeof(hak_segment_t));
  hak_lock(&hak_global_lock);
  seg->gnext = hak_all_segments;
  if (hak_all_segments)
    hak_all_segments->gprev = seg;
  hak_all_segments = seg;
  hak_unlock(&hak_global_lock);
  registry_set(seg, REG_SMALL);
  return seg;
}

__thread size_t hak_tls_given_back __attribute__((tls_model("initial-exec")));

/* madvise every free dirty slice run of `seg` (counted in hak_tls_given_back). */
static void segment_purge(hak_segment_t *seg) {
  uint64_t m = seg->free_slices & seg->dirty_slices;
  size_t purged = 0;
  while (m) {
    unsigned i = (unsigned)__builtin_ctzll(m);
    unsigned j = i;
    while (j < 64 && ((m >> j) & 1))
      j++;
    uint64_t run = slice_mask(i, j - i);
    m &= ~run;
    /* a run madvise refused (mlock'ed) still holds its bytes: it stays
     * dirty, or calloc would hand them out as zero */
    if (!os_purge((uint8_t *)seg + (size_t)i * SLICE_SIZE, (size_t)(j - i) * SLICE_SIZE))
      continue;
    purged += (size_t)(j - i) * SLICE_SIZE;
    seg->dirty_slices &= ~run;
  }
  hak_tls_given_back += purged;
}

/* Purges the cached segments past the newest SEGMENT_CACHE_DIRTY that
 * have waited PURGE_DELAY_MS (global lock held). `now` was read before the
 * lock was taken, so a segment cached meanwhile may be stamped later than
 * it: the test must not subtract (it wrapped, and such a segment was
 * purged at once). Purging them at once made
 * python/records (each round frees everything) fault 900 pages back in
 * when a later round took them. */
static void segment_cache_age_locked(uint64_t now) {
  unsigned pos = 0;
  for (hak_segment_t *q = hak_segment_cache; q; q = q->next)
    if (pos++ >= SEGMENT_CACHE_DIRTY && q->dirty_slices && now >= q->cached_at_ms + PURGE_DELAY_MS)
      segment_purge(q);
}

/* Purges every free dirty slice of h's segments (h's lock held, by its
 * owner or by hak_trim). */
void segment_purge_owned(hak_heap_t *h) {
  size_t left = 0; /* runs a failed purge left dirty */
  for (hak_segment_t *s = h->segments; s; s = s->next) {
    segment_purge(s);
    left += segment_dirty_free_bytes(s);
  }
  h->dirty_free_bytes = left;
  h->purge_at_ms = 0;
}

static void page_give_back_slices(hak_segment_t *seg, hak_page_t *pg);

/* An abandoned segment's empty pages (global lock held): heap_abandon left
 * them carved for the heap that adopts the segment, but hak_trim wants the
 * memory back. Each page's remote-free stack is collected first: the frees
 * since the abandonment pushed their blocks there without lowering `used`
 * (nothing else touches the page's own fields until an adoption, which
 * takes the segment off the list under this lock; the pushes go on, by
 * CAS, and page_collect keeps the TF_ABANDONED mark). Then `used` counts
 * the blocks still live, a free on its way included (its block is not on
 * the stack yet), so no free can come to a page at 0; its slices go back
 * to the segment's free ones. A segment whose pages are all empty keeps
 * them (an adopter gives it back). Before, a thread that exited with 8
 * blocks live kept about 23 MiB of emptied pages resident through hak_trim
 * when the frees came before its exit; until 2026-11-28, 24 MiB when they
 * came after it (test_trim_after_exit). abandoned_collect_locked collects
 * every page's stack and returns how many pages hold no live block. */
static unsigned abandoned_collect_locked(hak_segment_t *seg) {
  unsigned empty = 0;
  hak_page_t *pg;
  FOR_EACH_PAGE(seg, pg) {
    page_collect(pg);
    empty += pg->used == 0;
  }
  return empty;
}

static void abandoned_give_back_empty_locked(hak_segment_t *seg) {
  if (abandoned_collect_locked(seg) == seg->used_pages)
    return;
  hak_page_t *pg;
  FOR_EACH_PAGE(seg, pg) {
    if (pg->used == 0)
      page_give_back_slices(seg, pg);
  }
}

/* hak_trim's part of the segments no heap owns (global lock held): every
 * cached segment and every free slice of the abandoned ones (their empty
 * pages given back first), at once. No thread touches their slices
 * meanwhile: a segment leaves the cache or the abandoned list under this
 * lock before anyone uses its slices again, and remote frees into an
 * abandoned segment touch only pages with live blocks. */
void segment_trim_unowned_locked(void) {
  for (hak_segment_t *q = hak_segment_cache; q; q = q->next)
    segment_purge(q);
  for (hak_segment_t *q = hak_abandoned; q; q = q->next) {
    abandoned_give_back_empty_locked(q);
    segment_purge(q);
  }
}

void segment_purge_heap(hak_heap_t *h) {
  segment_purge_owned(h);
  uint64_t now = os_now_ms();
  hak_lock(&hak_global_lock);
  segment_cache_age_locked(now);
  hak_unlock(&hak_global_lock);
}

/* Called by the heap's page frees and allocation slow paths (heap lock
 * held). At or above PURGE_THRESHOLD dirty free bytes: the first time,
 * start the delay; once it has passed, purge. At 8x the threshold, purge
 * at once: the delay must not let a burst of frees keep unbounded memory. */
void segment_purge_maybe(hak_heap_t *h) {
  if (h->dirty_free_bytes < PURGE_THRESHOLD)
    return;
  uint64_t now = os_now_ms();
  if (h->dirty_free_bytes >= 8 * PURGE_THRESHOLD || (h->purge_at_ms && now >= h->purge_at_ms))
    segment_purge_heap(h);
  else if (!h->purge_at_ms)
    h->purge_at_ms = now + PURGE_DELAY_MS;
}

/* seg off the list of all segments and out of the registry (global lock
 * held), before it is unmapped. Unregistered under the lock, so a walk that
 * holds it (hak_stats, hak_heap_check) may follow a link it read from a
 * list others are changing into any segment the registry names: that one
 * stays mapped until the walk lets the lock go. */
static void all_segments_unlink_locked(hak_segment_t *seg) {
  registry_set(seg, REG_NONE);
  if (seg->gprev)
    seg->gprev->gnext = seg->gnext;
  else
    hak_all_segments = seg->gnext;
  if (seg->gnext)
    seg->gnext->gprev = seg->gprev;
}

/* A segment no list holds any more (all_segments_unlink_locked), unmapped. */
static void segment_unmap(hak_segment_t *seg) {
  track_roots_del(seg, SEGMENT_SIZE);
  os_unmap(seg, SEGMENT_SIZE);
  hak_tls_given_back += SEGMENT_SIZE;
}

/* A segment with no pages in use, no longer linked to any heap. The cache
 * is LIFO and the next segment_new takes the newest, so the newest
 * SEGMENT_CACHE_DIRTY segments stay committed (a thread that exits and one
 * that starts, as in a server's worker churn, reuse warm memory instead of
 * faulting it in again); older ones are purged once they have waited
 * PURGE_DELAY_MS (segment_cache_age_locked), beyond SEGMENT_CACHE_MAX
 * unmapped. */
void segment_release(hak_segment_t *seg) {
  hak_assert(seg->used_pages == 0 && seg->free_slices == ALL_SLICES);
  /* relaxed: no block is live, so no free reads it; the next owner takes
   * the segment under the global lock */
  atomic_store_explicit(&seg->owner, NULL, memory_order_relaxed);
  seg->abandoned = 0;
  uint64_t now = os_now_ms();
  hak_lock(&hak_global_lock);
  if (segment_cache_n < SEGMENT_CACHE_MAX) {
    seg->next = hak_segment_cache;
    hak_segment_cache = seg;
    segment_cache_n++;
    seg->cached_at_ms = now;
    segment_cache_age_locked(now);
    hak_unlock(&hak_global_lock);
    return;
  }
  all_segments_unlink_locked(seg);
  hak_unlock(&hak_global_lock);
  segment_unmap(seg);
}

/* Unmaps every cached segment at once, whatever its age: a new range for a
 * large block was refused (an address-space limit, RLIMIT_AS), and up to
 * SEGMENT_CACHE_MAX empty segments held address space it could use (before:
 * ENOMEM with 32 MiB of them mapped; hak_trim only purges them). Returns
 * whether there was any. Takes the global lock: not with it held. */
bool segment_cache_drop(void) {
  hak_lock(&hak_global_lock);
  hak_segment_t *list = hak_segment_cache;
  hak_segment_cache = NULL;
  segment_cache_n = 0;
  for (hak_segment_t *q = list; q; q = q->next)
    all_segments_unlink_locked(q);
  hak_unlock(&hak_global_lock);
  for (hak_segment_t *q = list, *next; q; q = next) {
    next = q->next;
    segment_unmap(q);
  }
  return list != NULL;
}

size_t segment_cache_count(void) {
  return segment_cache_n;
}

/* Finds `n` consecutive free slices; returns the first index or 0. */
static unsigned find_run(uint64_t free_mask, size_t n) {
  uint64_t m = free_mask;
  for (size_t i = 1; i < n; i++)
    m &= free_mask >> i;
  m &= ALL_SLICES;
  return m ? (unsigned)__builtin_ctzll(m) : 0;
}

/* h->dirty_free_bytes is the bytes of h's segments' free dirty slices,
 * exactly (hak_heap_check compares): a segment that joins h (new from the
 * cache, adopted) adds its own, one that leaves (released) takes them
 * away, a page's slices add when freed and subtract when taken, and a
 * purge of all of them resets it. Before, segments joining from the cache
 * and released ones were not counted: the counter kept the bytes of
 * segments long gone (768 KiB of free slices were purged as if over the
 * 8 MiB threshold) and missed those of reused cached ones (82 MiB of free
 * slices were never purged). */
size_t segment_dirty_free_bytes(const hak_segment_t *seg) {
  return (size_t)__builtin_popcountll(seg->free_slices & seg->dirty_slices) * SLICE_SIZE;
}

static void heap_dirty_sub(hak_heap_t *h, size_t bytes) {
  hak_assert(h->dirty_free_bytes >= bytes);
  h->dirty_free_bytes = h->dirty_free_bytes > bytes ? h->dirty_free_bytes - bytes : 0;
  if (h->dirty_free_bytes < PURGE_THRESHOLD)
    h->purge_at_ms = 0;
}

static hak_page_t *segment_take(hak_heap_t *h, hak_segment_t *seg, size_t cls, size_t n,
                                unsigned at) {
  uint64_t run = slice_mask(at, n);
  hak_assert(at >= 1 && at + n <= SLICES_PER_SEGMENT && (seg->free_slices & run) == run);
  bool zero = (seg->dirty_slices & run) == 0;
  heap_dirty_sub(h, (size_t)__builtin_popcountll(run & seg->dirty_slices) * SLICE_SIZE);
  seg->free_slices &= ~run;
  seg->dirty_slices |= run;
  hak_page_t *pg = &seg->pages[at];
  pg->slice_index = (uint8_t)at;
  pg->slice_count = (uint8_t)n;
  for (size_t i = 0; i < n; i++)
    seg->slice_head[at + i] = (uint8_t)at;
  seg->used_pages++;
  page_init(seg, pg, cls, zero);
  return pg;
}

/* Adopts a segment taken off the abandoned list (under the global lock,
 * which also cleared seg->abandoned): its pages join h's queues. */
void segment_adopt(hak_heap_t *h, hak_segment_t *seg) {
  heap_link_segment(h, seg); /* linked before owned: see segment_fork_fixup */
  /* its free dirty slices now count toward this heap's purge threshold */
  h->dirty_free_bytes += segment_dirty_free_bytes(seg);
  atomic_store_explicit(&seg->owner, h, memory_order_release);
  HAK_TEST_HOOK(HAK_HOOK_ADOPTED, seg);
  hak_page_t *pg;
  FOR_EACH_PAGE(seg, pg) {
    page_clear_notify(pg, true); /* TF_ABANDONED: remote frees push again */
    page_collect(pg);
    /* an empty page is kept (carved, ready) if it is the only page of its
     * class, as page_free_slow would; otherwise its slices go back */
    if (pg->used == 0 && queue_first(h, pg->cls)) {
      if (segment_page_free(h, seg, pg))
        return; /* seg was released */
      continue;
    }
    queue_push_back(h, pg);
  }
}

/* Whether abandoned `seg` may serve a page of `cls` (n slices) once
 * adopted (global lock held, under which nothing else changes what this
 * reads but the pages' remote-free stacks): a page of `cls` with a free
 * block or room to carve, or a run of n slices free once adoption gave
 * back its empty pages. A guess: the adopter still checks
 * (segment_page_alloc). */
static bool abandoned_may_serve(const hak_segment_t *seg, size_t cls, size_t n) {
  uint64_t avail = seg->free_slices;
  const hak_page_t *pg;
  FOR_EACH_PAGE(seg, pg) {
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
    if (pg->cls == cls &&
        (pg->free || tf_block(tf) ||
         atomic_load_explicit(&pg->capacity, memory_order_relaxed) < pg->reserved))
      return true;
    if (pg->used <= tf_count(tf)) /* every block freed: its slices go back */
      avail |= slice_mask(pg->slice_index, pg->slice_count);
  }
  return find_run(avail, n) != 0;
}

/* Segments adopt_abandoned looks at past the first before it gives up
 * (a new segment is mapped instead). */
#define ADOPT_SCAN 16

/* abandoned_may_serve; a segment that may not, abandoned PURGE_DELAY_MS
 * ago or more, gives its empty pages and free slices back to the kernel,
 * as hak_trim would (global lock held). Adoption gave an adopter's purges
 * such a segment's slices until 2026-11-28, when it began to pass over the
 * segments that cannot serve: one whose live pages cut its free slices into
 * runs too short for every class asked for then kept them resident until
 * hak_trim or its last free (10 exited threads, one live 1 KiB block in
 * every other slice, main allocating 1040 B blocks: 19 MiB of free slices
 * resident for good; test_adopt_full part `hopeless`). */
static bool abandoned_may_serve_else_purge(hak_segment_t *seg, size_t cls, size_t n, uint64_t now) {
  if (abandoned_may_serve(seg, cls, n))
    return true;
  if (now >= seg->abandoned_at_ms + PURGE_DELAY_MS) {
    abandoned_give_back_empty_locked(seg);
    segment_purge(seg);
  }
  return false;
}

/* An abandoned segment that may serve a page of `cls` (n slices), off
 * the list, or NULL (global lock held). The first, the most recently
 * abandoned (a thread that starts reuses the warm memory of one that just
 * exited); failing that, up to ADOPT_SCAN others from where the last scan
 * stopped, around the list. Until 2026-11-28 adoption took the first
 * whatever it held: a thread's exit puts every segment it owns back at
 * the head, the adopted ones included, so once the first 4 were full each
 * thread adopted those 4 again, found no room, mapped a new segment and
 * left it behind them, where no adopter looked: one segment per thread
 * that leaves a block behind, for ever (tests/test_adopt_full). */
static hak_segment_t *abandoned_pick_locked(size_t cls, size_t n, uint64_t now) {
  hak_segment_t *head = hak_abandoned, *seg = NULL;
  if (!head)
    return NULL;
  if (abandoned_may_serve_else_purge(head, cls, n, now)) {
    seg = head;
  } else {
    hak_segment_t *s = abandoned_cursor ? abandoned_cursor : head->next;
    hak_segment_t *start = s;
    for (int i = 0; i < ADOPT_SCAN && s; i++) {
      hak_segment_t *next = s->next ? s->next : head->next; /* around, past the head */
      if (s != head && abandoned_may_serve_else_purge(s, cls, n, now)) {
        seg = s;
        break;
      }
      s = next;
      if (s == start)
        break;
    }
    abandoned_cursor = s;
  }
  if (seg)
    abandoned_unlink_locked(seg);
  return seg;
}

/* Adopts an abandoned segment that may serve a page of `cls` (n slices),
 * if any; returns it (it may have been released already: do not touch
 * it) or NULL. */
static hak_segment_t *adopt_abandoned(hak_heap_t *h, size_t cls, size_t n) {
  uint64_t now = os_now_ms();
  hak_lock(&hak_global_lock);
  hak_segment_t *seg = abandoned_pick_locked(cls, n, now);
  hak_unlock(&hak_global_lock);
  if (seg)
    segment_adopt(h, seg);
  return seg;
}

/* Reclaim on free: a thread freeing into an abandoned segment adopts it
 * when reclaim_wanted (api.c) says so. */
bool segment_reclaim(hak_heap_t *h, hak_segment_t *seg) {
  hak_lock(&hak_global_lock);
  bool ok = seg->abandoned;
  if (ok)
    abandoned_unlink_locked(seg);
  hak_unlock(&hak_global_lock);
  if (ok)
    segment_adopt(h, seg);
  return ok;
}

/* The free of a block of abandoned `seg` that wanted to reclaim it but
 * could have no heap (free_not_owned: the heap structs' mapping refused,
 * RLIMIT_AS or out of memory), global lock held since before its push:
 * when no block of seg is live any more (each page's remote frees
 * collected; a block whose free has not pushed it yet still counts in its
 * page's `used`, so no free can come), seg leaves the abandoned list and
 * its pages go back; returns whether, and the caller releases it once it
 * has let the lock go (segment_release takes it). The lock held since the
 * push keeps seg from being released meanwhile. Before, the last such
 * free left seg abandoned with nothing live, carved and mapped (and
 * hak_trim keeps a segment whose pages are all empty), until some malloc
 * adopted it (test_free_no_heap, part "last"). */
bool segment_unlink_if_empty_locked(hak_segment_t *seg) {
  if (!seg->abandoned || abandoned_collect_locked(seg) != seg->used_pages)
    return false;
  abandoned_unlink_locked(seg);
  hak_page_t *pg;
  FOR_EACH_PAGE(seg, pg) {
    page_clear_notify(pg, true); /* TF_ABANDONED */
    page_give_back_slices(seg, pg);
  }
  return true;
}

bool segment_is_abandoned_listed(const hak_segment_t *seg) {
  for (hak_segment_t *s = hak_abandoned; s; s = s->next)
    if (s == seg)
      return true;
  return false;
}

/* A run of `n` free slices in one of h's segments: slices still committed
 * (dirty) first, since they are resident already and a fresh slice would
 * add to the RSS; then any free run. Returns the page or NULL. */
static hak_page_t *heap_take_run(hak_heap_t *h, size_t cls, size_t n) {
  for (hak_segment_t *seg = h->segments; seg; seg = seg->next) {
    unsigned at = find_run(seg->free_slices & seg->dirty_slices, n);
    if (at)
      return segment_take(h, seg, cls, n, at);
  }
  for (hak_segment_t *seg = h->segments; seg; seg = seg->next) {
    unsigned at = find_run(seg->free_slices, n);
    if (at)
      return segment_take(h, seg, cls, n, at);
  }
  return NULL;
}

/* A page of h's queue of `cls` with a free block (its remote frees
 * collected) or room to carve, taken off the queue; or NULL. */
static hak_page_t *queue_take_ready(hak_heap_t *h, size_t cls) {
  for (hak_page_t *q = queue_first(h, cls); q; q = q->next) {
    if (!q->free)
      page_collect(q);
    if (q->free || atomic_load_explicit(&q->capacity, memory_order_relaxed) < q->reserved) {
      queue_remove(h, q);
      return q;
    }
  }
  return NULL;
}

/* A new page of class `cls` for h: free slices of h's segments (committed
 * ones first); then those of h's pages that other threads' frees emptied,
 * or such a page of `cls` (heap_collect_remote, amortized: below); then
 * abandoned segments (adopted: a page of theirs with room, or their free
 * slices); then a new segment. (Adopting before using
 * h's never-touched slices was tried: Larson's peak RSS rose from 25 to
 * 32 MB at 2 threads, heaps taking over segments pinned by a few blocks.) */
hak_page_t *segment_page_alloc(hak_heap_t *h, size_t cls) {
  size_t n = class_slices(cls);
  hak_page_t *pg = heap_take_run(h, cls, n);
  if (pg)
    return pg;
  /* Before another segment: the blocks other threads freed to h's pages.
   * Those wait on the pages' stacks until h's malloc walks their class
   * queue (or one per full page on the delayed list, which puts the page
   * back in its queue): pages of a class h no longer allocates stayed
   * carved with no live block, and a producer whose consumer thread freed
   * everything held 6 MiB more per class it moved on to (test_page_reuse,
   * remote_freed_pages_reused). The pages that empty give their slices
   * back; a page of `cls` that has free blocks now serves. A walk every
   * seg_joins >= collect_due segments taken. */
  if (h->seg_joins >= h->collect_due) {
    size_t kept = heap_collect_remote(h);
    h->seg_joins = 0;
    h->collect_due = (uint32_t)(kept / 4);
    if ((pg = queue_take_ready(h, cls)) != NULL || (pg = heap_take_run(h, cls, n)) != NULL)
      return pg;
  }
  /* Adopting may free its empty pages (and even the segment); the adopted
   * pages of class `cls` are now in h's queue and may serve the request. */
  for (int tries = 0; tries < 4; tries++) {
    if (!adopt_abandoned(h, cls, n))
      break;
    h->seg_joins++;
    if ((pg = queue_take_ready(h, cls)) != NULL || (pg = heap_take_run(h, cls, n)) != NULL)
      return pg;
  }
  hak_segment_t *seg = segment_new();
  if (!seg)
    return NULL;
  h->seg_joins++;
  heap_link_segment(h, seg); /* linked before owned: see segment_fork_fixup */
  h->dirty_free_bytes += segment_dirty_free_bytes(seg); /* a cached one's, not purged yet */
  /* relaxed: another thread reaches the segment only through a block of
   * it, handed over by the program after its malloc (the edge comes with
   * the pointer); an adopter's store is a release (segment_adopt) */
  atomic_store_explicit(&seg->owner, h, memory_order_relaxed);
  return segment_take(h, seg, cls, n, find_run(seg->free_slices, n));
}

/* An empty, unlisted page's slices back to its segment's free slices. */
static void page_give_back_slices(hak_segment_t *seg, hak_page_t *pg) {
  hak_assert(pg->used == 0 && pg->in_use && !pg->in_full);
  size_t n = pg->slice_count;
  unsigned at = pg->slice_index;
  track_noaccess(page_start(pg), n * SLICE_SIZE);
  pg->in_use = 0;
  pg->free = NULL;
  page_set_capacity(pg, 0); /* its slices' entries reject every pointer */
  pg->block_size = 0;
  for (size_t i = 0; i < n; i++)
    seg->slice_head[at + i] = 0;
  seg->free_slices |= slice_mask(at, n);
  seg->used_pages--;
}

/* Returns an empty page's slices to its segment (page already unqueued).
 * Returns true when that released the whole segment. */
bool segment_page_free(hak_heap_t *h, hak_segment_t *seg, hak_page_t *pg) {
  size_t n = pg->slice_count;
  page_give_back_slices(seg, pg);
  h->dirty_free_bytes += n * SLICE_SIZE;
  if (seg->used_pages == 0 && (h->segments != seg || seg->next)) {
    heap_unlink_segment(h, seg);
    heap_dirty_sub(h, segment_dirty_free_bytes(seg));
    segment_release(seg);
    return true;
  }
  segment_purge_maybe(h);
  return false;
}

/* Whether every page left in `seg` is empty (kept as the last page of its
 * class) while the heap has other segments. Reads only what the owner
 * thread writes (and thread_free atomically): the owner may call it
 * without its heap lock. */
bool segment_is_idle(hak_heap_t *h, hak_segment_t *seg) {
  if (h->segments == seg && !seg->next)
    return false; /* the heap's only segment stays */
  uint64_t used = ~seg->free_slices & ALL_SLICES;
  for (uint64_t m = used; m;) {
    unsigned i = (unsigned)__builtin_ctzll(m);
    hak_page_t *pg = &seg->pages[seg->slice_head[i]];
    /* a NOTIFY bit left from the page's time in the full list does not
     * matter (no live block, so no remote free can come); NOTIFYING does */
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
    if (pg->used != 0 || pg->in_full || tf_block(tf) || (tf & TF_MASK) == TF_NOTIFYING)
      return false;
    m &= ~slice_mask(pg->slice_index, pg->slice_count);
  }
  return true;
}

/* If `seg` is idle (above), give its pages and the segment back. */
bool segment_drop_if_idle(hak_heap_t *h, hak_segment_t *seg) {
  if (!segment_is_idle(h, seg))
    return false;
  uint64_t used = ~seg->free_slices & ALL_SLICES;
  for (uint64_t m = used; m;) {
    unsigned i = (unsigned)__builtin_ctzll(m);
    hak_page_t *pg = &seg->pages[seg->slice_head[i]];
    m &= ~slice_mask(pg->slice_index, pg->slice_count);
    queue_remove(h, pg);
    if (segment_page_free(h, seg, pg))
      return true;
  }
  return true;
}

/* fork child: a thread that no longer exists may have been between taking
 * a segment off a list and owning it (adoption, release, creation). Such a
 * segment has no live owner and is on no list: abandon it (or release it). */
void segment_fork_fixup(void) {
  /* a heap that allocated before the fork has not allocated since these */
  atomic_fetch_add_explicit(&hak_abandon_epoch, 1, memory_order_relaxed);
  for (hak_segment_t *s = hak_all_segments, *next; s; s = next) {
    next = s->gnext;
    bool cached = false;
    for (hak_segment_t *q = hak_segment_cache; q; q = q->next)
      cached |= (q == s);
    hak_heap_t *owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
    if (cached || s->abandoned || (owner && owner->state == HEAP_ACTIVE))
      continue;
    atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
    if (s->used_pages == 0) {
      s->next = s->prev = NULL;
      segment_release(s);
      continue;
    }
    segment_abandon_locked(s, true);
  }
}

/* hak_test_reset: unmap every segment (global lock held, no other thread). */
void segment_reset_all(void) {
  for (hak_segment_t *s = hak_all_segments, *next; s; s = next) {
    next = s->gnext;
    registry_set(s, REG_NONE);
    segment_unmap(s);
  }
  hak_all_segments = hak_segment_cache = hak_abandoned = abandoned_cursor = NULL;
  segment_cache_n = 0;
}
