/* Large blocks (above HAK_SMALL_MAX): one mmap each, starting at a 4 MiB
 * aligned address with a header, registered in the global registry; new
 * ranges come from os_map_large, which leaves free address space after
 * each where it can, so blocks and cached mappings grow in place. A freed
 * block's mapping goes to a cache (LARGE_CACHE_N = 32 mappings, at most
 * LARGE_CACHE_BYTES = 256 MiB, each for at most LARGE_CACHE_AGE_MS = 1 s;
 * oldest unmapped first) whose resident pages later large allocations
 * reuse, without mmap/munmap and page faults: a cached mapping of about the
 * right size is handed out whole; the pages past the request of a much
 * bigger one are moved by mremap to a range of their own and stay cached
 * when there are no more of them than the request, else the request's
 * pages are moved out of the cache instead (serves_itself); a request
 * bigger than every cached mapping is assembled from their pages, moved
 * by mremap (page tables move: nothing is copied or faulted in). A
 * cached mapping stays registered with its header marked freed, so a second
 * free of it is still named a double free (and one whose pages were taken
 * is remembered with the recently unmapped blocks).
 * realloc shrinking in place keeps a small tail as room (excess_kept, for
 * mappings the cache would hold) and unmaps a bigger one.
 * realloc grows in place with mremap when the address space after the block
 * is free; otherwise it reserves a new aligned range and moves the pages
 * there with mremap (no copy). A block assembled from moved pages is
 * several kernel mappings, which mremap cannot resize (EFAULT): it grows by
 * mapping the range after it (os_grow), else realloc copies it
 * (os_one_mapping). The cache moves such ranges one kernel mapping at a
 * time (os_move).
 * Blocks aligned to 4 MiB or more ("huge" alignment) cannot have their
 * header at the start of their range: their header is the page below the
 * block and their range is marked REG_HUGE (registry.c).
 * Header changes happen under hak_large_lock, so a fork() child never sees
 * a half-freed or half-resized block. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"
#include "trace.h"

#define RECENT 64
#define SPLIT_MIN ((size_t)256 << 10) /* a smaller excess stays with the block */

hak_large_t *hak_all_large; /* guarded by hak_large_lock */
pthread_mutex_t hak_large_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uintptr_t recent_frees[RECENT]; /* to name a second free of a large block */
static _Atomic unsigned recent_next;

static hak_large_t *large_cache[LARGE_CACHE_N]; /* oldest first; guarded by hak_large_lock */
static uint64_t large_cache_at[LARGE_CACHE_N];  /* when each went in (os_now_ms) */
static unsigned large_cache_n;
static size_t large_cache_bytes;

/* Remembers `p`, a large block whose mapping is gone, so that a second
 * free of it is named a double free. */
static void note_gone(const void *p) {
  unsigned slot = atomic_fetch_add_explicit(&recent_next, 1, memory_order_relaxed) % RECENT;
  atomic_store_explicit(&recent_frees[slot], (uintptr_t)p, memory_order_relaxed);
}

/* Takes cached mapping `lg` out of the registry before its range is given
 * up (or a segment mapped there meanwhile could lose its bit). A piece cut
 * from a mapping (requested 0) never was a block. */
static void cache_forget_locked(hak_large_t *lg) {
  registry_set(lg, REG_NONE);
  if (lg->requested)
    note_gone((uint8_t *)lg + lg->offset);
  track_unmapping(lg, lg->map_size);
}

/* A new header for the mapping of `map` bytes at lg: live, not huge,
 * 4 MiB-aligned (the callers change what differs). */
static void header_init(hak_large_t *lg, size_t map, size_t offset, size_t requested) {
  lg->magic = LARGE_MAGIC;
  lg->kind = KIND_LARGE;
  atomic_store_explicit(&lg->freed, 0, memory_order_relaxed);
  lg->huge = 0;
  lg->pieces = 1;
  lg->map_size = map;
  lg->offset = offset;
  lg->alignment = SEGMENT_SIZE;
  lg->requested = requested;
  lg->gnext = lg->gprev = NULL;
}

/* A count of kernel mappings, kept as an upper bound (hak_large_t.pieces):
 * the kernel never merges pages moved by mremap with their new neighbours,
 * so a block assembled from cached pages is as many mappings as moves made
 * it, and a freed one taken apart by the next assembly only more. Freed
 * blocks of more than LARGE_PIECES_MAX are unmapped, not cached (large_free),
 * so the cache holds at most LARGE_CACHE_N * LARGE_PIECES_MAX mappings.
 * Cached whatever their count, 20 blocks of 0.1-3 MiB allocated and freed
 * round after round made 2747 kernel mappings after 1000 rounds, about 9500
 * after 10000, bounded only by the cache's pages (256 MiB: 65536, past
 * vm.max_map_count), each move a bisection of mremap calls per mapping;
 * bench_large over 200000 cycles: 17-26K ops/s, now 44K (at 16, 10K: pages
 * unmapped and faulted in again; 500 cycles, as make bench runs it: the
 * same; test_large_pieces). */
static uint16_t pieces_clamp(size_t n) {
  return n < 1 ? 1 : n > UINT16_MAX ? UINT16_MAX : (uint16_t)n;
}

/* What a range of `had` mappings is at most after `gave` of them moved off
 * its end: the rest, and the one a move may have cut in two. */
static uint16_t pieces_left(uint16_t had, size_t gave) {
  return pieces_clamp(had + 1 - (gave < had ? gave : had));
}

