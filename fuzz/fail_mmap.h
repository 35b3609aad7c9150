/* fuzz/fail_mmap.h: the one place that makes hakmem's OS calls fail, as a
 * kernel fails them: stand-ins for mmap, munmap, madvise and mremap, for
 * tests/test_oom_sweep (every call in turn), tests/test_move_failures and
 * the fuzzers (FZ_FAIL_MOVE, fuzz/ops.c: a chosen page move). Include it
 * in exactly one file of a program: it defines the four functions, so the
 * statically linked libhakmem.a calls them instead of libc's (glibc's own
 * calls, its malloc's and pthread_create's stacks, go to its internal
 * names and are never counted). Unarmed, each is the system call (through
 * the sanitizer's interceptor where the runtime has one: ASan's and TSan's
 * mmap, TSan's munmap, so that their shadow bookkeeping stays right).
 *
 * fo_arm(kinds, at, persist): from now on, the calls of the kinds in the
 * mask `kinds` (FO_BIT(FO_MMAP) | ...) are counted, from 1; call number
 * `at` fails (with `persist`, it and every one after it: the process out
 * of memory for good). FO_MOVE counts the page moves only (mremap with
 * MREMAP_FIXED), which FO_MREMAP counts among the other mremaps. A
 * failure is what a kernel gives:
 *   mmap    ENOMEM, nothing mapped (MAP_FIXED_NOREPLACE included);
 *   munmap  ENOMEM, nothing unmapped (a split refused at the map limit);
 *   madvise fo.madvise_errno (EAGAIN or ENOMEM), no page given back;
 *   mremap  a move (MREMAP_FIXED): ENOMEM the way fo.move_how says; a
 *           resize in place: the kernel's own answer where it fails
 *           (EFAULT across mappings comes before any ENOMEM), else ENOMEM
 *           with the range as it was (grown, then shrunk back at once).
 * A failed move (fo.move_how, enum fm_how):
 *   FM_BEFORE_UNMAP  before touching its destination (out of mappings: the
 *                    map-count check comes first on every kernel);
 *   FM_AFTER_UNMAP   after unmapping its destination (kernels before 6.11
 *                    unmap it first, and a move can fail inside);
 *   FM_SQUAT_WHOLE   the same, and "another thread" maps a page range of its
 *                    own over the whole hole before hakmem looks;
 *   FM_SQUAT_MIDDLE  the same with one page in the middle of the hole.
 * A squatter's pages hold 0x5A; hakmem must neither unmap nor write them
 * (fm_squatter_damaged). Squatters are for one thread's calls at a time
 * (the fuzzers' baton runner serialises theirs).
 *
 * fo_disarm() stops counting and returns how many calls failed since
 * fo_arm; fo_fired() says that count without disarming. The counters are
 * atomic: any thread's calls count. fm_arm(how, delay): the delay-th next
 * move (0: the next one) fails the way `how` says; fm_reset() disarms,
 * gives the squatters back and forgets what fired. */
#ifndef HAK_FAIL_MMAP_H
#define HAK_FAIL_MMAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum fo_kind { FO_MMAP, FO_MUNMAP, FO_MADVISE, FO_MREMAP, FO_MOVE, FO_KINDS };
#define FO_BIT(k) (1u << (k))
#define FO_ALL (FO_BIT(FO_MMAP) | FO_BIT(FO_MUNMAP) | FO_BIT(FO_MADVISE) | FO_BIT(FO_MREMAP))

enum fm_how { FM_BEFORE_UNMAP, FM_AFTER_UNMAP, FM_SQUAT_WHOLE, FM_SQUAT_MIDDLE, FM_HOW_COUNT };
#define FM_PAGE ((size_t)sysconf(_SC_PAGESIZE)) /* the kernel's: 4, 16 or 64 KiB on aarch64 */
#define FM_SQUATTERS 16

static struct {
  atomic_uint kinds;   /* counted kinds; 0: disarmed */
  atomic_long count;   /* counted calls since fo_arm */
  atomic_long at;      /* the call number that fails */
  atomic_bool persist; /* and every one after it */
  atomic_long fired;   /* calls failed since fo_arm */
  int madvise_errno;
  enum fm_how move_how;  /* how a failing move fails */
  _Atomic(void *) where; /* the return address of the last failed call (for debugging) */
  unsigned char *squat[FM_SQUATTERS];
  size_t squat_len[FM_SQUATTERS];
  int nsquat;
} fo = {.madvise_errno = EAGAIN};
static _Thread_local long fo_fired_here; /* calls of this thread failed, ever */

static inline void fo_arm(unsigned kinds, long at, bool persist) {
  atomic_store(&fo.kinds, 0);
  atomic_store(&fo.at, at);
  atomic_store(&fo.persist, persist);
  atomic_store(&fo.count, 0);
  atomic_store(&fo.fired, 0);
  atomic_store(&fo.kinds, kinds);
}

static inline long fo_fired(void) {
  return atomic_load(&fo.fired);
}

static inline long fo_disarm(void) {
  atomic_store(&fo.kinds, 0);
  return fo_fired();
}

/* Whether this call fails: it is of kind k (and, a move, of FO_MOVE too). */
static inline bool fo_fail_(enum fo_kind k, bool move) {
  unsigned kinds = atomic_load_explicit(&fo.kinds, memory_order_relaxed);
  if (!(kinds & FO_BIT(k)) && !(move && (kinds & FO_BIT(FO_MOVE))))
    return false;
  long n = atomic_fetch_add(&fo.count, 1) + 1;
  long at = atomic_load_explicit(&fo.at, memory_order_relaxed);
  if (n != at && !(atomic_load_explicit(&fo.persist, memory_order_relaxed) && n > at))
    return false;
  atomic_fetch_add(&fo.fired, 1);
  fo_fired_here++;
  return true;
}

