/* realloc_storm: realloc chains across size classes and into large blocks.
 *
 *   realloc_storm [--threads=N] [--chunks=N] [--duration=S] [--max=B] ...
 *
 * `threads` threads share `chunks` atomic slots. A thread takes a block out
 * of a random slot (atomic exchange with NULL, so the block was usually
 * allocated or last resized by another thread), reallocs it to a new size
 * (growing or shrinking by a random factor, across class boundaries and past
 * HAK_SMALL_MAX into large blocks, default max 512 KiB), checks that the
 * common prefix survived, refills it and puts it back. Every block carries
 * its size and tag in its first 16 bytes. */
#include "stress_common.h"

static _Atomic(void *) *slots;
static _Atomic uint64_t total_ops;

static void *storm(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  char name[24];
  snprintf(name, sizeof name, "realloc-%u", id);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed * 11 + id);
  uint64_t n = 0;
  if (id == 0)
    stress_maybe_hang();
  while (!stress_time_up()) {
    _Atomic(void *) *s = &slots[bench_rng_next(&r) % stress_conf.chunks];
    unsigned char *p = (unsigned char *)atomic_exchange(s, NULL);
    if (!p) {
      p = (unsigned char *)stress_block_new(stress_size(&r, 16, 256), ((uint64_t)id << 40) | n);
    }
    stress_block_check(p, "before realloc");
    uint64_t osz, tag;
    memcpy(&osz, p, 8);
    memcpy(&tag, p + 8, 8);
    /* new size: mostly a step of 1/4x..4x, sometimes a jump anywhere */
    uint64_t x = bench_rng_next(&r);
    size_t nsz;
    if ((x & 7) == 0)
      nsz = stress_size(&r, 16, stress_conf.max_size);
    else
      nsz = (size_t)(osz * (1 + ((x >> 8) % 7)) / 4);
    if (nsz < 16)
      nsz = 16;
    if (nsz > stress_conf.max_size)
      nsz = stress_conf.max_size;
    stress_op('r', p, nsz);
    uintptr_t old_addr = (uintptr_t)p; /* p itself is dead after the realloc */
    unsigned char *q = (unsigned char *)hak_realloc(p, nsz);
    if (!q)
      stress_fail(STRESS_EXIT_FAIL, "hak_realloc returned NULL");
    size_t keep = osz < nsz ? osz : nsz;
    if (memcmp(q, &osz, 8) != 0 || memcmp(q + 8, &tag, 8) != 0) {
      fprintf(stderr,
              "realloc_storm: CORRUPTION: realloc %#lx -> %p (%llu -> %zu) lost the header\n",
              (unsigned long)old_addr, (void *)q, (unsigned long long)osz, nsz);
      stress_fail(STRESS_EXIT_CORRUPT, "realloc lost the block's contents");
    }
    stress_verify_prefix(q + 16, keep - 16, osz - 16, tag, "after realloc");
    uint64_t ntag = ((uint64_t)id << 40) | ++n;
    uint64_t sz = nsz;
    memcpy(q, &sz, 8);
    memcpy(q + 8, &ntag, 8);
    stress_fill(q + 16, nsz - 16, ntag);
    void *old = atomic_exchange(s, q);
    if (old)
      stress_block_free(old, "realloc displaced");
  }
  atomic_fetch_add(&total_ops, n);
  stress_unregister();
  return NULL;
}

int main(int argc, char **argv) {
  stress_parse(argc, argv, 4, 256, 2, 16, 512 * 1024, "realloc");
  stress_start();
  unsigned T = stress_conf.threads;
  double el = stress_run_over_slots(storm, &slots, "realloc final");
  printf("realloc_storm: threads=%u reallocs=%llu time=%.2fs reallocs/s=%.0f\n", T,
         (unsigned long long)atomic_load(&total_ops), el, atomic_load(&total_ops) / el);
  return stress_finish();
}