static void cache_insert_locked(unsigned i, hak_large_t *lg, uint64_t at) {
  for (unsigned j = large_cache_n; j > i; j--) {
    large_cache[j] = large_cache[j - 1];
    large_cache_at[j] = large_cache_at[j - 1];
  }
  large_cache[i] = lg;
  large_cache_at[i] = at;
  large_cache_n++;
  large_cache_bytes += lg->map_size;
}

static void cache_remove_locked(unsigned i) {
  hak_large_t *lg = large_cache[i];
  for (unsigned j = i; j + 1 < large_cache_n; j++) {
    large_cache[j] = large_cache[j + 1];
    large_cache_at[j] = large_cache_at[j + 1];
  }
  large_cache_n--;
  large_cache_bytes -= lg->map_size;
}

/* Unmaps [p, p + n) except the `lost` bytes at `hole` (os_move: maybe no
 * longer ours). */
static void unmap_around(uint8_t *p, size_t n, uint8_t *hole, size_t lost) {
  if (!lost) {
    os_munmap(p, n);
    return;
  }
  if (hole > p)
    os_munmap(p, (size_t)(hole - p));
  if (hole + lost < p + n)
    os_munmap(hole + lost, (size_t)(p + n - (hole + lost)));
}

/* Cuts cached mapping `lg`, just taken from slot `i` (cached at `at`),
 * down to `map` bytes. Its pages past `map` are resident: rather than unmap
 * them (the next allocation would fault them in again), mremap moves them
 * to a 4 MiB-aligned range of their own, which goes back into slot i with
 * lg's age (if a move fails, the excess is unmapped instead). */
static void cache_split_locked(hak_large_t *lg, size_t map, unsigned i, uint64_t at) {
  uint8_t *tail = (uint8_t *)lg + map;
  size_t len = lg->map_size - map;
  lg->map_size = map;
  track_unmapping(tail, len);
  hak_large_t *t = os_moves() ? os_map_large(len) : NULL;
  size_t lost = 0, m = 0; /* m: the tail's mappings */
  size_t moved = t ? os_move(tail, len, t, &lost, &m) : 0;
  lg->pieces = pieces_left(lg->pieces, m);
  if (moved < len) {
    os_munmap(tail + moved, len - moved); /* not moved: still ours */
    if (t)
      unmap_around((uint8_t *)t, len, (uint8_t *)t + moved, lost);
    return;
  }
  header_init(t, len, LARGE_HDR, 0);
  t->pieces = pieces_clamp(m);
  atomic_store_explicit(&t->freed, 1, memory_order_relaxed);
  registry_set(t, REG_LARGE);
  cache_insert_locked(i, t, at);
}

/* Fills [dst, dst + len), mapped but never touched, with the resident pages
 * of cached mappings, biggest first, moved there by mremap (the range is
 * then several kernel mappings). A mapping bigger than what is left gives
 * its last pages and stays cached. *filled: how many bytes from dst on may
 * hold old data (the rest is still the range's untouched zero pages; all
 * of it after a failed move, which may leave its token behind). Returns
 * the length of a part of the range that may no longer be ours (os_move's
 * `lost`, at *hole): the range must then be given up around it; else 0.
 * *maps: how many kernel mappings were moved into the range. */
static size_t cache_gather_locked(uint8_t *dst, size_t len, uint8_t **hole, size_t *filled,
                                  size_t *maps) {
  *filled = 0;
  *maps = 0;
  if (!os_moves())
    return 0; /* it would only unmap what it cannot move */
  while (len && large_cache_n) {
    unsigned big = 0;
    for (unsigned i = 1; i < large_cache_n; i++)
      if (large_cache[i]->map_size > large_cache[big]->map_size)
        big = i;
    hak_large_t *c = large_cache[big];
    size_t n = c->map_size <= len ? c->map_size : len;
    uint8_t *src = (uint8_t *)c + c->map_size - n;
    bool whole = n == c->map_size;
    if (whole) {
      cache_remove_locked(big);
      cache_forget_locked(c);
    } else {
      c->map_size -= n;
      large_cache_bytes -= n;
      track_unmapping(src, n);
    }
    size_t lost, m;
    size_t k = os_move(src, n, dst, &lost, &m);
    *maps += m;
    if (!whole) /* c stays cached: it lost the mappings it gave, but one */
      c->pieces = pieces_left(c->pieces, m);
    if (k < n) {
      os_munmap(src + k, n - k); /* not moved: still ours (its shadow is cleared above) */
      *hole = dst + k;
      *filled += len; /* dst + k may hold the failed move's token */
      return lost;
    }
    dst += n;
    len -= n;
    *filled += n;
  }
  return 0;
}

/* Whether a freed block's mapping goes into the cache: not a huge-aligned
 * one, and at most an eighth of the cache. */
static bool cacheable(const hak_large_t *lg) {
  return !lg->huge && lg->map_size <= LARGE_CACHE_BYTES / 8;
}

/* Whether a mapping of `map` bytes serving a block of `need` stays whole:
 * an excess of at most half the block, or under SPLIT_MIN, is kept as room
 * for realloc to grow into (its pages are resident already); a bigger one
 * would be resident memory nobody uses. Taking from the cache and realloc
 * shrinking in place both follow it. */
static bool excess_kept(size_t map, size_t need) {
  return map - need <= need / 2 || map - need < SPLIT_MIN;
}

/* Whether the smallest cached mapping of `m` bytes that holds a block of
 * `map` serves it itself: whole, or cut when the excess moved away is no
 * bigger than the block. A bigger excess stays where it is: the block is
 * assembled below from pages moved out of the cache (the biggest
 * mapping's last pages first), so a move never carries more pages than
 * the block needs. (python/records: a 160 KiB list took the 4.5 MiB
 * mapping of the last round's joined text and moved 4.3 MiB away; over
 * 12 rounds 35.9 MB moved by mremap, now 14.8 MB.) Without moves
 * (os_moves) a cut unmaps the excess instead. */
