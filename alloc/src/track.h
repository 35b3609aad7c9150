/* track.h: the one place that knows about ASan and Valgrind (and TSan's
 * annotations).
 *
 * - Block accessors: the allocator keeps two words of metadata inside every
 *   free block (link and free marker). In the asan build these accessors are
 *   not instrumented (free blocks are poisoned); in the valgrind build error
 *   reporting is switched off around them (free blocks are NOACCESS and a
 *   live block's slack may be too), and values read are marked defined.
 * - track_* hooks: poison/unpoison (asan) or MALLOCLIKE/FREELIKE/NOACCESS
 *   client requests (valgrind); no-ops otherwise.
 * - track_racy_reads_begin/end: hak_stats reads fields other threads write
 *   without its lock, on purpose (a snapshot); the tsan build ignores those
 *   reads (the runtime's dynamic annotations). */
#ifndef HAK_TRACK_H
#define HAK_TRACK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(HAK_ASAN) && HAK_ASAN
#include <errno.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#include <sys/mman.h>
#define HAK_NO_ASAN __attribute__((no_sanitize("address"), noinline))
#else
#define HAK_NO_ASAN
#endif

#if defined(HAK_VALGRIND) && HAK_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define VG_QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define VG_QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#define VG_DEFINED(v) VALGRIND_MAKE_MEM_DEFINED(&(v), sizeof(v))
#else
#define VG_QUIET_BEGIN() ((void)0)
#define VG_QUIET_END() ((void)0)
#define VG_DEFINED(v) ((void)0)
#endif

/* ---- redzones ----------------------------------------------------------
 * In the asan and valgrind builds every block is sized for its request
 * plus TRACK_REDZONE bytes, and its last TRACK_REDZONE bytes are never the
 * program's: poisoned (NOACCESS) while the block is live, whatever
 * hak_usable_size exposes. Without them a block whose request filled its
 * class (or a large one whose request ended at a page's end) had its
 * neighbour right after it, and a write one byte past it (a
 * malloc(strlen(s)) bug) went unreported where that neighbour was live
 * (malloc(48), then p[48]: no report in either build, until 2026-11-29;
 * test_asan_catches, test_valgrind_catches). A write before a block lands
 * in the previous block's redzone (or, before a large block, in the
 * poisoned lead after its header: LARGE_OFFSET). 0 elsewhere: the other
 * builds' code is unchanged. */
#if (defined(HAK_ASAN) && HAK_ASAN) || (defined(HAK_VALGRIND) && HAK_VALGRIND)
/* 16, or 0 where a test of the allocator's geometry (classes, pages,
 * large ranges) sets it so before its first allocation
 * (hak_test_no_redzones): a block's redzone must not change while it is
 * live. */
extern HAK_INTERNAL size_t hak_redzone;
#define TRACK_REDZONE hak_redzone
/* The bytes a block needs for a request of `size` bytes (small: at most
 * HAK_SMALL_MAX - TRACK_REDZONE; large: at most PTRDIFF_MAX minus a
 * redzone and a page, checked by the caller): with redzones, the request
 * (at least 1 byte, so that malloc(0)'s block has 16 usable bytes, as in
 * the other builds) and its redzone. The one place that adds it. */
static inline size_t track_need(size_t size) {
  return TRACK_REDZONE ? (size ? size : 1) + TRACK_REDZONE : size;
}
/* The bytes of a block of `block` bytes the program may use (what
 * hak_usable_size says, what free_sized checks and realloc keeps a block
 * for): all but the redzone. The one place that takes it off. */
static inline size_t track_usable(size_t block) {
  return block - TRACK_REDZONE;
}
#else
/* macros, not functions: the debug build (-O0) would call them, and its
 * code would not be the same as without redzones */
#define TRACK_REDZONE ((size_t)0)
#define track_need(size) (size)
#define track_usable(block) (block)
#endif

static inline HAK_NO_ASAN hak_block_t *block_next(hak_block_t *b) {
  VG_QUIET_BEGIN();
  hak_block_t *n = *(hak_block_t *volatile *)&b->next;
  VG_QUIET_END();
  VG_DEFINED(n);
  return n;
}

static inline HAK_NO_ASAN uintptr_t block_marker(const hak_block_t *b) {
  VG_QUIET_BEGIN();
  uintptr_t v = *(const volatile uintptr_t *)&b->marker;
  VG_QUIET_END();
  VG_DEFINED(v);
  return v;
}

/* Writes link and free marker into a block that is (becoming) free. */
static inline HAK_NO_ASAN void block_set_free(hak_block_t *b, hak_block_t *next, uintptr_t marker) {
  VG_QUIET_BEGIN();
  b->next = next;
  b->marker = marker;
  VG_QUIET_END();
}

static inline HAK_NO_ASAN void block_set_next(hak_block_t *b, hak_block_t *next) {
  VG_QUIET_BEGIN();
  b->next = next;
  VG_QUIET_END();
}

