/* Pages: a run of slices holding blocks of one size class.
 *
 * A page belongs to the heap that owns its segment. The owner thread uses
 * `free` (a plain singly linked list) without atomics. Other threads free
 * into `thread_free`, a lock-free stack: they only push (CAS), and the owner
 * only takes the whole stack at once (CAS to empty), so there is no ABA.
 *
 * Full pages: when a page has no free block the owner moves it to the heap's
 * full list and sets TF_NOTIFY in thread_free. The first remote free after
 * that swaps TF_NOTIFY for TF_NOTIFYING, hands its block to the heap's
 * `delayed` stack instead of the page, and then clears the state. The owner
 * drains `delayed` in its slow path, freeing those blocks locally, which
 * moves the page back into its class queue. So remote frees to full pages
 * are never lost and a producer/consumer pattern does not grow without bound.
 * TF_NOTIFYING also tells the owner not to release the page yet (the remote
 * thread is still going to touch thread_free), and tells an exiting owner to
 * wait before it abandons the heap.
 *
 * Abandoned pages: the exiting owner's last collect marks the page
 * TF_ABANDONED (page_collect_abandoned); a remote free that finds the mark
 * before the segment's owner reads NULL waits for the abandonment to end
 * and is then counted as a free into the abandoned segment (free_not_owned
 * in api.c); the heap that adopts the segment clears the marks. */
#include <string.h>

#include "internal.h"

hak_page_t hak_empty_page; /* free == NULL: every malloc from it takes the slow path */

/* ---- queues ------------------------------------------------------------ */
void queue_push_back(hak_heap_t *h, hak_page_t *pg) {
  hak_assert(pg->in_use && !pg->in_full);
  size_t c = pg->cls;
  pg->next = NULL;
  pg->prev = h->tail[c];
  if (h->tail[c])
    h->tail[c]->next = pg;
  else
    h->direct[c] = pg;
  h->tail[c] = pg;
}

static void queue_push_front(hak_heap_t *h, hak_page_t *pg) {
  hak_assert(pg->in_use && !pg->in_full && h->direct[pg->cls] != pg);
  size_t c = pg->cls;
  hak_page_t *first = queue_first(h, c);
  pg->prev = NULL;
  pg->next = first;
  if (first)
    first->prev = pg;
  else
    h->tail[c] = pg;
  h->direct[c] = pg;
}

void queue_remove(hak_heap_t *h, hak_page_t *pg) {
  size_t c = pg->cls;
  if (pg->prev)
    pg->prev->next = pg->next;
  else
    h->direct[c] = pg->next ? pg->next : &hak_empty_page;
  if (pg->next)
    pg->next->prev = pg->prev;
  else
    h->tail[c] = pg->prev;
  pg->next = pg->prev = NULL;
}

void full_push(hak_heap_t *h, hak_page_t *pg) {
  hak_assert(pg->free == NULL && !pg->in_full &&
             atomic_load_explicit(&pg->capacity, memory_order_relaxed) == pg->reserved);
  pg->prev = NULL;
  pg->next = h->full;
  if (h->full)
    h->full->prev = pg;
  h->full = pg;
  pg->in_full = 1;
}

void full_remove(hak_heap_t *h, hak_page_t *pg) {
  if (pg->prev)
    pg->prev->next = pg->next;
  else
    h->full = pg->next;
  if (pg->next)
    pg->next->prev = pg->prev;
  pg->next = pg->prev = NULL;
  pg->in_full = 0;
}

/* ---- carving ----------------------------------------------------------- */
void page_init(hak_segment_t *seg, hak_page_t *pg, size_t cls, bool zero) {
  size_t bsize = class_size(cls);
  size_t bytes = (size_t)pg->slice_count * SLICE_SIZE;
  pg->free = NULL;
  pg->used = 0;
  pg->reserved = (uint32_t)(bytes / bsize);
  hak_assert(pg->reserved <= MAX_BLOCKS_PER_PAGE); /* fits thread_free's count */
  pg->block_size = (uint32_t)bsize;
  pg->cls = (uint8_t)cls;
  for (unsigned k = 0; k < pg->slice_count; k++) { /* what free reads (ptr_slice_entry) */
    hak_slice_t *sl = &seg->slices[pg->slice_index + k];
    sl->phase = slice_entry_phase(pg, k);
    sl->cls = pg->cls;
  }
  page_set_capacity(pg, 0);
  pg->in_use = 1;
  pg->in_full = 0;
  pg->free_is_zero = zero;
  pg->next = pg->prev = NULL;
  /* relaxed: no other thread touches the stack of a page with no block
   * handed out (a page is released only with no hand-over under way) */
  atomic_store_explicit(&pg->thread_free, 0, memory_order_relaxed);
  track_noaccess(page_start(pg), bytes);
}

