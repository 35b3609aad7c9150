/* fuzz/ops.c: decoder, executor and shadow model (see ops.h). */
#define _GNU_SOURCE /* mremap flags, MAP_FIXED_NOREPLACE */
#include "ops.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"
#include "internal.h" /* hak_test_hook, enum hak_hook_point (FZ_HOOK) */
#include "ops_fork.h" /* FZ_FORK: fz_exec_fork */

#define SEG ((size_t)4 << 20)
#define PAGE ((size_t)4096) /* sizes around it; the kernel's own page: OS_PAGE_SIZE */
/* Requests below this that fit LARGE_BUDGET must succeed; those that do not
 * fit are skipped (they might succeed through overcommit and take forever to
 * touch). Larger ones cannot be mapped in a 47-bit address space: they run,
 * and may fail with ENOMEM. */
#define MUST_SUCCEED ((size_t)1 << 47)
/* Live large bytes are capped so that a fuzz input cannot exhaust RAM. */
#define LARGE_BUDGET ((size_t)64 << 20)
/* Blocks above this are written/verified sparsely (head, 64 bytes every 64 KiB, last 4 KiB). */
#define DENSE_MAX ((size_t)16 << 10)

static const char *const kind_names[FZ_KIND_COUNT] = {
    "malloc", "calloc",     "realloc",    "reallocarray", "free",         "aligned", "usable",
    "verify", "verify_all", "heap_check", "thread_exit",  "free_orphans", "burst",   "burst_free",
    "fork",   "fail_move",  "trim",       "hook",         "clock"};

const uint32_t fz_clock_steps[4] = {PURGE_DELAY_MS / 2, PURGE_DELAY_MS, LARGE_CACHE_AGE_MS + 1,
                                    60000};

const char *fz_kind_name(unsigned kind) {
  return kind < FZ_KIND_COUNT ? kind_names[kind] : "?";
}

static __attribute__((noreturn, format(printf, 2, 3))) void fail(const struct fz_exec *x,
                                                                 const char *fmt, ...);

/* ------------------------------------------------------- failed page moves */
/* FZ_FAIL_MOVE: this file is the one of every fuzz and replay program that
 * includes fail_mmap.h (its mremap makes the chosen move fail). */
#include "fail_mmap.h"

static const enum fm_how fail_move_how[3] = {FM_BEFORE_UNMAP, FM_AFTER_UNMAP, FM_SQUAT_MIDDLE};

/* Every squatter page still mapped and unwritten (after every op). */
static void check_squatters(const struct fz_exec *x) {
  int unmapped = 0;
  const void *q = fm_squatter_damaged(&unmapped);
  if (q)
    fail(x, "another thread's page at %p (in a failed move's hole) was %s", q,
         unmapped ? "unmapped" : "written");
}

/* ------------------------------------------------------------------ decoder */

void fz_decoder_init(struct fz_decoder *d, const uint8_t *data, size_t size, unsigned nthreads) {
  d->data = data;
  d->size = size;
  d->pos = 0;
  d->nthreads = nthreads ? nthreads : 1;
  d->nops = 0;
  d->fail_moves = 0;
}

uint8_t fz_decode_byte(struct fz_decoder *d) {
  return d->pos < d->size ? d->data[d->pos++] : 0;
}

static size_t decode_u16(struct fz_decoder *d) {
  size_t lo = fz_decode_byte(d);
  return lo | (size_t)fz_decode_byte(d) << 8;
}

static const size_t large_sizes[] = {HAK_SMALL_MAX + 4096,
                                     100000,
                                     (size_t)1 << 20,
                                     SEG - 1,
                                     SEG,
                                     SEG + 1,
                                     SEG - PAGE,
                                     SEG + PAGE,
                                     2 * SEG,
                                     (size_t)3 << 20,
                                     PAGE * 17 + 5,
                                     (size_t)6 << 20};

static const size_t edge_sizes[] = {SIZE_MAX,
                                    SIZE_MAX - 15,
                                    SIZE_MAX - PAGE,
                                    (size_t)PTRDIFF_MAX,
                                    (size_t)PTRDIFF_MAX + 1,
                                    (size_t)PTRDIFF_MAX - PAGE,
                                    (size_t)PTRDIFF_MAX - SEG,
                                    SIZE_MAX / 2 + 2,
                                    (size_t)1 << 46,
                                    SIZE_MAX - SEG + 1};

size_t fz_decode_size(struct fz_decoder *d) {
  uint8_t b = fz_decode_byte(d);
  size_t ncls = hak_size_class_count();
  switch (b & 15) {
  case 0:
  case 1:
  case 2:
  case 3:
  case 4:
  case 5:
  case 6: { /* class boundary n-1, n, n+1 */
    size_t cls = fz_decode_byte(d) % (ncls ? ncls : 1);
    size_t n = hak_size_class_size(cls);
    int delta = (int)((b >> 4) % 3) - 1;
    return delta < 0 && n == 0 ? 0 : n + (size_t)(ptrdiff_t)delta;
  }
  case 7:
  case 8: /* the small/large threshold */
    return HAK_SMALL_MAX + (size_t)(ptrdiff_t)((int)((b >> 4) % 5) - 2);
  case 9:
  case 10:
    return fz_decode_byte(d); /* tiny, including 0 */
  case 11:
  case 12:
    return decode_u16(d) * ((b >> 4) % 2 + 1); /* 0 .. 128 KiB */
  case 13:
  case 14:
    return large_sizes[(b >> 4) % (sizeof large_sizes / sizeof large_sizes[0])];
  default:
    return edge_sizes[(b >> 4) % (sizeof edge_sizes / sizeof edge_sizes[0])];
  }
}

static size_t decode_align(struct fz_decoder *d) {
  uint8_t b = fz_decode_byte(d);
  switch (b >> 6) {
  case 0:
  case 1: /* powers of two 1 .. 2^31, weighted to the small ones */
    return (size_t)1 << ((b & 63) % 24 < 16 ? (b & 15) : (b & 63) % 32);
  case 2: { /* invalid ones: 0, non powers of two, 3 << k */
    static const size_t bad[] = {0, 3, 24, 48, 100, 4095, 4097, 12288, SIZE_MAX, SIZE_MAX / 2 + 1};
    return bad[(b & 63) % 10];
  }
  default: { /* page, segment and beyond */
    static const size_t big[] = {
        4096,    8192,     65536,           (size_t)1 << 20, SEG,
        2 * SEG, 16 * SEG, (size_t)1 << 40, (size_t)1 << 62, (size_t)1 << 63};
    return big[(b & 63) % 10];
  }
  }
}

