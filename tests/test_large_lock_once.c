/* free_sized and free_aligned_sized of a large block hold the large lock
 * once: its checks (the registry still naming the block, its freed mark,
 * the size, the alignment) and the free itself under one hold. Until
 * 2026-11-28 they resolved the block (lock, checks, unlock) and then freed
 * it through free (the registry read again, the lock taken again):
 * malloc(256 KiB) + free_sized cost 656 instructions against free's 468
 * (callgrind), now 496. A second hold changes nothing a functional test
 * sees, so this one counts them (below: where they are taken), and each
 * free below must take the lock exactly once. free is
 * the control: one hold, before and after. The blocks: cached (1 MiB),
 * unmapped (40 MiB: over what the cache keeps) and aligned to 4 MiB (its
 * header below it, never cached); each must be gone afterwards.
 * realloc of a large block, the same way (realloc_holds): until 2026-11-29
 * it resolved the block (large_resolve: lock, checks, unlock) and then took
 * the lock again to resize, move or free it, two holds where one does
 * (three for a move): shrunk in place, grown in place, to a small size, to
 * 0. A move by mremap takes it twice (the new range is mapped between the
 * two holds, as large_alloc maps outside the lock), a copy three times
 * (the check, the new block's allocation, the free after the copy).
 *
 * The holds are counted where they are taken: this program defines
 * pthread_mutex_lock and pthread_mutex_trylock, which the statically
 * linked libhakmem.a calls instead of libc's (as fuzz/fail_mmap.h does
 * for mmap), and counts each acquisition of hak_large_lock while `counting`
 * is set. Until 2026-11-29 the test counted the hook points that come
 * before some of the holds (HAK_HOOK_LARGE_LOCKING, _RESOLVING): a second
 * hold with no hook point before it (a helper that takes the lock for
 * itself) went uncounted. */
#include "hak_test.h"

#include <dlfcn.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)

static atomic_bool counting;
static atomic_int holds; /* acquisitions of hak_large_lock while counting */

/* The sanitizer runtime's own entry points, where it intercepts these
 * (TSan; NULL otherwise): its bookkeeping of the lock must see them
 * (`___interceptor_` from LLVM 17 on, D151085; `__interceptor_` before).
 * Else libc's, found once (dlsym takes no lock of this kind). */
int ___interceptor_pthread_mutex_lock(pthread_mutex_t *m) __attribute__((weak));
int __interceptor_pthread_mutex_lock(pthread_mutex_t *m) __attribute__((weak));
int ___interceptor_pthread_mutex_trylock(pthread_mutex_t *m) __attribute__((weak));
int __interceptor_pthread_mutex_trylock(pthread_mutex_t *m) __attribute__((weak));
typedef int (*lock_fn)(pthread_mutex_t *);
static lock_fn real(lock_fn new_name, lock_fn old_name, _Atomic(lock_fn) *cache, const char *name) {
  if (new_name)
    return new_name;
  if (old_name)
    return old_name;
  lock_fn f = atomic_load(cache);
  if (!f) {
    f = (lock_fn)dlsym(RTLD_NEXT, name);
    REQUIRE(f != NULL);
    atomic_store(cache, f);
  }
  return f;
}
static _Atomic(lock_fn) libc_lock, libc_trylock;

static void counted(pthread_mutex_t *m) {
  if (m == &hak_large_lock && atomic_load(&counting))
    atomic_fetch_add(&holds, 1);
}

int pthread_mutex_lock(pthread_mutex_t *m) {
  int r = real(___interceptor_pthread_mutex_lock, __interceptor_pthread_mutex_lock, &libc_lock,
               "pthread_mutex_lock")(m);
  if (r == 0)
    counted(m);
  return r;
}

int pthread_mutex_trylock(pthread_mutex_t *m) {
  int r = real(___interceptor_pthread_mutex_trylock, __interceptor_pthread_mutex_trylock,
               &libc_trylock, "pthread_mutex_trylock")(m);
  if (r == 0)
    counted(m);
  return r;
}

static void count_from_zero(void) {
  atomic_store(&holds, 0);
  atomic_store(&counting, true);
}

static int counted_holds(void) {
  atomic_store(&counting, false);
  return atomic_load(&holds);
}

enum { FREE, FREE_SIZED, FREE_ALIGNED_SIZED };
static const char *const names[] = {"free", "free_sized", "free_aligned_sized"};

static void one(int call, size_t alignment, size_t size) {
  unsigned char *p = alignment ? hak_aligned_alloc(alignment, size) : hak_malloc(size);
  REQUIRE(p != NULL);
  memset(p, 0x5a, 4096);
  size_t usable = hak_usable_size(p);
  struct hak_stats before;
  hak_stats(&before);
  count_from_zero();
  if (call == FREE)
    hak_free(p);
  else if (call == FREE_SIZED)
    hak_free_sized(p, usable); /* the largest size allowed */
  else
    hak_free_aligned_sized(p, alignment ? alignment : 64, size);
  int n = counted_holds();
  struct hak_stats after;
  hak_stats(&after);
  CHECK_MSG(n == 1,
            "%s of a large block of %zu bytes (alignment %zu): the large lock taken %d times, "
            "wanted 1",
            names[call], size, alignment, n);
  CHECK_MSG(after.large_blocks + 1 == before.large_blocks && after.live_bytes < before.live_bytes,
            "%s of a large block of %zu bytes: %zu large blocks, %zu live bytes before; %zu, %zu "
            "after",
            names[call], size, before.large_blocks, before.live_bytes, after.large_blocks,
            after.live_bytes);
}

