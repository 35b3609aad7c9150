/* The large-block cache must not fragment the address space without bound.
 *
 * A block assembled from cached pages (large.c: cache_gather_locked, moved
 * there by mremap) is several kernel mappings, and the kernel never merges
 * them again. Freed, such a block went back into the cache as it was, and
 * the next assembly took its pieces apart further: a program that allocates
 * and frees the same 20 large blocks of random sizes (0.1-3 MiB) round after
 * round, within the cache's limits and faster than its 1 s aging, went from
 * about 680 kernel mappings (/proc/self/maps) after 200 rounds to 2747 after
 * 1000 and about 9500 after 10000 (helper-71's probe, 2026-11-28), every
 * move of a mapping costing a bisection of mremap calls per piece (system
 * time per round doubled), bounded only by the cache's pages: 256 MiB of
 * them are 65536 mappings, past the kernel's default vm.max_map_count
 * (65530), where the program's own mmap calls fail; bench_large's throughput
 * fell as they grew (40-76K ops/s over 20000 cycles, 17-26K over 200000).
 * Each large header now
 * counts its kernel mappings (an upper bound) and a block of more than
 * LARGE_PIECES_MAX is unmapped at its free instead of cached.
 *
 * The program runs such rounds (blocks of 0.1-6 MiB) on a frozen hakmem
 * clock (no mapping ages out) and requires the kernel mappings added after
 * the last round, every block freed, to be at most what the cache may hold
 * (LARGE_CACHE_N * LARGE_PIECES_MAX, and 64 more), and hak_heap_check
 * clean. Part "count" first checks the count itself: a block assembled in a
 * new range from two cached mappings that cannot grow; part "grow", a block
 * grown in place by 240 reallocs. Skipped under valgrind, where
 * nothing moves. */
#include "hak_test.h"

#include "internal.h"

#define NBLOCKS 20
#define ROUNDS 5000
#define MAX_SIZE 6000000

/* Kernel mappings that overlap [lo, hi). */
static size_t maps_in(uintptr_t lo, uintptr_t hi) {
  FILE *f = fopen("/proc/self/maps", "r");
  REQUIRE(f != NULL);
  char line[512];
  size_t n = 0;
  unsigned long a, b;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo)
      n++;
  fclose(f);
  return n;
}

static hak_large_t *header_of(void *p) {
  size_t off = hak_test_large_offset(); /* malloc's (hak_test.h) */
  hak_large_t *lg = (hak_large_t *)((uint8_t *)p - off);
  REQUIRE(lg->magic == LARGE_MAGIC && lg->offset == off);
  return lg;
}

/* A page right after [lg, lg + map_size), so the mapping cannot grow in place. */
static void *fence_after(hak_large_t *lg) {
  void *g = hak_map_at((uint8_t *)lg + lg->map_size, hak_page_size(), PROT_NONE);
  REQUIRE(g != NULL);
  return g;
}

/* Part "count": a block assembled in a new range from the pages of two
 * cached mappings that cannot grow (a page mapped after each) is several
 * kernel mappings, and its header must count at least as many. */
static void part_count(void) {
  hak_trim(0);
  size_t n = (size_t)2 << 20;
  void *a = hak_malloc(n), *b = hak_malloc(n);
  REQUIRE(a && b);
  memset(a, 1, n);
  memset(b, 2, n);
  void *fa = fence_after(header_of(a)), *fb = fence_after(header_of(b));
  hak_free(a);
  hak_free(b);
  void *c = hak_malloc(3 * ((size_t)1 << 20));
  REQUIRE(c != NULL);
  hak_large_t *lc = header_of(c);
  size_t real = maps_in((uintptr_t)lc, (uintptr_t)lc + lc->map_size);
  printf("count: a block assembled from 2 cached mappings: %zu kernel mappings, counted %u\n", real,
         (unsigned)lc->pieces);
  CHECK_MSG(real >= 2, "not assembled from the cached pages (%zu kernel mappings)", real);
  CHECK_MSG(lc->pieces >= real, "header counts %u kernel mappings, the block has %zu",
            (unsigned)lc->pieces, real);
  hak_free(c);
  munmap(fa, hak_page_size());
  munmap(fb, hak_page_size());
  hak_trim(0);
}

/* Part "grow": a block realloc'd by 4 KiB steps from 64 KiB to 1 MiB, in
 * place where mremap can grow it (one kernel mapping, however many steps),
 * must not count a mapping per step: it did until 2026-11-28, so such a
 * block counted 241 and was unmapped at its free instead of cached (a
 * reviewer's find, helper-72). The count stays an upper bound. */
static void part_grow(void) {
  hak_trim(0);
  size_t n = (size_t)64 << 10;
  uint8_t *p = hak_malloc(n + 1);
  REQUIRE(p != NULL);
  for (n += 4096; n <= ((size_t)1 << 20); n += 4096) {
    p = hak_realloc(p, n);
    REQUIRE(p != NULL);
    p[n - 1] = 1;
  }
  hak_large_t *lg = header_of(p);
  size_t real = maps_in((uintptr_t)lg, (uintptr_t)lg + lg->map_size);
  printf("grow: 240 reallocs by 4 KiB: %zu kernel mappings, counted %u\n", real,
         (unsigned)lg->pieces);
  CHECK_MSG(lg->pieces >= real, "header counts %u kernel mappings, the block has %zu",
            (unsigned)lg->pieces, real);
  CHECK_MSG(lg->pieces <= real + 1, "header counts %u kernel mappings, the block has %zu",
            (unsigned)lg->pieces, real);
  hak_free(p);
  hak_trim(0);
}

int main(void) {
  if (hak_test_under_valgrind())
    hak_test_skip("nothing moves under valgrind: no block is assembled from cached pages");
  REQUIRE(maps_in(0, UINTPTR_MAX) > 0);
  os_test_freeze_clock();
  part_count();
  part_grow();
  void *blocks[NBLOCKS];
  uint64_t rng = 88172645463325252ULL;
  long start = (long)maps_in(0, UINTPTR_MAX), at100 = 0, last = 0;
  for (int r = 1; r <= ROUNDS; r++) {
    for (int i = 0; i < NBLOCKS; i++) {
      blocks[i] = hak_malloc(100000 + hak_rand_below(&rng, MAX_SIZE));
      REQUIRE(blocks[i] != NULL);
      *(volatile char *)blocks[i] = 1; /* one resident page each */
    }
    for (int i = 0; i < NBLOCKS; i++)
      hak_free(blocks[i]);
    if (r == 100)
      at100 = (long)maps_in(0, UINTPTR_MAX);
  }
  last = (long)maps_in(0, UINTPTR_MAX);
  printf("kernel mappings at the start: %ld, after round 100: %ld, after round %d: %ld\n", start,
         at100, ROUNDS, last);
  /* every block is freed: what is left is the cache's (and a little of libc's) */
  CHECK_MSG(last <= start + LARGE_CACHE_N * LARGE_PIECES_MAX + 64,
            "kernel mappings grow round after round: %ld at the start, %ld after round 100, %ld "
            "after round %d (the cache may hold %d)",
            start, at100, last, ROUNDS, LARGE_CACHE_N * LARGE_PIECES_MAX);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
