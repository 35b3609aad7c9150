/* hak_heap_check and hak_stats: walk everything hakmem owns.
 * Both read other threads' heaps without their cooperation, under the
 * global lock. hak_heap_check must be called while no other thread
 * allocates or frees: it reports what it sees, and lists changing under it
 * read as violations. hak_stats may be called at any time: it follows a
 * link of a list another thread may be changing (a heap's cache or delayed
 * frees) only into a registered small segment, which stays mapped while the
 * lock is held (segments are unregistered under it), and bounds each walk;
 * while others run its figures are a snapshot in motion, exact when they
 * are still (documented in hakmem.h and README). */
#include <string.h>

#include "internal.h"

/* hak_heap_check's index of what the per-segment and per-page checks look
 * up, built once per check (check_index_build) so that each lookup is a
 * binary search, not a walk of a list (until 2026-11-28 each segment's
 * check walked its owner's segment list, the abandoned list and the
 * segment cache, and each page's every heap's delayed list: at 2000
 * segments, each of 7 full pages with a block handed over, a check took
 * 6-8 s, 0.06-0.07 s with no block handed over; until 2026-11-29 each
 * page's check walked its owner's cache of the page's class, up to 512
 * entries: with 200,000 blocks of each of 5 classes of 128-512 bytes,
 * every other one freed, each cache full, 152 million instructions per
 * check, now 26 million). Its memory is mapped for the check and unmapped
 * after it; without it (mmap failed) the lookups walk the lists as
 * before. */
typedef struct {
  const hak_segment_t *seg;
  const hak_heap_t *heap; /* the active heap whose list names it (MANY_HEAPS: more than one) */
  uint8_t lists;          /* the other lists that name it: IX_ABANDONED, IX_CACHED */
} seg_ix_t;
#define IX_ABANDONED 1u
#define IX_CACHED 2u
#define MANY_HEAPS ((const hak_heap_t *)1)

/* An entry of a heap's delayed list, as count_delayed walks them: its page
 * (ptr_page), its place in that walk. */
typedef struct {
  const hak_page_t *pg;
  size_t order;
  hak_block_t *b;
} delayed_ix_t;

/* An entry of a heap's cache of one class, as tcache_count_for walks it:
 * the heap, the class, the block, its place in that walk. */
typedef struct {
  const hak_heap_t *h;
  hak_block_t *b;
  uint32_t order;
  uint32_t cls;
} cached_ix_t;

typedef struct {
  size_t violations;
  size_t walk_max; /* delayed_walk_max(), once per check */
  seg_ix_t *segs;  /* hak_all_segments, by address (NULL: no index) */
  size_t nsegs;
  delayed_ix_t *delayed; /* every heap's delayed list, by page, then order */
  size_t ndelayed;
  const hak_heap_t **heaps; /* hak_all_heaps, by address: the heaps whose caches are in `cached` */
  size_t nheaps;
  cached_ix_t *cached; /* every heap's cache of every class, by heap, class, block, then order */
  size_t ncached;
  void *map; /* what segs, delayed, heaps and cached live in */
  size_t map_size;
} checker_t;

static void violation(checker_t *c, const char *what, const void *where, size_t a, size_t b) {
  hak_msg_t m = {.len = 0};
  msg_str(&m, "hakmem: heap check: ");
  msg_str(&m, what);
  msg_str(&m, " at ");
  msg_hex(&m, (uintptr_t)where);
  msg_str(&m, " (");
  msg_dec(&m, a);
  msg_str(&m, ", ");
  msg_dec(&m, b);
  msg_str(&m, ")\n");
  msg_flush(&m);
  c->violations++;
}

/* Marks block `idx` in a page's bitmap of listed blocks; whether it was
 * marked already (listed twice). */
static bool seen_mark(uint8_t *seen, size_t idx) {
  bool was = seen[idx >> 3] & (1u << (idx & 7));
  seen[idx >> 3] |= (uint8_t)(1u << (idx & 7));
  return was;
}

/* Validates one block list of `pg`; returns its length. `seen` marks blocks
 * already found in another list of the same page. */
static size_t check_list(checker_t *c, hak_page_t *pg, hak_block_t *b, uint8_t *seen,
                         const char *name) {
  size_t n = 0, cap = atomic_load_explicit(&pg->capacity, memory_order_relaxed);
  for (; b; b = block_next(b)) {
    size_t off = (size_t)((uint8_t *)b - page_start(pg));
    if ((uint8_t *)b < page_start(pg) || off % pg->block_size != 0 || off / pg->block_size >= cap) {
      violation(c, name, b, off, cap);
      return n;
    }
    size_t idx = off / pg->block_size;
    if (seen_mark(seen, idx)) {
      violation(c, "block listed twice (or list cycle)", b, idx, n);
      return n;
    }
    if (block_marker(b) != block_marker_value(b))
      violation(c, "free block lost its free marker (written after free?)", b, idx, 0);
    n++;
  }
  return n;
}

