/* hakmem internal types, constants and the inline helpers shared by every
 * source file. One concept per source file:
 *   sizeclass.c  the size-class table (the only place sizes map to classes)
 *   registry.c   the global map of address ranges hakmem owns
 *   os.c         mmap/munmap/madvise
 *   segment.c    4 MiB segments and their 64 KiB slices, purge policy
 *   page.c       pages: carving, free lists, remote-free collection
 *   heap.c       per-thread heaps: TLS, abandon/adopt, fork
 *   large.c      blocks above HAK_SMALL_MAX, straight from mmap
 *   api.c        the public API, fast and slow paths, interposition
 *   check.c      hak_heap_check and hak_stats
 *   error.c      named fatal errors and their one-line reports */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define HAK_INTERNAL __attribute__((visibility("hidden")))
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_COLD __attribute__((noinline, cold))

/* ---- geometry ---------------------------------------------------------- */
#define SEGMENT_SHIFT 22 /* 4 MiB segments, aligned to their size */
#define SEGMENT_SIZE ((size_t)1 << SEGMENT_SHIFT)
#define SEGMENT_MASK (SEGMENT_SIZE - 1)
#define SLICE_SHIFT 16 /* 64 KiB slices; a page is a run of slices */
#define SLICE_SIZE ((size_t)1 << SLICE_SHIFT)
#define SLICES_PER_SEGMENT (SEGMENT_SIZE / SLICE_SIZE) /* 64; slice 0 = metadata */
/* The OS page: 4 KiB on x86, a constant there (the fast paths' code is
 * the same as before other architectures were built). Elsewhere it is the
 * kernel's (getauxval(AT_PAGESZ)), read at the first use: aarch64 kernels
 * run with 4, 16 or 64 KiB pages, and a kernel with bigger pages than the
 * constant refuses (EINVAL) a munmap, mremap or madvise of a range cut at
 * the constant's multiples (a large block's tail, a shrink). Slices (64 KiB) are whole pages on
 * every such kernel (OS_PAGE_MAX): their purge, madvise(MADV_DONTNEED), needs page-aligned ranges.
 */
#define OS_PAGE_MAX ((size_t)64 << 10)
_Static_assert(SLICE_SIZE % OS_PAGE_MAX == 0, "a slice is whole OS pages");
#if defined(__x86_64__) || defined(__i386__)
#define OS_PAGE_SIZE ((size_t)4096)
#else
extern HAK_INTERNAL _Atomic size_t hak_os_page; /* 0 until read (os.c) */
HAK_INTERNAL size_t os_page_size_init(void);
static inline size_t os_page_size(void) {
  size_t p = atomic_load_explicit(&hak_os_page, memory_order_relaxed);
  return likely(p) ? p : os_page_size_init();
}
#define OS_PAGE_SIZE os_page_size()
#endif
/* The registry covers 2^48 bytes of address space: x86-64's user space
 * (2^47, or 2^56 with 5-level paging, whose kernel maps above 2^47 only
 * when asked by a hint above it) and aarch64's with 48-bit addresses (or
 * 52-bit ones, above 2^48 likewise only when asked). hakmem never hints
 * that high (MAP_TOP, OS_ZONE_HI) and gives back anything placed above. */
#define ADDRESS_BITS 48 /* user address space covered by the registry */
/* No range this big can be mapped: x86-64's user address space is 2^47
 * bytes less a page, and with 5-level paging mmap stays below 2^47 unless
 * hinted higher, which hakmem never does. aarch64's may hold a range of
 * 2^47 bytes, but not with anything else mapped below its top; a request
 * past it fails whatever the caches give back (make_room). */
#define OS_MAP_MAX ((size_t)1 << (ADDRESS_BITS - 1))

#define NCLS HAK_NUM_CLASSES
#define BLOCK_MIN 16
#define PAGE_MIN_BLOCKS 8 /* a page spans enough slices for >= 8 blocks */
#ifndef PAGE_WANT_BLOCKS
#define PAGE_WANT_BLOCKS 64 /* ... and for 64 when that takes <= PAGE_MAX_SLICES */
#endif
#ifndef PAGE_MAX_SLICES
#define PAGE_MAX_SLICES 4
#endif
#ifndef EXTEND_BYTES
#define EXTEND_BYTES (4 * 1024) /* carve at most this much of a page at a time */
#endif

#define SEG_MAGIC 0x48414B53u   /* "HAKS" */
#define LARGE_MAGIC 0x48414B4Cu /* "HAKL" */
enum { KIND_SMALL = 1, KIND_LARGE = 2 };

/* Low bits of page->thread_free: the full-page notification protocol (see page.c). */
#define TF_NONE ((uintptr_t)0)
#define TF_NOTIFY ((uintptr_t)1)    /* page sits in its heap's full list: tell the heap */
#define TF_NOTIFYING ((uintptr_t)2) /* a remote thread is handing a block to the heap */
/* The page's segment is abandoned (or being abandoned): its exiting owner
 * took the stack and counted the page's live blocks (segment_abandon_locked),
 * so a remote free pushing now must be counted as a free into the abandoned
 * segment (free_not_owned); cleared by the adopter (segment_adopt). */
#define TF_ABANDONED ((uintptr_t)3)
#define TF_MASK ((uintptr_t)3)
/* The rest of the word: the stack's top block in bits 2..47 (blocks lie
 * below 2^ADDRESS_BITS and are 16-byte aligned) and how many blocks the
 * stack holds in bits 48..63, so the owner takes the stack without walking
 * it: a walk is a chain of cache misses on lines the freeing threads wrote
 * (in a producer/consumer program, most of the producer's malloc time). */
#define TF_COUNT_SHIFT 48
#define TF_COUNT_ONE ((uintptr_t)1 << TF_COUNT_SHIFT)
#define TF_BLOCK_MASK ((TF_COUNT_ONE - 1) & ~TF_MASK)

/* Purge policy: a heap madvise(MADV_DONTNEED)s its free slices once they add
 * up to PURGE_THRESHOLD; fully free segments beyond SEGMENT_CACHE_MAX are unmapped,
 * the newest SEGMENT_CACHE_DIRTY cached ones stay committed. */
#ifndef PURGE_THRESHOLD
#define PURGE_THRESHOLD ((size_t)8 << 20)
#endif
#ifndef PURGE_DELAY_MS
#define PURGE_DELAY_MS 500 /* ... for this long (see segment.c) */
#endif
#ifndef TCACHE_BYTES
#define TCACHE_BYTES ((size_t)64 << 10) /* per class and thread (see tcache.c) */
#endif
#define TCACHE_GROW_MAX 4                   /* a class's limit grows to this times its first */
#define TCACHE_GROW_BYTES ((size_t)1 << 20) /* ... and all of a heap's by this much in all */
#define SEGMENT_CACHE_MAX 8
#ifndef SEGMENT_CACHE_DIRTY
#define SEGMENT_CACHE_DIRTY 2 /* cached segments left committed (8 MiB) */
#endif

/* ---- types ------------------------------------------------------------- */
typedef struct hak_block {
  struct hak_block *next; /* free-list link (word 0 of a free block) */
  uintptr_t marker;       /* cookie ^ address while free; 0 once handed out */
} hak_block_t;

struct hak_heap;
struct hak_segment;