int fz_decode_next(struct fz_decoder *d, struct fz_op *op) {
  if (d->pos >= d->size || d->nops >= FZ_MAX_OPS)
    return 0;
  d->nops++;
  uint8_t k = fz_decode_byte(d);
  memset(op, 0, sizeof *op);
  /* weights: allocation-heavy, with frees and checks */
  static const uint8_t table[32] = {
      FZ_MALLOC,      FZ_MALLOC,       FZ_MALLOC,     FZ_MALLOC,     FZ_MALLOC,       FZ_CALLOC,
      FZ_CALLOC,      FZ_REALLOC,      FZ_REALLOC,    FZ_REALLOC,    FZ_REALLOCARRAY, FZ_FREE,
      FZ_FREE,        FZ_FREE,         FZ_FREE,       FZ_ALIGNED,    FZ_ALIGNED,      FZ_ALIGNED,
      FZ_USABLE,      FZ_VERIFY,       FZ_VERIFY_ALL, FZ_HEAP_CHECK, FZ_MALLOC,       FZ_FREE,
      FZ_THREAD_EXIT, FZ_FREE_ORPHANS, FZ_FREE,       FZ_MALLOC,     FZ_REALLOC,      FZ_ALIGNED,
      FZ_BURST,       FZ_BURST_FREE};
  op->kind = table[k & 31];
  op->sub = k >> 5;
  if (op->kind == FZ_HEAP_CHECK && op->sub == 7)
    op->kind = FZ_FORK; /* a = child action, b = size of the child's own block */
  if (op->kind == FZ_HEAP_CHECK && op->sub == 5)
    op->kind = FZ_TRIM;
  if (op->kind == FZ_HEAP_CHECK && op->sub == 4)
    op->kind = FZ_CLOCK; /* no byte of its own: the rest decodes as before */
  if (op->kind == FZ_VERIFY_ALL && op->sub == 7 && d->nthreads > 1)
    op->kind = FZ_HOOK; /* fuzz_ops keeps verify_all there */
  op->thread = d->nthreads > 1 ? (uint8_t)(fz_decode_byte(d) % d->nthreads) : 0;
  uint8_t slot_byte = fz_decode_byte(d);
  op->slot = slot_byte % FZ_SLOTS;
  if (op->kind == FZ_HOOK) {
    op->a = slot_byte % FZ_HOOK_POINTS;
    op->b = slot_byte / FZ_HOOK_POINTS % 2u + 1u;
  }
  if (op->kind == FZ_CLOCK)
    op->a = fz_clock_steps[op->slot % 4];
  if (op->kind == FZ_HEAP_CHECK && op->sub == 6 && d->fail_moves) {
    op->kind = FZ_FAIL_MOVE; /* no byte of its own: the rest decodes as before */
    op->a = op->slot % 3;
    op->b = op->slot / 3 % 4;
  }
  switch (op->kind) {
  case FZ_MALLOC:
  case FZ_REALLOC:
    op->a = fz_decode_size(d);
    break;
  case FZ_CALLOC:
  case FZ_REALLOCARRAY:
    if (op->sub & 4) { /* overflow-oriented: count from the edge table */
      op->a = fz_decode_size(d);
      op->b = fz_decode_size(d);
    } else {
      op->a = fz_decode_byte(d) + (op->sub & 1 ? 256u : 0u);
      op->b = fz_decode_byte(d) % 128 + (op->sub & 2 ? fz_decode_byte(d) * 16u : 0u);
    }
    break;
  case FZ_FREE: {
    /* sub 4 and 5 (until 2026-11-29 free_sized and free_aligned_sized of
     * the request, like 1 and 2) pass the usable size */
    static const uint8_t free_sub[8] = {0, 1, 2, 0, 5, 6, 0, 1};
    op->sub = free_sub[op->sub & 7];
    break;
  }
  case FZ_BURST:
    op->a = fz_decode_size(d);
    if (op->a > 16384)
      op->a %= 16385;
    op->b = ((size_t)fz_decode_byte(d) + 1) * (op->sub & 1 ? 4 : 1);
    break;
  case FZ_ALIGNED:
    op->sub %= 5;
    op->a = fz_decode_size(d);
    op->b = decode_align(d);
    break;
  case FZ_FORK:
    op->a = fz_decode_byte(d);
    op->b = fz_decode_size(d);
    break;
  default:
    break;
  }
  return 1;
}

/* ------------------------------------------------------------- shadow model */

static void fz_vlog(const char *fmt, __builtin_va_list ap) {
  char buf[512];
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  ssize_t w = write(2, buf, (size_t)n);
  (void)w;
}

static void fail(const struct fz_exec *x, const char *fmt, ...) {
  char head[96];
  int n = snprintf(head, sizeof head, "fuzz: check failed at op %u: ", x->ops);
  ssize_t w = write(2, head, (size_t)n);
  (void)w;
  __builtin_va_list ap;
  __builtin_va_start(ap, fmt);
  fz_vlog(fmt, ap);
  __builtin_va_end(ap);
  w = write(2, "\n", 1);
  abort();
}

static void mix(struct fz_exec *x, uint64_t v) {
  x->digest ^= v + 0x9e3779b97f4a7c15ull + (x->digest << 6) + (x->digest >> 2);
  x->digest *= 0xff51afd7ed558ccdull;
}

/* What the digest records of a block's placement: its offset in its 4 MiB
 * segment and its usable size, for small blocks (deterministic for a fresh
 * allocator). Nothing for large blocks: whether realloc grows one in place
 * (mremap without moving) depends on what else is mapped after it (thread
 * stacks, other processes' layout), and a block grown in place keeps its
 * header offset and alignment while one moved by copy does not. */
static uint64_t place(const void *p, size_t usable) {
  return usable <= HAK_SMALL_MAX ? (uint64_t)((uintptr_t)p & (SEG - 1)) : 0;
}

static uint64_t placed_size(size_t usable) {
  return usable <= HAK_SMALL_MAX ? usable : 1;
}

/* The byte loops are not coverage-instrumented: they are the executor's hot
 * path and their comparisons carry no information for the fuzzer. */
#if defined(__clang__)
#define FZ_NOCOV __attribute__((no_sanitize("coverage", "address")))
#else
#define FZ_NOCOV
#endif
/* Instead of per-byte ASan checks in those loops, every new block's whole
 * usable size must be addressable (unpoisoned) once, in adopt_block. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
void *__asan_region_is_poisoned(void *beg, size_t size);
#endif
#endif

static inline uint8_t pat(unsigned slot, uint32_t gen, size_t i) {
  uint32_t s = slot * 0x45u + gen * 0x1fu + 1u;
  return (uint8_t)(s + i * 0x9du + (i >> 8) * 3u + (i >> 16));
}

/* Runs BODY over the ranges [lo, hi) of a block whose pattern was written
 * over w bytes (all of it up to DENSE_MAX, then 64 bytes every 64 KiB and the
 * last 4 KiB), clipped to the first n bytes. */
#define FOR_RANGES(w, n, BODY)                                                                     \
  do {                                                                                             \
    size_t w_ = (w), n_ = (n);                                                                     \
    size_t d_ = w_ <= DENSE_MAX ? w_ : DENSE_MAX;                                                  \
    for (size_t s_ = 0;; s_ = s_ < d_ ? d_ : s_ + 65536) {                                         \
      size_t lo, hi;                                                                               \
      if (s_ < d_ || w_ <= DENSE_MAX) {                                                            \
        lo = 0, hi = d_;                                                                           \
      } else if (s_ < w_ - 4096) {                                                                 \
        lo = s_, hi = s_ + 64;                                                                     \
      } else {                                                                                     \
        lo = w_ > d_ ? w_ - 4096 : w_, hi = w_;                                                    \
      }                                                                                            \
      if (hi > n_)                                                                                 \
        hi = n_;                                                                                   \
      if (lo < hi) {                                                                               \
        BODY;                                                                                      \
      }                                                                                            \
      if (s_ >= d_ && !(s_ < w_ - 4096))                                                           \
        break;                                                                                     \
      if (w_ <= DENSE_MAX)                                                                         \
        break;                                                                                     \
    }                                                                                              \
  } while (0)

FZ_NOCOV static void write_pattern(struct fz_slot *s, unsigned slot) {
  unsigned char *p = s->ptr;
  uint32_t g = s->gen;
  FOR_RANGES(s->usable, s->usable, for (size_t i = lo; i < hi; i++) p[i] = pat(slot, g, i));
}

/* Checks bytes [0, n) of the block hold generation g's pattern. */
FZ_NOCOV static void check_pattern(struct fz_exec *x, const unsigned char *p, size_t n, size_t w,
                                   unsigned slot, uint32_t g, const char *when) {
  FOR_RANGES(w, n,
             for (size_t i = lo; i < hi; i++) if (p[i] != pat(slot, g, i))
                 fail(x, "%s: slot %u block %p (size %zu) byte %zu is 0x%02x, expected 0x%02x",
                      when, slot, (const void *)p, n, i, p[i], pat(slot, g, i)));
}

