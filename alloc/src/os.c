/* The OS layer: every byte hakmem uses, metadata included, comes from here. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17; older headers */
#endif

static void map_forget(uintptr_t p, size_t len); /* below, with the hint it drops */

#if !defined(__x86_64__) && !defined(__i386__)
/* The kernel's page size (OS_PAGE_SIZE off x86), from the auxiliary vector
 * the loader keeps: no allocation, safe before libc's constructors (an
 * LD_PRELOADed malloc may run first). A size that is not a power of two
 * (none is) is taken for 4 KiB. Threads racing here store the same value. */
_Atomic size_t hak_os_page;
size_t os_page_size_init(void) {
  size_t p = (size_t)getauxval(AT_PAGESZ);
  if (!p || (p & (p - 1))) {
    long s = sysconf(_SC_PAGESIZE);
    p = s > 0 && !((size_t)s & ((size_t)s - 1)) ? (size_t)s : 4096;
  }
  atomic_store_explicit(&hak_os_page, p, memory_order_relaxed);
  return p;
}
#endif

/* munmap of a range of ours, the hint dropped if it was beyond it: 0, or
 * -1 with errno (the range still mapped). */
static int munmap_ours(void *p, size_t len) {
  if (munmap(p, len) != 0)
    return -1;
  map_forget((uintptr_t)p, len);
  return 0;
}

/* Orphans: ranges of ours that a refused munmap left mapped (the process
 * at its limit of mappings, vm.max_map_count: the kernel does not split a
 * mapping then). Nothing refers to them (their pages were given back with
 * MADV_DONTNEED, or never touched: map_aligned's trims, whose span the
 * kernel merged with the mapping next to it), but each is address space
 * and, once its neighbours are gone, a mapping of its own: until
 * 2026-11-28 they stayed, and a process kept itself at the limit after it
 * had freed every block (test_map_limit: 65 left; a probe of 80000 blocks
 * of 100 KiB, three rounds of malloc, free and malloc_trim: 14530, 43528,
 * 65530 mappings and 56, 170, 400 GB of address space after the frees).
 * They are unmapped again once the kernel lets go of them: a few at each
 * new mapping made by map_aligned (not a large block's in the zone) and
 * each successful unmap (in turn, os_orphans_retry), all of them at
 * hak_trim and when map_aligned's mapping is refused. The table
 * is .bss (1 MiB, untouched until used): at the limit nothing can be
 * mapped for it. A retry takes it with a try-lock only, never waits for
 * it: a busy table leaves the retry for later. An add waits (a retry
 * holds it for munmaps only, no lock taken inside): until 2026-11-29 it
 * only tried too, and a range refused while another thread held the
 * table was left mapped for good, no one's, a mapping more at the limit
 * (test_oom_sweep, part orphans busy). One exception: a signal handler's
 * free inside this thread's own retry leaves its range mapped, as before
 * the table (orphans_mine). A fork child lets go of a table another thread
 * held: os_orphans_fork_child. */
#define ORPHANS_MAX 65536
static struct {
  uintptr_t at;
  size_t len;
} orphans[ORPHANS_MAX];
static _Atomic unsigned orphans_n;
static atomic_flag orphans_busy = ATOMIC_FLAG_INIT;
static unsigned orphans_at; /* where a partial retry starts (orphans_busy held) */
static __thread bool orphans_mine
    __attribute__((tls_model("initial-exec"))); /* held by this thread */

static void orphan_add(void *p, size_t len) {
  if (orphans_mine)
    return; /* a signal handler's, in this thread's retry: left mapped, as before the table */
  unsigned round = 0;
  while (atomic_flag_test_and_set_explicit(&orphans_busy, memory_order_acquire))
    spin_wait(&round);
  unsigned n = atomic_load_explicit(&orphans_n, memory_order_relaxed);
  if (n == 0)
    orphans_at = 0; /* a table that starts again starts at its start */
  if (n < ORPHANS_MAX) {
    orphans[n].at = (uintptr_t)p;
    orphans[n].len = len;
    atomic_store_explicit(&orphans_n, n + 1, memory_order_relaxed);
  }
  atomic_flag_clear_explicit(&orphans_busy, memory_order_release);
}

/* munmap of a range nothing uses (just mapped and never touched). */
static void unmap_unused(void *p, size_t len) {
  if (munmap(p, len) != 0)
    orphan_add(p, len);
}

/* A retry of all of them goes newest first; a partial one (`budget` below
 * their count) goes on from where the last stopped, around the table, so
 * every one is tried in turn. Until 2026-11-28 each partial retry tried
 * the newest `budget` only: once that many could not be unmapped (a
 * neighbour still live), the older ones were never tried again but by
 * hak_trim, and a process stayed at the limit with ranges the kernel would
 * have let go (test_orphans_retry, part `rotate`). */