typedef struct hak_page {
  /* Line 0: written only when the page is set up or carved (what every
   * free reads of it is in its slices' entries, hak_slice_t), and the
   * remote-free stack that other threads' frees push on. Line 1: what the
   * owner's malloc writes. A producer's malloc and a consumer's free of the
   * same page then touch different lines (with free/used on line 0, every
   * remote free read the line the owner's last malloc had just written). */
  _Atomic uintptr_t thread_free; /* remote-free stack: count | top block | TF_* bits */
  _Atomic uint32_t capacity;     /* blocks carved so far */
  uint32_t reserved;             /* blocks that fit in the page */
  uint32_t block_size;
  uint8_t cls;
  uint8_t in_use;      /* page is allocated from its segment */
  uint8_t slice_index; /* first slice */
  uint8_t slice_count;
  /* line 1: the owner's */
  _Alignas(64) hak_block_t *free; /* local free list */
  uint32_t used;                  /* blocks not in `free` (live + pending remote) */
  uint8_t in_full;                /* page is in its heap's full list */
  uint8_t free_is_zero;           /* blocks in `free` are zero past their first 16 bytes */
  struct hak_page *next, *prev;   /* class queue or full list */
} hak_page_t;
_Static_assert(sizeof(hak_page_t) == 128, "page descriptor: two cache lines");
_Static_assert(ADDRESS_BITS <= TF_COUNT_SHIFT, "thread_free: block address overlaps the count");
/* Pages of the smallest blocks span one slice (PAGE_WANT_BLOCKS fit), so no
 * page holds more blocks than this (hak_heap_check's bitmap relies on it). */
#define MAX_BLOCKS_PER_PAGE (SLICE_SIZE / BLOCK_MIN)
_Static_assert(MAX_BLOCKS_PER_PAGE < ((size_t)1 << (64 - TF_COUNT_SHIFT)),
               "thread_free: a page's blocks overflow the count");

/* What free reads of a slice: whether a pointer into it starts a carved
 * block of its page, and the page's class. 8 bytes, eight to a cache line,
 * in one array in the segment header: the 63 slices' entries take 8
 * lines, where a 128-byte descriptor per slice took 63 (+0.1-0.15 L1
 * misses per op in bench_random_mixed at 2-8 KiB, against one per page)
 * and 16-byte entries holding the division magic took 16 (0.07 more than
 * these at 4-8 KiB). Written by page_init and page_set_capacity only
 * (slice_entry_*). */
typedef struct hak_slice {
  /* bytes of the slice, from its start, below the end of the page's carved
   * blocks: 0 in a free slice, a released page's and the header's, so
   * every pointer there is rejected (remote frees read it: atomic) */
  _Atomic uint32_t end;
  uint16_t phase; /* (slice start - page start) mod block_size */
  uint8_t cls;
  uint8_t spare;
} hak_slice_t;
#define SLICE_ENTRY_SHIFT 3
_Static_assert(sizeof(hak_slice_t) == (1 << SLICE_ENTRY_SHIFT),
               "slice entry: eight to a cache line");
_Static_assert(HAK_SMALL_MAX <= 65536, "a phase (below the block size) fits in 16 bits");

/* The parts of a thread_free word. */
static inline hak_block_t *tf_block(uintptr_t tf) {
  return (hak_block_t *)(tf & TF_BLOCK_MASK);
}
static inline size_t tf_count(uintptr_t tf) {
  return (size_t)(tf >> TF_COUNT_SHIFT);
}

typedef struct hak_segment {
  /* Line 0 holds no field the free fast path reads: segments are 4 MiB-aligned, so
   * every segment's line 0 falls in the same L1 set as every 4 KiB-aligned
   * block start (8 KiB blocks: all of them); `owner` there missed L1 on
   * 0.73 of all frees in bench_random_mixed at 8 KiB (cachegrind). */
  uint32_t magic;
  uint32_t kind;         /* KIND_SMALL */
  uint64_t free_slices;  /* bit i: slice i holds no page */
  uint64_t dirty_slices; /* bit i: slice i may hold non-zero bytes */
  uint32_t used_pages;
  uint32_t abandoned;
  /* While abandoned (see reclaim_wanted in api.c): hak_abandon_epoch when
   * it was abandoned, the blocks live then, and the frees into it since */
  _Atomic uint64_t abandoned_epoch;
  _Atomic uint32_t abandoned_live;
  _Atomic uint32_t abandoned_frees;
  struct hak_segment *next, *prev; /* heap's list, abandoned list or cache */
  /* owner, read by every free, and the slice map, read by every remote
   * free (ptr_page), together from line 1: slice_head[0..55] share owner's
   * line, 56..63 spill onto line 2; the slice entries, read by every free,
   * take lines 3..10, eight to a line */
  _Alignas(64) _Atomic(struct hak_heap *) owner; /* NULL while abandoned */
  uint8_t slice_head[SLICES_PER_SEGMENT];        /* page index owning slice i, 0 = none */
  struct hak_segment *gnext, *gprev;             /* all small segments (check/stats) */
  uint64_t cached_at_ms;    /* when it went into the segment cache (segment_release) */
  uint64_t abandoned_at_ms; /* when it was last abandoned (segment_abandon_locked) */
  _Alignas(64) hak_slice_t slices[SLICES_PER_SEGMENT]; /* slices[0]: the header's */
  hak_page_t pages[SLICES_PER_SEGMENT];                /* pages[0] is the null page */
} hak_segment_t;
_Static_assert(offsetof(hak_segment_t, owner) == 64 && offsetof(hak_segment_t, slice_head) == 72 &&
                   offsetof(hak_segment_t, slices) == 192,
               "segment header: owner and slice_head start line 1, off line 0; slices on lines");

typedef struct hak_large {
  uint32_t magic;
  uint32_t kind; /* KIND_LARGE */
  _Atomic uint32_t freed;
  uint16_t huge;    /* aligned >= 4 MiB: header is the page below the block */
  uint16_t pieces;  /* kernel mappings the range is made of, at most (large.c) */
  size_t map_size;  /* bytes mapped at the header */
  size_t offset;    /* user pointer = header + offset */
  size_t alignment; /* alignment of the mapping start */
  size_t requested; /* the request (at least 16) and its redzone (track_need) */
  struct hak_large *gnext, *gprev;
} hak_large_t;
/* A large block's header: the first LARGE_HDR bytes of its range, the block
 * right after them unless it is aligned further (hak_large_t.offset). */
#define LARGE_HDR 64
_Static_assert(sizeof(hak_large_t) <= LARGE_HDR, "a large header fits before the block");

enum { HEAP_FREE = 0, HEAP_ACTIVE = 1 };

/* A heap's lock: taken by its owner thread on its slow paths, by
 * fork_prepare and, with a trylock that never waits, by hak_trim
 * (heap_trim_all), so it is all but uncontended: one atomic exchange
 * takes it, a release store drops it, a waiter spins, yields, then
 * sleeps (heap_lock_wait, spin_wait). A pthread mutex cost ~60 instructions per slow path. */
typedef struct {
  _Atomic uint32_t held;
} hak_heap_lock_t;

