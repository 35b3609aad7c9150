/* realloc of a pointer that is not a live block, to a small size, with
 * the process out of memory: the error is named all the same. A pointer
 * whose range is not a small segment's goes to realloc_large, which
 * allocates the small block before large_realloc's checks (so that the
 * copy and the free come under the one hold of the large lock that the
 * checks take: test_large_lock_once). Until 2026-11-29, when that
 * allocation failed, realloc returned NULL with errno ENOMEM before any
 * check: a bad pointer (not hakmem's, into a large block, a large block
 * freed) went unnamed, and the program, taking it for an ordinary failed
 * realloc, went on with it. Now a failed allocation is followed by the
 * checks (large_resolve), which name it; a live block's failure is still
 * NULL and ENOMEM, the block untouched.
 *
 * Each case runs in a forked child: mmap fails for good from then on
 * (fuzz/fail_mmap.h), blocks of the small class are allocated until none
 * can be had, then realloc(p, that size). The child must die by SIGABRT
 * with the error's line; a child that returns says what realloc returned. */
#include "hak_test.h"

#include "hak_test_internal.h"

#include "../fuzz/fail_mmap.h"

#define MiB ((size_t)1 << 20)
#define SMALL 100 /* the size realloc asks for */

static char global_buf[64] __attribute__((aligned(16)));

/* Allocates blocks of SMALL bytes until none comes, mmap failing for good;
 * returns how many came. */
static size_t exhaust(void) {
  fo_arm(FO_BIT(FO_MMAP), 1, true);
  size_t n = 0;
  while (hak_malloc(SMALL))
    n++;
  return n;
}

static void do_realloc_exhausted(void *p) {
  size_t n = exhaust();
  errno = 0;
  void *q = hak_realloc(p, SMALL);
  int e = errno;
  hak_test_log("realloc(%p, %d) after %zu blocks, out of memory: returned %p, errno %d\n", p, SMALL,
               n, q, e);
}

/* The control: a live large block's realloc under the same exhaustion
 * fails with ENOMEM, its bytes as they were. */
static void do_realloc_live_exhausted(void *p) {
  hak_fill(p, 4096, 11);
  exhaust();
  errno = 0;
  void *q = hak_realloc(p, SMALL);
  int e = errno;
  fo_disarm();
  if (q != NULL || e != ENOMEM) {
    hak_test_log("realloc of a live block out of memory: %p, errno %d (wanted NULL, ENOMEM)\n", q,
                 e);
    _exit(2);
  }
  if (!CHECK_PATTERN(p, 4096, 11))
    _exit(3);
  hak_free(p);
  _exit(0);
}

static void expect(void *p, const char *want) {
  EXPECT_ABORT(do_realloc_exhausted, p, want);
}

int main(void) {
  char want[256];
  hak_free(hak_malloc(SMALL)); /* the heap has a segment: exhaust() fills it */
  /* not hakmem's: the stack, a global, a far address, libc's block */
  char stack_buf[64] __attribute__((aligned(16)));
  memset(stack_buf, 0, sizeof stack_buf);
  void *libc_small = malloc(64);
  REQUIRE(libc_small != NULL);
  void *foreign[] = {stack_buf, global_buf, libc_small, (void *)(uintptr_t)0xffff800000001000u};
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
    snprintf(want, sizeof want, "hakmem: invalid realloc of %p: not allocated by hakmem\n",
             foreign[i]);
    expect(foreign[i], want);
  }
  free(libc_small);

  /* inside a live large block */
  unsigned char *lg = hak_malloc(MiB);
  REQUIRE(lg != NULL);
  snprintf(want, sizeof want,
           "hakmem: invalid realloc of %p: not the start of an allocated block\n",
           (void *)(lg + 4096));
  expect(lg + 4096, want);

  /* a large block freed: cached (1 MiB) and unmapped (40 MiB, over what
   * the cache keeps) */
  static const size_t freed_sizes[] = {MiB, 40 * MiB};
  for (size_t i = 0; i < sizeof freed_sizes / sizeof freed_sizes[0]; i++) {
    void *f = hak_malloc(freed_sizes[i]);
    REQUIRE(f != NULL);
    hak_free(f);
    snprintf(want, sizeof want, "hakmem: realloc of freed block %p (large block)\n", f);
    expect(f, want);
  }

  /* the control */
  struct hak_child c;
  REQUIRE(hak_run_child(do_realloc_live_exhausted, lg, 60 * hak_test_slowdown(), &c));
  CHECK_MSG(hak_child_exited(&c, 0), "realloc of a live large block out of memory:\n%s",
            c.out ? c.out : "(no output)");
  hak_child_free(&c);
  hak_free(lg);
  return hak_test_done();
}
