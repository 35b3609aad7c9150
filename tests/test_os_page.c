/* hakmem's OS page is the kernel's (OS_PAGE_SIZE, internal.h): 4 KiB on
 * x86-64, and on aarch64 whatever the kernel runs with, 4, 16 or 64 KiB
 * (getauxval(AT_PAGESZ)). What rests on it:
 *   - valloc's blocks start on a page, pvalloc's hold whole pages;
 *   - a large block's range is whole pages (its usable size ends on one),
 *     after a shrink too, and a 4 MiB-aligned block's header lies one
 *     page below it.
 * On aarch64 the constant 4096 that hakmem had until 2026-11-29 broke each
 * of them on a 64 KiB kernel (qemu-aarch64 -p 65536; make cross-check runs
 * this test with 4, 16 and 64 KiB pages): valloc's blocks were 4 KiB
 * aligned only and the huge block's header was 4 KiB below it, where no
 * mapping of the kernel's can start. */
#include "hak_test.h"

#include <string.h>
#include <sys/mman.h>

#include "hak_test_internal.h"

#define MiB ((size_t)1 << 20)

static size_t page;

static size_t round_up(size_t n) {
  return (n + page - 1) & ~(page - 1);
}

static void page_size(void) {
  CHECK_MSG(OS_PAGE_SIZE == page, "hakmem's OS page is %zu bytes, the kernel's %zu",
            (size_t)OS_PAGE_SIZE, page);
}

/* valloc and pvalloc: page-aligned; pvalloc's usable size whole pages. */
static void valloc_pvalloc(void) {
  static const size_t sizes[] = {0, 1, 100, 5000, 70000, 300000, MiB + 1};
  void *keep[16];
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    for (int i = 0; i < 16; i++) { /* the 16th of 4 KiB-aligned blocks in a row: rarely 64 KiB's */
      void *v = hak_valloc(n);
      REQUIRE(v != NULL);
      CHECK_MSG((uintptr_t)v % page == 0, "valloc(%zu) = %p: not on a %zu-byte page", n, v, page);
      keep[i] = v;
    }
    for (int i = 0; i < 16; i++)
      hak_free(keep[i]);
    void *p = hak_pvalloc(n);
    REQUIRE(p != NULL);
    size_t want = n ? round_up(n) : page;
    CHECK_MSG((uintptr_t)p % page == 0, "pvalloc(%zu) = %p: not on a %zu-byte page", n, p, page);
    CHECK_MSG(hak_usable_size(p) >= want, "pvalloc(%zu): usable size %zu, below %zu", n,
              hak_usable_size(p), want);
    memset(p, 0x5a, hak_usable_size(p));
    hak_free(p);
  }
}

/* A large block's range is whole pages, after a shrink too. */
static void large_ranges(void) {
  static const size_t sizes[] = {HAK_SMALL_MAX + 1, 300000, MiB + 1, 5 * MiB + 3};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    unsigned char *p = hak_malloc(n);
    REQUIRE(p != NULL);
    hak_large_t *lg = registry_large(p);
    REQUIRE(lg != NULL);
    CHECK_MSG((uintptr_t)lg % page == 0 && lg->map_size % page == 0,
              "malloc(%zu): range %p + %zu is not whole %zu-byte pages", n, (void *)lg,
              lg->map_size, page);
    /* the block's end, past its redzone (the asan and valgrind builds) */
    size_t u = hak_usable_size(p);
    CHECK_MSG(u >= n && ((uintptr_t)p + u + hak_test_redzone()) % page == 0,
              "malloc(%zu) = %p: usable size %zu (and a redzone of %zu) does not end on a page", n,
              (void *)p, u, hak_test_redzone());
    memset(p, 0x33, u);
    if (n > 2 * page + HAK_SMALL_MAX) { /* shrunk in place by whole pages */
      size_t m = n - page - 1;
      unsigned char *q = hak_realloc(p, m);
      REQUIRE(q != NULL);
      CHECK_EQ(hak_find_not_byte(q, m, 0x33), SIZE_MAX);
      lg = registry_large(q);
      REQUIRE(lg != NULL);
      CHECK_MSG(lg->map_size % page == 0, "realloc(%zu -> %zu): range of %zu bytes", n, m,
                lg->map_size);
      p = q;
    }
    hak_free(p);
  }
}

/* The way the kernel fills the address space (map_learn_dir, os.c) is
 * learnt from single pages it places in a row, two a page apart: the
 * kernel's page. Taken for 4 KiB, a 16 or 64 KiB kernel's pages are never
 * 4 KiB apart, the way is never learnt, and every aligned range is
 * over-mapped (map_exact does nothing without it). */
static void learn_dir(void) {
  os_test_forget_layout();
  int dir = os_test_learn_dir();
  CHECK_MSG(dir == -1 || dir == 1, "the way the kernel fills the address space not learnt (%d)",
            dir);
}

/* A block aligned to 4 MiB or more keeps its header in the page below it. */
static void huge_header(void) {
  unsigned char *p = hak_aligned_alloc(4 * MiB, 5 * MiB);
  REQUIRE(p != NULL);
  hak_large_t *lg = registry_large(p);
  CHECK_MSG((unsigned char *)lg == p - page,
            "aligned_alloc(4 MiB): block %p, its header at %p, not a %zu-byte page below",
            (void *)p, (void *)lg, page);
  CHECK(lg != NULL && lg->map_size % page == 0);
  memset(p, 0x44, 5 * MiB);
  hak_free(p);
}

int main(void) {
  page = hak_page_size();
  hak_test_log("the kernel's page: %zu bytes\n", page);
  REQUIRE(page >= 4096 && (page & (page - 1)) == 0);
  page_size();
  learn_dir(); /* first: qemu-user's placement at 64 KiB pages goes wrong after huge_header */
  valloc_pvalloc();
  large_ranges();
  huge_header();
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