static bool serves_itself(size_t m, size_t map) {
  return m - map <= map || excess_kept(m, map) || !os_moves();
}

/* Takes cached mapping `i` for a block of `map` bytes: whole if it is at
 * most 1.5 times as big or the excess is under SPLIT_MIN (its pages are
 * resident already, and realloc can grow into them), else cut
 * (cache_split_locked): a block's excess would be resident memory nobody
 * uses, and moving it costs less than faulting pages in later. */
static hak_large_t *cache_take_whole_or_cut_locked(unsigned i, size_t map) {
  hak_large_t *lg = large_cache[i];
  uint64_t at = large_cache_at[i];
  cache_remove_locked(i);
  if (!excess_kept(lg->map_size, map))
    cache_split_locked(lg, map, i, at);
  return lg;
}

/* How many bytes taking a cached mapping of `m` bytes (serves_itself) for
 * a block of `map` moves: none whole, else the excess or the block, the
 * smaller (cache_take_whole_or_cut_locked, cache_gather_locked). */
static size_t take_moves(size_t m, size_t map) {
  return excess_kept(m, map) ? 0 : m - map < map ? m - map : map;
}

/* A cached mapping for a block of `map` bytes:
 *  - the smallest one at least that big, if serves_itself (whole or cut),
 *    unless growing the largest smaller one (next) moves fewer pages:
 *    only the difference moves (bench_large: 69 -> 57 MB moved over 500
 *    cycles, 1458 -> 1529 ops/s);
 *  - else the largest smaller one, if it can grow in place (os_grow),
 *    the added range filled from the other cached mappings;
 *  - else the smallest one at least that big, if serves_itself;
 *  - else, if the cache holds `map` bytes, a new range filled from them;
 *    if no new range can be reserved (an address-space limit), the
 *    smallest one at least that big after all, cut (its excess needs room
 *    only for itself, and is unmapped if it has none).
 * NULL if none serves: the block gets new pages. *dirty: how many bytes
 * from the mapping's start may hold old data (calloc clears only those:
 * the rest are zero pages nobody touched, which a memset would commit). */
static hak_large_t *cache_take_locked(size_t map, size_t *dirty) {
  *dirty = map;
  unsigned best = LARGE_CACHE_N, below = LARGE_CACHE_N;
  for (unsigned i = 0; i < large_cache_n; i++) {
    size_t m = large_cache[i]->map_size;
    if (m >= map && (best == LARGE_CACHE_N || m < large_cache[best]->map_size))
      best = i;
    if (m < map && (below == LARGE_CACHE_N || m > large_cache[below]->map_size))
      below = i;
  }
  bool fits = best != LARGE_CACHE_N && serves_itself(large_cache[best]->map_size, map);
  bool grow_first =
      fits && below != LARGE_CACHE_N &&
      map - large_cache[below]->map_size < take_moves(large_cache[best]->map_size, map);
  if (fits && !grow_first)
    return cache_take_whole_or_cut_locked(best, map);
  if (below != LARGE_CACHE_N) {
    hak_large_t *lg = large_cache[below];
    size_t had = lg->map_size;
    bool one;
    if (os_grow(lg, had, map, &one)) {
      cache_remove_locked(below);
      lg->map_size = map;
      uint8_t *hole = NULL;
      size_t filled, maps;
      size_t lost = cache_gather_locked((uint8_t *)lg + had, map - had, &hole, &filled, &maps);
      if (!lost) {
        *dirty = had + filled; /* os_grow's new part: one mapping more (or the range is
                                * one), split by the moves into it, its rest one more */
        lg->pieces = pieces_clamp((one ? 1 : lg->pieces) + 1 + maps);
        return lg;
      }
      cache_forget_locked(lg); /* a range with a hole: given up */
      unmap_around((uint8_t *)lg, map, hole, lost);
      return NULL;
    }
  }
  if (fits)
    return cache_take_whole_or_cut_locked(best, map);
  if (large_cache_bytes < map || !os_moves())
    return NULL;
  hak_large_t *lg = os_map_large(map);
  if (!lg) /* the cache is as it was: `best`, if any, is still there */
    return best != LARGE_CACHE_N ? cache_take_whole_or_cut_locked(best, map) : NULL;
  os_advise_huge(lg, map); /* HAKMEM_THP, for the pages no move fills */
  uint8_t *hole = NULL;
  size_t filled, maps;
  size_t lost = cache_gather_locked((uint8_t *)lg, map, &hole, &filled, &maps);
  if (lost) {
    unmap_around((uint8_t *)lg, map, hole, lost);
    return NULL;
  }
  *dirty = filled;
  header_init(lg, map, LARGE_HDR, 0);
  lg->pieces = pieces_clamp(1 + maps);
  registry_set(lg, REG_LARGE);
  return lg;
}

/* Unregisters and unmaps the oldest cached mapping (lock held; the unmap
 * happens under it so no one can reach the range through the registry). */
static void cache_evict_oldest_locked(void) {
  hak_large_t *lg = large_cache[0];
  cache_remove_locked(0);
  cache_forget_locked(lg);
  size_t n = lg->map_size; /* the header goes with the mapping */
  os_munmap(lg, n);
  hak_tls_given_back += n;
}

/* Unmaps the cached mappings that have waited longer than
 * LARGE_CACHE_AGE_MS (the cache is oldest first). Run on every large
 * allocation, realloc and free, cacheable or not: a program that stops
 * using large blocks keeps its cache (up to LARGE_CACHE_BYTES) only until
 * its next large call (before: only calls that could use the cache aged
 * it, and 64 MiB stayed mapped past frees of bigger or huge-aligned
 * blocks). */