typedef struct hak_heap {
  /* The heap's cache of each class (tcache.c): a LIFO list of blocks its
   * owner freed, handed out again before any page is looked at, so a block
   * freed is reused while it is still in the CPU cache, whichever page it
   * came from. Cached blocks are free (they carry the free marker) but
   * their pages count them as used. tc_room: how many more the list takes
   * (tc_limit[cls] when empty; -1 for the moment a free pushed one over
   * the limit). Two arrays, not one of structs: each is one scaled-index
   * access on the fast paths. */
  hak_block_t *tc_head[NCLS];
  int32_t tc_room[NCLS];
  /* Each class's limit: class_tcache_limit(cls) at first, doubled (to at
   * most TCACHE_GROW_MAX times that, within TCACHE_GROW_BYTES per heap)
   * when the list overflows after it ran empty since its last overflow
   * (tcache_overflow): a class a thread both frees and allocates in bursts
   * bigger than the list otherwise keeps taking the slow paths on both
   * ends. tc_under: the list ran empty (malloc went to a page) since its
   * last overflow; tc_grown: bytes the limits grew by, all classes. */
  uint16_t tc_limit[NCLS];
  uint8_t tc_under[NCLS];
  size_t tc_grown;
  /* hak_class_magic, copied (heap_reset; hak_init for hak_empty_heap): free's
   * block-start check indexes it off the heap pointer it loads anyway */
  uint64_t magic[NCLS];
  hak_page_t *direct[NCLS]; /* first page of each class queue, or &hak_empty_page */
  hak_page_t *tail[NCLS];
  hak_page_t *full;          /* pages with no free block, all classes */
  hak_segment_t *segments;   /* owned segments */
  _Atomic uintptr_t delayed; /* blocks handed over by remote frees to full pages */
  size_t dirty_free_bytes;   /* free slice bytes not yet purged */
  uint64_t purge_at_ms;      /* when they may be purged (0: below the threshold) */
  /* segments segment_page_alloc took (new, cached or adopted) since its
   * last heap_collect_remote, and how many it takes before the next: a
   * quarter of the segments the heap kept through that one, so the walks
   * cost O(1) per page allocated however big the heap grows */
  uint32_t seg_joins, collect_due;
  uint32_t state;
  uint32_t id;
  /* hak_abandon_epoch at this heap's last allocation slow path (0: none
   * yet): a heap that has allocated since a segment was abandoned reclaims
   * it on free (see reclaim_wanted in api.c). Owner thread only. */
  uint64_t alloc_epoch;
  /* The abandoned segment this heap's thread is freeing into between
   * page_free_remote's check of a page's mark and its push, or NULL
   * (free_not_owned): an abandonment waits while a heap names its segment
   * (segment_abandon_locked). Written by the owner thread only. */
  _Atomic(struct hak_segment *) mark_seg;
  /* Held by the owner thread during its slow paths, and by fork_prepare, so
   * a fork child never sees another heap's queues or segments half-updated
   * (the fast paths only touch a page's free list and used count, which the
   * child repairs). Uncontended except around fork. */
  hak_heap_lock_t lock;
  uint32_t fork_locked;
  struct hak_heap *all_next;  /* every heap ever made */
  struct hak_heap *pool_next; /* free heaps */
  /* the active heaps (hak_active_heaps, global lock): what
   * segment_wait_marks walks */
  struct hak_heap *act_next, *act_prev;
} hak_heap_t;

/* ---- globals ----------------------------------------------------------- */
extern HAK_INTERNAL hak_page_t hak_empty_page;
extern HAK_INTERNAL hak_heap_t hak_empty_heap;
extern HAK_INTERNAL __thread hak_heap_t *hak_tls_heap __attribute__((tls_model("initial-exec")));
extern HAK_INTERNAL __thread bool hak_tls_exiting __attribute__((tls_model("initial-exec")));
extern HAK_INTERNAL uintptr_t hak_cookie;
extern HAK_INTERNAL pthread_mutex_t hak_global_lock; /* abandoned list, caches, heap pool */
extern HAK_INTERNAL const uint32_t hak_class_sizes[NCLS];
/* ceil(2^64 / size) of each class (slice_is_block_start); every heap
 * holds a copy (hak_heap_t.magic) */
extern HAK_INTERNAL const uint64_t hak_class_magic[NCLS];

/* ---- size classes (sizeclass.c owns the table; this is its lookup) ----- */
/* Smallest class whose block size is >= n, for n <= HAK_SMALL_MAX:
 * 16..128 in steps of 16, then 8 classes per power of two (<= 12.5% waste).
 * CLASS_OF_ is the formula (a constant expression for constant n); sizes up
 * to SMALL_LUT_MAX go through hak_small_lut and larger ones through
 * hak_mid_lut, which sizeclass.c fills from the same formula at compile time
 * (class sizes are multiples of 16, and above 1024 of 128, so one entry per
 * 16 or 128 bytes is exact; a table load instead of the formula's bsr and
 * shifts is 7 instructions less for malloc(8192)). */
#define CLASS_LOG2_(m) ((size_t)(63 - __builtin_clzl((unsigned long)(m))))
#define CLASS_OF_(n)                                                                               \
  ((size_t)(n) <= 128 ? ((size_t)(n) ? ((size_t)(n)-1) >> 4 : 0)                                   \
                      : 8 + (CLASS_LOG2_((size_t)(n)-1) - 7) * 8 +                                 \
                            ((((size_t)(n)-1) >> (CLASS_LOG2_((size_t)(n)-1) - 3)) & 7))
#define SMALL_LUT_MAX 1024
extern HAK_INTERNAL const uint8_t hak_small_lut[SMALL_LUT_MAX / 16 + 1];
extern HAK_INTERNAL const uint8_t hak_mid_lut[HAK_SMALL_MAX / 128 + 1];
static inline size_t size_to_class(size_t n) {
  if (n <= SMALL_LUT_MAX)
    return hak_small_lut[(n + 15) >> 4];
  return n <= HAK_SMALL_MAX ? hak_mid_lut[(n + 127) >> 7] : CLASS_OF_(n);
}
static inline size_t class_size(size_t cls) {
  return hak_class_sizes[cls];
}
HAK_INTERNAL size_t class_slices(size_t cls);
HAK_INTERNAL uint32_t class_tcache_limit(size_t cls);

/* ---- registry (registry.c): what hakmem keeps in each 4 MiB range ------ */
#define REGISTRY_SLOTS ((size_t)1 << (ADDRESS_BITS - SEGMENT_SHIFT))
enum {
  REG_NONE = 0,  /* not hakmem's */
  REG_SMALL = 1, /* a small-block segment starts here */
  REG_LARGE = 2, /* a large block's header starts here */
  REG_HUGE = 3   /* a large block aligned to >= 4 MiB starts here; header in the page below */
};
extern HAK_INTERNAL _Atomic uint8_t hak_registry[REGISTRY_SLOTS];
static inline unsigned registry_kind(const void *p) {
  uintptr_t i = (uintptr_t)p >> SEGMENT_SHIFT;
  if (unlikely(i >= REGISTRY_SLOTS))
    return REG_NONE;
  /* Relaxed: a valid pointer came to this thread from its allocation
   * (happens-before, the program's own), which came after its range was
   * registered and its header and slice entries written. A bad pointer's
   * range may change meanwhile: the error paths read what it holds under
   * the lock that its unregistering holds (global: segments; large). */
  return atomic_load_explicit(&hak_registry[i], memory_order_relaxed);
}
HAK_INTERNAL void registry_set(const void *range_start, unsigned kind);
struct hak_large;
/* Header of the large block whose range holds `p`, or NULL. */
HAK_INTERNAL struct hak_large *registry_large(const void *p);

