/* hak_trim gives back the tails live large blocks keep as room to grow
 * into (a cached mapping up to 1.5 times the block taken whole; realloc
 * shrinking a block by at most a third): resident memory no block uses.
 * Until this test it left them: a 16 MiB block taken from a freed 24 MiB
 * mapping kept 8 MiB resident through hak_trim, which returned 0. The
 * blocks keep their bytes and grow again afterwards. */
#include "hak_test.h"

#define MiB ((size_t)1 << 20)

static size_t rss_mib(void) {
  return hak_statm_bytes(1) / MiB;
}

static void check_trim(const char *what, unsigned char *b, size_t n, unsigned char v) {
  size_t before = rss_mib();
  int r = hak_trim(0);
  size_t after = rss_mib();
  CHECK_MSG(r == 1, "%s: hak_trim returned %d with an 8 MiB tail kept", what, r);
  CHECK_MSG(after + 6 <= before, "%s: resident %zu -> %zu MiB through hak_trim", what, before,
            after);
  size_t bad = 0;
  for (size_t i = 0; i < n; i += 4096)
    bad += b[i] != v;
  CHECK_MSG(bad == 0, "%s: %zu pages of the block changed", what, bad);
  unsigned char *g = hak_realloc(b, 24 * MiB); /* grows again, bytes kept */
  REQUIRE(g != NULL);
  CHECK_EQ(g[0], v);
  CHECK_EQ(g[n - 1], v);
  memset(g, 0x77, 24 * MiB);
  hak_free(g);
  hak_trim(0);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  const size_t n = 16 * MiB + 4096;
  /* a freed 24 MiB mapping taken whole by a 16 MiB block */
  unsigned char *a = hak_malloc(24 * MiB);
  REQUIRE(a != NULL);
  memset(a, 0x11, 24 * MiB);
  hak_free(a);
  unsigned char *b = hak_malloc(n);
  REQUIRE(b != NULL);
  memset(b, 0x22, n);
  /* whole pages after a 64-byte header: n + 4 KiB - 64 on x86-64 (with
   * the asan and valgrind builds' redzone and lead, n + 4 KiB - 144) */
  CHECK_EQ(hak_usable_size(b), hak_test_large_usable(n));
  check_trim("taken whole", b, n, 0x22);

  /* realloc shrinking 24 MiB to 16 MiB keeps the tail */
  unsigned char *c = hak_malloc(24 * MiB);
  REQUIRE(c != NULL);
  memset(c, 0x33, 24 * MiB);
  c = hak_realloc(c, n);
  REQUIRE(c != NULL);
  check_trim("shrunk by realloc", c, n, 0x33);
  return hak_test_done();
}