void os_orphans_retry(unsigned budget) {
  /* the count read without the table (relaxed): a hint, an orphan added
   * meanwhile waits for the next retry; under orphans_busy it is exact */
  if (!atomic_load_explicit(&orphans_n, memory_order_relaxed) ||
      atomic_flag_test_and_set_explicit(&orphans_busy, memory_order_acquire))
    return;
  int saved = errno;
  orphans_mine = true;
  HAK_TEST_HOOK(HAK_HOOK_ORPHANS_HELD, NULL);
  unsigned n = atomic_load_explicit(&orphans_n, memory_order_relaxed);
  if (budget >= n) {
    for (unsigned i = n; i-- > 0;) /* newest first */
      if (munmap_ours((void *)orphans[i].at, orphans[i].len) == 0)
        orphans[i] = orphans[--n];
  } else {
    unsigned i = orphans_at < n ? orphans_at : 0;
    for (; budget && n; budget--) {
      if (munmap_ours((void *)orphans[i].at, orphans[i].len) == 0)
        orphans[i] = orphans[--n]; /* the last one moved here: tried next */
      else
        i++;
      if (i >= n)
        i = 0;
    }
    orphans_at = i;
  }
  atomic_store_explicit(&orphans_n, n, memory_order_relaxed);
  orphans_mine = false;
  atomic_flag_clear_explicit(&orphans_busy, memory_order_release);
  errno = saved;
}

/* fork child: another thread may have held the table at the fork, in a
 * retry or an add, and no one would let it go: every later refused munmap
 * was left out of the table and no orphan was tried again, in the child
 * for good (until 2026-11-28; test_orphans_retry part fork). Such a table
 * may also be half changed (a retry's removals not yet counted: entries
 * for ranges unmapped before the fork, which another thread may have
 * mapped again since), so it is forgotten, its ranges left mapped, never
 * unmapped under a live block. */
void os_orphans_fork_child(void) {
  if (atomic_flag_test_and_set_explicit(&orphans_busy, memory_order_relaxed))
    atomic_store_explicit(&orphans_n, 0, memory_order_relaxed);
  atomic_flag_clear_explicit(&orphans_busy, memory_order_relaxed);
}

/* The over-map: `size` + `alignment` mapped where the kernel puts it, then
 * trimmed to the aligned range inside; returns its address, or 0. */
static uintptr_t map_over(size_t size, size_t alignment, size_t offset) {
  size_t span = size + alignment;
  void *p =
      mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  /* refused (the limit of mappings, maybe): every orphan the kernel lets
   * go now is a mapping fewer. Until 2026-11-28 only the few tried above
   * were, and a malloc at the limit failed with ENOMEM while the table held
   * ranges that could be unmapped (test_orphans_retry, part `malloc`). */
  if (p == MAP_FAILED && atomic_load_explicit(&orphans_n, memory_order_relaxed)) {
    os_orphans_retry(~0u);
    p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
             0);
  }
  if (p == MAP_FAILED)
    return 0;
  uintptr_t base = (uintptr_t)p;
  uintptr_t aligned = ((base + offset + alignment - 1) & ~(uintptr_t)(alignment - 1)) - offset;
  if (aligned > base)
    unmap_unused(p, aligned - base);
  uintptr_t end = base + span, want_end = aligned + size;
  if (end > want_end)
    unmap_unused((void *)want_end, end - want_end);
  return aligned;
}

static bool map_fits(uintptr_t q, size_t alignment, size_t offset) {
  return ((q + offset) & (alignment - 1)) == 0;
}

/* mmap of [want, want + size) if nothing is mapped there (MAP_FAILED, errno
 * EEXIST, if something is). A kernel before 4.17 takes MAP_FIXED_NOREPLACE
 * for a hint and may place it elsewhere, and so may an interceptor:
 * returned as it is, for the caller to check. */