static inline void *ptr_segment_base(const void *p) {
  return (void *)((uintptr_t)p & ~(uintptr_t)SEGMENT_MASK);
}
/* A page's first block: the start of its first slice. Computed, not kept
 * in the descriptor: the segment header is memory memcheck scans for
 * pointers, and until 2026-11-28 the descriptor's copy of this address
 * kept a leaked first block "still reachable" in the valgrind build, so
 * the leak went unreported (test_valgrind_catches, mode leak_first). */
static inline uint8_t *page_start(const hak_page_t *pg) {
  return (uint8_t *)ptr_segment_base(pg) + (size_t)pg->slice_index * SLICE_SIZE;
}
static inline size_t ptr_slice(const hak_segment_t *seg, const void *p) {
  (void)seg; /* p's segment is p with the low SEGMENT_SHIFT bits cleared */
  return ((uintptr_t)p >> SLICE_SHIFT) & (SLICES_PER_SEGMENT - 1);
}
static inline hak_page_t *ptr_page(hak_segment_t *seg, const void *p) {
  return &seg->pages[seg->slice_head[ptr_slice(seg, p)]];
}
/* The entry of p's slice (hak_slice_t): free's fast path reads it, not
 * the page; everything that changes a page goes through ptr_page. */
static inline hak_slice_t *ptr_slice_entry(hak_segment_t *seg, const void *p) {
  /* &seg->slices[ptr_slice(seg, p)] with the index scaled in one shift and
   * mask of p (gcc computed the address twice: +3 instructions) */
  size_t off = ((uintptr_t)p >> (SLICE_SHIFT - SLICE_ENTRY_SHIFT)) &
               ((SLICES_PER_SEGMENT - 1) << SLICE_ENTRY_SHIFT);
  return (hak_slice_t *)((uint8_t *)seg->slices + off);
}
/* Whether p (in sl's slice) is the start of a carved block of the slice's
 * page: its offset in the slice is below the carved end there, and that
 * offset plus the slice's phase (its offset from the page start, modulo
 * the block size) is a multiple of the block size: y < 2^32 is a multiple
 * of size iff y * magic (mod 2^64) < magic, magic = ceil(2^64 / size)
 * (Lemire, Kaser and Kurz 2019), one multiply and no division. `magic`
 * is hak_class_magic or a heap's copy of it (free's fast path: indexed off
 * the heap pointer it loads anyway, where the global table's address
 * costs instructions of its own). */
static inline bool slice_is_block_start_by(const hak_slice_t *sl, const void *p,
                                           const uint64_t *magic) {
  uint32_t x = (uint32_t)((uintptr_t)p & (SLICE_SIZE - 1));
  /* relaxed: a valid block was carved before it was handed out, and the
   * pointer brings that edge with it (registry_kind); atomic only so that a
   * bad free racing the owner's carving reads a whole value */
  return x < atomic_load_explicit(&sl->end, memory_order_relaxed) &&
         (uint64_t)(x + sl->phase) * magic[sl->cls] < magic[sl->cls];
}
static inline bool slice_is_block_start(const hak_slice_t *sl, const void *p) {
  return slice_is_block_start_by(sl, p, hak_class_magic);
}
/* What the entry of the k-th slice of page pg holds: with `cap` blocks
 * carved, the bytes of the slice below the carved end; and its phase.
 * page_init and page_set_capacity write them, hak_heap_check compares
 * (slice_entry_same). */
static inline uint32_t slice_entry_end(const hak_page_t *pg, uint32_t cap, unsigned k) {
  size_t carved = (size_t)cap * pg->block_size, lo = (size_t)k * SLICE_SIZE;
  return carved <= lo                ? 0
         : carved - lo >= SLICE_SIZE ? (uint32_t)SLICE_SIZE
                                     : (uint32_t)(carved - lo);
}
static inline uint16_t slice_entry_phase(const hak_page_t *pg, unsigned k) {
  return (uint16_t)((size_t)k * SLICE_SIZE % pg->block_size);
}
static inline bool slice_entry_same(const hak_slice_t *sl, const hak_page_t *pg, unsigned k) {
  uint32_t cap = atomic_load_explicit(&pg->capacity, memory_order_relaxed);
  return sl->phase == slice_entry_phase(pg, k) && sl->cls == pg->cls &&
         atomic_load_explicit(&sl->end, memory_order_relaxed) == slice_entry_end(pg, cap, k);
}
/* Sets how many blocks are carved (owner only; remote frees read the slice
 * entries' ends). Relaxed: the blocks carved now reach other threads only
 * through pointers the program hands over after their malloc, which order
 * these stores before any free of them (slice_is_block_start_by). */
static inline void page_set_capacity(hak_page_t *pg, uint32_t cap) {
  atomic_store_explicit(&pg->capacity, cap, memory_order_relaxed);
  hak_slice_t *sl = ((hak_segment_t *)ptr_segment_base(pg))->slices + pg->slice_index;
  for (unsigned k = 0; k < pg->slice_count; k++)
    atomic_store_explicit(&sl[k].end, slice_entry_end(pg, cap, k), memory_order_relaxed);
}

/* ---- block accessors (track.h hides sanitizer/valgrind details) -------- */
#include "track.h"
/* Where a large block aligned to 64 bytes or less starts in its range:
 * right after the header, or, with redzones (track.h), after 64 more
 * bytes no block owns (poisoned, like an aligned block's padding), so that
 * a write before the block is reported, not a silent change to its
 * header's last field. */
#define LARGE_OFFSET (LARGE_HDR + (TRACK_REDZONE ? LARGE_HDR : 0))
/* The biggest request a small block serves (HAK_SMALL_MAX, less the
 * redzone). */
#define SMALL_REQ_MAX (HAK_SMALL_MAX - TRACK_REDZONE)

static inline uintptr_t block_marker_value(const void *b) {
  return hak_cookie ^ (uintptr_t)b;
}

/* ---- os.c -------------------------------------------------------------- */
HAK_INTERNAL void *os_map_aligned(size_t size, size_t alignment, size_t offset);
/* The large-block zone (os.c, os_map_large): slots of a new range's size
 * rounded up to 4 MiB, plus OS_ZONE_ROOM of address space left free. */
#define OS_ZONE_LO ((uintptr_t)24 << 40) /* the window lies in [24 TiB, 40 TiB) */
#define OS_ZONE_HI ((uintptr_t)40 << 40)
#define OS_ZONE_SIZE ((uintptr_t)256 << 30) /* 256 GiB */
#define OS_ZONE_ROOM ((uintptr_t)32 << 20)  /* the biggest mapping the cache keeps */
#define OS_ZONE_MAX OS_ZONE_ROOM            /* bigger ranges go where the kernel puts them */
#define OS_ZONE_TRIES 4                     /* slots tried in a row before that too */
/* The address space a new range of `size` bytes takes in the zone. */
static inline uintptr_t os_zone_slot(size_t size) {
  return ((size + SEGMENT_MASK) & ~(uintptr_t)SEGMENT_MASK) + OS_ZONE_ROOM;
}
HAK_INTERNAL void *os_map_large(size_t size);
HAK_INTERNAL bool os_zone_on(void);
HAK_INTERNAL bool os_zone_holds(const void *p);
HAK_INTERNAL uintptr_t os_zone_seek(uintptr_t off);
HAK_INTERNAL void os_zone_reset(void);
/* hakmem's tests: os_map_aligned's placement hint and the way the kernel
 * fills the address space forgotten, as in a new process. */