/* Whether the link at `b`, read from a list another thread may be changing,
 * may be followed: into a registered small segment (mapped while the global
 * lock is held), at a block's alignment. */
static bool link_readable(const hak_block_t *b) {
  return ((uintptr_t)b & 15) == 0 && registry_kind(b) == REG_SMALL; /* blocks: 16-byte aligned */
}

/* The most blocks a heap's delayed list holds: one per page that asked to
 * be told of a remote free (page.c), so one per slice of every segment. A
 * walk of a list in motion (hak_stats) stops there, a cycle included. */
static size_t delayed_walk_max(void) {
  size_t n = 0;
  for (hak_segment_t *s = hak_all_segments; s; s = s->gnext)
    n += SLICES_PER_SEGMENT;
  return n;
}

/* count_delayed's step for a block b of pg's on a delayed list. */
static void delayed_of_page(const hak_page_t *pg, hak_block_t *b, uint8_t *seen,
                            hak_block_t **dup) {
  if (seen && (uint8_t *)b >= page_start(pg)) {
    size_t idx = (size_t)((uint8_t *)b - page_start(pg)) / pg->block_size;
    if (idx < MAX_BLOCKS_PER_PAGE && seen_mark(seen, idx))
      *dup = b;
  }
}

/* Counts the blocks on every heap's delayed list, each walk bounded by
 * `walk_max` (delayed_walk_max()): with `pg`, those of `pg` (returned;
 * with `seen`, check.c's bitmap of the page's listed blocks, each marked
 * there and one already marked returned in *dup); without, each in its
 * class's `per_class` entry. */
static size_t count_delayed(size_t walk_max, const hak_page_t *pg, size_t *per_class, uint8_t *seen,
                            hak_block_t **dup) {
  size_t n = 0;
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    size_t walked = 0;
    for (hak_block_t *b = (hak_block_t *)atomic_load(&h->delayed);
         b && walked < walk_max && link_readable(b); b = block_next(b), walked++) {
      const hak_page_t *bp = ptr_page(ptr_segment_base(b), b);
      if (bp == pg) {
        delayed_of_page(pg, b, seen, dup);
        n++;
      } else if (!pg && bp->in_use && bp->cls < NCLS)
        per_class[bp->cls]++;
    }
  }
  return n;
}

/* Sorts n elements of `size` bytes (at most 32) by `less`: a heapsort, in
 * place, O(n log n), no memory (the C library's qsort may call malloc). */
#define IX_SIZE_MAX 32
static void ix_sort(void *base, size_t n, size_t size, bool (*less)(const void *, const void *)) {
  uint8_t *a = base, tmp[IX_SIZE_MAX];
#define IX_AT(i) (a + (i)*size)
#define IX_SWAP(i, j)                                                                              \
  (memcpy(tmp, IX_AT(i), size), memcpy(IX_AT(i), IX_AT(j), size), memcpy(IX_AT(j), tmp, size))
  for (size_t end = n, start = n / 2;;) {
    if (start > 0) {
      start--; /* building the heap */
    } else {
      if (end <= 1)
        break;
      end--; /* the largest to the end */
      IX_SWAP(0, end);
    }
    for (size_t root = start;;) { /* sift down */
      size_t child = 2 * root + 1;
      if (child >= end)
        break;
      if (child + 1 < end && less(IX_AT(child), IX_AT(child + 1)))
        child++;
      if (!less(IX_AT(root), IX_AT(child)))
        break;
      IX_SWAP(root, child);
      root = child;
    }
  }
#undef IX_SWAP
#undef IX_AT
}

_Static_assert(sizeof(seg_ix_t) <= IX_SIZE_MAX && sizeof(delayed_ix_t) <= IX_SIZE_MAX &&
                   sizeof(cached_ix_t) <= IX_SIZE_MAX,
               "ix_sort swaps through a buffer of IX_SIZE_MAX bytes");

static bool seg_ix_less(const void *x, const void *y) {
  return (uintptr_t)((const seg_ix_t *)x)->seg < (uintptr_t)((const seg_ix_t *)y)->seg;
}

static bool delayed_ix_less(const void *x, const void *y) {
  const delayed_ix_t *a = x, *b = y;
  return (uintptr_t)a->pg != (uintptr_t)b->pg ? (uintptr_t)a->pg < (uintptr_t)b->pg
                                              : a->order < b->order;
}

static bool heap_ix_less(const void *x, const void *y) {
  return (uintptr_t) * (const hak_heap_t *const *)x < (uintptr_t) * (const hak_heap_t *const *)y;
}

static bool cached_ix_less(const void *x, const void *y) {
  const cached_ix_t *a = x, *b = y;
  if (a->h != b->h)
    return (uintptr_t)a->h < (uintptr_t)b->h;
  if (a->cls != b->cls)
    return a->cls < b->cls;
  return a->b != b->b ? (uintptr_t)a->b < (uintptr_t)b->b : a->order < b->order;
}

