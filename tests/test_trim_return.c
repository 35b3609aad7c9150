/* hak_trim returns 1 when memory went back to the OS during the call, also
 * when its own first step gave it back: flushing the caller's cache can
 * empty a page, whose release purges the heap when the purge delay has
 * passed, before hak_trim's own purge runs and finds nothing left. A
 * review found hak_trim returning 0 after giving back 20 MiB that way.
 *
 * 24 MiB of 16 KiB blocks, one in 100 kept (every segment keeps some, so
 * the free slices stay the heap's), freed; a page of 8 KiB blocks freed
 * whole into the cache; then the purge delay passes (hakmem's clock is
 * frozen and moved by os_test_advance_ms: exactly the delay, however
 * slowly the test runs; until 2026-11-28 it slept 700 ms) and hak_trim
 * runs. */
#include "hak_test.h"

#include "internal.h"

#define BLOCK 16384
#define NBLK 1536
#define PIN 100

static unsigned char *blk[NBLK];

int main(void) {
  if (!hak_config_is("release") && !hak_config_is("debug"))
    hak_test_skip("resident memory is only meaningful without sanitizer runtimes");
  os_test_freeze_clock(); /* the delay passes only by os_test_advance_ms */
  hak_fill_touched(blk, NBLK, BLOCK);
  for (int i = 0; i < NBLK; i++)
    if (i % PIN) {
      hak_free(blk[i]);
      blk[i] = NULL;
    }
  hak_thread_cache_flush(); /* 20+ MiB of free dirty slices: the delay starts */
  void *e[33];
  for (int i = 0; i < 33; i++)
    REQUIRE((e[i] = hak_malloc(8192)) != NULL); /* a full page of 32, e[32] on the next */
  for (int i = 0; i < 32; i++)
    hak_free(e[i]);                   /* all in the thread's cache (its limit for 8 KiB is 32) */
  os_test_advance_ms(PURGE_DELAY_MS); /* the delay's end: the next page release purges */
  size_t before = hak_statm_bytes(1);
  int rc = hak_trim(0);
  size_t after = hak_statm_bytes(1);
  CHECK_MSG(after + ((size_t)16 << 20) <= before, "resident %zu -> %zu bytes: nothing given back",
            before, after);
  CHECK_MSG(rc == 1, "hak_trim returned %d after the resident size went %zu -> %zu bytes", rc,
            before, after);
  hak_free(e[32]);
  for (int i = 0; i < NBLK; i += PIN)
    hak_free(blk[i]);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