HAK_INTERNAL void os_test_forget_layout(void);
/* hakmem's tests: that way, learnt now if not known yet (os.c,
 * map_learn_dir): -1 top-down, +1 bottom-up, 0 not learnt. */
HAK_INTERNAL int os_test_learn_dir(void);
HAK_INTERNAL void os_unmap(void *p, size_t size);
/* munmap without os_unmap's bookkeeping; pages it cannot unmap (the
 * process at its limit of mappings) are given back with MADV_DONTNEED.
 * errno is kept. */
HAK_INTERNAL void os_munmap(void *p, size_t size);
/* Unmaps again ranges refused munmaps left mapped (os.c, orphans): tries
 * `budget` of them (ORPHANS_RETRY at a mapping or unmap, all at hak_trim
 * and when a mapping is refused).
 * errno is kept. */
#define ORPHANS_RETRY 4u
HAK_INTERNAL void os_orphans_retry(unsigned budget);
/* fork child: the table as the fork left it (os.c). */
HAK_INTERNAL void os_orphans_fork_child(void);
HAK_INTERNAL bool os_grow(void *p, size_t old, size_t new, bool *one);
HAK_INTERNAL bool os_one_mapping(void *p, size_t n);
HAK_INTERNAL bool os_moves(void);
HAK_INTERNAL size_t os_move(void *src, size_t n, void *dst, size_t *lost, size_t *maps);
/* Moves the one kernel mapping [src, src + old) onto [dst, dst + new) (a
 * mapped, writable range of the caller's, which it replaces), resizing it.
 * Every MREMAP_FIXED move goes through here. Returns whether it moved; if
 * not, *kept says whether [dst, dst + new) is still the caller's, mapped
 * (else another thread's now: never to be used or unmapped). errno is kept. */
HAK_INTERNAL bool os_move_mapping(void *src, size_t old, size_t new, void *dst, bool *kept);
/* Gives [p, p + size) back; whether it did (the pages then read zero). */
HAK_INTERNAL bool os_purge(void *p, size_t size);
HAK_INTERNAL void os_advise_huge(void *p, size_t size);
HAK_INTERNAL uint64_t os_random_seed(void);
/* The clock of the purge delay and the caches' aging, in ms; the tests
 * and the fuzzers' FZ_CLOCK move it (os_test_*). Deadlines of waits read
 * os_real_ms, which they do not move. */
HAK_INTERNAL uint64_t os_now_ms(void);
HAK_INTERNAL uint64_t os_real_ms(void);
/* Test-only: os_now_ms moves `ms` ahead, for every thread and for good
 * (never back: hakmem's timers assume a monotonic clock), so that the
 * purge delay and the caches' aging come due without waiting. */
HAK_INTERNAL void os_test_advance_ms(uint64_t ms);
/* Test-only: os_now_ms stops where it is and moves only by
 * os_test_advance_ms from then on (for good; again: no effect), so that a
 * timer comes due exactly when a test or a fuzz input says, however slowly
 * it runs (valgrind, a loaded machine). */
HAK_INTERNAL void os_test_freeze_clock(void);

/* ---- segment.c --------------------------------------------------------- */
/* Every page of `seg` in use, as `pg` (the head page of each run). */
#define FOR_EACH_PAGE(seg, pg)                                                                     \
  for (unsigned pi_ = 1; pi_ < SLICES_PER_SEGMENT; pi_++)                                          \
    if (((pg) = &(seg)->pages[pi_]), (seg)->slice_head[pi_] == pi_ && (pg)->in_use)
HAK_INTERNAL hak_page_t *segment_page_alloc(hak_heap_t *h, size_t cls);
HAK_INTERNAL size_t segment_dirty_free_bytes(const hak_segment_t *seg);
HAK_INTERNAL bool segment_page_free(hak_heap_t *h, hak_segment_t *seg, hak_page_t *pg);
HAK_INTERNAL void segment_release(hak_segment_t *seg);
HAK_INTERNAL bool segment_cache_drop(void);
HAK_INTERNAL bool segment_is_idle(hak_heap_t *h, hak_segment_t *seg);
HAK_INTERNAL bool segment_drop_if_idle(hak_heap_t *h, hak_segment_t *seg);
HAK_INTERNAL void segment_purge_heap(hak_heap_t *h);
HAK_INTERNAL void segment_purge_owned(hak_heap_t *h);
HAK_INTERNAL void segment_trim_unowned_locked(void);
/* Bytes this thread has given back to the OS: slices purged and segments
 * unmapped (segment.c), cached large mappings unmapped (large.c). hak_trim
 * returns whether its call moved it, whichever step gave the memory back
 * (the flush of its cache can purge the heap on the way). */
extern HAK_INTERNAL __thread size_t hak_tls_given_back __attribute__((tls_model("initial-exec")));
HAK_INTERNAL void segment_purge_maybe(hak_heap_t *h);
HAK_INTERNAL void segment_adopt(hak_heap_t *h, hak_segment_t *seg);
HAK_INTERNAL size_t segment_cache_count(void);
HAK_INTERNAL bool segment_reclaim(hak_heap_t *h, hak_segment_t *seg);
HAK_INTERNAL bool segment_unlink_if_empty_locked(hak_segment_t *seg);
HAK_INTERNAL void segment_fork_fixup(void);
HAK_INTERNAL bool segment_abandon_locked(hak_segment_t *seg, bool even_empty);
HAK_INTERNAL void segment_reset_all(void);
HAK_INTERNAL bool segment_is_abandoned_listed(const hak_segment_t *seg);
extern HAK_INTERNAL hak_segment_t *hak_abandoned;
extern HAK_INTERNAL hak_segment_t *hak_all_segments;
extern HAK_INTERNAL hak_segment_t *hak_segment_cache;

/* ---- page.c ------------------------------------------------------------ */
HAK_INTERNAL void page_init(hak_segment_t *seg, hak_page_t *pg, size_t cls, bool zero);
HAK_INTERNAL void page_extend(hak_page_t *pg);
HAK_INTERNAL size_t page_collect(hak_page_t *pg);
HAK_INTERNAL void page_clear_notify(hak_page_t *pg, bool forced);
HAK_INTERNAL hak_page_t *page_find_free(hak_heap_t *h, size_t cls);
HAK_INTERNAL bool page_free_slow(hak_heap_t *h, hak_segment_t *seg, hak_page_t *pg);
/* An empty page stays carved in its heap when it is its class's only page
 * (avoids unmap/refault thrash); page_free_slow and free's fast exit agree
 * through this one test. */
static inline bool page_kept_when_empty(const hak_heap_t *h, const hak_page_t *pg) {
  return h->direct[pg->cls] == pg && !pg->next;
}
/* `counted`: for a page marked TF_ABANDONED, which abandonment the free was
 * counted into (free_not_owned): its abandoned_epoch, PAGE_NOT_COUNTED, or
 * PAGE_COUNTED_ANY (a block whose count is not in question). */
#define PAGE_NOT_COUNTED ((uint64_t)0)
#define PAGE_COUNTED_ANY UINT64_MAX
HAK_INTERNAL bool page_free_remote(hak_segment_t *seg, hak_page_t *pg, hak_block_t *b,
                                   uint64_t counted);