static void cache_age_locked(void) {
  uint64_t now = large_cache_n ? os_now_ms() : 0;
  while (large_cache_n && now - large_cache_at[0] > LARGE_CACHE_AGE_MS)
    cache_evict_oldest_locked();
}

/* Unmaps every cached mapping, whatever its age (hak_trim; a new large
 * range or a segment that could not be mapped: an address-space limit).
 * Returns whether there was any. Takes the large lock: not with it held. */
bool large_cache_drop(void) {
  hak_lock(&hak_large_lock);
  bool any = large_cache_n != 0;
  while (large_cache_n)
    cache_evict_oldest_locked();
  hak_unlock(&hak_large_lock);
  return any;
}

/* A new range of `map` bytes the kernel refused (an address-space limit,
 * RLIMIT_AS): the large cache's mappings and the cached empty segments give
 * their address space back. Whether there was any. Not for a range no
 * address space holds (OS_MAP_MAX): until 2026-11-28 a malloc of 2^47
 * bytes or more, which can only fail, emptied both caches first, and the
 * program's next blocks paid for new mappings (test_large_as_limit,
 * impossible). */
static bool make_room(size_t map) {
  if (map > OS_MAP_MAX)
    return false;
  bool large = large_cache_drop();
  return segment_cache_drop() || large;
}

static size_t round_page(size_t n) {
  return (n + OS_PAGE_SIZE - 1) & ~(OS_PAGE_SIZE - 1);
}

static void list_add_locked(hak_large_t *lg) {
  lg->gprev = NULL;
  lg->gnext = hak_all_large;
  if (hak_all_large)
    hak_all_large->gprev = lg;
  hak_all_large = lg;
}

static void list_unlink_locked(hak_large_t *lg) {
  if (lg->gprev)
    lg->gprev->gnext = lg->gnext;
  else
    hak_all_large = lg->gnext;
  if (lg->gnext)
    lg->gnext->gprev = lg->gprev;
}

/* An aligned block starts `offset` bytes into its range (a page for a huge
 * one), after its LARGE_HDR-byte header: the bytes between are no block's,
 * no access (asan, valgrind) like a page's never-used memory. Until
 * 2026-11-28 they were left addressable (a write before the block went
 * unreported) unless a block there had poisoned them when it was freed. */
static void track_padding(hak_large_t *lg) {
  if (lg->offset > LARGE_HDR)
    track_noaccess((uint8_t *)lg + LARGE_HDR, lg->offset - LARGE_HDR);
}

/* `alignment` is a power of two >= 16. Returns NULL on failure (errno set). */
void *large_alloc(size_t size, size_t alignment, bool zero) {
  /* the bytes asked for: only those are addressable (asan, valgrind), the
   * rest slack, as for a small block of 0..15 bytes; until 2026-11-28 a
   * write past aligned_alloc(256 KiB, 1) went unreported in both */
  size_t req = size;
  if (size < 16)
    size = 16; /* like malloc(0): a real, unique, usable block (aligned_alloc(1 MiB, 0)) */
  bool huge = alignment >= SEGMENT_SIZE;
  size_t off = huge ? OS_PAGE_SIZE : (alignment > LARGE_OFFSET ? alignment : LARGE_OFFSET);
  if (size > (size_t)PTRDIFF_MAX - off - OS_PAGE_SIZE - TRACK_REDZONE ||
      alignment > ((size_t)1 << 40)) {
    errno = ENOMEM;
    return NULL;
  }
  /* the block: the request and its redzone (without redzones `size = (size)`) */
  /* cppcheck-suppress selfAssignment */
  size = track_need(size);
  size_t map = round_page(off + size);
  size_t map_align = huge ? alignment : SEGMENT_SIZE;
  if (!huge) {
    hak_lock(&hak_large_lock);
    cache_age_locked();
    int saved = errno; /* the cache's mmap, munmap and mremap calls may fail harmlessly */
    size_t dirty;
    hak_large_t *lg = cache_take_locked(map, &dirty);
    errno = saved;
    if (lg) {
      /* still registered; its header is reset under the lock */
      atomic_store_explicit(&lg->freed, 0, memory_order_relaxed);
      lg->offset = off;
      lg->requested = size;
      list_add_locked(lg);
      void *p = (uint8_t *)lg + off;
      size_t usable = large_usable(lg);
      /* The excess kept as room: no access, like realloc's kept tail (a
       * mapping cut off another was never poisoned). Poisoned before the
       * lock is let go: hak_trim (large_trim) unmaps a live block's tail,
       * clearing its shadow first, only under this lock, and sees lg only
       * from list_add_locked on, so its unmap comes after this poison and
       * clears it. Poisoned after the unlock (until 2026-11-28), a trim in
       * between left the poison on address space hakmem no longer held,
       * which the mapping later grows back into (os_grow): ASan named
       * hakmem's own write of a move's token there a use-after-poison
       * (test_trim_large_poison). */
      if (lg->map_size > off + usable)
        track_noaccess((uint8_t *)p + usable, lg->map_size - off - usable);
      hak_unlock(&hak_large_lock);
      track_alloc(p, req, usable, zero);
      track_padding(lg);
      track_roots_add(p, usable);
      if (zero && dirty > off) /* past `dirty`: zero pages, untouched (calloc of 1 GiB after a
                                * 1 MiB block was freed committed all of it) */
        memset(p, 0, req < dirty - off ? req : dirty - off);
      return p;
    }
    hak_unlock(&hak_large_lock);
  }
  hak_large_t *lg = huge ? os_map_aligned(map, map_align, off) : os_map_large(map);
  if (!lg && make_room(map)) /* an address-space limit (RLIMIT_AS): the caches' ranges held
                              * what the block needs (before: ENOMEM with them mapped) */
    lg = huge ? os_map_aligned(map, map_align, off) : os_map_large(map);
  if (!lg) {
    errno = ENOMEM;
    return NULL;
  }
  os_advise_huge(lg, map); /* HAKMEM_THP */
  header_init(lg, map, off, size);
  lg->huge = huge;
  lg->alignment = map_align;
  void *p = (uint8_t *)lg + off;
  hak_lock(&hak_large_lock);
  if (huge) /* the others aged it above */
    cache_age_locked();
  list_add_locked(lg);
  if (huge)
    registry_set(p, REG_HUGE);
  else
    registry_set(lg, REG_LARGE);
  hak_unlock(&hak_large_lock);
  /* fresh mmap memory is zero already (no memset), but only calloc's bytes
   * are defined to memcheck: a malloc'd block's are not (before
   * 2026-11-28 they were, and a read of never-written bytes went unreported) */
  track_alloc(p, req, map - off, zero);
  track_padding(lg);
  track_roots_add(p, large_usable(lg));
  return p;
}

