/* asan build: hak_trim racing a large block's kept tail leaves no poison on
 * unmapped address space.
 *
 * A large block keeps a tail as room to grow into (a cached mapping up to
 * 1.5 times the block taken whole, realloc shrinking a block by at most a
 * third), poisoned in the asan build. hak_trim (large_trim) unmaps such
 * tails and clears their shadow first (track_unmapping), under the large
 * lock. Until this test, malloc and realloc poisoned the tail after they
 * had let that lock go: a hak_trim in between unmapped it first, and the
 * poison landed on address space hakmem no longer held. The zone hands
 * that space back to the block when it grows in place (a freed block's
 * mapping is grown by the next bigger allocation): a helper's probe (two
 * threads churning large blocks, three reallocing them, one calling
 * hak_trim in a loop) died in 2 of 2 runs with ASan's "use-after-poison"
 * in hakmem's own write of a move's token there (os_move_mapping), and in
 * 0 of 3 without the trimming thread. Now the tail is poisoned before the
 * lock is let go, so every unmap comes after it and clears it.
 *
 * Here one thread calls hak_trim in a loop while the main thread takes a
 * tail both ways; after each, a hak_trim of its own unmaps the tail if the
 * other has not, and not a byte of it may still be poisoned. */
#include "hak_test.h"

#ifdef HAK_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define HDR 64 /* a large block's header, before it (alignment 16) */

#ifdef HAK_TEST_ASAN
static atomic_int stop;

static void *trimmer(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed))
    hak_trim(0);
  return NULL;
}

/* The tail [tail, end) left after block b: unmapped by the hak_trim here if
 * nobody did before; no byte of it may be poisoned. Returns 1 if one was. */
static int tail_poisoned(const char *how, unsigned char *tail, unsigned char *end) {
  hak_trim(0);
  void *bad = __asan_region_is_poisoned(tail, (size_t)(end - tail));
  CHECK_MSG(bad == NULL,
            "%s: %p, %zu bytes into the %zu-byte tail hak_trim unmapped, is still poisoned", how,
            bad, bad ? (size_t)((unsigned char *)bad - tail) : 0, (size_t)(end - tail));
  return bad != NULL;
}
#endif

int main(void) {
  if (!hak_config_is("asan"))
    hak_test_skip("the ASan shadow exists only in the asan build");
#ifdef HAK_TEST_ASAN
  alarm(120);
  /* mappings: 3 MiB blocks (3 MiB + 4 KiB with the header's page); a block
   * of 2 MiB + 64 KiB takes one whole, its tail (just under 1 MiB) kept */
  const size_t big = 3 * MiB, small = 2 * MiB + 64 * KiB;
  const size_t map = big + 4 * KiB, need = small + 4 * KiB;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, trimmer, NULL) == 0);
  size_t rounds = hak_iters(8000), done = 0, taken = 0, failed = 0;
  double until = hak_now() + 30;
  for (; done < rounds && !failed && hak_now() < until; done++) {
    /* taken whole from the cache by malloc (three times: the trimmer often
     * unmaps the cached mapping first) */
    for (int i = 0; i < 3 && !failed; i++) {
      unsigned char *a = hak_malloc(big);
      REQUIRE(a != NULL);
      a[0] = 1;
      hak_free(a);
      unsigned char *b = hak_malloc(small);
      REQUIRE(b != NULL);
      b[small - 1] = 2;
      if (b == a) { /* from the cache */
        taken++;
        failed += tail_poisoned("malloc", b - HDR + need, b - HDR + map);
      }
      hak_free(b);
    }
    /* shrunk in place by realloc */
    unsigned char *c = hak_malloc(big);
    REQUIRE(c != NULL);
    c[0] = 3;
    unsigned char *d = hak_realloc(c, small);
    REQUIRE(d == c);
    CHECK_EQ(d[0], 3);
    failed += tail_poisoned("realloc", d - HDR + need, d - HDR + map);
    hak_free(d);
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  hak_test_log("%zu rounds (%zu blocks taken from the cache by malloc), %zu with poison left on an "
               "unmapped tail\n",
               done, taken, failed);
  hak_trim(0);
  CHECK_EQ(hak_heap_check(), 0);
#endif
  return hak_test_done();
}