HAK_INTERNAL size_t page_collect_abandoned(hak_page_t *pg);
HAK_INTERNAL void page_free_block(hak_heap_t *h, hak_segment_t *seg, hak_page_t *pg,
                                  hak_block_t *b);
HAK_INTERNAL void queue_push_back(hak_heap_t *h, hak_page_t *pg);
HAK_INTERNAL void queue_remove(hak_heap_t *h, hak_page_t *pg);
HAK_INTERNAL void full_push(hak_heap_t *h, hak_page_t *pg);
HAK_INTERNAL void full_remove(hak_heap_t *h, hak_page_t *pg);
static inline hak_page_t *queue_first(const hak_heap_t *h, size_t cls) {
  hak_page_t *pg = h->direct[cls];
  return pg == &hak_empty_page ? NULL : pg;
}

/* ---- waits ---------------------------------------------------------------- */
/* One round of a wait for another thread to leave a window a few
 * instructions long, or to drop a heap lock: every such wait goes through
 * this (heap_lock_wait, page_set_notify, page_clear_notify,
 * segment_wait_marks; the trace build's trace_init). `*round` starts at 0. A pause for the first
 * SPIN_PAUSES rounds, then sched_yield() for SPIN_YIELDS, then a sleep of
 * 1 us doubling to 1 ms. sched_yield() alone livelocked under real-time
 * priorities: it yields only to threads of the caller's priority or higher,
 * so a SCHED_FIFO waiter never let a lower-priority thread on its CPU
 * finish the window (RT throttling stops that thread too), and a waiter
 * holding the global lock stopped every thread that needed it
 * (tests/test_rt_spin_wait). A sleep lets any thread run. The sleep comes
 * after many yields, so a window left while a waiter pauses or yields
 * costs what it did before. The raw system call: nanosleep() and
 * clock_nanosleep() are cancellation points, and a thread cancelled inside
 * malloc would leave its locks held. A signal that interrupts the sleep
 * left EINTR in errno, behind a successful malloc, free or fork, until
 * 2026-11-28 (test_rt_spin_wait, heap_lock: errno 4 after fork, 3 of 3). */
#define SPIN_PAUSES 64
#define SPIN_YIELDS 128
#define SPIN_SLEEP_MIN_NS 1000L
#define SPIN_SLEEP_MAX_NS 1000000L
/* The CPU's spin-wait hint, the only place hakmem names one: x86's pause;
 * aarch64's isb, which stalls the core for a few tens of cycles (its
 * `yield` is a no-op on most cores, as PostgreSQL and Rust's spin_loop
 * found); other architectures none. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("isb" ::: "memory");
#endif
}
static inline void spin_wait(unsigned *round) {
  unsigned r = *round;
  if (r < SPIN_PAUSES) {
    *round = r + 1;
    cpu_relax();
    return;
  }
  if (r < SPIN_PAUSES + SPIN_YIELDS) {
    *round = r + 1;
    sched_yield();
    return;
  }
  long ns = SPIN_SLEEP_MIN_NS << (r - SPIN_PAUSES - SPIN_YIELDS);
  if (ns >= SPIN_SLEEP_MAX_NS)
    ns = SPIN_SLEEP_MAX_NS; /* the round stops growing */
  else
    *round = r + 1;
  struct timespec ts = {0, ns};
  int saved = errno; /* a signal ends the sleep early (EINTR): the wait goes on, errno as it was */
  syscall(SYS_nanosleep, &ts, NULL);
  errno = saved;
}

/* ---- locks --------------------------------------------------------------- */
/* Every hakmem lock is taken through these. Between fork_prepare and
 * fork_parent/fork_child the forking thread already holds all of them; a
 * malloc from another atfork handler running in that window (on the forking
 * thread) must not block on them, so for that thread they are no-ops. */
extern HAK_INTERNAL _Atomic int hak_fork_active;
extern HAK_INTERNAL _Atomic(pthread_t) hak_fork_owner;
static inline bool hak_fork_window_owner(void) {
  /* the owner is stored (relaxed) before hak_fork_active's release store */
  return unlikely(atomic_load_explicit(&hak_fork_active, memory_order_acquire)) &&
         pthread_equal(atomic_load_explicit(&hak_fork_owner, memory_order_relaxed), pthread_self());
}
static inline void hak_lock(pthread_mutex_t *m) {
  if (!hak_fork_window_owner())
    pthread_mutex_lock(m);
}
static inline void hak_unlock(pthread_mutex_t *m) {
  if (!hak_fork_window_owner())
    pthread_mutex_unlock(m);
}
HAK_INTERNAL HAK_COLD void heap_lock_wait(hak_heap_lock_t *l);
static inline void heap_lock_raw(hak_heap_lock_t *l) {
  if (unlikely(atomic_exchange_explicit(&l->held, 1, memory_order_acquire)))
    heap_lock_wait(l);
}
static inline void heap_unlock_raw(hak_heap_lock_t *l) {
  atomic_store_explicit(&l->held, 0, memory_order_release);
}
static inline void heap_lock(struct hak_heap *h);
static inline void heap_unlock(struct hak_heap *h);

/* ---- heap.c ------------------------------------------------------------ */
static inline void heap_lock(struct hak_heap *h) {
  if (!hak_fork_window_owner())
    heap_lock_raw(&h->lock);
}
static inline void heap_unlock(struct hak_heap *h) {
  if (!hak_fork_window_owner())
    heap_unlock_raw(&h->lock);
}
HAK_INTERNAL void hak_init(void);
HAK_INTERNAL hak_heap_t *heap_get_or_create(void);
HAK_INTERNAL size_t heap_structs_spare(void);
HAK_INTERNAL void heap_drain_delayed(hak_heap_t *h);
HAK_INTERNAL size_t heap_collect_remote(hak_heap_t *h);
HAK_INTERNAL void heap_abandon(hak_heap_t *h, bool in_fork_child);
HAK_INTERNAL void heap_trim_all(void);
extern HAK_INTERNAL hak_heap_t *hak_all_heaps;
/* The heaps in state HEAP_ACTIVE (guarded by hak_global_lock): the only
 * ones whose mark_seg may name a segment. */
extern HAK_INTERNAL hak_heap_t *hak_active_heaps;
/* Counts abandonments (thread exits, fork child fixups) from 1; 64 bits,
 * so it never wraps. */
extern HAK_INTERNAL _Atomic uint64_t hak_abandon_epoch;
/* Tests only (NULL otherwise): called at points where another thread's
 * action can land in a window a few instructions wide, so that a test can
 * put it there on cue. */
