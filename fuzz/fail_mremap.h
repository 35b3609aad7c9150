/* fuzz/fail_mremap.h: the one mremap stand-in that makes hakmem's page
 * moves fail, for the fuzzers (FZ_FAIL_MOVE, fuzz/ops.c) and
 * tests/test_move_failures. Include it in exactly one file of a program: it
 * defines mremap, so the statically linked (or preloaded) hakmem calls it
 * instead of libc's; unarmed, it is the system call.
 *
 * fm_arm(how, delay): the delay-th next MREMAP_FIXED move (0: the next one)
 * fails with ENOMEM, the way a kernel fails one:
 *   FM_BEFORE_UNMAP  before touching its destination (out of mappings: the
 *                    map-count check comes first on every kernel);
 *   FM_AFTER_UNMAP   after unmapping its destination (older kernels unmap
 *                    it first, and a move can fail inside);
 *   FM_SQUAT_WHOLE   the same, and "another thread" maps a page range of its
 *                    own over the whole hole before hakmem looks;
 *   FM_SQUAT_MIDDLE  the same with one page in the middle of the hole.
 * A squatter's pages hold 0x5A; hakmem must neither unmap nor write them
 * (fm_squatter_damaged). Ops run one at a time (the fuzzers' baton runner
 * serialises threads), so plain globals do. */
#ifndef HAK_FAIL_MREMAP_H
#define HAK_FAIL_MREMAP_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FM_PAGE ((size_t)4096)
#define FM_SQUATTERS 16

enum fm_how { FM_BEFORE_UNMAP, FM_AFTER_UNMAP, FM_SQUAT_WHOLE, FM_SQUAT_MIDDLE, FM_HOW_COUNT };

static struct {
  int armed; /* moves until the one that fails, + 1; 0: none */
  enum fm_how how;
  int fired; /* moves failed since fm_reset */
  unsigned char *squat[FM_SQUATTERS];
  size_t squat_len[FM_SQUATTERS];
  int nsquat;
} fm;

static inline void fm_arm(enum fm_how how, int delay) {
  fm.armed = delay + 1;
  fm.how = how;
}

/* Bytes of squatter pages mapped now. */
static inline size_t fm_squatted(void) {
  size_t n = 0;
  for (int i = 0; i < fm.nsquat; i++)
    n += fm.squat_len[i];
  return n;
}

/* NULL if every squatter page is still mapped and holds 0x5A; else the
 * first one that is not, and *unmapped says whether it is gone. */
static inline const void *fm_squatter_damaged(int *unmapped) {
  for (int i = 0; i < fm.nsquat; i++)
    for (size_t off = 0; off < fm.squat_len[i]; off += FM_PAGE) {
      unsigned char *q = fm.squat[i] + off, v;
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
  for (int i = 0; i < fm.nsquat; i++)
    munmap(fm.squat[i], fm.squat_len[i]);
  memset(&fm, 0, sizeof fm);
}

static void fm_squat(unsigned char *hole, size_t len) {
  unsigned char *at = hole;
  if (fm.how == FM_SQUAT_MIDDLE) {
    at += len / 2 & ~(FM_PAGE - 1);
    len = FM_PAGE;
  }
  if (fm.nsquat == FM_SQUATTERS)
    return;
  void *q = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                 -1, 0);
  if (q == at) {
    memset(q, 0x5A, len);
    fm.squat[fm.nsquat] = q;
    fm.squat_len[fm.nsquat++] = len;
  } else if (q != MAP_FAILED) {
    munmap(q, len);
  }
}

void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...);
void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...) {
  void *dst = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    dst = va_arg(ap, void *);
    va_end(ap);
    if (fm.armed && --fm.armed == 0) {
      fm.fired++;
      if (fm.how != FM_BEFORE_UNMAP) {
        munmap(dst, new_size);
        if (fm.how != FM_AFTER_UNMAP)
          fm_squat(dst, new_size);
      }
      errno = ENOMEM;
      return MAP_FAILED;
    }
  }
  long r = syscall(SYS_mremap, old, old_size, new_size, flags, dst);
  return r == -1 ? MAP_FAILED : (void *)r;
}

#endif