/* The request rounded up to whole pages, not the whole mapping: a block
 * served from a bigger cached mapping (up to 1.5 times its size, or 256 KiB
 * more), grown in place or shrunk in place by a small excess keeps the rest
 * as hidden room for realloc, so its usable size does not depend on what the
 * cache happened to hold or on what the kernel had mapped after it (the
 * fuzzers' replays require the same usable sizes). */
size_t large_usable(const hak_large_t *lg) {
  return round_page(lg->offset + lg->requested) - lg->offset;
}

bool large_recently_freed(const void *p) {
  for (unsigned i = 0; i < RECENT; i++)
    if (atomic_load_explicit(&recent_frees[i], memory_order_relaxed) == (uintptr_t)p)
      return true;
  return false;
}

/* The error path's hold of a lock (err_lock_wait: the large lock here,
 * the global lock for a small segment in err_invalid): tried for
 * LARGE_HOLDS_WAIT_MS at most, since the error path must not deadlock on
 * it (this thread may be the holder), but another thread holds it only for
 * a moment (before: one trylock, and a deep interior pointer freed while
 * another thread held the large lock was called "not allocated by
 * hakmem"). 1: taken (err_unlock_held lets it go); 0: in the fork window,
 * where the forking thread holds it already (an atfork handler's bad
 * free) and reads as hak_lock lets it; -1: not had in time. */
#define LARGE_HOLDS_WAIT_MS 100
int err_lock_wait(pthread_mutex_t *m) {
  if (hak_fork_window_owner())
    return 0;
  uint64_t until = 0;
  while (pthread_mutex_trylock(m) != 0) {
    uint64_t now = os_real_ms(); /* a wait: not the timers' clock, which tests may stop */
    if (!until)
      until = now + LARGE_HOLDS_WAIT_MS;
    else if (now >= until)
      return -1;
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
  }
  return 1;
}

void err_unlock_held(pthread_mutex_t *m, int locked) {
  if (locked > 0)
    pthread_mutex_unlock(m);
}

static int err_lock(void) {
  return err_lock_wait(&hak_large_lock);
}

static void err_unlock(int locked) {
  err_unlock_held(&hak_large_lock, locked);
}

/* err_invalid: whether p lies in a large block's or cached mapping's range
 * past the 4 MiB range its header starts (the registry marks only that
 * one). False if the lock was not had in time. */
bool large_holds(const void *p) {
  int locked = err_lock();
  if (locked < 0)
    return false;
  bool in = false;
  for (const hak_large_t *lg = hak_all_large; lg && !in; lg = lg->gnext)
    in = (uintptr_t)p - (uintptr_t)lg < lg->map_size;
  for (unsigned i = 0; i < large_cache_n && !in; i++)
    in = (uintptr_t)p - (uintptr_t)large_cache[i] < large_cache[i]->map_size;
  err_unlock(locked);
  return in;
}

/* err_invalid: where p lies, the registry having named its range a large
 * block's (LARGE_PLACE_*). The header is read under the lock, once the
 * registry still names it there: a range is unregistered under the lock
 * before it is unmapped (named_locked). Until 2026-11-28 err_invalid read
 * the header's size, offset and freed mark without the lock: a bad pointer
 * into a large block (an interior one: large_free and large_resolve let
 * the lock go before they call err_invalid) named while another thread
 * freed the block, unmapping it, read unmapped memory (SIGSEGV, no report;
 * test_large_double_free_race, interior_*, hook HAK_HOOK_ERR_LARGE). */
unsigned large_place(const void *p) {
  int locked = err_lock();
  if (locked < 0)
    return LARGE_PLACE_UNKNOWN;
  const hak_large_t *lg = registry_large(p);
  HAK_TEST_HOOK(HAK_HOOK_ERR_LARGE_LOCKED, (void *)p);
  const uint8_t *b = (const uint8_t *)lg, *q = (const uint8_t *)p;
  unsigned place = !lg                                              ? LARGE_PLACE_GONE
                   : q < b || q >= b + lg->map_size                 ? LARGE_PLACE_OUTSIDE
                   : q == b + lg->offset && atomic_load(&lg->freed) ? LARGE_PLACE_FREED
                                                                    : LARGE_PLACE_INSIDE;
  err_unlock(locked);
  return place;
}