enum hak_hook_point {
  /* heap_abandon, between its last collect and the abandonment of what is
   * still live (arg: the heap): a remote free there can empty a segment
   * (test_abandon_race part 3) */
  HAK_HOOK_ABANDON_COLLECTED,
  /* queue_find_free, a page just moved to the full list after a collect
   * found nothing, before its notify request (arg: the page): a remote free
   * there lands on its stack (test_notify_race); held there, with the
   * heap's lock, while fork waits for it (test_rt_spin_wait) */
  HAK_HOOK_PAGE_FULL,
  /* heap_alloc_struct, a new heap just listed active, the global lock
   * released (arg: the heap): hak_trim from another thread walks it there
   * (test_heap_publish) */
  HAK_HOOK_HEAP_PUBLISHED,
  /* free_not_owned, a free into an abandoned segment counted as one of its
   * frees (reclaim_wanted), before it pushes the block (arg: the block):
   * the segment adopted and abandoned again there counted the block live
   * (test_abandon_handover) */
  HAK_HOOK_FREE_COUNTED,
  /* page_free_remote, a counted free's check of an abandoned page's mark
   * passed, before its push (arg: the block): the segment adopted and
   * abandoned again there must not take the push (test_abandon_handover;
   * test_rt_spin_wait holds it there while the abandonment waits) */
  HAK_HOOK_MARK_CHECKED,
  /* free_not_owned, a free that read its segment's owner NULL, before it
   * reads the abandonment's epoch (arg: the block): the segment adopted
   * there, and abandoned again while the free reads the epoch
   * (test_abandon_stale_live) */
  HAK_HOOK_FREE_UNOWNED,
  /* page_free_remote, a free into a full page that took its notify
   * request (TF_NOTIFYING), before it hands the block to the heap (arg:
   * the block): the owner's exit waits there (page_clear_notify;
   * test_rt_spin_wait) */
  HAK_HOOK_NOTIFYING,
  /* trace build: trace_init, the recorder marked initialising (arg: NULL):
   * a fork there left the child waiting for a thread it does not have
   * (test_trace_fork_init). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_TRACE_INIT,
  /* segment_adopt, the segment owned by the adopter, its pages' abandonment
   * marks not cleared yet (arg: the segment): a free that reads the new
   * owner waits there for the marks to go; held there at a lower real-time
   * priority while such a free waits (test_rt_spin_wait). Not one of
   * fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_ADOPTED,
  /* large_free and large_realloc, the block's header found through the
   * registry, before they take the large lock (arg: the block); and
   * large_realloc's move, before it takes the lock again: another thread's
   * free of the same block there caches it or unmaps it
   * (test_large_double_free_race). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_LARGE_LOCKING,
  /* large_resolve (malloc_usable_size of a large block) and
   * large_free_sized (free_sized, free_aligned_sized), the header found
   * through the registry, before the large lock
   * (arg: the block): the same window as HAK_HOOK_LARGE_LOCKING's
   * (test_large_double_free_race). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_LARGE_RESOLVING,
  /* err_invalid, the registry just named p's range a large block's, before
   * the header is read (arg: p): another thread's free of that block there
   * unmaps it (test_large_double_free_race, interior_*). Not one of
   * fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_ERR_LARGE,
  /* large_free and large_realloc's move, a block's range unregistered, the
   * block not yet among the recently freed (note_gone), the large lock held
   * (arg: the block): another thread's free of the block there finds
   * neither (test_large_double_free_race, unregistered_*). Not one of
   * fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_LARGE_UNREGISTERED,
  /* large_free (a block unmapped, not cached) and large_realloc's move,
   * just after the unlock (arg: the block, whose range is unregistered):
   * the block must be among the recently freed by then, or another
   * thread's free of it there is named "not allocated by hakmem"
   * (test_large_double_free_race, gone_*). Not one of fuzz_mt's FZ_HOOK
   * points. */
  HAK_HOOK_LARGE_GONE,
  /* large_place, the large lock held, the registry just read again (arg:
   * p): another thread's free of the block waits for the lock there, so
   * the header read after this point is still mapped
   * (test_large_double_free_race, interior_locked). Not one of fuzz_mt's
   * FZ_HOOK points. */
  HAK_HOOK_ERR_LARGE_LOCKED,
  /* free_not_owned, a free into an abandoned segment that wants to reclaim
   * it, its heap locked, before segment_reclaim (arg: the block): another
   * thread's free reclaims the segment there, and this one's reclaim finds
   * it no longer abandoned (test_reclaim_lost). Not one of fuzz_mt's
   * FZ_HOOK points. */
  HAK_HOOK_RECLAIMING,
  /* free_not_owned, a free with no heap that gave back the segment whose
   * last live block it freed (segment_unlink_if_empty_locked), the global
   * lock let go, before segment_release (arg: the segment): the segment on
   * no list, owned by nobody, held by no lock. A fork there leaves the
   * child to release it (segment_fork_fixup; test_free_no_heap part
   * "fork"). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_NO_HEAP_RELEASING,
  /* page_free_remote, a hand-over's block on the heap's delayed list, the
   * page's word read, before the CAS that ends TF_NOTIFYING (arg: the
   * block): another thread's remote free into the page pushes onto its
   * stack there, and the CAS must keep that push (test_notify_clear_race).
   * Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_NOTIFY_CLEARING,
  /* page_free_remote, a free that read the page's notify request
   * (TF_NOTIFY), before its CAS to take it (arg: the block): another
   * thread's free takes the request there, and this one's CAS fails and
   * must push onto the page's stack instead (test_notify_clear_race part
   * taking). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_NOTIFY_TAKING,
  /* page_free_remote, a hand-over's block linked to the heap's delayed
   * list as read, before the CAS that pushes it (arg: the block; each
   * try): another page's hand-over to the same heap pushes there, and the
   * CAS must keep that block (test_notify_clear_race part delayed). Not
   * one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_DELAYED_PUSHING,
  /* err_invalid, the registry just named p's range a small segment's,
   * before the global lock (arg: p): another thread there gives the
   * segment back and unmaps it (the segment cache full), so what is read
   * after this point must be read where the registry, asked again under
   * that lock, still names the segment (test_small_error_race,
   * unmapped_*). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_ERR_SMALL,
  /* err_invalid, the global lock held, the registry just read again and
   * still naming p's segment, before its page descriptor is read (arg:
   * p): another thread's release of the segment waits for the lock there,
   * so the segment stays mapped while it is read (test_small_error_race,
   * locked). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_ERR_SMALL_LOCKED,
  /* free's and resolve()'s double-free exits, a small block found carrying
   * the free marker, before it is named (arg: the block): the block's page
   * emptied, given back or taken by another class there, so the class
   * named must be the one the block-start check read, not the page's now
   * (test_small_error_race, double_*). Not one of fuzz_mt's FZ_HOOK
   * points. */
  HAK_HOOK_DOUBLE_FREE,
  /* os_orphans_retry, the table of orphans held (orphans_busy), before
   * its first munmap (arg: NULL): a fork there leaves the child the table
   * held and maybe half changed (os_orphans_fork_child; test_orphans_retry
   * part fork). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_ORPHANS_HELD,
  /* heap_thread_done, the heap pooled, its lock still held (arg: the
   * heap): a fork there leaves the child a pooled heap locked by a thread
   * it lacks, which fork_prepare did not take (it locks active heaps
   * only) and fork_child lets go (test_many_threads part fork_exiting).
   * Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_HEAP_POOLED,
  /* trace build: hak_trace_emit, a full chunk just linked to a new one,
   * before the new one's first record (arg: the new chunk): a flush there
   * follows the link to a chunk with no record published, whose header
   * only the link's release orders (test_trace_flush_race). Not one of
   * fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_TRACE_LINKED,
  /* os.c, map_learn_dir: this thread the one that probes (map_learner
   * holds this process's pid), before its first probe (arg: NULL): a fork
   * there leaves the child a prober that does not exist in it
   * (test_map_reuse, learn_fork). Not one of fuzz_mt's FZ_HOOK points. */
  HAK_HOOK_MAP_LEARNING,
};
/* Atomic: a test sets it while other threads run into the hook points
 * (their heaps' creation among them); a relaxed load is a plain load. */
