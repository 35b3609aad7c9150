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
 * clean. Skipped under valgrind, where
 * nothing moves. */
#include "hak_test.h"

#include "internal.h"

#define NBLOCKS 20
#define ROUNDS 5000
#define MAX_SIZE 6000000

static long map_count(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return -1;
  long n = 0;
  int c;
  while ((c = fgetc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t xorshift(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int main(void) {
  if (hak_test_under_valgrind())
    hak_test_skip("nothing moves under valgrind: no block is assembled from cached pages");
  REQUIRE(map_count() > 0);
  os_test_freeze_clock();
  void *blocks[NBLOCKS];
  long start = map_count(), at100 = 0, last = 0;
  for (int r = 1; r <= ROUNDS; r++) {
    for (int i = 0; i < NBLOCKS; i++) {
      blocks[i] = hak_malloc(100000 + xorshift() % MAX_SIZE);
      REQUIRE(blocks[i] != NULL);
      *(volatile char *)blocks[i] = 1; /* one resident page each */
    }
    for (int i = 0; i < NBLOCKS; i++)
      hak_free(blocks[i]);
    if (r == 100)
      at100 = map_count();
  }
  last = map_count();
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