/* Handing a block out: the marker must not survive into user memory. */
static inline HAK_NO_ASAN void block_clear_marker(hak_block_t *b) {
  VG_QUIET_BEGIN();
  b->marker = 0;
  VG_QUIET_END();
}

/* Atomically sets the marker, returning the old value (remote frees).
 * Relaxed: the exchange's atomicity alone decides which of two racing
 * frees of one block is the double one; the marker and the link reach the
 * owner through the push that follows (release, page_free_remote). */
static inline HAK_NO_ASAN uintptr_t block_marker_xchg(hak_block_t *b, uintptr_t marker) {
  VG_QUIET_BEGIN();
  uintptr_t old =
      atomic_exchange_explicit((_Atomic uintptr_t *)&b->marker, marker, memory_order_relaxed);
  VG_QUIET_END();
  VG_DEFINED(old);
  return old;
}

/* ---- tracking hooks ---------------------------------------------------- */
#if defined(HAK_ASAN) && HAK_ASAN
static inline void track_alloc(void *p, size_t req, size_t usable, int zeroed) {
  (void)zeroed;
  ASAN_UNPOISON_MEMORY_REGION(p, req);
  if (usable > req)
    ASAN_POISON_MEMORY_REGION((char *)p + req, usable - req);
}
static inline void track_free(void *p, size_t usable) {
  ASAN_POISON_MEMORY_REGION(p, usable);
}
static inline void track_noaccess(void *p, size_t n) {
  ASAN_POISON_MEMORY_REGION(p, n);
}
/* A range about to be unmapped: its shadow is cleared (the next mapping
 * there starts addressable), and the shadow's whole pages go back to the
 * kernel (they read zero again: addressable). clang 14's ASan does not do
 * that on munmap, and hakmem maps its large ranges at ever new addresses
 * (the zone, os.c), so each range's shadow (an eighth of its size) stayed
 * resident: fuzz_sizes under libFuzzer grew by about 4 MB an input, to an
 * out-of-memory after about 1000 inputs. Only pages whose every byte is
 * this range's shadow are released (one covers 32 KiB of the range).
 * errno is kept: a refused madvise (EAGAIN, ENOMEM) left its errno behind
 * a free, realloc or hak_trim that succeeded, until 2026-11-29
 * (test_oom_sweep, madvise sweep, asan). */
static inline void track_unmapping(void *p, size_t n) {
  ASAN_UNPOISON_MEMORY_REGION(p, n);
  size_t scale, offset;
  __asan_get_shadow_mapping(&scale, &offset);
  uintptr_t lo = ((uintptr_t)p >> scale) + offset, hi = (((uintptr_t)p + n) >> scale) + offset;
  lo = (lo + OS_PAGE_SIZE - 1) & ~(uintptr_t)(OS_PAGE_SIZE - 1);
  hi &= ~(uintptr_t)(OS_PAGE_SIZE - 1);
  if (hi > lo) {
    int saved = errno;
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
    errno = saved;
  }
}
static inline void track_expose(void *p, size_t n) {
  ASAN_UNPOISON_MEMORY_REGION(p, n);
}
/* hakmem's memory as LeakSanitizer root regions: LSan scans its own
 * blocks, globals, stacks and TLS, not hakmem's mmap'd ranges, so a C
 * library block (ASan's allocator) that only hakmem blocks point to was
 * reported leaked (until 2026-11-28). Each segment is one region, each
 * large block its usable bytes; a region is unregistered exactly as it was
 * registered (LSan dies otherwise). LSan keeps the regions under one mutex
 * of its own, which a fork copies held if another thread is registering:
 * the child's next (un)register then waits for ever (test_fork: 1 run in
 * 45 until 2026-11-28). So every call goes through a hakmem lock that
 * fork_prepare takes last (track_fork_lock); heap.c. */
HAK_INTERNAL void track_roots_add(void *p, size_t n);
HAK_INTERNAL void track_roots_del(void *p, size_t n);
HAK_INTERNAL void track_fork_lock(void);
HAK_INTERNAL void track_fork_unlock(void);
/* Bytes of a live block the user asked for: up to its last addressable
 * byte, the slack after it being poisoned. Not up to the first poisoned
 * byte: the program may poison parts of its own bytes (an arena's free
 * chunk), and until 2026-11-28 realloc then copied only the bytes before
 * them and usable_size unpoisoned them. A granule (8 bytes; blocks are
 * 16-aligned) whose first byte is poisoned is poisoned whole. */
static inline size_t track_requested(void *p, size_t usable) {
  char *c = (char *)p;
  if (!__asan_region_is_poisoned(c, usable))
    return usable;
  size_t end = usable & ~(size_t)7;
  while (end && __asan_address_is_poisoned(c + end - 8))
    end -= 8;
  while (end && __asan_address_is_poisoned(c + end - 1))
    end--;
  return end;
}
static HAK_NO_ASAN void track_copy_raw(void *dst, const void *src, size_t n) {
  const volatile unsigned char *s = (const volatile unsigned char *)src;
  unsigned char *d = (unsigned char *)dst;
  for (size_t i = 0; i < n; i++)
    d[i] = s[i];
}
/* realloc's copy of the first n bytes of a block whose requested bytes
 * end at `end`: those are copied whatever the program poisoned among them,
 * as ASan's own realloc does; bytes past them (a bug) by memcpy, which
 * reports the read. */