/* Walks h's cache of class `cls` as tcache_count_for does (each entry
 * checked before its link is followed, at most its limit + 1 of them),
 * writing at most `room` entries to `out` (NULL: none). Returns the
 * length walked (with `out`, at most `room`). */
static size_t cached_ix_walk(const hak_heap_t *h, size_t cls, cached_ix_t *out, size_t room) {
  size_t n = 0, limit = h->tc_limit[cls];
  for (hak_block_t *b = h->tc_head[cls];
       b && n <= limit && (!out || n < room) && tcache_entry_ok(h, cls, b); b = block_next(b), n++)
    if (out)
      out[n] = (cached_ix_t){.h = h, .b = b, .order = (uint32_t)n, .cls = (uint32_t)cls};
  return n;
}

/* The index entry of seg, or NULL (not on hak_all_segments). */
static seg_ix_t *seg_ix_find(const checker_t *c, const void *seg) {
  size_t lo = 0, hi = c->nsegs;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)c->segs[mid].seg < (uintptr_t)seg)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < c->nsegs && c->segs[lo].seg == seg ? &c->segs[lo] : NULL;
}

/* How far a walk of a segment list goes to index it: as far as
 * heap_lists's, a cycle through segments not on hak_all_segments
 * included (one through indexed ones ends at its first repeat). */
#define LIST_WALK_MAX (1u << 24)

/* Marks `list` (IX_ABANDONED, IX_CACHED) on the index entry of each
 * segment of the list from head; a cycle ends at its first repeat. */
static void ix_mark_list(checker_t *c, const hak_segment_t *head, uint8_t list) {
  size_t n = 0;
  for (const hak_segment_t *s = head; s && n < LIST_WALK_MAX; s = s->next, n++) {
    seg_ix_t *ix = seg_ix_find(c, s);
    if (ix && (ix->lists & list))
      break;
    if (ix)
      ix->lists |= list;
  }
}

/* Builds c's index under the global lock (no index if mmap fails). */
static void check_index_build(checker_t *c) {
  size_t nsegs = 0, ndelayed = 0, nheaps = 0, ncached = 0;
  for (hak_segment_t *s = hak_all_segments; s; s = s->gnext)
    nsegs++;
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    size_t walked = 0;
    for (hak_block_t *b = (hak_block_t *)atomic_load(&h->delayed);
         b && walked < c->walk_max && link_readable(b); b = block_next(b), walked++)
      ndelayed++;
    nheaps++;
    for (size_t cls = 0; cls < NCLS; cls++)
      ncached += cached_ix_walk(h, cls, NULL, 0);
  }
  size_t segs_bytes = (nsegs * sizeof(seg_ix_t) + 15) & ~(size_t)15;
  size_t delayed_bytes = (ndelayed * sizeof(delayed_ix_t) + 15) & ~(size_t)15;
  size_t heaps_bytes = (nheaps * sizeof(hak_heap_t *) + 15) & ~(size_t)15;
  size_t bytes = segs_bytes + delayed_bytes + heaps_bytes + ncached * sizeof(cached_ix_t);
  if (!bytes)
    return;
  size_t map_size = (bytes + OS_PAGE_SIZE - 1) & ~(OS_PAGE_SIZE - 1);
  uint8_t *map = os_map_aligned(map_size, OS_PAGE_SIZE, 0);
  if (!map)
    return;
  c->map = map;
  c->map_size = map_size;
  c->segs = (seg_ix_t *)map;
  c->delayed = (delayed_ix_t *)(map + segs_bytes);
  c->heaps = (const hak_heap_t **)(map + segs_bytes + delayed_bytes);
  c->cached = (cached_ix_t *)(map + segs_bytes + delayed_bytes + heaps_bytes);
  for (hak_segment_t *s = hak_all_segments; s && c->nsegs < nsegs; s = s->gnext)
    c->segs[c->nsegs++] = (seg_ix_t){.seg = s};
  ix_sort(c->segs, c->nsegs, sizeof(seg_ix_t), seg_ix_less);
  /* active heaps' lists only, as check_segment asks (owner_lists) and as
   * check_heap walks them: a finished heap's list is named, not followed
   * (its link may be stale, into an unmapped segment: until 2026-11-28 the
   * index followed it, SIGSEGV; test_stats_check, damage 53) */
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    if (h->state != HEAP_ACTIVE)
      continue;
    size_t n = 0;
    for (const hak_segment_t *s = h->segments; s && n < LIST_WALK_MAX; s = s->next, n++) {
      seg_ix_t *ix = seg_ix_find(c, s);
      if (ix && ix->heap == h)
        break; /* a cycle: the rest is listed already */
      if (ix)
        ix->heap = ix->heap ? MANY_HEAPS : h;
    }
  }
  ix_mark_list(c, hak_abandoned, IX_ABANDONED);
  ix_mark_list(c, hak_segment_cache, IX_CACHED);
  for (hak_heap_t *h = hak_all_heaps; h && c->ndelayed < ndelayed; h = h->all_next) {
    size_t walked = 0;
    for (hak_block_t *b = (hak_block_t *)atomic_load(&h->delayed);
         b && walked < c->walk_max && link_readable(b) && c->ndelayed < ndelayed;
         b = block_next(b), walked++) {
      size_t at = c->ndelayed++; /* its place in the walk: the order */
      c->delayed[at] = (delayed_ix_t){.pg = ptr_page(ptr_segment_base(b), b), .order = at, .b = b};
    }
  }
  ix_sort(c->delayed, c->ndelayed, sizeof(delayed_ix_t), delayed_ix_less);
  for (hak_heap_t *h = hak_all_heaps; h && c->nheaps < nheaps; h = h->all_next) {
    c->heaps[c->nheaps++] = h;
    for (size_t cls = 0; cls < NCLS; cls++)
      c->ncached += cached_ix_walk(h, cls, c->cached + c->ncached, ncached - c->ncached);
  }
  ix_sort(c->heaps, c->nheaps, sizeof(hak_heap_t *), heap_ix_less);
  ix_sort(c->cached, c->ncached, sizeof(cached_ix_t), cached_ix_less);
}