/* calloc's bytes: the sparse ranges, and over 16 KiB also the first 16 bytes
 * of every page (hakmem's own writes land at page starts: a page move's
 * token; until 2026-11-28 only one page in 16 was looked at, and a token
 * left in a calloc'd block assembled by a failed gather passed). */
FZ_NOCOV static void check_zero(struct fz_exec *x, const unsigned char *p, size_t n) {
  FOR_RANGES(n, n,
             for (size_t i = lo; i < hi; i++) if (p[i])
                 fail(x, "calloc block %p (size %zu) byte %zu is 0x%02x, not zero", (const void *)p,
                      n, i, p[i]));
  if (n <= DENSE_MAX)
    return;
  for (size_t pg = (PAGE - (uintptr_t)p % PAGE) % PAGE; pg < n; pg += PAGE)
    for (size_t i = pg; i < pg + 16 && i < n; i++)
      if (p[i])
        fail(x, "calloc block %p (size %zu) byte %zu (a page start) is 0x%02x, not zero",
             (const void *)p, n, i, p[i]);
}

/* The first position in the address-sorted live list whose block starts at
 * or above p: a binary search (a linear one was 83% of a replay of a
 * python3 trace with 100000 live blocks; fuzz inputs have at most 256). */
static int order_find(const struct fz_exec *x, uintptr_t p) {
  int lo = 0, hi = x->nlive;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if ((uintptr_t)x->slots[x->order[mid]].ptr < p)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void order_remove(struct fz_exec *x, int slot) {
  int i = order_find(x, (uintptr_t)x->slots[slot].ptr);
  if (i == x->nlive || x->order[i] != slot)
    fail(x, "internal: slot %d not in the live list", slot);
  memmove(&x->order[i], &x->order[i + 1], (size_t)(x->nlive - i - 1) * sizeof(int));
  x->nlive--;
}

/* Inserts a slot into the address-sorted live list; fails on any overlap. */
static void order_insert(struct fz_exec *x, int slot) {
  const struct fz_slot *s = &x->slots[slot];
  uintptr_t lo = (uintptr_t)s->ptr, hi = lo + (s->usable ? s->usable : 1);
  int i = order_find(x, lo);
  if (i > 0) {
    const struct fz_slot *o = &x->slots[x->order[i - 1]];
    if ((uintptr_t)o->ptr + (o->usable ? o->usable : 1) > lo)
      fail(x, "block %p+%zu overlaps live block %p+%zu", (void *)s->ptr, s->usable, (void *)o->ptr,
           o->usable);
  }
  if (i < x->nlive) {
    const struct fz_slot *o = &x->slots[x->order[i]];
    if ((uintptr_t)o->ptr < hi)
      fail(x, "block %p+%zu overlaps live block %p+%zu", (void *)s->ptr, s->usable, (void *)o->ptr,
           o->usable);
  }
  memmove(&x->order[i + 1], &x->order[i], (size_t)(x->nlive - i) * sizeof(int));
  x->order[i] = slot;
  x->nlive++;
}

/* Test-only: a planted-bug build of the allocator (repro tests) counts events
 * per process; every input starts the count again. */
extern void hak_trace_plant_reset(void) __attribute__((weak));
/* The asan and valgrind builds' redzones (alloc/src/track.h), absent from
 * the others (weak: NULL there). */
extern size_t hak_redzone __attribute__((weak));

void fz_no_redzones(void) {
  if (&hak_redzone)
    hak_redzone = 0;
}

static void exec_init(struct fz_exec *x) {
  memset(x, 0, sizeof *x);
  x->slots = x->slot_store;
  x->order = x->order_store;
  x->nslots = FZ_SLOTS;
  x->budget = LARGE_BUDGET;
  const char *e = getenv("FUZZ_ABORT_AT");
  x->abort_at = e && *e ? atol(e) : -1;
  const char *nr = getenv("FUZZ_NO_REDZONES"); /* every input sets the same */
  if (nr && *nr == '1')
    fz_no_redzones();
  fm_reset(); /* squatters left by an input that did not finish */
  if (hak_trace_plant_reset)
    hak_trace_plant_reset();
}

void fz_exec_init(struct fz_exec *x) {
  exec_init(x);
  /* hakmem's timers come due only by FZ_CLOCK: an input runs the same way
   * however long it takes (valgrind, a loaded machine) */
  os_test_freeze_clock();
}

void fz_exec_init_cap(struct fz_exec *x, unsigned nslots, int unbounded) {
  exec_init(x); /* the clock is the caller's: repro/replay follows the recorded one */
  if (unbounded)
    x->budget = (size_t)1 << 62;
  if (nslots <= FZ_SLOTS)
    return;
  size_t bytes = (size_t)nslots * (sizeof(struct fz_slot) + sizeof(int));
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    fail(x, "cannot map tables for %u slots", nslots);
  x->slots = m;
  x->order = (int *)(x->slots + nslots);
  x->nslots = nslots;
}

static int is_large(size_t n) {
  return n > HAK_SMALL_MAX;
}

/* A new block for slot `slot`: checks and records it, writes its pattern. */
static void adopt_block(struct fz_exec *x, int slot, void *p, size_t size, size_t align,
                        uint8_t thread, int zero) {
  struct fz_slot *s = &x->slots[slot];
  if ((uintptr_t)p % 16)
    fail(x, "block %p is not 16-byte aligned", p);
  if (align > 16 && (uintptr_t)p % align)
    fail(x, "block %p is not aligned to %zu", p, align);
  size_t u = hak_usable_size(p);
  if (u < size)
    fail(x, "usable_size(%p) = %zu < requested %zu", p, u, size);
  if (size == 0 && u < 16)
    fail(x, "malloc(0) block %p has usable size %zu < 16", p, u);
#ifdef FZ_ASAN
  void *bad = u <= HAK_SMALL_MAX ? __asan_region_is_poisoned(p, u)
                                 : __asan_region_is_poisoned((char *)p + u - 4096, 4096);
  if (!bad && u > HAK_SMALL_MAX)
    bad = __asan_region_is_poisoned(p, 4096);
  if (bad)
    fail(x, "usable byte %p of block %p (usable %zu) is poisoned for ASan", bad, p, u);
#endif
  if (zero)
    check_zero(x, p, size);
  s->ptr = p;
  s->size = size;
  s->usable = u;
  s->align = align;
  s->gen++;
  s->thread = thread;
  s->epoch = x->epoch[thread % FZ_MAX_THREADS];
  order_insert(x, slot);
  if (is_large(u))
    x->large_live += u;
  x->live_usable += u;
  write_pattern(s, (unsigned)slot);
  mix(x, place(p, u));
  mix(x, placed_size(u));
}

static void drop_block(struct fz_exec *x, int slot) {
  struct fz_slot *s = &x->slots[slot];
  order_remove(x, slot);
  if (is_large(s->usable))
    x->large_live -= s->usable;
  x->live_usable -= s->usable;
  s->stale = s->ptr;
  s->ptr = NULL;
}

/* errno before every call of hakmem's: a call that succeeds must leave it as
 * it was (os.c keeps it around every probe that may fail harmlessly: a
 * mapping refused at a zone slot or after a block, a page move that fails);
 * one that fails sets it (ENOMEM, EINVAL). No system call sets this value. */
#define FZ_ERRNO_MARK 24301

static void expect_errno_kept(struct fz_exec *x, const char *what, size_t n, int err) {
  if (err != FZ_ERRNO_MARK)
    fail(x, "%s(%zu) succeeded but changed errno from %d to %d", what, n, FZ_ERRNO_MARK, err);
}

/* how: 0 free, 1 free_sized, 2 free_aligned_sized with the slot's size and
 * alignment; 3 free_sized(size), 4 free_aligned_sized(align, size) with the
 * caller's (a replayed trace's recorded arguments, passed on unchanged);
 * 5 free_sized, 6 free_aligned_sized with the slot's usable size, the
 * largest size the contract allows (docs/SPEC-bad-input.md: the size must
 * not exceed usable_size; until 2026-11-29 no fuzz input passed any size but
 * the request, and a free_sized that named its usable size a mismatch,
 * small or large, passed every one: free-sized-rejects-usable,
 * large-free-sized-rejects-usable). */
static void free_slot_as(struct fz_exec *x, int slot, unsigned how, size_t size, size_t align) {
  struct fz_slot *s = &x->slots[slot];
  check_pattern(x, s->ptr, s->usable, s->usable, (unsigned)slot, s->gen, "before free");
  void *p = s->ptr;
  if (how < 3)
    size = s->size, align = s->align;
  if (how == 5 || how == 6)
    size = s->usable, align = s->align, how -= 4;
  drop_block(x, slot);
  errno = FZ_ERRNO_MARK;
  if (how == 1 || how == 3)
    hak_free_sized(p, size);
  else if (how == 4 || (how == 2 && align && !(align & (align - 1))))
    hak_free_aligned_sized(p, align, size);
  else
    hak_free(p);
  static const char *const names[] = {"free", "free_sized", "free_aligned_sized", "free_sized",
                                      "free_aligned_sized"};
  expect_errno_kept(x, names[how % 5], size, errno); /* POSIX 2024: free keeps errno */
}

static void free_slot(struct fz_exec *x, int slot, unsigned how) {
  free_slot_as(x, slot, how, 0, 0);
}

/* Whether a request this large may fail; bigger ones are simply skipped when
 * they would succeed, to keep memory bounded. */
static int too_big_to_keep(struct fz_exec *x, size_t n) {
  return n > HAK_SMALL_MAX && (n > x->budget || x->large_live + n > x->budget);
}

static void expect_null_errno(struct fz_exec *x, const char *what, void *p, int err, int want) {
  if (p)
    fail(x, "%s returned %p, expected NULL", what, p);
  if (err != want)
    fail(x, "%s: errno %d, expected %d", what, err, want);
}

/* A request too big to keep (over the live budget: above MUST_SUCCEED, as
 * no request at or below it that succeeds is too big to keep) that
 * succeeded: none can in a 47-bit address space, but a 57-bit one may map
 * it, and so may aarch64's 48-bit one. Before it is freed: aligned, its
 * usable size holds the request, its first and last usable bytes are
 * mapped and keep what is written there
 * (calloc: read zero first), and the heap is whole. Until 2026-11-28 it was
 * freed unchecked, so a size arithmetic that wrapped into a small mapping
 * (a 32-bit page count in large_realloc) passed every fuzz input. */
FZ_NOCOV static void check_enormous(struct fz_exec *x, const char *what, void *p, size_t n,
                                    size_t align, int zero) {
  if ((uintptr_t)p % (align > 16 ? align : 16))
    fail(x, "%s(%zu) = %p is misaligned (%zu)", what, n, p, align > 16 ? align : 16);
  size_t u = hak_usable_size(p);
  if (u < n)
    fail(x, "%s(%zu) = %p: usable_size %zu < requested", what, n, p, u);
  volatile unsigned char *b = p;
  unsigned char vec;
  for (int end = 0; end < 2; end++) /* a clear message, not a SIGSEGV */
    if (mincore((void *)(((uintptr_t)p + (end ? u - 1 : 0)) & ~(OS_PAGE_SIZE - 1)), OS_PAGE_SIZE,
                &vec) != 0)
      fail(x, "%s(%zu) = %p: its %s usable byte is not mapped (usable_size %zu)", what, n, p,
           end ? "last" : "first", u);
  if (zero && (b[0] || b[n - 1]))
    fail(x, "%s(%zu) = %p: calloc's first or last byte is not zero", what, n, p);
  b[0] = 0xa5;
  b[u - 1] = 0x5a;
  if (b[0] != 0xa5 || b[u - 1] != 0x5a)
    fail(x, "%s(%zu) = %p: its first or last usable byte does not keep a write", what, n, p);
  size_t v = hak_heap_check();
  if (v)
    fail(x, "%s(%zu) = %p: hak_heap_check() found %zu violation(s)", what, n, p, v);
}

static void op_malloc(struct fz_exec *x, const struct fz_op *op) {
  int slot = op->slot;
  if (x->slots[slot].ptr)
    free_slot(x, slot, 0);
  size_t n = op->a;
  if (n <= (size_t)PTRDIFF_MAX && too_big_to_keep(x, n) && n <= MUST_SUCCEED)
    return;
  errno = FZ_ERRNO_MARK;
  void *p = hak_malloc(n);
  int e = errno;
  x->last_err = e;
  mix(x, p != NULL);
  if (n > (size_t)PTRDIFF_MAX) {
    expect_null_errno(x, "malloc(huge)", p, e, ENOMEM);
    return;
  }
  if (!p) {
    if (n <= MUST_SUCCEED)
      fail(x, "malloc(%zu) returned NULL (errno %d)", n, e);
    if (e != ENOMEM)
      fail(x, "malloc(%zu) failed with errno %d, expected ENOMEM", n, e);
    return;
  }
  expect_errno_kept(x, "malloc", n, e);
  if (too_big_to_keep(x, n)) { /* an enormous request that succeeded */
    check_enormous(x, "malloc", p, n, 0, 0);
    hak_free(p);
    return;
  }
  adopt_block(x, slot, p, n, 0, op->thread, 0);
}

static void op_calloc(struct fz_exec *x, const struct fz_op *op) {
  int slot = op->slot;
  if (x->slots[slot].ptr)
    free_slot(x, slot, 0);
  size_t n, c = op->a, m = op->b;
  int ovf = __builtin_mul_overflow(c, m, &n);
  if (!ovf && n <= (size_t)PTRDIFF_MAX && too_big_to_keep(x, n) && n <= MUST_SUCCEED)
    return;
  errno = FZ_ERRNO_MARK;
  void *p = hak_calloc(c, m);
  int e = errno;
  x->last_err = e;
  mix(x, p != NULL);
  if (ovf || n > (size_t)PTRDIFF_MAX) {
    expect_null_errno(x, "calloc(overflow)", p, e, ENOMEM);
    return;
  }
  if (!p) {
    if (n <= MUST_SUCCEED)
      fail(x, "calloc(%zu, %zu) returned NULL (errno %d)", c, m, e);
    if (e != ENOMEM)
      fail(x, "calloc(%zu, %zu): errno %d, expected ENOMEM", c, m, e);
    return;
  }
  expect_errno_kept(x, "calloc", n, e);
  if (too_big_to_keep(x, n)) {
    check_enormous(x, "calloc", p, n, 0, 1);
    hak_free(p);
    return;
  }
  adopt_block(x, slot, p, n, 0, op->thread, 1);
}

/* realloc and reallocarray: `n` is the byte count, `ovf` whether it overflowed.
 * reallocarray(p, c, m) with c * m == 0 is realloc(p, 0): p is freed and
 * NULL returned, reallocarray(NULL, c, m) is malloc(0) (before 2026-11-28
 * the executor skipped it: hak_reallocarray's zero product was never called) */
static void do_realloc(struct fz_exec *x, const struct fz_op *op, int array) {
  int slot = op->slot;
  struct fz_slot *s = &x->slots[slot];
  size_t n;
  int ovf = array ? __builtin_mul_overflow(op->a, op->b, &n) : (n = op->a, 0);
  if (!ovf && n <= (size_t)PTRDIFF_MAX && too_big_to_keep(x, n) && n <= MUST_SUCCEED)
    return;
  void *old = s->ptr;
  size_t old_size = s->size;
  uint32_t old_gen = s->gen;
  if (old)
    check_pattern(x, old, s->usable, s->usable, (unsigned)slot, s->gen, "before realloc");
  errno = FZ_ERRNO_MARK;
  void *p = array ? hak_reallocarray(old, op->a, op->b) : hak_realloc(old, n);
  int e = errno;
  x->last_err = e;
  mix(x, p != NULL);
  const char *what = array ? "reallocarray" : "realloc";
  if (ovf || n > (size_t)PTRDIFF_MAX) {
    expect_null_errno(x, what, p, e, ENOMEM);
    if (old)
      check_pattern(x, old, s->usable, s->usable, (unsigned)slot, s->gen, "after failed realloc");
    return;
  }
  if (n == 0 && old) {
    if (p)
      fail(x, "%s(%p, 0) returned %p, expected NULL (frees)", what, old, p);
    if (e != FZ_ERRNO_MARK) /* NULL here is a free, not a failure */
      fail(x, "%s(%p, 0) returned NULL with errno %d: it must free the block, errno kept", what,
           old, e);
    drop_block(x, slot);
    return;
  }
  if (!p) {
    /* a large block's move that failed (FZ_FAIL_MOVE) leaves it where it was */
    if (n <= MUST_SUCCEED && !fo_fired())
      fail(x, "%s(%p, %zu) returned NULL (errno %d)", what, old, n, e);
    if (e != ENOMEM)
      fail(x, "%s(%p, %zu): errno %d, expected ENOMEM", what, old, n, e);
    if (old)
      check_pattern(x, old, s->usable, s->usable, (unsigned)slot, s->gen, "after failed realloc");
    return;
  }
  expect_errno_kept(x, what, n, e);
  if (old) {
    size_t old_usable = s->usable;
    drop_block(x, slot);
    size_t keep = old_size < n ? old_size : n;
    check_pattern(x, p, keep, old_usable, (unsigned)slot, old_gen, "realloc kept contents");
  }
  if (too_big_to_keep(x, n)) {
    check_enormous(x, what, p, n, 0, 0);
    hak_free(p);
    return;
  }
  adopt_block(x, slot, p, n, 0, op->thread, 0);
}

static int valid_align(size_t a) {
  return a && !(a & (a - 1));
}

static void op_aligned(struct fz_exec *x, const struct fz_op *op) {
  int slot = op->slot;
  if (x->slots[slot].ptr)
    free_slot(x, slot, 0);
  size_t n = op->a, a = op->b, want_align = a;
  if (n <= (size_t)PTRDIFF_MAX && too_big_to_keep(x, n) && n <= MUST_SUCCEED)
    return;
  void *p = NULL;
  int e, rc = 0, bad_align, huge = n > (size_t)PTRDIFF_MAX;
  /* huge alignments may legitimately fail with ENOMEM */
  int may_fail = huge || n > MUST_SUCCEED || a > ((size_t)64 << 20);
  const char *what;
  switch (op->sub) {
  case 0: {
    what = "posix_memalign";
    bad_align = !valid_align(a) || a < sizeof(void *);
    void *sentinel = (void *)(uintptr_t)0x5a5a5a50;
    p = sentinel;
    errno = FZ_ERRNO_MARK;
    rc = hak_posix_memalign(&p, a, n);
    e = errno;
    x->last_err = rc;
    mix(x, (uint64_t)rc);
    if (e != FZ_ERRNO_MARK)
      fail(x, "posix_memalign(%zu, %zu) changed errno from %d to %d", a, n, FZ_ERRNO_MARK, e);
    if (rc != 0) {
      if (p != sentinel)
        fail(x, "posix_memalign(%zu, %zu) failed (%d) but changed *out", a, n, rc);
      if (bad_align && rc != EINVAL && !(huge && rc == ENOMEM))
        fail(x, "posix_memalign(bad alignment %zu, %zu) returned %d, expected EINVAL", a, n, rc);
      if (!bad_align && rc != ENOMEM)
        fail(x, "posix_memalign(%zu, %zu) returned %d, expected ENOMEM", a, n, rc);
      if (!bad_align && !may_fail)
        fail(x, "posix_memalign(%zu, %zu) failed with %d", a, n, rc);
      return;
    }
    if (bad_align || huge)
      fail(x, "posix_memalign(%zu, %zu) succeeded, expected %s", a, n,
           bad_align ? "EINVAL" : "ENOMEM");
    break;
  }
  case 1:
  case 2:
    what = op->sub == 1 ? "aligned_alloc" : "memalign";
    bad_align = !valid_align(a);
    errno = FZ_ERRNO_MARK;
    p = op->sub == 1 ? hak_aligned_alloc(a, n) : hak_memalign(a, n);
    e = errno;
    x->last_err = e;
    mix(x, p != NULL);
    if (!p) {
      if (bad_align && e != EINVAL && !(huge && e == ENOMEM))
        fail(x, "%s(bad alignment %zu, %zu): errno %d, expected EINVAL", what, a, n, e);
      if (!bad_align && e != ENOMEM)
        fail(x, "%s(%zu, %zu): errno %d, expected ENOMEM", what, a, n, e);
      if (!bad_align && !may_fail)
        fail(x, "%s(%zu, %zu) returned NULL", what, a, n);
      return;
    }
    if (bad_align || huge)
      fail(x, "%s(%zu, %zu) returned %p, expected NULL", what, a, n, p);
    expect_errno_kept(x, what, n, e);
    break;
  default:
    what = op->sub == 3 ? "valloc" : "pvalloc";
    want_align = OS_PAGE_SIZE;
    errno = FZ_ERRNO_MARK;
    p = op->sub == 3 ? hak_valloc(n) : hak_pvalloc(n);
    e = errno;
    x->last_err = e;
    mix(x, p != NULL);
    if (!p) {
      if (!may_fail && n <= (size_t)PTRDIFF_MAX - PAGE)
        fail(x, "%s(%zu) returned NULL", what, n);
      if (e != ENOMEM)
        fail(x, "%s(%zu): errno %d, expected ENOMEM", what, n, e);
      return;
    }
    if (huge)
      fail(x, "%s(%zu) returned %p, expected NULL", what, n, p);
    expect_errno_kept(x, what, n, e);
    if (op->sub == 4 && hak_usable_size(p) < ((n + OS_PAGE_SIZE - 1) & ~(OS_PAGE_SIZE - 1)))
      fail(x, "pvalloc(%zu): usable size %zu below the page-rounded size", n, hak_usable_size(p));
    break;
  }
  if (too_big_to_keep(x, n)) {
    check_enormous(x, what, p, n, want_align, 0);
    hak_free(p);
    return;
  }
  adopt_block(x, slot, p, n, want_align, op->thread, 0);
  /* free_aligned_sized needs the alignment actually asked for */
  x->slots[slot].align = valid_align(want_align) ? want_align : 0;
}

/* Burst blocks carry a tag (16 bytes, less for tiny blocks) at both ends of
 * their usable size, derived from their address. */
FZ_NOCOV static void burst_tag(unsigned char *p, size_t u, uint32_t g, int check,
                               struct fz_exec *x) {
  size_t n = u / 2 < 16 ? u / 2 : 16;
  for (size_t i = 0; i < n; i++) {
    if (check && (p[i] != pat(65, g, i) || p[u - 1 - i] != pat(66, g, i)))
      fail(x, "burst block %p (usable %zu) lost its tag at byte %zu", (void *)p, u, i);
    if (!check) {
      p[i] = pat(65, g, i);
      p[u - 1 - i] = pat(66, g, i);
    }
  }
}

static uint32_t burst_gen_of(const struct fz_exec *x, int i) {
  return (uint32_t)(uintptr_t)x->burst[i].ptr >> 4;
}

static void op_burst(struct fz_exec *x, const struct fz_op *op) {
  for (size_t k = 0; k < op->b && x->nburst < FZ_BURST_MAX; k++) {
    errno = FZ_ERRNO_MARK;
    void *p = hak_malloc(op->a);
    if (!p)
      fail(x, "burst malloc(%zu) returned NULL", op->a);
    expect_errno_kept(x, "burst malloc", op->a, errno);
    if ((uintptr_t)p % 16)
      fail(x, "burst block %p is not 16-byte aligned", p);
    size_t u = hak_usable_size(p);
    if (u < op->a || u < 16)
      fail(x, "burst block %p: usable_size %zu < %zu", p, u, op->a);
    struct fz_burst *b = &x->burst[x->nburst++];
    b->ptr = p;
    b->usable = u;
    x->live_usable += u;
    burst_tag(b->ptr, u, burst_gen_of(x, x->nburst - 1), 0, x);
    mix(x, place(p, u));
  }
}

static void op_burst_free(struct fz_exec *x, unsigned every_other) {
  int j = 0;
  for (int i = 0; i < x->nburst; i++) {
    struct fz_burst *b = &x->burst[i];
    uint32_t g = burst_gen_of(x, i);
    if (every_other && i % 2) {
      x->burst[j++] = *b;
      continue;
    }
    burst_tag(b->ptr, b->usable, g, 1, x);
    x->live_usable -= b->usable;
    errno = FZ_ERRNO_MARK;
    hak_free(b->ptr);
    expect_errno_kept(x, "burst free", b->usable, errno);
  }
  x->nburst = j;
}

void fz_exec_verify_all(struct fz_exec *x) {
  for (int i = 0; i < x->nburst; i++)
    burst_tag(x->burst[i].ptr, x->burst[i].usable, burst_gen_of(x, i), 1, x);
  for (int i = 0; i < x->nlive; i++) {
    int sl = x->order[i];
    struct fz_slot *s = &x->slots[sl];
    check_pattern(x, s->ptr, s->usable, s->usable, (unsigned)sl, s->gen, "verify");
  }
}

/* After every op, hak_stats: with every other thread parked its live blocks
 * are exactly the model's (slots and bursts), and (since 2026-11-29) so are
 * their bytes, the sum of their usable sizes (before, a live_bytes that
 * counted a block cut from a bigger cached mapping with all of that mapping,
 * stats-large-bytes-mapping, passed every corpus replay); while an op is
 * held at a hook point (a nested op's turn) the counts are in motion, and it
 * only must not crash on the held thread's half-done work. hak_stats walks
 * every segment: after the first STATS_EVERY_OPS ops (more than any fuzz
 * input has), once every 1024 (a replay of a 2.56M-op python trace took
 * 6 min 39 s with a walk after every op). */
#define STATS_EVERY_OPS 4096u
static void check_stats(struct fz_exec *x) {
  if (x->ops >= STATS_EVERY_OPS && (x->ops & 1023u) != 0)
    return;
  struct hak_stats st;
  hak_stats(&st);
  if (atomic_load_explicit(&hak_test_hook, memory_order_relaxed) != NULL)
    return;
  if (st.live_blocks != (size_t)x->nlive + (size_t)x->nburst)
    fail(x, "hak_stats counts %zu live blocks, the model %d (and %d burst blocks)", st.live_blocks,
         x->nlive, x->nburst);
  if (st.live_bytes != x->live_usable)
    fail(x, "hak_stats counts %zu live bytes, the model's blocks' usable sizes add up to %zu",
         st.live_bytes, x->live_usable);
}

void fz_exec_op(struct fz_exec *x, const struct fz_op *op) {
  if (x->abort_at >= 0 && (long)x->ops == x->abort_at) {
    char buf[128];
    int n = snprintf(buf, sizeof buf, "fuzz: FUZZ_ABORT_AT=%ld reached, digest %016llx\n",
                     x->abort_at, (unsigned long long)x->digest);
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
    abort();
  }
  mix(x, (uint64_t)op->kind << 8 | op->slot);
  struct fz_slot *s = &x->slots[op->slot];
  atomic_store(&fo.fired, 0); /* what fires in this op */
  switch (op->kind) {
  case FZ_MALLOC:
    op_malloc(x, op);
    break;
  case FZ_CALLOC:
    op_calloc(x, op);
    break;
  case FZ_REALLOC:
    do_realloc(x, op, 0);
    break;
  case FZ_REALLOCARRAY:
    do_realloc(x, op, 1);
    break;
  case FZ_FREE:
    if (s->ptr)
      free_slot_as(x, op->slot, op->sub, op->a, op->b);
    else
      hak_free(NULL);
    break;
  case FZ_ALIGNED:
    op_aligned(x, op);
    break;
  case FZ_USABLE: {
    errno = FZ_ERRNO_MARK;
    size_t u = hak_usable_size(s->ptr);
    expect_errno_kept(x, "usable_size", u, errno);
    if (!s->ptr && u != 0)
      fail(x, "usable_size(NULL) = %zu", u);
    if (s->ptr && u != s->usable)
      fail(x, "usable_size(%p) changed from %zu to %zu", (void *)s->ptr, s->usable, u);
    break;
  }
  case FZ_VERIFY:
    if (s->ptr) {
      check_pattern(x, s->ptr, s->usable, s->usable, op->slot, s->gen, "verify");
      s->gen++;
      write_pattern(s, op->slot);
    }
    break;
  case FZ_VERIFY_ALL:
    fz_exec_verify_all(x);
    break;
  case FZ_TRIM:
  case FZ_CLOCK:
  case FZ_HEAP_CHECK: { /* the heap must be whole after a trim or a move of the clock */
    if (op->kind == FZ_TRIM) {
      errno = FZ_ERRNO_MARK;
      hak_trim(0);
      expect_errno_kept(x, "hak_trim", 0, errno); /* madvise, munmap */
      if (hak_trim(0) != 0)
        fail(x, "a second hak_trim, with nothing left to give back, returned 1");
    }
    if (op->kind == FZ_CLOCK)
      os_test_advance_ms(op->a);
    size_t v = hak_heap_check();
    if (v)
      fail(x, "hak_heap_check() found %zu violation(s)", v);
    break;
  }
  case FZ_THREAD_EXIT:
    x->epoch[op->thread % FZ_MAX_THREADS]++;
    break;
  case FZ_BURST:
    op_burst(x, op);
    break;
  case FZ_BURST_FREE:
    op_burst_free(x, op->sub & 1);
    break;
  case FZ_FORK:
    fz_exec_fork(x, op);
    break;
  case FZ_FREE_ORPHANS:
    for (int i = 0; i < (int)x->nslots; i++) {
      struct fz_slot *o = &x->slots[i];
      if (o->ptr && o->epoch != x->epoch[o->thread % FZ_MAX_THREADS])
        free_slot(x, i, 0);
    }
    break;
  case FZ_FAIL_MOVE:
    fm_arm(fail_move_how[op->a % 3], (int)op->b);
    break;
  default:
    break;
  }
  if (fo.nsquat)
    check_squatters(x);
  check_stats(x);
  x->ops++;
}

uint64_t fz_exec_finish(struct fz_exec *x) {
  check_squatters(x);
  fm_reset();
  fz_exec_verify_all(x);
  op_burst_free(x, 0);
  for (int i = 0; i < (int)x->nslots; i++)
    if (x->slots[i].ptr)
      free_slot(x, i, 0);
  size_t v = hak_heap_check();
  if (v)
    fail(x, "hak_heap_check() found %zu violation(s) after freeing everything", v);
  struct hak_stats st;
  hak_stats(&st);
  if (st.live_blocks != 0)
    fail(x, "%zu block(s) still live after freeing everything", st.live_blocks);
  /* the last free into an abandoned segment reclaims it: one still listed
   * lost a free's count (a free counted into one abandonment and pushed onto
   * a later one's mark, a free racing the exit) and stays mapped for ever */
  if (st.abandoned_segments != 0)
    fail(x, "%zu segment(s) still abandoned after freeing everything", st.abandoned_segments);
  hak_test_reset();
  return x->digest;
}

uint64_t fz_run_single(const uint8_t *data, size_t size) {
  return fz_run_single_ex(data, size, 0);
}

uint64_t fz_run_single_ex(const uint8_t *data, size_t size, int fail_moves) {
  static struct fz_exec x; /* large: keep it off the stack */
  struct fz_decoder d;
  struct fz_op op;
  fz_exec_init(&x);
  fz_decoder_init(&d, data, size, 1);
  d.fail_moves = fail_moves;
  while (fz_decode_next(&d, &op))
    if (op.kind != FZ_THREAD_EXIT)
      fz_exec_op(&x, &op);
  return fz_exec_finish(&x);
}

/* ------------------------------------------------------------ baton runner */

struct fz_worker {
  pthread_t tid;
  sem_t go;
  int alive;
  int quit; /* set with the baton: exit instead of running op */
  unsigned index;
  const struct fz_op *op;
  struct fz_runner *r;
  void *done_to; /* the semaphore to post when done: r->done, or r->nested_done (FZ_HOOK) */
  int exit_late; /* FZ_THREAD_EXIT sub 7: exit_late_op runs from a TLS destructor */
  struct fz_op exit_late_op;
};

/* FZ_THREAD_EXIT sub 7, on the exiting thread, after hakmem's TLS destructor
 * abandoned its heap (the coordinator waits in pthread_join): a malloc,
 * which makes a heap for the one call and abandons it at once, then frees
 * of every orphan but that block: into the thread's own just abandoned
 * segments (without a heap: pushed under the global lock; the last one
 * reclaims with a heap made for it and abandoned at once) and into other
 * threads' segments. */
static void exit_late(struct fz_exec *x, const struct fz_op *op) {
  int slot = (int)op->slot;
  struct fz_slot *s = &x->slots[slot];
  if (!s->ptr) {
    size_t n = 16 + (size_t)slot * 40;
    void *p = hak_malloc(n);
    if (!p)
      fail(x, "malloc(%zu) from a TLS destructor after the heap's abandonment returned NULL", n);
    adopt_block(x, slot, p, n, 0, op->thread, 0);
    s->epoch = x->epoch[op->thread % FZ_MAX_THREADS] - 1; /* its thread is gone */
  }
  for (int i = 0; i < (int)x->nslots; i++) {
    struct fz_slot *o = &x->slots[i];
    if (i != slot && o->ptr && o->epoch != x->epoch[o->thread % FZ_MAX_THREADS])
      free_slot(x, i, 0);
  }
}

static pthread_key_t late_key;
static pthread_once_t late_once = PTHREAD_ONCE_INIT;
static void late_key_make(void);
static void late_dtor(void *arg) {
  struct fz_worker *w = arg;
  /* keys' destructors run in the order the keys were made: hakmem's (made
   * by its constructor) first. No later round is asked for: TSan ends the
   * thread's state in the last one, before hakmem's destructor (a heap this
   * malloc made for a thread that had none is abandoned in the next round) */
  exit_late(w->r->x, &w->exit_late_op);
}
static void late_key_make(void) {
  if (pthread_key_create(&late_key, late_dtor) != 0) {
    perror("fuzz: pthread_key_create");
    abort();
  }
}

/* The logical thread a worker runs (-1 on any other thread): FZ_HOOK's hook
 * acts only on the outer op's thread. */
static __thread int fz_worker_self = -1;

static void sem_wait_all(void *s) {
  while (sem_wait((sem_t *)s) != 0) {
  }
}

static void runner_wait(struct fz_runner *r) {
  sem_wait_all(r->done);
}

static void *worker_main(void *arg) {
  struct fz_worker *w = arg;
  struct fz_runner *r = w->r;
  fz_worker_self = (int)w->index;
  for (;;) {
    while (sem_wait(&w->go) != 0) {
    }
    if (w->quit) {
      if (w->exit_late)
        pthread_setspecific(late_key, w);
      sem_post((sem_t *)w->done_to);
      return NULL; /* thread exit: its heap is abandoned with any live blocks */
    }
    if (r->fn)
      r->fn(r->ctx, w->index, w->op);
    else
      fz_exec_op(r->x, w->op);
    sem_post((sem_t *)w->done_to);
  }
}

int fz_runner_init(struct fz_runner *r, struct fz_exec *x, unsigned nworkers) {
  memset(r, 0, sizeof *r);
  r->x = x;
  r->n = nworkers;
  r->w = calloc(nworkers ? nworkers : 1, sizeof *r->w);
  r->done = calloc(1, sizeof(sem_t));
  r->nested_done = calloc(1, sizeof(sem_t));
  if (!r->w || !r->done || !r->nested_done)
    return -1;
  sem_init((sem_t *)r->done, 0, 0);
  sem_init((sem_t *)r->nested_done, 0, 0);
  pthread_once(&late_once, late_key_make); /* after hakmem's key (its constructor) */
  for (unsigned i = 0; i < nworkers; i++) {
    sem_init(&r->w[i].go, 0, 0);
    r->w[i].index = i;
    r->w[i].r = r;
  }
  return 0;
}

int fz_runner_alive(const struct fz_runner *r, unsigned worker) {
  return worker < r->n && r->w[worker].alive;
}

/* Hands op to the worker (started if need be); it posts `done` when done. */
static void runner_post(struct fz_runner *r, unsigned worker, const struct fz_op *op, void *done) {
  struct fz_worker *w = &r->w[worker];
  if (!w->alive) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, (size_t)1 << 20);
    w->quit = 0;
    w->alive = 1;
    w->done_to = done;
    int e = pthread_create(&w->tid, &at, worker_main, w);
    pthread_attr_destroy(&at);
    if (e != 0) {
      errno = e;
      perror("fuzz: pthread_create");
      abort();
    }
  }
  w->op = op;
  w->done_to = done;
  sem_post(&w->go);
}

