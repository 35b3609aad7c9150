/* asan build: unmapping a range gives its ASan shadow back to the kernel.
 *
 * hakmem maps large ranges at ever new addresses (the zone, os.c), and each
 * range's shadow (an eighth of its size) is written when the range is
 * poisoned or unpoisoned. Without track_unmapping's release of the shadow,
 * the shadow of every range ever mapped stayed resident: fuzz_sizes under
 * libFuzzer grew by about 4 MB an input, to an out-of-memory after about
 * 1000 inputs (found by the nightly, 2026-11-27). Here 128 blocks of 4 MiB,
 * each freed and its cached mapping unmapped (hak_trim) before the next is
 * mapped at the zone's next free place, must not grow the resident size by
 * more than a few of their shadows (all of them: 64 MiB). */
#include "hak_test.h"

#include "internal.h"

#define BIG ((size_t)4 << 20)
#define ROUNDS 128

int main(void) {
  if (!hak_config_is("asan"))
    hak_test_skip("the ASan shadow exists only in the asan build");
  size_t base = hak_statm_bytes(1);
  for (int i = 0; i < ROUNDS; i++) {
    unsigned char *p = hak_malloc(BIG);
    REQUIRE(p != NULL);
    p[0] = 1;
    p[BIG - 1] = 2;
    hak_free(p);
    hak_trim(0); /* the cached mapping is unmapped: the next block maps anew */
  }
  size_t grown = hak_statm_bytes(1) - base;
  CHECK_MSG(grown < 16 * (BIG / 8),
            "resident size grew by %zu bytes over %d mapped and unmapped %zu-byte blocks (their "
            "shadow stays resident?)",
            grown, ROUNDS, BIG);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