/* Carves up to EXTEND_BYTES more blocks onto the (empty) free list, in
 * address order. Touches only what it carves, so a fresh page costs RSS
 * only as it is used. */
void page_extend(hak_page_t *pg) {
  uint32_t cap = atomic_load_explicit(&pg->capacity, memory_order_relaxed);
  uint32_t n = pg->reserved - cap;
  uint32_t max = (uint32_t)(EXTEND_BYTES / pg->block_size);
  if (max == 0)
    max = 1;
  if (n > max)
    n = max;
  hak_assert(n > 0);
  uint8_t *first = page_start(pg) + (size_t)cap * pg->block_size;
  hak_block_t *next = pg->free;
  for (uint32_t i = n; i-- > 0;) {
    hak_block_t *b = (hak_block_t *)(first + (size_t)i * pg->block_size);
    block_set_free(b, next, block_marker_value(b));
    next = b;
  }
  pg->free = next;
  page_set_capacity(pg, cap + n);
}

/* ---- remote frees ------------------------------------------------------ */
/* The stack `tf` taken off the page, put on its local free list; returns
 * how many blocks. The stack's count comes with it, so the list is walked
 * only to append it to a local list that is not empty (rare: the owner
 * collects when its list has run out), and in the debug build, which
 * checks the count. The release build's unwalked list is checked only
 * against the page's live blocks: a damaged link in it shows later, when a
 * pop follows it (the walk used to find a cycle here; hak_heap_check still
 * does). */
static size_t page_take_stack(hak_page_t *pg, uintptr_t tf) {
  hak_block_t *head = tf_block(tf);
  size_t n = tf_count(tf);
  if (unlikely(n == 0 || n > pg->used))
    err_corruption(pg, "remote free count does not match the page's live blocks");
  if (pg->free != NULL || HAK_DEBUG_ON) {
    hak_block_t *tail = head;
    size_t len = 1;
    for (hak_block_t *nx; (nx = block_next(tail)) != NULL; tail = nx)
      if (unlikely(++len > n))
        break;
    if (unlikely(len != n))
      err_corruption(pg, "remote free list length differs from its count");
    block_set_next(tail, pg->free);
  }
  pg->free = head;
  pg->used -= (uint32_t)n;
  pg->free_is_zero = 0;
  return n;
}

/* Moves the remote-free stack onto the local free list; returns how many. */
size_t page_collect(hak_page_t *pg) {
  uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
  do {
    if (tf_block(tf) == NULL)
      return 0;
  } while (!atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, tf & TF_MASK,
                                                  memory_order_acquire, memory_order_relaxed));
  return page_take_stack(pg, tf);
}

/* The exiting owner's last collect (segment_abandon_locked, notify already
 * withdrawn): takes the stack and marks the page TF_ABANDONED in one step,
 * so every remote free either lands before it (collected: not live) or sees
 * the mark (counted by free_not_owned as a free into the abandoned segment).
 * Without the mark, frees that had read the owner before it was cleared and
 * pushed after this collect were counted live but never as frees, and the
 * segment's last free never reclaimed it. */
size_t page_collect_abandoned(hak_page_t *pg) {
  uintptr_t tf = atomic_exchange_explicit(&pg->thread_free, TF_ABANDONED, memory_order_acq_rel);
  return tf_block(tf) ? page_take_stack(pg, tf) : 0;
}

/* Owner: ask to be told about remote frees (page enters the full list).
 * A page in TF_NOTIFYING belongs to a remote thread that already delivered
 * its block (maybe drained already) and is about to reset the state to
 * NONE: wait for that, or the request would be lost with the reset and the
 * page stranded in the full list. The remote thread needs no lock to finish. */
