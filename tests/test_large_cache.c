/* Large blocks: a freed mapping is cached and reused warm by the next large
 * allocation that fits (large.c). What the cache must never break:
 *  - calloc from a reused (dirty) mapping is zero;
 *  - a smaller request cut from a bigger cached mapping is usable to its
 *    usable_size and the whole block holds its contents;
 *  - a second free of a cached block is still named a double free;
 *  - the cache is bounded: many frees do not keep every mapping, and a
 *    mapping cached longer than LARGE_CACHE_AGE_MS is unmapped at the next
 *    large allocation or free. */
#include "hak_test.h"

#include <string.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)

static size_t vm_size_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1)
      pages = 0;
    fclose(f);
  }
  return (size_t)pages * 4096;
}

static void do_free_twice(void *p) {
  hak_free(p);
  hak_free(p);
}

int main(void) {
  /* dirty reuse: calloc must zero */
  unsigned char *a = hak_malloc(MiB);
  REQUIRE(a != NULL);
  memset(a, 0xAB, MiB);
  hak_free(a);
  unsigned char *z = hak_calloc(1, MiB);
  REQUIRE(z != NULL);
  CHECK_MSG(z == a, "the freed 1 MiB mapping at %p was not reused (got %p)", (void *)a, (void *)z);
  size_t nonzero = 0;
  for (size_t i = 0; i < MiB; i++)
    nonzero += z[i] != 0;
  CHECK_MSG(nonzero == 0, "calloc from a reused mapping: %zu non-zero bytes", nonzero);
  hak_free(z);

  /* a big cached mapping serves a smaller request, cut to size */
  unsigned char *big = hak_malloc(8 * MiB);
  REQUIRE(big != NULL);
  memset(big, 0x11, 8 * MiB);
  hak_free(big);
  unsigned char *small = hak_malloc(3 * MiB);
  REQUIRE(small != NULL);
  size_t us = hak_usable_size(small);
  CHECK(us >= 3 * MiB);
  CHECK_MSG(us <= 3 * MiB + 3 * MiB / 4 + 4096, "usable %zu for 3 MiB: the tail was not cut", us);
  memset(small, 0x22, us);
  for (size_t i = 0; i < us; i += 4096)
    CHECK(small[i] == 0x22);
  CHECK_EQ(hak_heap_check(), 0);

  /* double free of a cached block */
  char want[128];
  snprintf(want, sizeof want, "hakmem: double free of %p (large block)\n", (void *)small);
  EXPECT_ABORT(do_free_twice, small, want);
  hak_free(small);

  /* bounded: after 64 x 4 MiB are freed, the address space still mapped
   * grows by at most LARGE_CACHE_N of them (plus slack for stdio and the
   * like) */
  size_t vm_before = vm_size_bytes();
  REQUIRE(vm_before > 0);
  void *many[64];
  for (int i = 0; i < 64; i++) {
    many[i] = hak_malloc(4 * MiB + (size_t)i * 4096);
    REQUIRE(many[i] != NULL);
    memset(many[i], i, 4096);
  }
  for (int i = 0; i < 64; i++)
    hak_free(many[i]);
  size_t vm_after = vm_size_bytes();
  CHECK_MSG(vm_after <= vm_before + LARGE_CACHE_N * 4 * MiB + 16 * MiB,
            "64 freed 4 MiB blocks left %zu MiB more address space mapped (cache bound %d "
            "mappings)",
            (vm_after - vm_before) / MiB, LARGE_CACHE_N);
  CHECK_MSG(vm_after >= vm_before + 4 * MiB, "no freed 4 MiB mapping was cached (%zu -> %zu)",
            vm_before, vm_after);
  /* aged out: after the cache age, the next large free unmaps them all */
  hak_sleep_ms(LARGE_CACHE_AGE_MS + 200);
  hak_free(hak_malloc(70000));
  size_t vm_aged = vm_size_bytes();
  CHECK_MSG(vm_aged <= vm_before + 16 * MiB,
            "mappings cached for %d ms are still mapped: %zu MiB more than before",
            LARGE_CACHE_AGE_MS + 200, (vm_aged - vm_before) / MiB);
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