static void check_index_free(checker_t *c) {
  if (c->map)
    os_unmap(c->map, c->map_size);
}

/* count_delayed(c->walk_max, pg, NULL, seen, dup), from the index. */
static size_t check_delayed_of(const checker_t *c, const hak_page_t *pg, uint8_t *seen,
                               hak_block_t **dup) {
  if (!c->map)
    return count_delayed(c->walk_max, pg, NULL, seen, dup);
  size_t lo = 0, hi = c->ndelayed, n = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)c->delayed[mid].pg < (uintptr_t)pg)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (; lo < c->ndelayed && c->delayed[lo].pg == pg; lo++, n++)
    delayed_of_page(pg, c->delayed[lo].b, seen, dup);
  return n;
}

/* Whether h's cache is in c's index (h on hak_all_heaps). */
static bool heap_indexed(const checker_t *c, const hak_heap_t *h) {
  size_t lo = 0, hi = c->nheaps;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)c->heaps[mid] < (uintptr_t)h)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < c->nheaps && c->heaps[lo] == h;
}

/* tcache_count_for(h, pg->cls, pg, seen, dup), h indexed, from the index:
 * the entries of h's cache of pg's class inside pg (by block, then order),
 * counted and marked in the walk's order up to the first one already
 * marked (by another list, or as an earlier entry of the same block),
 * returned in *dup. */
static size_t cached_of_page(const checker_t *c, const hak_heap_t *h, const hak_page_t *pg,
                             uint8_t *seen, hak_block_t **dup) {
  const uint8_t *start = page_start(pg), *end = start + (size_t)pg->reserved * pg->block_size;
  cached_ix_t key = {.h = h, .b = (hak_block_t *)start, .order = 0, .cls = (uint32_t)pg->cls};
  size_t lo = 0, hi = c->ncached;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cached_ix_less(&c->cached[mid], &key))
      lo = mid + 1;
    else
      hi = mid;
  }
  for (hi = lo; hi < c->ncached && c->cached[hi].h == h && c->cached[hi].cls == pg->cls &&
                (const uint8_t *)c->cached[hi].b < end;
       hi++)
    ;
  uint32_t first = UINT32_MAX; /* the walk stops there */
  for (size_t i = lo; i < hi; i++) {
    size_t idx = (size_t)((const uint8_t *)c->cached[i].b - start) / pg->block_size;
    bool again =
        (i > lo && c->cached[i].b == c->cached[i - 1].b) || (seen[idx >> 3] & (1u << (idx & 7)));
    if (again && c->cached[i].order < first) {
      first = c->cached[i].order;
      *dup = c->cached[i].b;
    }
  }
  size_t n = 0;
  for (size_t i = lo; i < hi; i++)
    if (c->cached[i].order < first) {
      seen_mark(seen, (size_t)((const uint8_t *)c->cached[i].b - start) / pg->block_size);
      n++;
    }
  return n;
}

/* The blocks of `pg` in its owner's cache, marked in `seen` (the page's
 * bitmap of listed blocks): one already there is listed twice. */
static size_t check_cached(checker_t *c, const hak_heap_t *owner, hak_page_t *pg, uint8_t *seen) {
  hak_block_t *dup = NULL;
  size_t n = c->map && heap_indexed(c, owner) ? cached_of_page(c, owner, pg, seen, &dup)
                                              : tcache_count_for(owner, pg->cls, pg, seen, &dup);
  if (dup)
    violation(c, "block listed twice (in a thread cache and a free list)", dup, n, 0);
  return n;
}