static void page_set_notify(hak_page_t *pg) {
  uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
  for (unsigned round = 0;;) {
    uintptr_t st = tf & TF_MASK;
    if (st == TF_NOTIFY)
      return;
    if (st == TF_NOTIFYING) {
      spin_wait(&round);
      tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
      continue;
    }
    /* relaxed: the request publishes nothing; the free that takes it
     * (page_free_remote) reads only atomics, and `owner` as ordered there */
    if (atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, tf | TF_NOTIFY,
                                              memory_order_relaxed, memory_order_relaxed))
      return;
  }
}

/* Owner: withdraw a notification request (abandoning the heap). Waits for a
 * remote thread that is mid-way through handing over a block, unless the
 * process is a fork child, where no such thread exists any more. */
void page_clear_notify(hak_page_t *pg, bool forced) {
  uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
  for (unsigned round = 0;;) {
    uintptr_t st = tf & TF_MASK;
    if (st == TF_NONE)
      return;
    if (st == TF_NOTIFYING && !forced) {
      spin_wait(&round);
      tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
      continue;
    }
    if (atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, tf & ~TF_MASK,
                                              memory_order_acq_rel, memory_order_acquire))
      return;
  }
}

/* Whether a free `counted` (page_free_remote) may push onto a page marked
 * TF_ABANDONED: the mark is the one of the abandonment it was counted
 * into. A later abandonment (the segment adopted and abandoned again since
 * the count) reset the counters and counted the block live: pushed there
 * as counted, the free was never counted, and the segment's last free fell
 * one short of reclaiming it (test_abandon_handover). */
static bool page_mark_counted(const hak_segment_t *seg, uint64_t counted) {
  if (counted == PAGE_NOT_COUNTED || counted == PAGE_COUNTED_ANY)
    return counted == PAGE_COUNTED_ANY;
  /* seq_cst, after the caller named seg in its heap's mark_seg (or holds
   * the global lock: free_not_owned): an abandonment stores its epoch,
   * then waits for no heap to name seg before it marks its pages
   * (segment_wait_marks) */
  return atomic_load_explicit(&seg->abandoned_epoch, memory_order_seq_cst) == counted;
}

/* A block freed by a thread that does not own its page. Returns false,
 * without pushing, when the page is marked TF_ABANDONED and the free was
 * not `counted` as a free into that abandonment (free_not_owned). */
bool page_free_remote(hak_segment_t *seg, hak_page_t *pg, hak_block_t *b, uint64_t counted) {
  uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
  for (;;) {
    if (unlikely((tf & TF_MASK) == TF_ABANDONED)) {
      if (!page_mark_counted(seg, counted))
        return false;
      HAK_TEST_HOOK(HAK_HOOK_MARK_CHECKED, b);
    }
    if (unlikely((tf & TF_MASK) == TF_NOTIFY)) {
      HAK_TEST_HOOK(HAK_HOOK_NOTIFY_TAKING, b);
      if (!atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf,
                                                 (tf & ~TF_MASK) | TF_NOTIFYING,
                                                 memory_order_acq_rel, memory_order_relaxed))
        continue;
      HAK_TEST_HOOK(HAK_HOOK_NOTIFYING, b);
      /* The owner waits for TF_NOTIFYING to clear before it abandons the
       * heap or releases the page, so `owner` and the page stay valid.
       * And it is the heap that asked: the CAS above read the request
       * (a relaxed RMW, page_set_notify) in the release sequence of the
       * owner's last release on this word since it took the page (its
       * adopter's page_clear_notify, after the release store of `owner`;
       * a new segment's blocks bring their own edge), so this load
       * cannot return NULL or the heap of the thread that abandoned the
       * segment (which a weakly ordered CPU could show it otherwise: the
       * block pushed on a pooled heap's delayed list, or a fault). */
      hak_heap_t *h = atomic_load_explicit(&seg->owner, memory_order_acquire);
      uintptr_t d = atomic_load_explicit(&h->delayed, memory_order_relaxed);
      do {
        block_set_next(b, (hak_block_t *)d);
        HAK_TEST_HOOK(HAK_HOOK_DELAYED_PUSHING, b);
      } while (!atomic_compare_exchange_weak_explicit(&h->delayed, &d, (uintptr_t)b,
                                                      memory_order_release, memory_order_relaxed));
      tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
      HAK_TEST_HOOK(HAK_HOOK_NOTIFY_CLEARING, b);
      while (!atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, tf & ~TF_MASK,
                                                    memory_order_release, memory_order_relaxed)) {
      }
      return true;
    }
    block_set_next(b, tf_block(tf));
    if (atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf,
                                              ((tf & ~TF_BLOCK_MASK) + TF_COUNT_ONE) | (uintptr_t)b,
                                              memory_order_release, memory_order_relaxed))
      return true;
  }
}

