/* A heap's per-class cache of freed blocks (tc_head/tc_room in internal.h).
 *
 * The owner's free pushes a block on its class's list; malloc pops from it
 * before it looks at any page. Pages count cached blocks as used, so a
 * page only empties when its blocks leave the cache: when a push finds the
 * list full (tcache_overflow keeps the newest half and returns the rest to
 * their pages), when the thread exits or, in a fork child, for the heap of
 * a thread that did not survive (tcache_flush_all from heap_abandon), and
 * on hak_thread_cache_flush(). malloc reaches a page only when the class's
 * list is empty, so a class a thread allocates from keeps no stale blocks.
 *
 * In a fork child, a dead thread may have been inside a push or a pop:
 * its lists are whole (the head is one store) but tc_room may be off by
 * one, which tcache_flush_all resets; heap_repair_counts first recounts
 * the pages' `used` from their free lists, which counts cached blocks as
 * used, as they are. */
#include "internal.h"

/* Every list empty, at its first limit. */
void tcache_reset(hak_heap_t *h) {
  for (size_t c = 0; c < NCLS; c++) {
    h->tc_head[c] = NULL;
    h->tc_limit[c] = (uint16_t)class_tcache_limit(c);
    h->tc_room[c] = h->tc_limit[c];
    h->tc_under[c] = 0;
  }
  h->tc_grown = 0;
}

/* Each block of the list `b` back on its page (heap lock held). Cached
 * blocks keep their free marker and their segments are h's, so only the
 * link is written; with `remark` the marker too: in a fork child, for the
 * cache of a thread that did not survive, which may have stopped between
 * the stores of a push or a pop, in whatever order the compiler put them
 * (a block on its list without its marker yet, or with it already
 * cleared). */
static void spill(hak_heap_t *h, hak_block_t *b, bool remark) {
  while (b) {
    hak_block_t *next = block_next(b);
    hak_segment_t *seg = ptr_segment_base(b);
    hak_assert(atomic_load_explicit(&seg->owner, memory_order_relaxed) == h);
    if (remark)
      block_set_free(b, next, block_marker_value(b));
    page_push_owned(h, seg, ptr_page(seg, b), b);
    b = next;
  }
}

/* The limit the list of `cls` may grow to now (tc_limit's comment): twice
 * the current one, within TCACHE_GROW_MAX times the first and the heap's
 * TCACHE_GROW_BYTES; the current one if neither allows more. */
static uint32_t tcache_grown_limit(const hak_heap_t *h, size_t cls) {
  uint32_t limit = h->tc_limit[cls], first = class_tcache_limit(cls);
  uint32_t want = limit * 2 < first * TCACHE_GROW_MAX ? limit * 2 : first * TCACHE_GROW_MAX;
  if (want <= limit || h->tc_grown + (size_t)(want - limit) * class_size(cls) > TCACHE_GROW_BYTES)
    return limit;
  return want;
}

/* The list is one over its limit (the free that found no room pushed its
 * block anyway). If it ran empty since its last overflow, the limit grows
 * (tcache_grown_limit) and the list stays. Else keep the newest half, the
 * blocks most likely still in the CPU cache, and give the older ones back
 * to their pages, under the heap lock (a fork in the middle would
 * otherwise leave the child with blocks on no list, held by a thread that
 * is not there). bench_random_mixed at 8 KiB, where malloc and free come
 * in random order: with the limit at 32 blocks, 4.2% of mallocs found the
 * list empty and half of those took the slow path. */
void tcache_overflow(hak_heap_t *h, size_t cls) {
  uint32_t limit = h->tc_limit[cls];
  heap_lock(h);
  bool ran_empty = h->tc_under[cls];
  h->tc_under[cls] = 0;
  if (ran_empty) {
    uint32_t grown = tcache_grown_limit(h, cls);
    if (grown > limit) {
      h->tc_grown += (size_t)(grown - limit) * class_size(cls);
      h->tc_limit[cls] = (uint16_t)grown;
      h->tc_room[cls] = (int32_t)(grown - limit - 1); /* the list holds limit + 1 */
      heap_unlock(h);
      return;
    }
  }
  uint32_t keep = limit / 2;
  hak_block_t *last = h->tc_head[cls];
  for (uint32_t i = 1; i < keep; i++)
    last = block_next(last);
  hak_block_t *rest = block_next(last);
  block_set_next(last, NULL);
  h->tc_room[cls] = (int32_t)(limit - keep);
  spill(h, rest, false);
  heap_unlock(h);
}

void tcache_flush_all(hak_heap_t *h, bool locked, bool remark) {
  if (!locked)
    heap_lock(h);
  for (size_t c = 0; c < NCLS; c++) {
    hak_block_t *b = h->tc_head[c];
    h->tc_head[c] = NULL;
    h->tc_room[c] = h->tc_limit[c];
    spill(h, b, remark);
  }
  if (!locked)
    heap_unlock(h);
}

/* Whether `b` may be on h's cache of class `cls`: a carved block start of
 * an in-use page of that class in a segment h owns. The walkers of
 * check.c and tcache_count_for stop at an entry that is not, before they
 * follow its link (a write after free can point it anywhere). */
bool tcache_entry_ok(const hak_heap_t *h, size_t cls, const hak_block_t *b) {
  hak_segment_t *seg = ptr_segment_base(b);
  if (registry_kind(seg) != REG_SMALL ||
      atomic_load_explicit(&seg->owner, memory_order_relaxed) != h)
    return false;
  hak_page_t *pg = ptr_page(seg, b);
  return pg->in_use && pg->cls == cls && slice_is_block_start(ptr_slice_entry(seg, b), b);
}

/* How many blocks of class `cls` sit in h's cache: with `pg`, only `pg`'s
 * (hak_heap_check; with `seen`, check.c's bitmap of the page's listed
 * blocks, each is marked there and the walk stops at a block already
 * marked, returned in *dup), without, all of them (hak_stats). Every entry
 * is checked before its link is followed, and the walk is bounded by the
 * list's limit, so h's thread may be changing the list meanwhile
 * (hak_stats; global lock held: README, hak_stats). */
size_t tcache_count_for(const hak_heap_t *h, size_t cls, const hak_page_t *pg, uint8_t *seen,
                        hak_block_t **dup) {
  if (!h || cls >= NCLS)
    return 0;
  size_t n = 0, walked = 0, limit = h->tc_limit[cls];
  const uint8_t *start = pg ? page_start(pg) : NULL;
  const uint8_t *end = pg ? start + (size_t)pg->reserved * pg->block_size : NULL;
  for (hak_block_t *b = h->tc_head[cls]; b && walked <= limit && tcache_entry_ok(h, cls, b);
       b = block_next(b), walked++) {
    if (pg && ((const uint8_t *)b < start || (const uint8_t *)b >= end))
      continue;
    if (seen) {
      size_t idx = (size_t)((const uint8_t *)b - start) / pg->block_size;
      if (seen[idx >> 3] & (1u << (idx & 7))) {
        *dup = b;
        break;
      }
      seen[idx >> 3] |= (uint8_t)(1u << (idx & 7));
    }
    n++;
  }
  return n;
}

void hak_thread_cache_flush(void) {
  hak_heap_t *h = hak_tls_heap;
  if (h != &hak_empty_heap)
    tcache_flush_all(h, false, false);
}