/* The holds of the large lock by a realloc of a large block, by what it
 * does. */
enum { IN_PLACE, TO_SMALL, TO_ZERO, MOVED };
static const char *const kinds[] = {"in place", "to a small block", "to 0", "moved"};
static int realloc_holds(int kind, bool copied) {
  /* mremap: the check, then the move; a copy (a huge-aligned block's, the
   * trace build's move, every realloc to a large size in the valgrind
   * build): the check, the new block's (large_alloc, its mapping taken
   * from the cache), then the free */
  if (kind == MOVED)
    return copied ? 3 : 2;
  if (kind == IN_PLACE)
    return 1;
  /* the trace build frees the old block after realloc's record, by free */
  return strcmp(hak_config(), "trace") == 0 ? 2 : 1;
}

/* realloc of a large block of `size` bytes (aligned to `alignment` if not
 * 0) to `to`, `blocked`: a page of the test's after its mapping, so that
 * it cannot grow in place. The kind of realloc is read from its result. */
static void one_realloc(size_t alignment, size_t size, size_t to, int blocked) {
  unsigned char *p = alignment ? hak_aligned_alloc(alignment, size) : hak_malloc(size);
  REQUIRE(p != NULL);
  hak_fill(p, 4096, 7);
  hak_large_t *lg = registry_large(p);
  REQUIRE(lg != NULL);
  void *stop = NULL;
  if (blocked) {
    stop = hak_map_at((uint8_t *)lg + lg->map_size, hak_page_size(),
                      PROT_READ); /* NULL: taken already */
  }
  /* a move here is a copy (large_realloc's LARGE_MOVE_BY_COPY: a huge
   * block, one of several kernel mappings, the trace and valgrind builds):
   * its new block's mapping is cached first, so that large_alloc takes it
   * under one hold (a new one: two) */
  bool copies = to > HAK_SMALL_MAX - hak_test_redzone() &&
                (lg->huge || hak_config_is("valgrind") || hak_config_is("trace") ||
                 !os_one_mapping(lg, lg->map_size));
  if (copies)
    hak_free(hak_malloc(to));
  struct hak_stats before;
  hak_stats(&before);
  count_from_zero();
  unsigned char *q = hak_realloc(p, to);
  int n = counted_holds();
  int kind = !to                                        ? TO_ZERO
             : to <= HAK_SMALL_MAX - hak_test_redzone() ? TO_SMALL
             : q == p                                   ? IN_PLACE
                                                        : MOVED;
  CHECK_MSG(!blocked || !stop || kind == MOVED,
            "realloc of a large block of %zu bytes to %zu grew it in place over a mapped page",
            size, to);
  CHECK_MSG(n == realloc_holds(kind, copies),
            "realloc of a large block of %zu bytes (alignment %zu) to %zu, %s: the large lock "
            "taken %d times, wanted %d",
            size, alignment, to, kinds[kind], n, realloc_holds(kind, copies));
  struct hak_stats after;
  hak_stats(&after);
  size_t large_after = before.large_blocks - (kind == TO_ZERO || kind == TO_SMALL);
  CHECK_MSG(after.large_blocks == large_after,
            "realloc of a large block of %zu bytes to %zu, %s: %zu large blocks before, %zu "
            "after",
            size, to, kinds[kind], before.large_blocks, after.large_blocks);
  if (to) {
    REQUIRE(q != NULL);
    CHECK_PATTERN(q, to < 4096 ? to : 4096, 7);
    hak_free(q);
  }
  if (stop)
    munmap(stop, hak_page_size());
}

int main(void) {
  hak_free(hak_malloc(100));
  static const size_t sizes[] = {256 << 10, MiB, 40 * MiB};
  for (int call = FREE; call <= FREE_ALIGNED_SIZED; call++) {
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
      one(call, 0, sizes[i]);
    one(call, 4 * MiB, MiB);
  }
  one_realloc(0, MiB, 900 << 10, 0);     /* shrunk, the tail kept as room */
  one_realloc(0, MiB, 300 << 10, 0);     /* shrunk, the tail unmapped */
  one_realloc(0, 40 * MiB, 20 * MiB, 0); /* never cached: shrunk, the tail unmapped */
  one_realloc(0, MiB, 2 * MiB, 0);       /* grown in place, or moved */
  one_realloc(0, MiB, 1000, 0);          /* to a small block */
  /* the biggest small request (less the redzone: hak_test.h) */
  one_realloc(0, 40 * MiB, HAK_SMALL_MAX - hak_test_redzone(), 0);
  one_realloc(0, MiB, 0, 0);               /* freed (cached) */
  one_realloc(0, 40 * MiB, 0, 0);          /* freed (unmapped) */
  one_realloc(0, MiB, 3 * MiB, 1);         /* moved by mremap */
  one_realloc(4 * MiB, MiB, 6 * MiB, 1);   /* huge-aligned: copied */
  one_realloc(4 * MiB, MiB, 512 << 10, 0); /* huge-aligned: shrunk in place */
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