/* Large lock held: whether the registry still names lg as p's block (p its
 * start). The callers found lg through the registry without the lock;
 * another thread's free of the same block (a program's race) may have
 * unregistered and unmapped it since. A range is unregistered under the
 * lock before it is unmapped, so a header the registry names under the
 * lock is mapped until the unlock: only then is it read. Until 2026-11-28
 * large_free and large_realloc read it before the lock without asking the
 * registry again: a free or realloc racing another free read unmapped
 * memory (SIGSEGV, no report; test_large_double_free_race). */
static bool named_locked(const hak_large_t *lg, const void *p) {
  return registry_large(p) == lg && (const uint8_t *)p == (const uint8_t *)lg + lg->offset;
}

/* Large lock held: returns if p is still the live block lg, else lets the
 * lock go and aborts (the error names a double free: err_invalid finds the
 * unmapped block among the recently freed, note_gone, before that free's
 * unlock). */
static inline __attribute__((always_inline)) void check_live_locked(const hak_large_t *lg, void *p,
                                                                    const char *op) {
  bool named = named_locked(lg, p);
  if (likely(named && !atomic_load_explicit(&lg->freed, memory_order_relaxed)))
    return;
  hak_unlock(&hak_large_lock);
  if (named) /* cached meanwhile */
    err_double_free(op, p, 0);
  err_invalid(op, p);
}

/* resolve()'s large branch: the header of the live large block starting
 * at p (else a named error), and its usable size, read under the lock
 * where the registry still names it. Until 2026-11-28 resolve read the
 * header's offset and freed mark without the lock: a realloc,
 * malloc_usable_size or free_sized racing another thread's free of the
 * block read unmapped memory (SIGSEGV, no report;
 * test_large_double_free_race, HAK_HOOK_LARGE_RESOLVING). */
hak_large_t *large_resolve(void *p, const char *op, size_t *usable) {
  hak_large_t *lg = registry_large(p);
  if (!lg)
    err_invalid(op, p);
  HAK_TEST_HOOK(HAK_HOOK_LARGE_RESOLVING, p);
  hak_lock(&hak_large_lock);
  check_live_locked(lg, p, op);
  *usable = track_usable(large_usable(lg));
  hak_unlock(&hak_large_lock);
  return lg;
}

/* large_free and large_free_sized, the large lock held, lg marked freed
 * (the live block p starts, checked under this hold of the lock): caches
 * or unmaps it, and lets the lock go. Inlined: as a call of its own it
 * cost large_free 13 instructions more (callgrind). */
static inline __attribute__((always_inline)) void free_marked_locked(hak_large_t *lg, void *p) {
  list_unlink_locked(lg);
  cache_age_locked(); /* every large free (before: cacheable ones only) */
  if (cacheable(lg) && lg->pieces <= LARGE_PIECES_MAX) { /* pieces_clamp */
    while (large_cache_n == LARGE_CACHE_N || large_cache_bytes + lg->map_size > LARGE_CACHE_BYTES)
      cache_evict_oldest_locked();
    track_roots_del(p, large_usable(lg));
    track_free(p, large_usable(lg));
    large_cache_at[large_cache_n] = os_now_ms();
    large_cache[large_cache_n++] = lg;
    large_cache_bytes += lg->map_size;
    hak_unlock(&hak_large_lock);
    return;
  }
  if (lg->huge)
    registry_set(p, REG_NONE);
  else
    registry_set(lg, REG_NONE);
  HAK_TEST_HOOK(HAK_HOOK_LARGE_UNREGISTERED, p);
  note_gone(p); /* before the unlock: a racing second free then finds it (err_invalid) */
  hak_unlock(&hak_large_lock);
  HAK_TEST_HOOK(HAK_HOOK_LARGE_GONE, p);
  track_roots_del(p, large_usable(lg));
  track_free(p, large_usable(lg));
  os_unmap(lg, lg->map_size);
}

/* The liveness check is check_live_locked's, as for every other large
 * call: the freed mark is read, then set, under the lock, which every
 * write of it holds. Until 2026-11-29 large_free checked in a way of its
 * own (the registry, then an atomic exchange of the mark): the same errors
 * in the same order, and as many instructions (callgrind: 199 per free of
 * a cached 1 MiB block, now 200), one of them a locked exchange. */
void large_free(hak_large_t *lg, void *p, const char *op) {
  HAK_TEST_HOOK(HAK_HOOK_LARGE_LOCKING, p);
  hak_lock(&hak_large_lock);
  check_live_locked(lg, p, op);
  atomic_store_explicit(&lg->freed, 1, memory_order_release); /* live: checked above */
  free_marked_locked(lg, p);
}

/* free_sized and free_aligned_sized of a pointer whose range is not a
 * small segment's (a large block's, or no block: err_invalid names it):
 * large_resolve's checks, then the size's and the alignment's,
 * then large_free's, under one hold of the large lock. Until 2026-11-28
 * free_sized resolved the block (lock, checks, unlock) and then freed it
 * through free (the registry read again, the lock again): malloc(256 KiB)
 * + free_sized cost 656 instructions, now 496; with free 468 (callgrind). */
void large_free_sized(void *p, size_t size, size_t alignment) {
  hak_large_t *lg = registry_large(p);
  if (!lg)
    err_invalid("free_sized", p);
  HAK_TEST_HOOK(HAK_HOOK_LARGE_RESOLVING, p);
  hak_lock(&hak_large_lock);
  check_live_locked(lg, p, "free_sized");
  if (unlikely(size > track_usable(large_usable(lg)))) {
    hak_unlock(&hak_large_lock);
    err_size_mismatch("free_sized", p, size, 0);
  }
  if (unlikely(misaligned(p, alignment))) {
    hak_unlock(&hak_large_lock);
    err_align_mismatch("free_sized", p, alignment, 0);
  }
  atomic_store_explicit(&lg->freed, 1, memory_order_release); /* live: checked above */
  free_marked_locked(lg, p);
}