static void check_page(checker_t *c, hak_segment_t *seg, unsigned i, hak_page_t *pg) {
  size_t cls = pg->cls;
  if (cls >= NCLS || pg->block_size != class_size(cls)) {
    violation(c, "page has a bad size class", pg, cls, pg->block_size);
    return;
  }
  size_t cap = atomic_load_explicit(&pg->capacity, memory_order_relaxed);
  size_t span = (size_t)pg->slice_count * SLICE_SIZE;
  if (pg->slice_count != class_slices(cls) || pg->slice_index != i)
    violation(c, "page geometry wrong", pg, pg->slice_count, class_slices(cls));
  if (pg->reserved != span / pg->block_size || cap > pg->reserved || pg->used > cap)
    violation(c, "page counts inconsistent (reserved/capacity/used)", pg, cap, pg->used);
  uint8_t seen[MAX_BLOCKS_PER_PAGE / 8];
  memset(seen, 0, sizeof(seen));
  size_t nfree = check_list(c, pg, pg->free, seen, "local free list entry outside the page");
  uintptr_t tf = atomic_load(&pg->thread_free);
  size_t before = c->violations;
  size_t nremote = check_list(c, pg, tf_block(tf), seen, "remote free list entry outside the page");
  if (c->violations == before && nremote != tf_count(tf))
    violation(c, "remote free list length differs from its count", pg, nremote, tf_count(tf));
  hak_block_t *dup = NULL;
  size_t ndelayed = check_delayed_of(c, pg, seen, &dup);
  if (dup)
    violation(c, "block listed twice (on a heap's delayed list and another list)", dup, ndelayed,
              0);
  size_t ncached =
      check_cached(c, atomic_load_explicit(&seg->owner, memory_order_relaxed), pg, seen);
  if (nfree + pg->used != cap)
    violation(c, "free + used != capacity (lost or duplicated blocks)", pg, nfree + pg->used, cap);
  if (nremote + ndelayed + ncached > pg->used)
    violation(c, "more pending remote frees and cached blocks than used blocks", pg,
              nremote + ndelayed + ncached, pg->used);
  if (pg->in_full && pg->free)
    violation(c, "page in the full list has free blocks", pg, nfree, 0);
  if ((tf & TF_MASK) == TF_NOTIFYING)
    violation(c, "page stuck in NOTIFYING", pg, 0, 0);
  /* a remote free to a full page hands its block over (delayed) when the
   * page asks to be told (TF_NOTIFY), and only pushes on the stack once the
   * hand-over is done or under way: blocks on a full page's stack with
   * nothing handed over wait for a remote free that may never come */
  else if (pg->in_full && tf_block(tf) && ndelayed == 0)
    violation(c, "full page's remote frees stranded (none handed over to its heap)", pg, nremote,
              tf & TF_MASK);
}

/* Whether h's segment list holds seg (the walk bounded: a cycle is
 * reported by check_heap's count). */
static bool heap_lists(const hak_heap_t *h, const hak_segment_t *seg) {
  size_t n = 0;
  for (const hak_segment_t *s = h->segments; s && n < (1u << 24); s = s->next, n++)
    if (s == seg)
      return true;
  return false;
}

/* Whether owner's segment list names seg, from the index where it says
 * so (else, or without it, heap_lists: a segment its owner does not list
 * is a violation, so the walk is made only for one). */
static bool owner_lists(const checker_t *c, const hak_heap_t *owner, const hak_segment_t *seg) {
  const seg_ix_t *ix = c->map ? seg_ix_find(c, seg) : NULL;
  return (ix && ix->heap == owner) || heap_lists(owner, seg);
}

/* Whether the abandoned list names seg. */
static bool abandoned_lists(const checker_t *c, const hak_segment_t *seg) {
  const seg_ix_t *ix = c->map ? seg_ix_find(c, seg) : NULL;
  return ix ? (ix->lists & IX_ABANDONED) != 0 : segment_is_abandoned_listed(seg);
}

