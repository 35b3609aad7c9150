/* calloc is zero after a purge the kernel refused. madvise(MADV_DONTNEED)
 * fails with EINVAL on mlock'ed pages (a program that called
 * mlockall(MCL_CURRENT | MCL_FUTURE) has all of hakmem's pages locked), and
 * those pages keep their bytes. The purge used to clear the slices' dirty
 * bits anyway, so a new page over them was taken as zero and calloc skipped
 * the memset: 603 of 2000 calloc(1, 3000) blocks held old bytes after
 * mlockall, 1000-byte blocks filled with 0xFF, freed, and hak_trim. Here
 * only the pages that held the old blocks are locked (mlock through the
 * system call: ASan's and TSan's mlock do nothing). */
#include "hak_test.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SMALL 1000 /* class 1024: a page is one 64 KiB slice of 64 blocks */
#define PAGES 4
#define BIG 3000 /* another class: its pages take the freed slices */
#define SLICE ((uintptr_t)65536)

static int lock_range(void *p, size_t n, int on) {
  return (int)syscall(on ? SYS_mlock : SYS_munlock, p, n);
}

int main(void) {
  size_t per = 65536 / hak_size_class_size(hak_size_to_class(SMALL));
  size_t n = per * PAGES + 1; /* one more: its page stays live */
  static unsigned char *a[PAGES * 64 + 1];
  REQUIRE(n <= sizeof a / sizeof a[0]);
  for (size_t i = 0; i < n; i++) {
    a[i] = hak_malloc(SMALL);
    REQUIRE(a[i] != NULL);
    memset(a[i], 0xAB, SMALL);
  }
  /* lock the slices the freed blocks lie in (the live block's too: harmless) */
  static uintptr_t locked[PAGES * 64 + 1];
  size_t nlocked = 0;
  for (size_t i = 0; i < n; i++) {
    uintptr_t s = (uintptr_t)a[i] & ~(SLICE - 1);
    int seen = 0;
    for (size_t k = 0; k < nlocked; k++)
      seen |= locked[k] == s;
    if (seen)
      continue;
    if (lock_range((void *)s, SLICE, 1) != 0)
      hak_test_skip("mlock: %s", strerror(errno));
    locked[nlocked++] = s;
  }
  for (size_t i = 0; i + 1 < n; i++)
    hak_free(a[i]);
  hak_thread_cache_flush();
  hak_trim(0); /* madvise fails on the locked slices */
  for (size_t k = 0; k < nlocked; k++)
    CHECK(lock_range((void *)locked[k], SLICE, 0) == 0);

  size_t bad = 0, count = (size_t)PAGES * 65536 / BIG + 8;
  for (size_t k = 0; k < count; k++) {
    unsigned char *p = hak_calloc(1, BIG);
    REQUIRE(p != NULL);
    bad += hak_find_not_byte(p, BIG, 0) != SIZE_MAX;
    /* kept: the next calloc must take a new block */
  }
  CHECK_MSG(bad == 0, "%zu of %zu calloc(1, %d) blocks not zero after a refused purge", bad, count,
            BIG);
  CHECK(hak_heap_check() == 0);
  return hak_test_done();
}