static inline void track_copy(void *dst, const void *src, size_t n, size_t end) {
  size_t k = n < end ? n : end;
  if (__asan_region_is_poisoned((void *)src, k))
    track_copy_raw(dst, src, k);
  else
    memcpy(dst, src, k);
  if (n > k)
    memcpy((char *)dst + k, (const char *)src + k, n - k);
}
#define TRACK_REALLOC_IN_PLACE 1
static inline void track_resize(void *p, size_t old_req, size_t new_req, size_t usable) {
  (void)old_req;
  track_alloc(p, new_req, usable, 0);
}
#elif defined(HAK_VALGRIND) && HAK_VALGRIND
/* The slack is made NOACCESS here, not only by free and carving: a large
 * block on a fresh mapping (or a cached one grown in place) has it
 * addressable and defined, as memcheck sees all mmap'd memory. */
static inline void track_alloc(void *p, size_t req, size_t usable, int zeroed) {
  VALGRIND_MALLOCLIKE_BLOCK(p, req, 0, zeroed);
  if (usable > req)
    VALGRIND_MAKE_MEM_NOACCESS((char *)p + req, usable - req);
}
static inline void track_free(void *p, size_t usable) {
  VALGRIND_FREELIKE_BLOCK(p, 0);
  VALGRIND_MAKE_MEM_NOACCESS(p, usable);
}
static inline void track_noaccess(void *p, size_t n) {
  VALGRIND_MAKE_MEM_NOACCESS(p, n);
}
static inline void track_unmapping(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_expose(void *p, size_t n) {
  VALGRIND_MAKE_MEM_UNDEFINED(p, n);
}
static inline void track_roots_add(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_roots_del(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_fork_lock(void) {}
static inline void track_fork_unlock(void) {}
/* A live block up to its last addressable byte (the slack after it is
 * NOACCESS): GET_VBITS answers 3 for an unaddressable byte without
 * reporting an error. Scanned from the end, over the slack only: the
 * program may make parts of its own bytes NOACCESS (a pool's free chunk),
 * and until 2026-11-28 a binary search assumed an addressable prefix:
 * realloc then lost the bytes after such a chunk or read it ("Invalid
 * read" in realloc). No realloc shrinks in place here: the slack is at
 * most the class's rounding, or under a page for a large block. */
static inline size_t track_requested(void *p, size_t usable) {
  if (!RUNNING_ON_VALGRIND)
    return usable;
  size_t end = usable;
  unsigned char vb;
  while (end && VALGRIND_GET_VBITS((char *)p + end - 1, &vb, 1) == 3)
    end--;
  return end;
}
/* realloc's copy (see the asan one): the requested bytes with error
 * reporting off (NOACCESS ones the program made come out defined), any
 * past them through a reporting memcpy. */
static inline void track_copy(void *dst, const void *src, size_t n, size_t end) {
  size_t k = n < end ? n : end;
  VG_QUIET_BEGIN();
  memcpy(dst, src, k);
  VG_QUIET_END();
  if (n > k)
    memcpy((char *)dst + k, (const char *)src + k, n - k);
}
/* memcheck keeps its own idea of the old size: realloc always moves. */
#define TRACK_REALLOC_IN_PLACE 0
static inline void track_resize(void *p, size_t old_req, size_t new_req, size_t usable) {
  (void)p, (void)old_req, (void)new_req, (void)usable;
}
#else
static inline void track_alloc(void *p, size_t req, size_t usable, int zeroed) {
  (void)p, (void)req, (void)usable, (void)zeroed;
}
static inline void track_free(void *p, size_t usable) {
  (void)p, (void)usable;
}
static inline void track_noaccess(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_unmapping(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_expose(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_roots_add(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_roots_del(void *p, size_t n) {
  (void)p, (void)n;
}
static inline void track_fork_lock(void) {}
static inline void track_fork_unlock(void) {}
static inline size_t track_requested(void *p, size_t usable) {
  (void)p;
  return usable;
}
static inline void track_copy(void *dst, const void *src, size_t n, size_t end) {
  (void)end;
  memcpy(dst, src, n);
}
#define TRACK_REALLOC_IN_PLACE 1
static inline void track_resize(void *p, size_t old_req, size_t new_req, size_t usable) {
  (void)p, (void)old_req, (void)new_req, (void)usable;
}
#endif

#if defined(HAK_TSAN) && HAK_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define track_racy_reads_begin() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define track_racy_reads_end() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define track_racy_reads_begin() ((void)0)
#define track_racy_reads_end() ((void)0)
#endif

#endif /* HAK_TRACK_H */