/* realloc of p, whose range is not a small segment's (a large block's,
 * or no block: err_invalid names it), to `size`: large_resolve's checks
 * and the work under one hold of the large lock, where the work allows:
 *  - size 0: p freed (unless `caller_frees`), NULL returned;
 *  - 1..HAK_SMALL_MAX: `small`, a block of that size the caller allocated
 *    first, gets p's first bytes (at most HAK_SMALL_MAX, copied under the
 *    lock) and is returned, p freed (unless `caller_frees`);
 *  - bigger: resized in place (shrunk, grown by mremap or os_extend), p
 *    returned; else moved by mremap to a range mapped after the unlock (a
 *    second hold: large_alloc maps outside the lock too, and make_room
 *    takes it), the new address returned; NULL with errno ENOMEM when
 *    neither can be done (p untouched).
 * `caller_frees`: the caller frees p (the trace build, after realloc's
 * record). LARGE_MOVE_BY_COPY asks the caller to allocate, copy and free
 * (or, for size 0 and `caller_frees`, to free): a huge-aligned block, one
 * of several kernel mappings, the trace build's move, and in the valgrind
 * build every realloc but those to a small size or 0. *lgp and *usable then say p's header and
 * usable size, checked under the hold just let go. Until 2026-11-29
 * realloc resolved p (lock, checks, unlock) before any of this took the
 * lock again (callgrind, per realloc of a 1 MiB block: in place 337 -> 246
 * instructions, to a small size 551 -> 464, to 0 394 -> 317, a move by
 * mremap 781 -> 690). */
void *large_realloc(void *p, size_t size, void *small, bool caller_frees, hak_large_t **lgp,
                    size_t *usable) {
  hak_large_t *lg = registry_large(p);
  if (!lg)
    err_invalid("realloc", p);
  HAK_TEST_HOOK(HAK_HOOK_LARGE_LOCKING, p);
  hak_lock(&hak_large_lock);
  /* before, a block another thread had freed meanwhile (cached) was grown
   * or moved and handed out, and the cache still held it */
  check_live_locked(lg, p, "realloc");
  *lgp = lg;
  *usable = track_usable(large_usable(lg));
  if (small || !size) {
    if (small) { /* the requested bytes, as realloc_move copies them */
      size_t req = track_requested(p, *usable);
      track_copy(small, p, req < size ? req : size, req);
    }
    if (caller_frees) {
      hak_unlock(&hak_large_lock);
      return small ? small : LARGE_MOVE_BY_COPY;
    }
    atomic_store_explicit(&lg->freed, 1, memory_order_release); /* live: checked above */
    free_marked_locked(lg, p);
    return small;
  }
  size_t off = lg->offset;
  if (size > (size_t)PTRDIFF_MAX - off - OS_PAGE_SIZE - TRACK_REDZONE) {
    hak_unlock(&hak_large_lock);
    errno = ENOMEM;
    return NULL;
  }
  if (!TRACK_REALLOC_IN_PLACE) {
    hak_unlock(&hak_large_lock);
    return LARGE_MOVE_BY_COPY;
  }
  size_t need = round_page(off + track_need(size));
  cache_age_locked();
  size_t map = lg->map_size, old_req = lg->requested, keep = need;
  size_t old_usable = *usable + TRACK_REDZONE; /* the LSan root region registered: the block */
  bool in_place = need <= map, one = false;
  if (need < map && cacheable(lg) && excess_kept(map, need))
    /* the tail stays as room (python grows a list it got from a bigger
     * cached mapping by small steps: unmapping the tail made every round
     * unmap 96 KiB and fault it back in through 7 mremaps); only for a
     * mapping the cache would keep, so at most 16 MiB stays unused */
    keep = map;
  else if (need < map) /* shrink in place, giving the tail back (os_unmap
                        * clears its shadow: room past the usable size may
                        * be poisoned) */
    os_unmap((uint8_t *)lg + need, map - need);
  else if (need > map) /* grow in place if the address space after is free */
    in_place = os_grow(lg, map, need, &one);
  if (in_place) {
    if (need > map) /* grown by mremap: one mapping in all; else os_extend's one more */
      lg->pieces = one ? 1 : pieces_clamp(lg->pieces + 1);
    lg->map_size = keep;
    lg->requested = track_need(size);
    if (keep > need) /* a kept tail was part of the block: no access now; under the
                      * lock, so that a hak_trim unmapping it comes after (large_alloc) */
      track_noaccess((uint8_t *)lg + need, keep - need);
    hak_unlock(&hak_large_lock);
    track_resize(p, old_req, size, need - off);
    track_roots_del(p, old_usable);
    track_roots_add(p, large_usable(lg));
    return p;
  }
  hak_unlock(&hak_large_lock);
  /* the trace build never lets mremap move a block: the old address would
   * be released before realloc's record is written (trace.h) */
  /* mremap moves and resizes one kernel mapping: a block of several (or one
   * the program split, by madvise or mprotect on part of it) is copied */
  if (lg->huge || HAK_TRACE_ON || !os_one_mapping(lg, map))
    return LARGE_MOVE_BY_COPY;
  hak_large_t *dst = os_map_large(need);
  if (!dst && make_room(need)) /* as in large_alloc (before: ENOMEM with the caches mapped) */
    dst = os_map_large(need);
  if (!dst) {
    errno = ENOMEM;
    return NULL;
  }
  HAK_TEST_HOOK(HAK_HOOK_LARGE_LOCKING, p);
  hak_lock(&hak_large_lock);
  /* freed by another thread since the unlock (a program's race) */
  check_live_locked(lg, p, "realloc");
  map = lg->map_size; /* hak_trim may have given a kept tail back since */
  /* the old range goes back to the kernel inside mremap: unregister first,
   * or a segment mapped there meanwhile could lose its bit */
  registry_set(lg, REG_NONE);
  HAK_TEST_HOOK(HAK_HOOK_LARGE_UNREGISTERED, p);
  /* the block's addressable bytes, read before the move clears its shadow:
   * a failed move restores them, not the request (asan). The slack
   * usable_size had exposed was poisoned again until 2026-11-28, and the
   * program's write there, allowed, reported a use-after-poison. */
  size_t old_end = track_requested(p, old_usable);
  track_unmapping(lg, map);
  bool kept;
  if (!os_move_mapping(lg, map, need, dst, &kept)) {
    registry_set(lg, REG_LARGE);
    if (map > off + large_usable(lg)) /* a kept tail: no access again (its shadow was
                                       * cleared with the range's for the move); under
                                       * the lock, as in large_alloc */
      track_noaccess((uint8_t *)p + large_usable(lg), map - off - large_usable(lg));
    hak_unlock(&hak_large_lock);
    track_padding(lg);
    track_alloc(p, old_end, large_usable(lg), 0);
    if (kept) /* else another thread's now */
      os_unmap(dst, need);
    errno = ENOMEM;
    return NULL;
  }
  lg = dst;       /* the header moved with the pages */
  lg->pieces = 1; /* one mapping (os_one_mapping above), moved and grown as one */
  if (lg->gprev)
    lg->gprev->gnext = lg;
  else
    hak_all_large = lg;
  if (lg->gnext)
    lg->gnext->gprev = lg;
  lg->map_size = need;
  lg->requested = track_need(size);
  registry_set(lg, REG_LARGE);
  /* its old range is gone: a free of p is a double free. Before the unlock,
   * as in large_free (until 2026-11-28 after it: a free of p racing the
   * move, which found the old range unregistered, could look between the
   * two and name p "not allocated by hakmem") */
  note_gone(p);
  hak_unlock(&hak_large_lock);
  void *np = (uint8_t *)lg + off;
  HAK_TEST_HOOK(HAK_HOOK_LARGE_GONE, p);
  track_alloc(np, size, need - off, 0);
  track_padding(lg); /* dst's shadow was clear */
  track_roots_del(p, old_usable);
  track_roots_add(np, large_usable(lg));
  return np;
}