static void check_segment(checker_t *c, hak_segment_t *seg, bool cached) {
  if (((uintptr_t)seg & SEGMENT_MASK) || seg->magic != SEG_MAGIC || seg->kind != KIND_SMALL) {
    violation(c, "bad segment header", seg, seg->magic, seg->kind);
    return;
  }
  if (registry_kind(seg) != REG_SMALL)
    violation(c, "segment missing from the registry", seg, 0, 0);
  hak_heap_t *owner = atomic_load(&seg->owner);
  if (!cached) {
    if (seg->abandoned != (owner == NULL) || seg->abandoned != abandoned_lists(c, seg))
      violation(c, "segment ownership inconsistent (abandoned flag/list/owner)", seg,
                seg->abandoned, owner != NULL);
    if (owner && owner->state != HEAP_ACTIVE)
      violation(c, "segment owned by a finished heap", seg, owner->id, owner->state);
    /* an owned segment its heap does not list is never reused, released or
     * abandoned: with no page in use, nothing else shows it (until
     * 2026-11-28 nothing checked it) */
    else if (owner && !owner_lists(c, owner, seg))
      violation(c, "segment owned by a heap that does not list it", seg, owner->id, 0);
    /* every free counted since the abandonment freed a block live then */
    uint32_t frees = atomic_load_explicit(&seg->abandoned_frees, memory_order_relaxed);
    uint32_t live = atomic_load_explicit(&seg->abandoned_live, memory_order_relaxed);
    if (seg->abandoned && frees > live)
      violation(c, "more frees into an abandoned segment than blocks live at abandonment", seg,
                frees, live);
  }
  if (seg->free_slices & 1)
    violation(c, "metadata slice marked free", seg, 0, 0);
  if (atomic_load(&seg->slices[0].end) != 0) /* free of a pointer into the header */
    violation(c, "metadata slice's entry has carved blocks", seg, 0,
              atomic_load(&seg->slices[0].end));
  size_t pages = 0;
  for (unsigned i = 1; i < SLICES_PER_SEGMENT;) {
    bool is_free = (seg->free_slices >> i) & 1;
    if (is_free) {
      if (seg->slice_head[i] != 0)
        violation(c, "free slice mapped to a page", seg, i, 0);
      if (atomic_load(&seg->slices[i].end) != 0) /* free would take a pointer there */
        violation(c, "free slice's entry has carved blocks", seg, i,
                  atomic_load(&seg->slices[i].end));
      i++;
      continue;
    }
    hak_page_t *pg = &seg->pages[i];
    if (seg->slice_head[i] != i || !pg->in_use || pg->slice_count == 0 ||
        i + pg->slice_count > SLICES_PER_SEGMENT) {
      violation(c, "used slice does not start a page", seg, i, seg->slice_head[i]);
      i++;
      continue;
    }
    /* slice_entry_same divides by the block size: check_page reports a bad one */
    bool sized = pg->cls < NCLS && pg->block_size == class_size(pg->cls);
    for (unsigned j = i; j < i + pg->slice_count; j++) {
      if (seg->slice_head[j] != i || ((seg->free_slices >> j) & 1))
        violation(c, "page slice map inconsistent", pg, j, seg->slice_head[j]);
      if (sized && !slice_entry_same(&seg->slices[j], pg, j - i)) /* what free reads there */
        violation(c, "slice entry differs from its page's", pg, j,
                  atomic_load(&seg->slices[j].end));
    }
    check_page(c, seg, i, pg);
    pages++;
    i += pg->slice_count;
  }
  if (pages != seg->used_pages)
    violation(c, "segment used_pages wrong", seg, pages, seg->used_pages);
  if (cached && pages)
    violation(c, "cached segment still has pages", seg, pages, 0);
}

/* Every block in h's caches: a block start of a page of h of that class
 * (checked before its link is followed), with its free marker, on a list
 * no longer than the limit and exactly limit - room long; each limit
 * between the class's first and TCACHE_GROW_MAX times it, and what they
 * grew by within TCACHE_GROW_BYTES and as counted. Blocks listed twice
 * across lists are found per page (check_page). */
static void check_tcache(checker_t *c, hak_heap_t *h) {
  size_t grown = 0;
  for (size_t cls = 0; cls < NCLS; cls++) {
    size_t first = class_tcache_limit(cls), limit = h->tc_limit[cls];
    if (limit < first || limit > first * TCACHE_GROW_MAX) {
      violation(c, "heap cache limit out of range", h, cls, limit);
      continue;
    }
    grown += (limit - first) * class_size(cls);
    size_t n = 0;
    if (h->tc_room[cls] < 0 || (size_t)h->tc_room[cls] > limit) {
      violation(c, "heap cache room out of range", h, (size_t)h->tc_room[cls], limit);
      continue;
    }
    size_t room = (size_t)h->tc_room[cls];
    for (hak_block_t *b = h->tc_head[cls]; b; b = block_next(b)) {
      if (!tcache_entry_ok(h, cls, b)) {
        violation(c, "thread cache entry outside the heap's pages of its class", b, cls, n);
        goto next_class;
      }
      if (block_marker(b) != block_marker_value(b))
        violation(c, "free block lost its free marker (written after free?)", b, cls, n);
      if (++n > limit) {
        violation(c, "block listed twice (or list cycle) in a thread cache longer than its limit",
                  b, cls, n);
        goto next_class;
      }
    }
    if (n != limit - room)
      violation(c, "heap cache length != limit - room", h, n, limit - room);
  next_class:;
  }
  if (grown != h->tc_grown || grown > TCACHE_GROW_BYTES)
    violation(c, "heap cache limits grew by a wrong total", h, grown, h->tc_grown);
}

/* The division magics (a wrong one lets interior pointers through): the
 * table against the class sizes (check_class_magic, once per check), and
 * each heap's copy that free's fast path reads against the table. */
static void check_class_magic(checker_t *c) {
  for (size_t cls = 0; cls < NCLS; cls++)
    if (hak_class_magic[cls] != UINT64_MAX / class_size(cls) + 1) {
      violation(c, "class division magic does not match the class size", hak_class_magic, cls,
                (size_t)hak_class_magic[cls]);
      return;
    }
}

static void check_magic(checker_t *c, const hak_heap_t *h) {
  for (size_t cls = 0; cls < NCLS; cls++)
    if (h->magic[cls] != hak_class_magic[cls]) {
      violation(c, "heap's copy of the class division magic wrong", h, cls, (size_t)h->magic[cls]);
      return;
    }
}