/* ---- local frees ------------------------------------------------------- */
/* Called by the owner when a local free left the page empty or the page was
 * in the full list. An empty page goes back to its segment unless it is the
 * only page of its class (kept to avoid map/unmap thrash); a segment left
 * with nothing but such kept pages is given back whole. Whether the segment
 * went back (released or cached: not to be touched again). */
bool page_free_slow(hak_heap_t *h, hak_segment_t *seg, hak_page_t *pg) {
  if (pg->in_full) {
    full_remove(h, pg);
    queue_push_back(h, pg);
  }
  if (pg->used != 0 ||
      (atomic_load_explicit(&pg->thread_free, memory_order_acquire) & TF_MASK) == TF_NOTIFYING)
    return false;
  if (!page_kept_when_empty(h, pg)) {
    queue_remove(h, pg);
    if (segment_page_free(h, seg, pg))
      return true;
  }
  return segment_drop_if_idle(h, seg);
}

/* Frees a block whose validity was already established and which carries
 * the free marker (delayed blocks, a reclaimed segment's block); heap lock
 * held. */
void page_free_block(hak_heap_t *h, hak_segment_t *seg, hak_page_t *pg, hak_block_t *b) {
  if (atomic_load_explicit(&seg->owner, memory_order_relaxed) == h)
    page_push_owned(h, seg, pg, b);
  else
    page_free_remote(seg, pg, b, PAGE_COUNTED_ANY);
}

/* ---- finding a page with a free block (malloc slow path) --------------- */
/* How many more carvable queue pages the search passes over, looking for
 * free blocks, once it has passed the first one (pages with nothing left
 * move to the full list as before, so they are passed once). */
#define FIND_FREE_SCAN 8

/* The first page of the class queue with a free block (after collecting
 * its remote frees), or NULL; *carve: the first page that has blocks left
 * to carve. Pages with nothing free and nothing left to carve move to the
 * full list. The walk stops after FIND_FREE_SCAN more carvable pages. */
static hak_page_t *queue_find_free(hak_heap_t *h, size_t cls, hak_page_t **carve) {
  hak_page_t *pg = queue_first(h, cls);
  unsigned scan = 0;
  *carve = NULL;
  while (pg) {
    if (!pg->free)
      page_collect(pg);
    if (pg->free)
      return pg;
    hak_page_t *next = pg->next;
    if (atomic_load_explicit(&pg->capacity, memory_order_relaxed) < pg->reserved) {
      if (!*carve)
        *carve = pg;
      if (++scan > FIND_FREE_SCAN)
        return NULL;
      pg = next;
      continue;
    }
    queue_remove(h, pg);
    full_push(h, pg);
    HAK_TEST_HOOK(HAK_HOOK_PAGE_FULL, pg);
    page_set_notify(pg);
    /* A remote free may have landed between the collect and the notify
     * request: it went to thread_free, so look once more. */
    if (tf_block(atomic_load_explicit(&pg->thread_free, memory_order_acquire))) {
      full_remove(h, pg);
      queue_push_front(h, pg);
      page_collect(pg);
      return pg;
    }
    pg = next;
  }
  return NULL;
}

/* Memory already resident is used before new memory is touched: a free
 * block of any page in the class queue before a page is carved further or
 * a new page is taken. Without this, a thread that adopted its
 * predecessor's segments (Larson's thread churn) kept carving its own first
 * page while the adopted pages stayed half free. */
hak_page_t *page_find_free(hak_heap_t *h, size_t cls) {
  hak_page_t *carve;
  hak_page_t *pg = queue_find_free(h, cls, &carve);
  if (!pg && carve) {
    pg = carve;
    page_extend(pg);
  }
  if (!pg) {
    pg = segment_page_alloc(h, cls);
    if (!pg)
      return NULL;
    queue_push_front(h, pg);
    if (!pg->free)
      page_extend(pg);
    return pg;
  }
  if (h->direct[cls] != pg) {
    queue_remove(h, pg);
    queue_push_front(h, pg);
  }
  return pg;
}
