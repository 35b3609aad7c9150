/* hak_stats' mapped_bytes ("bytes hakmem has mapped from the OS now")
 * against the kernel's count of this process's mappings (/proc/self/statm,
 * its size field): across each step below the two grow and shrink by
 * exactly the same bytes. Before, no test compared mapped_bytes with
 * anything exactly but itself (test_large_cache: unchanged across a reuse):
 * a mapped_bytes that counted of each large block only the pages it needs
 * (a tail kept as room left out: mutant stats-mapped-counts-needed), or a
 * mapping size left stale by realloc's shrink in place (the tail counted
 * after its unmap, and unmapped again when the block goes, maybe another
 * mapping's by then: mutant realloc-shrink-size-kept, before found only by
 * the fuzz replay's crash) passed every test. Large blocks only, one
 * thread, no stdio: nothing else maps or unmaps meanwhile (the registry is
 * .bss; a warm-up block first, for the large cache's first use). */
#include "hak_test.h"

#define MiB ((size_t)1 << 20)

static size_t vm0, st0;

static size_t mapped(void) {
  struct hak_stats st;
  hak_stats(&st);
  return st.mapped_bytes;
}

static void baseline(void) {
  vm0 = hak_statm_bytes(0);
  st0 = mapped();
}

/* Both changed by the same bytes since the baseline; a new baseline. */
static void same(const char *what) {
  size_t vm = hak_statm_bytes(0), st = mapped();
  long long dvm = (long long)vm - (long long)vm0, dst = (long long)st - (long long)st0;
  CHECK_MSG(dvm == dst, "%s: the process's mappings changed by %lld KiB, mapped_bytes by %lld KiB",
            what, dvm / 1024, dst / 1024);
  baseline();
}

int main(void) {
  if (!hak_config_is("release") && !hak_config_is("debug"))
    hak_test_skip("sanitizer runtimes map memory of their own at any time");
  /* warm-up: the registry's pages for large blocks, the cache's first use */
  void *w = hak_malloc(24 * MiB);
  REQUIRE(w != NULL);
  hak_free(w);
  hak_trim(0);
  baseline();

  unsigned char *a = hak_malloc(24 * MiB);
  REQUIRE(a != NULL);
  memset(a, 1, 4096);
  same("a 24 MiB block mapped");
  hak_free(a);
  same("freed into the large cache");
  unsigned char *b = hak_malloc(16 * MiB + 4096); /* takes the cached 24 MiB whole */
  REQUIRE(b != NULL);
  same("a 16 MiB block served from the cached mapping");
  CHECK_EQ(hak_trim(0), 1); /* unmaps the 8 MiB tail kept as room */
  same("hak_trim unmapped the block's tail");
  b = hak_realloc(b, 64 * MiB); /* grown: in place or moved (mremap) */
  REQUIRE(b != NULL);
  same("realloc grew the block to 64 MiB");
  b = hak_realloc(b, 40 * MiB); /* shrunk by more than a third: the tail goes */
  REQUIRE(b != NULL);
  same("realloc shrank the block to 40 MiB");
  b = hak_realloc(b, 30 * MiB); /* shrunk by less: the tail stays as room */
  REQUIRE(b != NULL);
  same("realloc shrank the block to 30 MiB");
  hak_trim(0);
  same("hak_trim after the shrinks");
  hak_free(b);
  same("the block freed");
  hak_trim(0);
  same("hak_trim emptied the large cache");
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