void fz_runner_op(struct fz_runner *r, unsigned worker, const struct fz_op *op) {
  runner_post(r, worker, op, r->done);
  runner_wait(r);
}

static void runner_join(struct fz_worker *w) {
  if (pthread_join(w->tid, NULL) != 0) {
    perror("fuzz: pthread_join");
    abort();
  }
  w->alive = 0;
}

void fz_runner_exit(struct fz_runner *r, unsigned worker) {
  struct fz_worker *w = &r->w[worker];
  if (!w->alive)
    return;
  w->quit = 1;
  w->exit_late = 0;
  w->done_to = r->done;
  sem_post(&w->go);
  runner_wait(r);
  runner_join(w);
}

void fz_runner_exit_all(struct fz_runner *r) {
  for (unsigned i = 0; i < r->n; i++)
    fz_runner_exit(r, i);
}

void fz_runner_dispatch(struct fz_runner *r, const struct fz_op *op) {
  if (op->kind == FZ_HOOK)
    return;
  if (op->kind == FZ_THREAD_EXIT) {
    if (fz_runner_alive(r, op->thread)) {
      fz_exec_op(r->x, op); /* bumps the thread's epoch (its blocks become orphans) */
      struct fz_worker *w = &r->w[op->thread];
      if (op->sub == 7) {
        w->quit = 1;
        w->exit_late = 1;
        w->exit_late_op = *op;
        w->done_to = r->done;
        sem_post(&w->go);
        runner_wait(r);
        runner_join(w); /* exit_late ran on it meanwhile */
      } else {
        fz_runner_exit(r, op->thread);
      }
    }
    return;
  }
  fz_runner_op(r, op->thread, op);
}

