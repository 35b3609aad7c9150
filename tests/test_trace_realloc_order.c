/* trace build: a realloc that moves a block records itself before the old
 * block is released (trace.h: frees take their number before the memory is
 * released). Released first, another thread's allocation could get the old
 * address and record it ahead of the realloc, and the replay would call it
 * a block handed out twice. Two ways the order can be lost, each a mutant:
 *  - the old block freed inside realloc, not after its record (hak_realloc
 *    passing no `deferred`: trace-realloc-frees-before-record);
 *  - a large block moved by mremap, whose old range goes back to the
 *    kernel inside the move (trace-large-realloc-mremap-moves): the trace
 *    build copies a block it cannot grow in place.
 * A 33 MiB block (over the cache's limit, so its free unmaps it and passes
 * HAK_HOOK_LARGE_UNREGISTERED) with a page of the test's own after its
 * mapping is realloc'd to 40 MiB: it must move. The hook takes a sequence
 * number when the old range is unregistered; it must come after the
 * realloc's. */
#include "hak_test.h"

#include "internal.h"
#include "trace.h"

#define MiB ((size_t)1 << 20)
#define PG ((size_t)4096)

/* the recorder's next number (not in other builds, which skip the test) */
static uint64_t next_seq(void) {
#if HAK_TRACE_ON
  return hak_trace_next_seq();
#else
  return 0;
#endif
}

static void *watched;
static uint64_t released_seq;

static void hook(enum hak_hook_point where, void *arg) {
  if (where == HAK_HOOK_LARGE_UNREGISTERED && arg == watched && !released_seq)
    released_seq = next_seq();
}

static void realloc_order(const char *how, int array) {
  size_t old = 33 * MiB, grown = 40 * MiB;
  unsigned char *p = hak_malloc(old);
  REQUIRE(p != NULL);
  hak_fill(p, old, 0x93);
  hak_large_t *lg = registry_large(p);
  REQUIRE(lg != NULL);
  void *stop = hak_map_at((uint8_t *)lg + lg->map_size, PG, PROT_READ);
  watched = p;
  released_seq = 0;
  hak_test_hook = hook;
  uint64_t before = next_seq();
  unsigned char *q = array ? hak_reallocarray(p, grown / MiB, MiB) : hak_realloc(p, grown);
  hak_test_hook = NULL;
  REQUIRE(q != NULL);
  CHECK_MSG(q != p || !stop, "%s: the block grew in place over a mapped page", how);
  CHECK_MSG(hak_pattern_mismatch(q, old, 0x93) == SIZE_MAX, "%s: contents not kept", how);
  /* before + 1: the realloc's record; before + 2: the old block's release */
  CHECK_MSG(released_seq == before + 2,
            "%s: the old block was released at seq %llu, the realloc recorded after seq %llu "
            "(expected the release at %llu, after the record)",
            how, (unsigned long long)released_seq, (unsigned long long)before,
            (unsigned long long)before + 2);
  hak_free(q);
  if (stop)
    munmap(stop, PG);
}

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  char path[128];
  snprintf(path, sizeof path, "/tmp/hak-test-trace-realloc-order.%d", (int)getpid());
  setenv("HAKMEM_TRACE", path, 1);
  realloc_order("realloc", 0);
  realloc_order("reallocarray", 1);
  int rc = hak_test_done();
  unlink(path);
  return rc;
}
