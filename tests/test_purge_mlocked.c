/* calloc is zero after a purge the kernel refused. madvise(MADV_DONTNEED)
 * fails with EINVAL on mlock'ed pages (a program that called
 * mlockall(MCL_CURRENT | MCL_FUTURE) has all of hakmem's pages locked), and
 * those pages keep their bytes. The purge used to clear the slices' dirty
 * bits anyway, so a new page over them was taken as zero and calloc skipped
 * the memset: 603 of 2000 calloc(1, 3000) blocks held old bytes after
 * mlockall, 1000-byte blocks filled with 0xFF, freed, and hak_trim. Here
 * only the pages that held the old blocks are locked (mlock through the
 * system call: ASan's and TSan's mlock do nothing). Part 2: a free whose
 * purge the kernel refuses keeps errno. */
#include "hak_test.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hak_test_internal.h"

#define SMALL 1000 /* class 1024: a page is one 64 KiB slice of 64 blocks */
#define PAGES 4
#define BIG 3000 /* another class: its pages take the freed slices */
#define SLICE ((uintptr_t)65536)

static int lock_range(void *p, size_t n, int on) {
  return (int)syscall(on ? SYS_mlock : SYS_munlock, p, n);
}

/* 2. free keeps errno when the purge it runs is refused: the heap's free
 * slices (one of them locked) have waited out the delay, and the frees
 * that empty one more page purge them (EINVAL on the locked one). The
 * kernel's EINVAL must not reach the program: os_purge keeps errno, and
 * no test required it until 2026-11-28 (mutant os-purge-clobbers-errno,
 * helper-77). */
#define B2 16384
#define N2 1024 /* 16 MiB: over the purge threshold once freed */
static void errno_kept(void) {
  os_test_freeze_clock(); /* the delay passes only by os_test_advance_ms */
  hak_trim(0);
  static unsigned char *b[N2];
  static hak_segment_t *segs[N2];
  size_t nsegs = 0;
  for (int i = 0; i < N2; i++) {
    b[i] = hak_malloc(B2);
    REQUIRE(b[i] != NULL);
    memset(b[i], 0xCD, B2);
  }
  /* the first block of each segment stays (no segment leaves the heap),
   * and so do the blocks of the last block's page, freed after the delay */
  hak_page_t *late = hak_block_page(b[N2 - 1]);
  unsigned char *victim = b[N2 / 2];
  hak_segment_t *vseg = ptr_segment_base(victim);
  uint64_t vbit = (uint64_t)1 << ptr_slice(vseg, victim);
  REQUIRE(ptr_page(vseg, victim) != late);
  if (lock_range((void *)((uintptr_t)victim & ~(SLICE - 1)), SLICE, 1) != 0)
    hak_test_skip("mlock: %s", strerror(errno));
  for (int i = 0; i < N2; i++) {
    hak_segment_t *seg = ptr_segment_base(b[i]);
    bool first = true;
    for (size_t k = 0; k < nsegs && first; k++)
      first = segs[k] != seg;
    if (first) {
      segs[nsegs++] = seg;
      REQUIRE(seg != vseg || ptr_page(seg, b[i]) != ptr_page(vseg, victim));
      continue;
    }
    if (ptr_page(seg, b[i]) == late)
      continue;
    hak_free(b[i]);
    b[i] = NULL;
  }
  hak_thread_cache_flush();
  REQUIRE(hak_tls_heap->dirty_free_bytes >= PURGE_THRESHOLD); /* the delay runs */
  REQUIRE((vseg->free_slices & vseg->dirty_slices & vbit) != 0);
  os_test_advance_ms(PURGE_DELAY_MS);
  errno = 0;
  for (int i = 0; i < N2; i++)
    if (b[i] && hak_block_page(b[i]) == late) {
      hak_free(b[i]);
      b[i] = NULL;
    }
  hak_thread_cache_flush(); /* the page empties: the purge runs */
  int e = errno;
  REQUIRE(hak_tls_heap->dirty_free_bytes < PURGE_THRESHOLD); /* it ran */
  REQUIRE((vseg->dirty_slices & vbit) != 0);                 /* and was refused there */
  CHECK_MSG(e == 0, "free whose purge the kernel refused left errno %d (%s)", e, strerror(e));
  CHECK(lock_range((void *)((uintptr_t)victim & ~(SLICE - 1)), SLICE, 0) == 0);
  for (int i = 0; i < N2; i++)
    hak_free(b[i]);
  hak_thread_cache_flush();
  CHECK(hak_heap_check() == 0);
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
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
  errno_kept();
  return hak_test_done();
}