/* Every block on h's delayed list (remote frees handed over for h's full
 * pages, which h's slow path frees without further checks): a carved
 * block start of an in-use page of a segment h owns, with its free marker,
 * on a list no longer than one block per slice of every segment. Blocks
 * listed twice across lists are found per page (check_page). */
static void check_delayed(checker_t *c, hak_heap_t *h) {
  size_t n = 0;
  for (hak_block_t *b = (hak_block_t *)atomic_load(&h->delayed); b; b = block_next(b)) {
    if (!link_readable(b)) {
      violation(c, "delayed free list entry outside the small segments", b, h->id, n);
      return;
    }
    hak_segment_t *seg = ptr_segment_base(b);
    hak_page_t *pg = ptr_page(seg, b);
    if (!pg->in_use || pg->cls >= NCLS || !slice_is_block_start(ptr_slice_entry(seg, b), b)) {
      violation(c, "delayed free list entry not a carved block", b, h->id, n);
      return;
    }
    if (atomic_load(&seg->owner) != h)
      violation(c, "delayed free list entry in a segment its heap does not own", b, h->id, n);
    if (block_marker(b) != block_marker_value(b))
      violation(c, "free block lost its free marker (written after free?)", b, h->id, n);
    if (++n > c->walk_max) {
      violation(c, "delayed free list longer than its bound (or a cycle)", b, h->id, n);
      return;
    }
  }
}

static void check_heap(checker_t *c, hak_heap_t *h) {
  size_t listed = 0, owned = 0;
  check_magic(c, h);
  check_tcache(c, h);
  check_delayed(c, h);
  for (size_t cls = 0; cls < NCLS; cls++) {
    hak_page_t *prev = NULL;
    if (h->direct[cls] == NULL)
      violation(c, "heap class queue pointer is NULL", h, cls, 0);
    for (hak_page_t *pg = queue_first(h, cls); pg; prev = pg, pg = pg->next) {
      if (pg->cls != cls || pg->in_full || !pg->in_use || pg->prev != prev)
        violation(c, "class queue holds a wrong page", pg, cls, pg->cls);
      hak_segment_t *seg = ptr_segment_base(pg);
      if (atomic_load(&seg->owner) != h)
        violation(c, "queued page not owned by heap", pg, h->id, 0);
      listed++;
      if (listed > 1u << 24)
        break;
    }
    if (h->tail[cls] != prev)
      violation(c, "class queue tail wrong", h, cls, 0);
  }
  for (hak_page_t *pg = h->full; pg; pg = pg->next) {
    if (!pg->in_full || !pg->in_use)
      violation(c, "full list holds a wrong page", pg, 0, 0);
    listed++;
    if (listed > 1u << 24)
      break;
  }
  size_t dirty = 0;
  for (hak_segment_t *s = h->segments; s; s = s->next) {
    if (atomic_load(&s->owner) != h)
      violation(c, "heap lists a segment it does not own", s, 0, 0);
    owned += s->used_pages;
    dirty += segment_dirty_free_bytes(s);
  }
  if (listed != owned)
    violation(c, "pages in heap lists != pages in its segments", h, listed, owned);
  if (dirty != h->dirty_free_bytes)
    violation(c, "heap's purge counter differs from its segments' free dirty slices", h,
              h->dirty_free_bytes, dirty);
}

size_t hak_heap_check(void) {
  checker_t c = {0};
  hak_init();
  hak_lock(&hak_global_lock);
  c.walk_max = delayed_walk_max();
  check_index_build(&c);
  check_class_magic(&c);
  check_magic(&c, &hak_empty_heap);
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    if (h->state == HEAP_ACTIVE)
      check_heap(&c, h);
    else if (h->segments || atomic_load(&h->delayed))
      violation(&c, "finished heap still holds segments or delayed frees", h, h->id, 0);
    else
      for (size_t cls = 0; cls < NCLS; cls++)
        if (h->tc_head[cls]) {
          violation(&c, "finished heap still holds cached blocks", h, h->id, cls);
          break;
        }
  }
  for (hak_segment_t *s = hak_segment_cache; s; s = s->next)
    check_segment(&c, s, true);
  for (hak_segment_t *s = hak_all_segments; s; s = s->gnext) {
    const seg_ix_t *ix = c.map ? seg_ix_find(&c, s) : NULL;
    bool cached = ix && (ix->lists & IX_CACHED);
    for (hak_segment_t *q = hak_segment_cache; q && !ix; q = q->next)
      cached |= (q == s);
    if (!cached)
      check_segment(&c, s, false);
  }
  check_index_free(&c);
  hak_unlock(&hak_global_lock);
  hak_lock(&hak_large_lock);
  for (hak_large_t *lg = hak_all_large; lg; lg = lg->gnext) {
    uint8_t *user = (uint8_t *)lg + lg->offset;
    bool registered = registry_large(user) == lg;
    if (((uintptr_t)(lg->huge ? user : (uint8_t *)lg) & SEGMENT_MASK) || lg->magic != LARGE_MAGIC ||
        lg->kind != KIND_LARGE || ((uintptr_t)user & (lg->huge ? lg->alignment - 1 : 15)) ||
        atomic_load(&lg->freed) || lg->offset < sizeof(hak_large_t) ||
        lg->map_size < lg->offset + lg->requested || (lg->map_size & (OS_PAGE_SIZE - 1)))
      violation(&c, "bad large block header", lg, lg->map_size, lg->requested);
    if (!registered)
      violation(&c, "large block missing from the registry", lg, 0, 0);
  }
  const char *what;
  const void *where;
  if (!large_cache_ok(&what, &where))
    violation(&c, what, where, 0, 0);
  hak_unlock(&hak_large_lock);
  return c.violations;
}