/* ---- FZ_HOOK: ops landed inside another op, at a test hook of hakmem ----
 * hakmem's hook points (enum hak_hook_point; the library is linked
 * statically, so its hidden hook is reachable). The decoder maps a byte to
 * one of FZ_HOOK_POINTS: a new hook point changes what old inputs mean. */
_Static_assert(HAK_HOOK_NOTIFYING + 1 == FZ_HOOK_POINTS,
               "FZ_HOOK decodes FZ_HOOK_POINTS hook points: keep it in step");

static struct {
  struct fz_runner *r;
  _Atomic int armed;
  int point, outer;
  const struct fz_op *nested;
  unsigned n, ran; /* nested ops, how many ran in the window */
} hk;

/* Whether `op` may run while `outer`'s thread is held at `point`: ops that
 * take no lock the held thread may hold (a heap's lock at abandon collected
 * and page full) and wait for nothing it must finish. At notifying, the held
 * thread's page waits for it: its owner's next full page could wait there
 * (page_set_notify), so only frees and exits (which wait, concurrently).
 * The executor's tables are shared: no op on the outer op's slot, no burst
 * op beside another, no orphan sweep (it could take the outer op's block). */
static int nestable(int point, const struct fz_op *op, const struct fz_op *outer) {
  if (op->thread == outer->thread)
    return 0;
  /* a late exit's frees push without a heap holding the global lock at mark
   * checked: every nested op (its stats check, hak_stats) takes that lock */
  if (outer->kind == FZ_THREAD_EXIT && outer->sub == 7 && point == HAK_HOOK_MARK_CHECKED)
    return 0;
  switch (op->kind) {
  case FZ_THREAD_EXIT:
    return op->sub != 7; /* its late frees use the executor: not beside the outer op */
  case FZ_FREE:
  case FZ_USABLE:
  case FZ_VERIFY:
    break;
  case FZ_MALLOC:
  case FZ_CALLOC:
  case FZ_REALLOC:
  case FZ_REALLOCARRAY:
  case FZ_ALIGNED:
    if (point == HAK_HOOK_NOTIFYING)
      return 0;
    break;
  case FZ_BURST:
    if (point == HAK_HOOK_NOTIFYING)
      return 0;
    __attribute__((fallthrough));
  case FZ_BURST_FREE:
    return outer->kind != FZ_BURST && outer->kind != FZ_BURST_FREE;
  default:
    return 0;
  }
  return op->slot != outer->slot || (outer->kind == FZ_THREAD_EXIT && outer->sub != 7) ||
         outer->kind == FZ_FREE_ORPHANS || outer->kind == FZ_BURST || outer->kind == FZ_BURST_FREE;
}