extern HAK_INTERNAL void (*_Atomic hak_test_hook)(enum hak_hook_point where, void *arg);
#define HAK_TEST_HOOK(where, arg)                                                                  \
  do {                                                                                             \
    void (*hook_)(enum hak_hook_point, void *) =                                                   \
        atomic_load_explicit(&hak_test_hook, memory_order_relaxed);                                \
    if (unlikely(hook_ != NULL))                                                                   \
      hook_(where, arg);                                                                           \
  } while (0)

/* ---- tcache.c ---------------------------------------------------------- */
HAK_INTERNAL void tcache_reset(hak_heap_t *h);
HAK_INTERNAL void tcache_overflow(hak_heap_t *h, size_t cls);
HAK_INTERNAL void tcache_flush_all(hak_heap_t *h, bool locked, bool remark);
HAK_INTERNAL size_t tcache_count_for(const hak_heap_t *h, size_t cls, const hak_page_t *pg,
                                     uint8_t *seen, hak_block_t **dup);
HAK_INTERNAL bool tcache_entry_ok(const hak_heap_t *h, size_t cls, const hak_block_t *b);

/* ---- large.c ----------------------------------------------------------- */
#define LARGE_CACHE_N 32                      /* freed mappings kept for reuse ... */
#define LARGE_CACHE_BYTES ((size_t)256 << 20) /* ... at most this much in all ... */
#define LARGE_CACHE_AGE_MS 1000               /* ... each for at most this long */
#define LARGE_PIECES_MAX 128 /* a freed range of more kernel mappings is unmapped, not cached */
_Static_assert(OS_ZONE_ROOM == LARGE_CACHE_BYTES / 8,
               "the zone's room: the biggest cacheable mapping");
HAK_INTERNAL void *large_alloc(size_t size, size_t alignment, bool zero);
HAK_INTERNAL hak_large_t *large_resolve(void *p, const char *op, size_t *usable);
HAK_INTERNAL void large_free(hak_large_t *lg, void *p, const char *op);
HAK_INTERNAL void large_free_sized(void *p, size_t size, size_t alignment);
HAK_INTERNAL void *large_realloc(void *p, size_t size, void *small, bool caller_frees,
                                 hak_large_t **lgp, size_t *usable);
#define LARGE_MOVE_BY_COPY ((void *)1)
HAK_INTERNAL size_t large_usable(const hak_large_t *lg);
HAK_INTERNAL bool large_recently_freed(const void *p);
HAK_INTERNAL bool large_holds(const void *p);
/* err_invalid: where p, in a range the registry named a large block's, lies
 * now, read under the large lock (large_place). */
enum {
  LARGE_PLACE_GONE,    /* the registry names no large block there any more */
  LARGE_PLACE_OUTSIDE, /* past the end of the mapping: other memory */
  LARGE_PLACE_FREED,   /* the start of a block the cache keeps, freed */
  LARGE_PLACE_INSIDE,  /* in the mapping, not a live block's start */
  LARGE_PLACE_UNKNOWN  /* the lock was not had in time: nothing read */
};
HAK_INTERNAL unsigned large_place(const void *p);
HAK_INTERNAL size_t large_cache_mapped_locked(void);
HAK_INTERNAL bool large_cache_ok(const char **what, const void **where);
HAK_INTERNAL void large_reset_all(void);
HAK_INTERNAL void large_trim(void);
HAK_INTERNAL bool large_cache_drop(void);
extern HAK_INTERNAL hak_large_t *hak_all_large;
extern HAK_INTERNAL pthread_mutex_t hak_large_lock;

/* ---- error.c ----------------------------------------------------------- */
/* `op` is the API name ("free", "realloc", ...). Each never returns. */
HAK_INTERNAL __attribute__((noreturn, cold)) void err_double_free(const char *op, const void *p,
                                                                  size_t block_size);
HAK_INTERNAL __attribute__((noreturn, cold)) void err_invalid(const char *op, const void *p);
/* The error path's hold of a hakmem lock, the large lock or the global
 * lock (large.c): tried for 100 ms at most, since this thread may be its
 * holder (a signal handler's bad free). 1: taken (err_unlock_held lets it
 * go); 0: in the fork window, where the forking thread holds every lock
 * already; -1: not had in time. */
HAK_INTERNAL int err_lock_wait(pthread_mutex_t *m);
HAK_INTERNAL void err_unlock_held(pthread_mutex_t *m, int locked);
HAK_INTERNAL __attribute__((noreturn, cold)) void err_size_mismatch(const char *op, const void *p,
                                                                    size_t size, size_t block_size);
/* free_aligned_sized: p is not aligned to `alignment` (block_size 0: a large block). */
HAK_INTERNAL __attribute__((noreturn, cold)) void
err_align_mismatch(const char *op, const void *p, size_t alignment, size_t block_size);
/* free_aligned_sized's alignment test: p not a multiple of `alignment`, or
 * an alignment no block is made with (0, or not a power of two). */
static inline bool misaligned(const void *p, size_t alignment) {
  return ((uintptr_t)p & (alignment - 1)) || (alignment & (alignment - 1));
}
HAK_INTERNAL __attribute__((noreturn, cold)) void err_corruption(const void *p, const char *what);
HAK_INTERNAL __attribute__((noreturn, cold)) void err_assert(const char *expr, const char *file,
                                                             int line);

/* Minimal async-signal-safe formatting into a fixed buffer (no stdio). */
typedef struct {
  char buf[512];
  size_t len;
} hak_msg_t;
HAK_INTERNAL void msg_str(hak_msg_t *m, const char *s);
HAK_INTERNAL void msg_hex(hak_msg_t *m, uintptr_t v);
HAK_INTERNAL void msg_dec(hak_msg_t *m, size_t v);
HAK_INTERNAL void msg_flush(hak_msg_t *m);

#if defined(HAK_DEBUG) && HAK_DEBUG
#define HAK_DEBUG_ON 1
#define hak_assert(e) ((e) ? (void)0 : err_assert(#e, __FILE__, __LINE__))
#else
#define HAK_DEBUG_ON 0
#define hak_assert(e) ((void)0)
#endif

/* A free block about to be taken off a list or handed back to its page:
 * the debug build checks that nothing wrote to its marker while it was
 * free. */
static inline __attribute__((always_inline)) void check_free_block(hak_block_t *b) {
#if HAK_DEBUG_ON
  if (block_marker(b) != block_marker_value(b))
    err_corruption(b, "free block modified after it was freed (use after free?)");
#else
  (void)b;
#endif
}

/* The owner puts a free block back on its page: a block that already
 * carries the free marker (from the thread cache, the delayed stack or a
 * reclaimed segment), so only the link is written. An emptied or formerly
 * full page takes its slow path. */
static inline __attribute__((always_inline)) void page_push_owned(hak_heap_t *h, hak_segment_t *seg,
                                                                  hak_page_t *pg, hak_block_t *b) {
  check_free_block(b);
  block_set_next(b, pg->free);
  pg->free = b;
  pg->free_is_zero = 0;
  if (unlikely(--pg->used == 0 || pg->in_full))
    page_free_slow(h, seg, pg);
}

#endif /* HAK_INTERNAL_H */