/* The sanitizer runtimes' own entry points, where linked in (weak: NULL
 * otherwise): `___interceptor_` from LLVM 17 on (D151085), `__interceptor_`
 * before (clang 14 here). */
void *___interceptor_mmap(void *, size_t, int, int, int, off_t) __attribute__((weak));
void *__interceptor_mmap(void *, size_t, int, int, int, off_t) __attribute__((weak));
int ___interceptor_munmap(void *, size_t) __attribute__((weak));
int __interceptor_munmap(void *, size_t) __attribute__((weak));

static inline void *fo_real_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off) {
  void *(*san)(void *, size_t, int, int, int, off_t) =
      ___interceptor_mmap ? ___interceptor_mmap : __interceptor_mmap;
  if (san)
    return san(a, n, prot, flags, fd, off);
  long r = syscall(SYS_mmap, a, n, prot, flags, fd, off);
  return r == -1 ? MAP_FAILED : (void *)r;
}

static inline int fo_real_munmap(void *a, size_t n) {
  int (*san)(void *, size_t) = ___interceptor_munmap ? ___interceptor_munmap : __interceptor_munmap;
  if (san)
    return san(a, n);
  return (int)syscall(SYS_munmap, a, n);
}

/* The delay-th next move fails the way `how` says. */
static inline void fm_arm(enum fm_how how, int delay) {
  fo.move_how = how;
  fo_arm(FO_BIT(FO_MOVE), delay + 1, false);
}

/* Bytes of squatter pages mapped now. */
static inline size_t fm_squatted(void) {
  size_t n = 0;
  for (int i = 0; i < fo.nsquat; i++)
    n += fo.squat_len[i];
  return n;
}

/* NULL if every squatter page is still mapped and holds 0x5A; else the
 * first one that is not, and *unmapped says whether it is gone. */
static inline const void *fm_squatter_damaged(int *unmapped) {
  for (int i = 0; i < fo.nsquat; i++)
    for (size_t off = 0; off < fo.squat_len[i]; off += FM_PAGE) {
      unsigned char *q = fo.squat[i] + off, v;
      *unmapped = mincore(q, FM_PAGE, &v) != 0;
      if (*unmapped)
        return q;
      for (size_t k = 0; k < FM_PAGE; k += 256)
        if (q[k] != 0x5A || q[FM_PAGE - 1] != 0x5A)
          return q;
    }
  return NULL;
}

/* Disarms, gives the squatters back, forgets what fired. */
static inline void fm_reset(void) {
  fo_arm(0, 0, false);
  for (int i = 0; i < fo.nsquat; i++)
    fo_real_munmap(fo.squat[i], fo.squat_len[i]);
  fo.nsquat = 0;
  fo.move_how = FM_BEFORE_UNMAP;
}

/* "Another thread" maps pages of its own in a failed move's hole. */
static void fm_squat_(unsigned char *hole, size_t len) {
  unsigned char *at = hole;
  if (fo.move_how == FM_SQUAT_MIDDLE) {
    at += len / 2 & ~(FM_PAGE - 1);
    len = FM_PAGE;
  }
  if (fo.nsquat == FM_SQUATTERS)
    return;
  void *q = fo_real_mmap(at, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (q == at) {
    memset(q, 0x5A, len);
    fo.squat[fo.nsquat] = q;
    fo.squat_len[fo.nsquat++] = len;
  } else if (q != MAP_FAILED) {
    fo_real_munmap(q, len);
  }
}

void *mmap(void *a, size_t n, int prot, int flags, int fd, off_t off) {
  if (fo_fail_(FO_MMAP, false)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return fo_real_mmap(a, n, prot, flags, fd, off);
}

int munmap(void *a, size_t n) {
  if (fo_fail_(FO_MUNMAP, false)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    errno = ENOMEM;
    return -1;
  }
  return fo_real_munmap(a, n);
}

int madvise(void *a, size_t n, int advice) {
  if (fo_fail_(FO_MADVISE, false)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    errno = fo.madvise_errno;
    return -1;
  }
  return (int)syscall(SYS_madvise, a, n, advice);
}

void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...) {
  void *dst = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    dst = va_arg(ap, void *);
    va_end(ap);
  }
  if (fo_fail_(FO_MREMAP, flags & MREMAP_FIXED)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    if (!(flags & MREMAP_FIXED) && new_size > old_size && !(flags & MREMAP_MAYMOVE)) {
      long r = syscall(SYS_mremap, old, old_size, new_size, flags, NULL);
      if (r == -1)
        return MAP_FAILED; /* the kernel's own failure (EFAULT: several mappings) */
      syscall(SYS_mremap, old, new_size, old_size, 0, NULL); /* as it was */
    } else if ((flags & MREMAP_FIXED) && fo.move_how != FM_BEFORE_UNMAP) {
      fo_real_munmap(dst, new_size);
      if (fo.move_how != FM_AFTER_UNMAP)
        fm_squat_(dst, new_size);
    }
    errno = ENOMEM;
    return MAP_FAILED;
  }
  long r = syscall(SYS_mremap, old, old_size, new_size, flags, dst);
  return r == -1 ? MAP_FAILED : (void *)r;
}

#endif