static int outer_ok(const struct fz_op *op) {
  switch (op->kind) {
  case FZ_MALLOC:
  case FZ_CALLOC:
  case FZ_REALLOC:
  case FZ_REALLOCARRAY:
  case FZ_FREE:
  case FZ_ALIGNED:
  case FZ_BURST:
  case FZ_BURST_FREE:
  case FZ_FREE_ORPHANS:
  case FZ_THREAD_EXIT:
    return 1;
  default:
    return 0; /* checks, trims and forks take every lock or fork */
  }
}

/* A nested exit: the worker leaves; its heap's abandonment (a TLS
 * destructor) may wait for the held thread (a page it holds notifying, a
 * segment it names in mark_seg), so it is given 100 ms, then left to the
 * coordinator to join. */
static void nested_exit(struct fz_runner *r, const struct fz_op *op) {
  struct fz_worker *w = &r->w[op->thread];
  if (!w->alive)
    return;
  fz_exec_op(r->x, op); /* the epoch: the held thread is between allocator calls */
  w->quit = 1;
  w->exit_late = 0;
  w->done_to = r->nested_done;
  sem_post(&w->go);
  sem_wait_all(r->nested_done);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 100 * 1000 * 1000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  if (pthread_timedjoin_np(w->tid, NULL, &ts) == 0)
    w->alive = 0;
  else
    r->join_pending = (int)op->thread + 1;
}