/* hak_heap_check, large lock held: whether the cache keeps its invariants
 * (each mapping a registered, freed, 4 MiB-aligned header of whole pages;
 * oldest first; the counts right and within bounds). If not, *what says
 * how and *where is the mapping. */
bool large_cache_ok(const char **what, const void **where) {
  size_t sum = 0;
  *where = NULL;
  for (unsigned i = 0; i < large_cache_n; i++) {
    const hak_large_t *lg = large_cache[i];
    *where = lg;
    sum += lg->map_size;
    if (((uintptr_t)lg & SEGMENT_MASK) || lg->magic != LARGE_MAGIC || lg->kind != KIND_LARGE ||
        lg->huge || !atomic_load_explicit(&lg->freed, memory_order_relaxed) || !lg->pieces ||
        lg->alignment != SEGMENT_SIZE || lg->map_size < OS_PAGE_SIZE ||
        (lg->map_size & (OS_PAGE_SIZE - 1))) {
      *what = "bad cached large mapping";
      return false;
    }
    if (registry_large(lg) != lg) {
      *what = "cached large mapping missing from the registry";
      return false;
    }
    if (i && large_cache_at[i] < large_cache_at[i - 1]) {
      *what = "large cache not oldest first";
      return false;
    }
  }
  if (sum != large_cache_bytes || large_cache_n > LARGE_CACHE_N || sum > LARGE_CACHE_BYTES) {
    *what = "large cache totals wrong";
    return false;
  }
  return true;
}

/* hak_stats, large lock held: the bytes the cache keeps mapped. */
size_t large_cache_mapped_locked(void) {
  return large_cache_bytes;
}

/* hak_trim's part: every cached mapping unmapped now, whatever its age. */
void large_trim(void) {
  large_cache_drop();
  /* and the tails live blocks keep as room (excess_kept: up to half the
   * block, resident; before, hak_trim left them): room again when a
   * realloc grows the block in place */
  hak_lock(&hak_large_lock);
  for (hak_large_t *lg = hak_all_large; lg; lg = lg->gnext) {
    size_t need = round_page(lg->offset + lg->requested);
    if (lg->map_size > need) {
      os_unmap((uint8_t *)lg + need, lg->map_size - need);
      hak_tls_given_back += lg->map_size - need;
      lg->map_size = need;
    }
  }
  hak_unlock(&hak_large_lock);
}

/* hak_test_reset: unmap every large block (no other thread). */
void large_reset_all(void) {
  hak_lock(&hak_large_lock);
  for (hak_large_t *lg = hak_all_large, *next; lg; lg = next) {
    next = lg->gnext;
    track_roots_del((uint8_t *)lg + lg->offset, large_usable(lg));
    registry_set(lg->huge ? (uint8_t *)lg + lg->offset : (uint8_t *)lg, REG_NONE);
    os_unmap(lg, lg->map_size);
  }
  hak_all_large = NULL;
  while (large_cache_n)
    cache_evict_oldest_locked();
  for (unsigned i = 0; i < RECENT; i++)
    atomic_store_explicit(&recent_frees[i], 0, memory_order_relaxed);
  os_zone_reset();
  hak_unlock(&hak_large_lock);
}
