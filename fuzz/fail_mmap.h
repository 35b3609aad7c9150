/* fuzz/fail_mmap.h: stand-ins for mmap, munmap, madvise and mremap that
 * fail the Nth call hakmem makes, for tests/test_oom_sweep (a systematic
 * sweep of memory exhaustion, one OS call at a time). Include it in
 * exactly one file of a program: it defines the four functions, so the
 * statically linked libhakmem.a calls them instead of libc's (glibc's own
 * calls, its malloc's and pthread_create's stacks, go to its internal
 * names and are never counted). Unarmed, each is the system call (through
 * the sanitizer's interceptor where the runtime has one: ASan's and TSan's
 * mmap, TSan's munmap, so that their shadow bookkeeping stays right).
 * Not to be combined with fuzz/fail_mremap.h (both define mremap).
 *
 * fo_arm(kinds, at, persist): from now on, the calls of the kinds in the
 * mask `kinds` (FO_BIT(FO_MMAP) | ...) are counted, from 1; call number
 * `at` fails (with `persist`, it and every one after it: the process out
 * of memory for good). A failure is what a kernel gives:
 *   mmap    ENOMEM, nothing mapped (MAP_FIXED_NOREPLACE included);
 *   munmap  ENOMEM, nothing unmapped (a split refused at the map limit);
 *   madvise fo.madvise_errno (EAGAIN or ENOMEM), no page given back;
 *   mremap  with MREMAP_FIXED: ENOMEM before its destination is touched
 *           (the map-count check comes first on every kernel), or with
 *           fo.after_unmap after unmapping it (kernels before 6.11 unmap
 *           it first, and a move may fail inside); a resize in
 *           place: the kernel's own answer where it fails (EFAULT across
 *           mappings comes before any ENOMEM), else ENOMEM with the range
 *           as it was (grown, then shrunk back at once).
 * fo_disarm() stops counting and returns how many calls failed since
 * fo_arm. The counters are atomic: any thread's calls count. */
#ifndef HAK_FAIL_MMAP_H
#define HAK_FAIL_MMAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum fo_kind { FO_MMAP, FO_MUNMAP, FO_MADVISE, FO_MREMAP, FO_KINDS };
#define FO_BIT(k) (1u << (k))
#define FO_ALL (FO_BIT(FO_MMAP) | FO_BIT(FO_MUNMAP) | FO_BIT(FO_MADVISE) | FO_BIT(FO_MREMAP))

static struct {
  atomic_uint kinds;   /* counted kinds; 0: disarmed */
  atomic_long count;   /* counted calls since fo_arm */
  atomic_long at;      /* the call number that fails */
  atomic_bool persist; /* and every one after it */
  atomic_long fired;   /* calls failed since fo_arm */
  atomic_long fired_kind[FO_KINDS];
  int madvise_errno;
  bool after_unmap;      /* a failed MREMAP_FIXED move unmaps its destination first */
  _Atomic(void *) where; /* the return address of the last failed call (for debugging) */
} fo = {.madvise_errno = EAGAIN};

static inline void fo_arm(unsigned kinds, long at, bool persist) {
  atomic_store(&fo.kinds, 0);
  atomic_store(&fo.at, at);
  atomic_store(&fo.persist, persist);
  atomic_store(&fo.count, 0);
  atomic_store(&fo.fired, 0);
  for (int k = 0; k < FO_KINDS; k++)
    atomic_store(&fo.fired_kind[k], 0);
  atomic_store(&fo.kinds, kinds);
}

static inline long fo_disarm(void) {
  atomic_store(&fo.kinds, 0);
  return atomic_load(&fo.fired);
}

static inline bool fo_fail_(enum fo_kind k) {
  if (!(atomic_load_explicit(&fo.kinds, memory_order_relaxed) & FO_BIT(k)))
    return false;
  long n = atomic_fetch_add(&fo.count, 1) + 1;
  long at = atomic_load_explicit(&fo.at, memory_order_relaxed);
  if (n != at && !(atomic_load_explicit(&fo.persist, memory_order_relaxed) && n > at))
    return false;
  atomic_fetch_add(&fo.fired, 1);
  atomic_fetch_add(&fo.fired_kind[k], 1);
  return true;
}

/* The sanitizer runtimes' own entry points, where linked in (weak: NULL
 * otherwise). */
void *__interceptor_mmap(void *, size_t, int, int, int, off_t) __attribute__((weak));
int __interceptor_munmap(void *, size_t) __attribute__((weak));

static inline void *fo_real_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off) {
  if (__interceptor_mmap)
    return __interceptor_mmap(a, n, prot, flags, fd, off);
  long r = syscall(SYS_mmap, a, n, prot, flags, fd, off);
  return r == -1 ? MAP_FAILED : (void *)r;
}

static inline int fo_real_munmap(void *a, size_t n) {
  if (__interceptor_munmap)
    return __interceptor_munmap(a, n);
  return (int)syscall(SYS_munmap, a, n);
}

void *mmap(void *a, size_t n, int prot, int flags, int fd, off_t off) {
  if (fo_fail_(FO_MMAP)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return fo_real_mmap(a, n, prot, flags, fd, off);
}

int munmap(void *a, size_t n) {
  if (fo_fail_(FO_MUNMAP)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    errno = ENOMEM;
    return -1;
  }
  return fo_real_munmap(a, n);
}

int madvise(void *a, size_t n, int advice) {
  if (fo_fail_(FO_MADVISE)) {
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
  if (fo_fail_(FO_MREMAP)) {
    atomic_store_explicit(&fo.where, __builtin_return_address(0), memory_order_relaxed);
    if (!(flags & MREMAP_FIXED) && new_size > old_size && !(flags & MREMAP_MAYMOVE)) {
      long r = syscall(SYS_mremap, old, old_size, new_size, flags, NULL);
      if (r == -1)
        return MAP_FAILED; /* the kernel's own failure (EFAULT: several mappings) */
      syscall(SYS_mremap, old, new_size, old_size, 0, NULL); /* as it was */
    } else if ((flags & MREMAP_FIXED) && fo.after_unmap) {
      fo_real_munmap(dst, new_size);
    }
    errno = ENOMEM;
    return MAP_FAILED;
  }
  long r = syscall(SYS_mremap, old, old_size, new_size, flags, dst);
  return r == -1 ? MAP_FAILED : (void *)r;
}

#endif