static void run_nested(struct fz_runner *r, const struct fz_op *op) {
  if (op->kind == FZ_THREAD_EXIT) {
    nested_exit(r, op);
    return;
  }
  runner_post(r, op->thread, op, r->nested_done);
  sem_wait_all(r->nested_done);
}

static void fz_hook(enum hak_hook_point where, void *arg) {
  (void)arg;
  if ((int)where != hk.point || fz_worker_self != hk.outer)
    return;
  int one = 1;
  if (!atomic_compare_exchange_strong(&hk.armed, &one, 0))
    return;
  /* after a nested exit the rest runs after the outer op, whether the exit
   * ended within its 100 ms or not: which ops run in the window must not
   * hang on timing (until 2026-11-28 it did: an exit slower than 100 ms on
   * a loaded machine moved the next nested op, and the digest changed) */
  while (hk.ran < hk.n) {
    const struct fz_op *op = &hk.nested[hk.ran++];
    run_nested(hk.r, op);
    if (op->kind == FZ_THREAD_EXIT)
      break;
  }
}

void fz_runner_hooked(struct fz_runner *r, const struct fz_op *hook, const struct fz_op *nested,
                      unsigned n, const struct fz_op *outer) {
  fz_exec_op(r->x, hook); /* counted (digest, FUZZ_ABORT_AT) */
  int point = (int)(hook->a % FZ_HOOK_POINTS);
  int ok = outer_ok(outer) && n > 0;
  for (unsigned i = 0; i < n; i++)
    ok = ok && nestable(point, &nested[i], outer);
  /* a nested exit of the thread a later nested op runs on would start it
   * again inside the window: not nested */
  for (unsigned i = 0; i + 1 < n; i++)
    ok = ok && !(nested[i].kind == FZ_THREAD_EXIT && nested[i + 1].thread == nested[i].thread);
  if (ok && outer->kind == FZ_THREAD_EXIT && !fz_runner_alive(r, outer->thread))
    ok = 0;
  if (ok) {
    hk.r = r;
    hk.point = point;
    hk.outer = outer->thread;
    hk.nested = nested;
    hk.n = n;
    hk.ran = 0;
    atomic_store(&hk.armed, 1);
    atomic_store_explicit(&hak_test_hook, fz_hook, memory_order_seq_cst);
  }
  fz_runner_dispatch(r, outer);
  if (ok) {
    atomic_store_explicit(&hak_test_hook, NULL, memory_order_seq_cst);
    int fired = !atomic_exchange(&hk.armed, 0);
    mix(r->x, (uint64_t)fired);
    if (r->join_pending) {
      runner_join(&r->w[r->join_pending - 1]);
      r->join_pending = 0;
    }
    if (fired) {
      nested += hk.ran;
      n -= hk.ran;
    }
  }
  for (unsigned i = 0; i < n; i++) /* not nested (or not in the window): after it */
    fz_runner_dispatch(r, &nested[i]);
}