void hak_stats(struct hak_stats *out) {
  memset(out, 0, sizeof(*out));
  hak_init();
  for (size_t i = 0; i < NCLS; i++)
    out->classes[i].block_size = class_size(i);
  /* per class: carved blocks, blocks counted used by their pages, and the
   * used ones that are free all the same: on a page's remote stack, handed
   * to a heap (delayed), or in a thread cache */
  size_t capacity[NCLS] = {0}, used[NCLS] = {0}, pending[NCLS] = {0};
  hak_lock(&hak_global_lock);
  track_racy_reads_begin();
  count_delayed(delayed_walk_max(), NULL, pending, NULL, NULL);
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    out->heaps_active += h->state == HEAP_ACTIVE;
    for (size_t cls = 0; cls < NCLS; cls++)
      pending[cls] += tcache_count_for(h, cls, NULL, NULL, NULL);
  }
  for (hak_segment_t *s = hak_all_segments; s; s = s->gnext) {
    out->segments++;
    out->mapped_bytes += SEGMENT_SIZE;
    out->abandoned_segments += s->abandoned;
    for (unsigned i = 1; i < SLICES_PER_SEGMENT; i++) {
      hak_page_t *pg = &s->pages[i];
      size_t cls = pg->cls;
      if (s->slice_head[i] != i || !pg->in_use || cls >= NCLS)
        continue;
      out->classes[cls].pages++;
      capacity[cls] += atomic_load_explicit(&pg->capacity, memory_order_relaxed);
      used[cls] += pg->used;
      pending[cls] += tf_count(atomic_load(&pg->thread_free));
    }
  }
  track_racy_reads_end();
  hak_unlock(&hak_global_lock);
  hak_lock(&hak_large_lock);
  for (hak_large_t *lg = hak_all_large; lg; lg = lg->gnext) {
    out->large_blocks++;
    out->large_bytes += track_usable(large_usable(lg)); /* hak_usable_size's, as below */
    out->mapped_bytes += lg->map_size;
  }
  out->mapped_bytes += large_cache_mapped_locked(); /* freed mappings are mapped too */
  hak_unlock(&hak_large_lock);
  for (size_t cls = 0; cls < NCLS; cls++) {
    /* read while others run, the counts need not agree: clamped */
    size_t live = used[cls] >= pending[cls] ? used[cls] - pending[cls] : 0;
    struct hak_class_stats *cs = &out->classes[cls];
    cs->live_blocks = live;
    cs->free_blocks = capacity[cls] >= live ? capacity[cls] - live : 0;
    out->live_blocks += live;
    out->live_bytes += live * track_usable(cs->block_size);
  }
  out->live_blocks += out->large_blocks;
  out->live_bytes += out->large_bytes;
}

void hak_stats_print(void) {
  struct hak_stats st;
  hak_stats(&st);
  hak_msg_t m = {.len = 0};
  msg_str(&m, "hakmem stats: live blocks ");
  msg_dec(&m, st.live_blocks);
  msg_str(&m, ", live bytes ");
  msg_dec(&m, st.live_bytes);
  msg_str(&m, ", mapped bytes ");
  msg_dec(&m, st.mapped_bytes);
  msg_str(&m, ", segments ");
  msg_dec(&m, st.segments);
  msg_str(&m, " (abandoned ");
  msg_dec(&m, st.abandoned_segments);
  msg_str(&m, "), large blocks ");
  msg_dec(&m, st.large_blocks);
  msg_str(&m, ", heaps ");
  msg_dec(&m, st.heaps_active);
  msg_str(&m, "\n");
  msg_flush(&m);
  for (size_t i = 0; i < NCLS; i++) {
    const struct hak_class_stats *cs = &st.classes[i];
    if (!cs->pages)
      continue;
    msg_str(&m, "  class ");
    msg_dec(&m, cs->block_size);
    msg_str(&m, ": live ");
    msg_dec(&m, cs->live_blocks);
    msg_str(&m, ", free ");
    msg_dec(&m, cs->free_blocks);
    msg_str(&m, ", pages ");
    msg_dec(&m, cs->pages);
    msg_str(&m, "\n");
    msg_flush(&m);
  }
}