static void *map_at(uintptr_t want, size_t size) {
  return mmap((void *)want, size, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
}

/* The last range map_aligned returned, [map_last, map_last_end), and the
 * way the kernel fills the address space, learnt when map_near first needs
 * it (map_learn_dir): -1 top-down (the default layout), +1 bottom-up (the
 * legacy one), 0 not known yet. Only hints: a race between threads costs a
 * refused mmap, nothing else. */
static _Atomic uintptr_t map_last, map_last_end;
static _Atomic int map_dir;

/* A range of ours unmapped beyond the last one map_aligned returned (above
 * it top-down, below its end bottom-up, the last one itself included): a
 * hole the kernel would fill first, so the next range goes where the
 * kernel puts it (map_exact's step 1 is skipped until a range is returned
 * again). Until 2026-11-29 the hint outlived the range: malloc(64 MiB) and
 * free in a loop got each block 68 MiB below the one before, never the
 * hole just given back, and in under a minute the blocks had walked the
 * address space down to the program's brk, taking what an sbrk would have
 * found free, and wrapped (test_map_reuse). Every range of ours that
 * goes away goes through here: munmap_ours (os_munmap, an orphan's retry)
 * and a move's source (os_move_mapping). Until 2026-11-29 only os_munmap
 * did: an orphan unmapped by its retry (at the next mapping, just before
 * it is placed) and a block moved by realloc to a new range left the hint
 * behind, and such blocks walked down again, 68 MiB a round for a 64 MiB
 * block freed while munmap was refused, 144 MiB for one moved to 72 MiB
 * (test_map_reuse, orphans and moved). */
static void map_forget(uintptr_t p, size_t len) {
  uintptr_t last = atomic_load_explicit(&map_last, memory_order_relaxed);
  if (last && (atomic_load_explicit(&map_dir, memory_order_relaxed) > 0
                   ? p < atomic_load_explicit(&map_last_end, memory_order_relaxed)
                   : p + len > last))
    atomic_store_explicit(&map_last, 0, memory_order_relaxed);
}

/* hakmem's tests: the hint and the way forgotten, as in a new process. */
void os_test_forget_layout(void) {
  atomic_store_explicit(&map_last, 0, memory_order_relaxed);
  atomic_store_explicit(&map_last_end, 0, memory_order_relaxed);
  atomic_store_explicit(&map_dir, 0, memory_order_relaxed);
}

#define MAP_LOW ((uintptr_t)SEGMENT_SIZE)      /* no exact try below */
#define MAP_TOP ((uintptr_t)1 << ADDRESS_BITS) /* nor past what the registry covers */
#define MAP_EXACT_ALIGN_MAX ((size_t)64 << 20) /* larger ones are over-mapped at once */
#define MAP_WALK 16                            /* alignments walked past a refused over-map */
/* Not in the TSan build: its mmap turns a hint outside its application
 * ranges into 0 and keeps MAP_FIXED_NOREPLACE, which for root maps address
 * 0, and TSan dies ("mmap at bad address"; test_api aligned_huge, where
 * the hint below a huge-aligned block left those ranges). Every range is
 * over-mapped there, as before 2026-11-29. */
#if defined(HAK_TSAN) && HAK_TSAN
#define MAP_EXACT_ON 0
#else
#define MAP_EXACT_ON 1
#endif

/* The way the kernel fills the address space (map_dir), learnt once from
 * single pages it places in a row: two next to each other say it, the
 * second below the first top-down, above it bottom-up (a page that filled
 * a one-page hole is kept while the next is placed, so that the next
 * comes from the same hole or a farther one, never a nearer one). 0 if
 * not learnt (a page refused). Until 2026-11-29 the way was learnt from
 * map_near's first success, which went both ways while it was not known:
 * the wrong way's aligned places lie past the kernel's end of the address
 * space (the kernel put `near` in the first hole from there that holds
 * it), and a hole next to `near` too tight for its aligned places, the
 * over-map refused (RLIMIT_AS), sent the walk past the libraries, above
 * mmap_base, into the room the kernel keeps below the stack (below
 * mmap_base, into the brk's room, bottom-up), where it took the range and
 * learnt the wrong way, whose step 1 then went on from there
 * (test_map_reuse, walk). */
#define MAP_PROBES 8
static _Atomic pid_t map_learner; /* the process whose thread probes now; 0: none */
static int map_learn_dir(void) {
  int dir = atomic_load_explicit(&map_dir, memory_order_relaxed);
  if (dir)
    return dir;
  /* One thread probes at a time; another (or a signal handler's malloc in
   * the prober) does without the way for this call. Until 2026-11-29
   * threads probed together, and one's pages given back while another
   * probed left one-page holes on the kernel's side of that one's last
   * page: its next page went there, next to it the other way, and it
   * learnt the wrong way for the process (test_map_reuse, learn_race: 9
   * runs in 10 with 8 threads). A pid, not a flag: a fork child's first
   * learner takes over from a parent's thread that was probing at the
   * fork, which no one in the child would let go. */
  pid_t me = getpid(), was = atomic_load_explicit(&map_learner, memory_order_relaxed);
  if (was == me || !atomic_compare_exchange_strong_explicit(
                       &map_learner, &was, me, memory_order_acquire, memory_order_relaxed))
    return 0;
  HAK_TEST_HOOK(HAK_HOOK_MAP_LEARNING, NULL);
  dir = atomic_load_explicit(&map_dir, memory_order_relaxed); /* learnt just before? */
  uintptr_t page[MAP_PROBES];
  unsigned n = 0;
  while (!dir && n < MAP_PROBES) {
    void *q =
        mmap(NULL, OS_PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (q == MAP_FAILED)
      break;
    page[n++] = (uintptr_t)q;
    if (n > 1 && page[n - 1] + OS_PAGE_SIZE == page[n - 2])
      dir = -1;
    else if (n > 1 && page[n - 1] == page[n - 2] + OS_PAGE_SIZE)
      dir = 1;
  }
  while (n)
    unmap_unused((void *)page[--n], OS_PAGE_SIZE);
  if (dir)
    atomic_store_explicit(&map_dir, dir, memory_order_relaxed);
  atomic_store_explicit(&map_learner, 0, memory_order_release);
  return dir;
}

int os_test_learn_dir(void) {
  return map_learn_dir();
}

/* Exactly `size` at the aligned addresses around `near` (a range the kernel
 * placed), the way the kernel fills the address space (map_learn_dir): the
 * k-th alignment below the one under it (top-down) or the k-th above
 * (bottom-up), for k in [from, to). Returns the range, or 0 (the way not
 * known; at the first refusal that is not EEXIST: a limit, which another
 * place would meet too). */
static uintptr_t map_near(uintptr_t near, size_t size, size_t alignment, size_t offset,
                          unsigned from, unsigned to) {
  uintptr_t down = ((near + offset) & ~(uintptr_t)(alignment - 1)) - offset;
  int dir = map_learn_dir();
  if (!dir)
    return 0;
  for (unsigned k = from; k < to; k++) {
    uintptr_t want = dir < 0 ? down - k * alignment : down + (k + 1) * alignment;
    if (want <= MAP_LOW || want > MAP_TOP - size) /* (wrapped below 0: above the top) */
      continue;
    void *r = map_at(want, size);
    if (r == (void *)want)
      return want;
    if (r == MAP_FAILED && errno != EEXIST)
      return 0;
    if (r != MAP_FAILED) { /* a hint not honoured */
      if (map_fits((uintptr_t)r, alignment, offset))
        return (uintptr_t)r;
      unmap_unused(r, size);
    }
  }
  return 0;
}

/* Maps `size` bytes at an aligned address without mapping more than
 * `size` at any moment, or returns 0 for the over-map to try; *near: the
 * range the kernel placed on its own, unaligned (0 if none), for
 * map_near's walk after that. mlockall(MCL_FUTURE) locks (and faults in)
 * every new mapping whole, and the kernel refuses one that takes the
 * process past RLIMIT_MEMLOCK (EAGAIN): the over-map of 8 MiB for a 4 MiB
 * segment, once anything else was locked, never fit the usual 8 MiB limit
 * of a user that is not root, and until 2026-11-29 not one small block
 * could be allocated after the call (test_mlockall); RLIMIT_AS likewise saw
 * twice the segment. Tries, in turn:
 *  1. the aligned range next to the last one returned (below it when the
 *     kernel fills top-down, above it when bottom-up), where the kernel
 *     would have put the range, or near; not once a range beyond it was
 *     unmapped (map_forget), whose hole the kernel fills first, nor while
 *     the direction is not known (the wrong side of the kernel's first
 *     range lies past its end of the address space);
 *  2. where the kernel puts it, kept if aligned by chance;
 *  3. that range moved down to the alignment below it (top-down), or up to
 *     the one above it (bottom-up), the direction learnt first if need be
 *     (map_learn_dir).
 *     Top-down, the kernel put its range at the top of a gap, so the
 *     alignment below is usually free: the address the over-map's trim
 *     would have kept (the over-map lies just below that gap's top too).
 * Alignments above MAP_EXACT_ALIGN_MAX (a huge aligned block's) are
 * over-mapped at once: a move to the alignment below could land far from
 * anything the kernel chose. */
static uintptr_t map_exact(size_t size, size_t alignment, size_t offset, uintptr_t *near) {
  *near = 0;
  if (!MAP_EXACT_ON || alignment > MAP_EXACT_ALIGN_MAX)
    return 0;
  uintptr_t mask = alignment - 1;
  int dir = atomic_load_explicit(&map_dir, memory_order_relaxed);
  uintptr_t last = atomic_load_explicit(&map_last, memory_order_relaxed);
  uintptr_t last_end = atomic_load_explicit(&map_last_end, memory_order_relaxed);
  void *q = MAP_FAILED;
  if (last && dir) { /* 1 */
    uintptr_t want = 0;
    if (dir > 0 && last_end < MAP_TOP - size - alignment)
      want = ((last_end + offset + mask) & ~mask) - offset;
    else if (dir < 0 && last > MAP_LOW + size + offset)
      want = ((last - size + offset) & ~mask) - offset;
    if (want > MAP_LOW) {
      q = map_at(want, size);
      if (q == (void *)want)
        return want;
    }
  }
  if (q == MAP_FAILED) /* 2 (a hint not honoured above is this already) */
    q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
             0);
  if (q == MAP_FAILED)
    return 0;
  if (map_fits((uintptr_t)q, alignment, offset))
    return (uintptr_t)q;
  unmap_unused(q, size); /* 3 */
  *near = (uintptr_t)q;
  return map_near(*near, size, alignment, offset, 0, 1);
}

/* Maps `size` bytes (a multiple of the OS page) at an address q such that
 * q + offset is aligned to `alignment` (a power of two >= the OS page):
 * exactly (map_exact), else over-mapped and trimmed (map_over), else,
 * when that is refused (a limit that the over-map's excess passes), exactly
 * further from where the kernel put the range (map_near: a hole the kernel
 * chose for the exact range may have no aligned place in it); the TSan
 * build over-maps at once (MAP_EXACT_ON). Elsewhere segments thus lie next
 * to each other (the kernel may merge them into one mapping, as it merged
 * other neighbours); the first one's address has the kernel's randomness
 * rounded to 4 MiB, as before, and each later one is the one before it
 * minus 4 MiB, where the over-map had put it 8 MiB lower in a process that
 * mapped nothing else in between. Segment churn
 * (os_map_aligned, one page touched, unmap): 2 system calls a segment, down
 * from 3, 13.0 -> 8.9 us. errno is kept, as by every os_* call: a caller that
 * fails says ENOMEM itself. Until 2026-11-28 a refused mmap left ENOMEM
 * behind, and a call that then succeeded another way (a second try after
 * make_room, a cut of a cached mapping instead of a gather, a cached tail
 * unmapped instead of moved) returned with it (test_large_as_limit). */
static void *map_aligned(size_t size, size_t alignment, size_t offset) {
  if (size > ((size_t)1 << ADDRESS_BITS) || alignment > ((size_t)1 << (ADDRESS_BITS - 2)))
    return NULL;
  os_orphans_retry(ORPHANS_RETRY); /* their mappings count against the limit */
  uintptr_t near;
  uintptr_t aligned = map_exact(size, alignment, offset, &near);
  if (!aligned)
    aligned = map_over(size, alignment, offset);
  if (!aligned && near)
    aligned = map_near(near, size, alignment, offset, 1, MAP_WALK);
  if (!aligned)
    return NULL;
  uintptr_t want_end = aligned + size;
  if ((want_end - 1) >> ADDRESS_BITS) { /* outside what the registry covers */
    munmap((void *)aligned, size);
    return NULL;
  }
  atomic_store_explicit(&map_last, aligned, memory_order_relaxed);
  atomic_store_explicit(&map_last_end, want_end, memory_order_relaxed);
  return (void *)aligned;
}

void *os_map_aligned(size_t size, size_t alignment, size_t offset) {
  int saved = errno;
  void *p = map_aligned(size, alignment, offset);
  errno = saved;
  return p;
}

/* The large-block zone: a window of address space the kernel does not
 * hand out on its own, where each new large-block range gets OS_ZONE_ROOM
 * of free address space after it, so that the block (or, cached, the next
 * block it serves) can grow in place (os_grow) instead of moving its pages
 * with mremap, which costs about 6 us a page on a paravirtualized guest (a
 * hidden fault at the next touch). The kernel packs mappings next to each
 * other, so without the zone the room after a range is rarely more than
 * what its 4 MiB alignment left. bench_large: 1180 -> 1458 ops/s, 118 ->
 * 69 MB moved (4e7740e).
 *
 * Where: OS_ZONE_SIZE (256 GiB) at a random 16 GiB-aligned base in
 * [OS_ZONE_LO, OS_ZONE_HI) = [24 TiB, 40 TiB) of x86-64's 128 TiB. The
 * kernel's default layout fills top-down from below the stack (about
 * 127 TiB); with an unlimited stack limit it fills top-down from 21.3 TiB
 * or below; the legacy layout (setarch -L, vm.legacy_va_layout) fills
 * bottom-up from 42.7 TiB. None reaches the window before the rest of the
 * address space is full. aarch64 with 48-bit addresses likewise: top-down
 * from below the stack (about 255 TiB), the legacy layout bottom-up from
 * 64 TiB; with 47-bit ones (16 KiB pages) the legacy layout starts at
 * 32 TiB, inside the window, whose slots that other mappings take are
 * skipped; a 39- or 42-bit address space (512 GiB, 4 TiB) refuses the
 * hints, and the zone turns itself off. ASan's shadow ends at 16 TiB; TSan's covers the
 * window, so the zone is off under TSan. The slots are handed out in order
 * from a random start and wrap at the window's end (the registry then
 * holds at most 16 pages for it); a slot that is taken is skipped. Ranges
 * over OS_ZONE_MAX (32 MiB: the cache keeps none of them) go where the
 * kernel puts them: a range alone in its part of the zone needs page-table
 * pages of its own, at about 100 us each on this guest (malloc+free of
 * 40 MiB, one page touched: 143 us placed by the kernel next to other
 * mappings, 390 us alone in the zone). A range's address has about 26
 * random bits (base and start), against mmap's 28. Off for the rest of the
 * process once a hint is not honoured (a kernel before 4.17, a 39-bit
 * address space, an interceptor, or any other mmap error: RLIMIT_AS, the
 * map count): ranges then go where the kernel puts them. Not for EAGAIN,
 * a range past RLIMIT_MEMLOCK after mlockall(MCL_FUTURE): that one block
 * fails (the kernel refuses it anywhere), and until 2026-11-29 every later
 * large block lost its room to grow in place (test_mlockall, zone). */
#if defined(HAK_TSAN) && HAK_TSAN
#define ZONE_ON 0
#else
#define ZONE_ON 1
#endif
#define ZONE_ALIGN ((uintptr_t)16 << 30) /* a registry page's worth */
static _Atomic uintptr_t zone_base;      /* 0: not placed yet */
static _Atomic uintptr_t zone_next;      /* offset of the next slot */
static _Atomic bool zone_off;

/* The zone's base, placed at the first call (a thread that loses the race
 * to place it may take the slot at offset 0: MAP_FIXED_NOREPLACE keeps
 * two ranges apart). */
static uintptr_t zone_start(void) {
  uintptr_t base = atomic_load_explicit(&zone_base, memory_order_relaxed);
  if (base)
    return base;
  uint64_t r = os_random_seed();
  uintptr_t bases = (OS_ZONE_HI - OS_ZONE_LO - OS_ZONE_SIZE) / ZONE_ALIGN + 1;
  uintptr_t want = OS_ZONE_LO + (uintptr_t)(r % bases) * ZONE_ALIGN;
  if (!atomic_compare_exchange_strong_explicit(&zone_base, &base, want, memory_order_relaxed,
                                               memory_order_relaxed))
    return base;
  atomic_store_explicit(&zone_next,
                        ((uintptr_t)(r >> 24) % OS_ZONE_SIZE) & ~(uintptr_t)SEGMENT_MASK,
                        memory_order_relaxed);
  return want;
}

bool os_zone_on(void) {
  return ZONE_ON && !atomic_load_explicit(&zone_off, memory_order_relaxed);
}

/* hakmem's tests: whether p lies in the zone (false before it is placed). */
bool os_zone_holds(const void *p) {
  uintptr_t base = atomic_load_explicit(&zone_base, memory_order_relaxed);
  return base && (uintptr_t)p - base < OS_ZONE_SIZE;
}

/* hakmem's tests: the zone placed, its next slot at offset `off`; returns
 * the base. */
uintptr_t os_zone_seek(uintptr_t off) {
  uintptr_t base = zone_start();
  atomic_store_explicit(&zone_next, off, memory_order_relaxed);
  return base;
}

/* hak_test_reset: not placed, on. */
void os_zone_reset(void) {
  atomic_store_explicit(&zone_base, 0, memory_order_relaxed);
  atomic_store_explicit(&zone_next, 0, memory_order_relaxed);
  atomic_store_explicit(&zone_off, false, memory_order_relaxed);
}

/* Maps `size` bytes at the zone's next free slot; NULL if it is off, or
 * OS_ZONE_TRIES slots in a row are taken. errno is kept. */
static void *zone_map(size_t size) {
  if (!os_zone_on() || size > OS_ZONE_MAX)
    return NULL;
  int saved = errno;
  uintptr_t base = zone_start();
  uintptr_t stride = os_zone_slot(size);
  void *got = NULL;
  for (int i = 0; i < OS_ZONE_TRIES && !got; i++) {
    uintptr_t off = atomic_fetch_add_explicit(&zone_next, stride, memory_order_relaxed);
    if (off > OS_ZONE_SIZE - stride) { /* wrap; a thread racing here only skips slots */
      atomic_store_explicit(&zone_next, 0, memory_order_relaxed);
      continue;
    }
    void *want = (void *)(base + off);
    void *q = mmap(want, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == want)
      got = q;
    else if (q == MAP_FAILED && errno == EAGAIN)
      break; /* past RLIMIT_MEMLOCK (mlockall): this range's refusal alone */
    else if (q != MAP_FAILED || errno != EEXIST) { /* not honoured: off from now on */
      if (q != MAP_FAILED)
        munmap(q, size);
      atomic_store_explicit(&zone_off, true, memory_order_relaxed);
      break;
    }
  }
  errno = saved;
  return got;
}

/* A range of `size` bytes (a multiple of the OS page) for a large block,
 * 4 MiB-aligned: in the zone, else where the kernel puts it. */
void *os_map_large(size_t size) {
  void *p = zone_map(size);
  return p ? p : os_map_aligned(size, SEGMENT_SIZE, 0);
}

/* munmap, for a range that may hold resident pages. The kernel refuses to
 * split a mapping when the process is at its limit of mappings
 * (vm.max_map_count): munmap of a range inside a bigger mapping then fails
 * with ENOMEM, and at the limit large blocks the kernel placed next to
 * each other are one mapping (it merges them). The pages are then given
 * back with MADV_DONTNEED, which never splits; the range stays mapped,
 * address space no one uses. Until 2026-11-28 the failure was ignored: the
 * pages stayed resident, unreachable (the caller forgets the range), and
 * free() returned with errno ENOMEM (test_map_limit; found with a program
 * whose 80000 blocks of 100 KiB, 8 KiB of each written, freed and trimmed
 * three times, held 424 MiB). errno is kept. */
void os_munmap(void *p, size_t size) {
  int saved = errno;
  if (munmap_ours(p, size) != 0) {
    madvise(p, size, MADV_DONTNEED);
    orphan_add(p, size);
  } else {
    os_orphans_retry(ORPHANS_RETRY); /* a mapping fewer: maybe room for a split */
  }
  errno = saved;
}

void os_unmap(void *p, size_t size) {
  track_unmapping(p, size);
  os_munmap(p, size);
}

/* Maps [p + old, p + new) if nothing is mapped there. MAP_FIXED_NOREPLACE
 * is only a hint before Linux 4.17: a mapping placed elsewhere is given
 * back. errno is kept (a malloc that succeeds must not leave a probe's
 * errno behind). */
static bool os_extend(void *p, size_t old, size_t new) {
  int saved = errno;
  uint8_t *want = (uint8_t *)p + old;
  void *q = mmap(want, new - old, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  bool ok = q == (void *)want;
  if (!ok && q != MAP_FAILED)
    munmap(q, new - old);
  errno = saved;
  return ok;
}

/* The word os_move_mapping writes at the start of a move's destination:
 * what a failed move's destination must still hold to be ours. */
static uint64_t move_token(const void *dst) {
  return hak_cookie ^ (uintptr_t)dst ^ 0x6d6f76652d647374ull;
}

/* A failed move may have stopped before unmapping its destination (out of
 * mappings, on every kernel) or after (before Linux 6.11 mremap unmapped
 * it first; and a move can fail part way): which one is not reported, and
 * another thread may have mapped something into the hole since. So: if the
 * range can be mapped again (MAP_FIXED_NOREPLACE) it is ours, new; if
 * something is there, it is ours only if it still holds the token, read
 * with process_vm_readv, which fails rather than faults where nothing
 * readable is mapped. Where that call is not allowed (a seccomp filter),
 * the range is taken to be another's: never unmapped, at worst leaked
 * address space. */
static bool failed_move_dst_kept(void *dst, size_t n) {
  if (os_extend(dst, 0, n))
    return true;
  uint64_t v = 0;
  struct iovec local = {&v, sizeof v}, remote = {dst, sizeof v};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)sizeof v &&
         v == move_token(dst);
}

bool os_move_mapping(void *src, size_t old, size_t new, void *dst, bool *kept) {
  int saved = errno;
  *(volatile uint64_t *)dst = move_token(dst); /* one fault of dst's first page */
  bool moved = mremap(src, old, new, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED;
  if (moved) /* src's range is gone, as if unmapped */
    map_forget((uintptr_t)src, old);
  *kept = moved || failed_move_dst_kept(dst, new);
  errno = saved;
  return moved;
}

/* Grows the mapping at p from `old` to `new` bytes in place, if the
 * address space after it is free: mremap keeps one kernel mapping one, and
 * fails with EFAULT on a range of several (a large block assembled from
 * moved pages, or one the program split), which grows by a mapping of its
 * own after it. *one: whether mremap grew it, so that [p, p + new) is one
 * kernel mapping now (large.c's count of a range's mappings). The mapping
 * after it is a new one: advised like every new large-block mapping
 * (HAKMEM_THP; mremap's growth keeps the mapping's advice). Until
 * 2026-11-28 it was not, and a block of several mappings grown by realloc,
 * or a cached one grown for a bigger block, got no huge pages past its old
 * end (test_thp, grown). errno is kept. */
bool os_grow(void *p, size_t old, size_t new, bool *one) {
  int saved = errno;
  *one = mremap(p, old, new, 0) != MAP_FAILED;
  bool ok = *one || (errno == EFAULT && os_extend(p, old, new));
  if (ok && !*one)
    os_advise_huge((uint8_t *)p + old, new - old);
  errno = saved;
  return ok;
}

/* Whether [p, p + n) lies in one kernel mapping. A resize in place of a
 * range that spans several fails with EFAULT on every kernel (a same-size
 * "resize" does not tell: older kernels return at once), so this asks for
 * one page more: ENOMEM (no room), EAGAIN (a locked mapping at its limit:
 * checked after the boundaries) or success (given back at once: the page
 * was free address space) says one; EFAULT says several (or a hole).
 * The page is given back like every range nothing uses (unmap_unused): a
 * refused munmap (the grown mapping merged with the one after it, a split
 * at the map limit) leaves it an orphan, unmapped again later. Until
 * 2026-11-29 the refusal was ignored, and the page stayed mapped after the
 * block for good, on no list (test_oom_sweep, munmap sweep: 4 KiB more
 * mapped than hak_stats counted after every block was freed and trimmed).
 * errno is kept. */
bool os_one_mapping(void *p_, size_t n) {
  uint8_t *p = p_;
  int saved = errno;
  bool one = true;
  if (mremap(p, n, n + OS_PAGE_SIZE, 0) != MAP_FAILED)
    unmap_unused(p + n, OS_PAGE_SIZE);
  else
    one = errno == ENOMEM || errno == EAGAIN; /* else (EFAULT, ...): not known to be one */
  errno = saved;
  return one;
}

/* Whether os_move moves pages at all: not under valgrind, whose mremap
 * (3.19) answers ENOMEM where the kernel says EFAULT (os_one_mapping cannot
 * tell) and crashes moving several mappings at once. */
bool os_moves(void) {
#if defined(HAK_VALGRIND) && HAK_VALGRIND
  if (RUNNING_ON_VALGRIND)
    return false;
#endif
  return true;
}

/* Moves the pages of [src, src + n) to [dst, dst + n), which replaces what
 * was mapped there; page tables move, nothing is copied (os_move_mapping
 * writes one word at each destination first: a fault of its page).
 * mremap moves one kernel mapping at a time on every kernel (before Linux
 * 6.17 a move across several fails, and before 6.11 only after unmapping
 * dst; from 6.17 it may stop part way): a range made of several, like a
 * large block assembled from moved pages, is moved one mapping at a time,
 * each found by bisection with os_one_mapping(). Returns how many bytes moved,
 * a prefix of the range: n unless a move failed (or src has a hole); the
 * rest of src is still mapped there, and so is the rest of dst
 * (os_move_mapping's `kept`), unless the failed move had unmapped that part
 * and another thread mapped something there before it could be mapped
 * again: then *lost is its length (never to be used or unmapped by the
 * caller); else *lost is 0. *maps: how many kernel mappings moved, one
 * mremap each (large.c counts a range's pieces with it).
 * Nothing moves where !os_moves(). errno is kept. */
size_t os_move(void *src, size_t n, void *dst, size_t *lost, size_t *maps) {
  uint8_t *s = src, *d = dst;
  size_t done = 0;
  int saved = errno;
  *lost = 0;
  *maps = 0;
  if (!os_moves())
    return 0;
  while (done < n) {
    size_t k = n - done;
    if (!os_one_mapping(s + done, k)) {
      size_t lo = 0, hi = k; /* one mapping (or nothing) at lo, not at hi */
      while (hi - lo > OS_PAGE_SIZE) {
        size_t mid = lo + ((hi - lo) / 2 & ~(OS_PAGE_SIZE - 1));
        if (os_one_mapping(s + done, mid))
          lo = mid;
        else
          hi = mid;
      }
      k = lo;
      if (k == 0)
        break; /* a hole (or unknown) at s + done */
    }
    bool kept;
    if (!os_move_mapping(s + done, k, k, d + done, &kept)) {
      if (!kept)
        *lost = k;
      break;
    }
    done += k;
    ++*maps;
  }
  errno = saved;
  return done;
}

/* HAKMEM_THP=1 in the environment (secure_getenv: not for setuid
 * programs): segments and new large-block mappings are
 * madvise(MADV_HUGEPAGE)d when mapped, so the kernel backs each 2 MiB
 * region that lies whole in one with a huge page at its first touch. One
 * fault instead of 512, and a TLB entry per 2 MiB: bench_random_mixed at
 * 4 KiB, 41.8M -> 54.8M ops/s here, at 8 KiB 30.0M -> 38.1M; bench_large
 * 1038 -> 1675 ops/s (medians). Off by default: a region is then resident
 * whole once touched (random_mixed at 16 B, peak RSS 1.8 -> 3.7 MB), and
 * khugepaged may fill purged slices of such a segment again. Read once, at
 * the first mapping advised. Pages moved by mremap keep their mapping's
 * advice. */
static _Atomic int thp_opt; /* 0 not read yet, 1 off, 2 on */

void os_advise_huge(void *p, size_t size) {
  int v = atomic_load_explicit(&thp_opt, memory_order_relaxed);
  if (v == 0) {
    const char *e = secure_getenv("HAKMEM_THP");
    v = e && e[0] == '1' && e[1] == '\0' ? 2 : 1;
    atomic_store_explicit(&thp_opt, v, memory_order_relaxed);
  }
  if (v == 2) {
    int saved = errno;
    madvise(p, size, MADV_HUGEPAGE); /* EINVAL: a kernel without THP; nothing to do */
    errno = saved;
  }
}

/* Gives the pages back; they read as zero afterwards (MADV_DONTNEED).
 * It fails (EINVAL) on mlock'ed pages (mlockall(MCL_FUTURE) locks all):
 * they keep their bytes, so the caller must not count them as zero. */
bool os_purge(void *p, size_t size) {
  int saved = errno;
  bool ok = madvise(p, size, MADV_DONTNEED) == 0;
  errno = saved;
  return ok;
}

/* Milliseconds of the monotonic clock (coarse: a vDSO read, no syscall):
 * for deadlines of waits, which the test clock below must not stop. */
uint64_t os_real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The test clock (os_test_advance_ms, os_test_freeze_clock): how far
 * os_now_ms runs ahead of the real clock, and the time it stands at once
 * frozen (0: not frozen). Both 0 outside the fuzzers and the tests that
 * set them. */
static _Atomic uint64_t os_clock_ahead_ms;
static _Atomic uint64_t os_clock_frozen_ms;

/* The clock of the purge delay and the caches' aging. */
uint64_t os_now_ms(void) {
  uint64_t frozen = atomic_load_explicit(&os_clock_frozen_ms, memory_order_relaxed);
  if (unlikely(frozen != 0))
    return frozen;
  return os_real_ms() + atomic_load_explicit(&os_clock_ahead_ms, memory_order_relaxed);
}

void os_test_advance_ms(uint64_t ms) {
  if (atomic_load_explicit(&os_clock_frozen_ms, memory_order_relaxed) != 0)
    atomic_fetch_add_explicit(&os_clock_frozen_ms, ms, memory_order_relaxed);
  else
    atomic_fetch_add_explicit(&os_clock_ahead_ms, ms, memory_order_relaxed);
}

void os_test_freeze_clock(void) {
  uint64_t now = os_now_ms();
  uint64_t unfrozen = 0;
  atomic_compare_exchange_strong_explicit(&os_clock_frozen_ms, &unfrozen, now, memory_order_relaxed,
                                          memory_order_relaxed);
}

uint64_t os_random_seed(void) {
  uint64_t x = 0;
  const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
  if (r)
    for (int i = 0; i < 8; i++)
      x = (x << 8) | r[i];
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  x ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&ts;
  x ^= x >> 31;
  return x | 1;
}
