/* aligned_storm: aligned allocations of every power of two, from threads.
 *
 *   aligned_storm [--threads=N] [--chunks=N] [--duration=S] ...
 *
 * First the main thread allocates, with posix_memalign, aligned_alloc and
 * memalign, one block for every power-of-two alignment from 1 byte to
 * 64 MiB (2^26), checks alignment and usable size, fills, verifies and frees
 * it. Then `threads` threads allocate blocks of random power-of-two
 * alignments (up to 1 MiB) and sizes through the three calls, check them,
 * and swap them through `chunks` shared slots (each block with its owner's
 * copy of its size and tag), so another thread verifies and frees them. */
#include "stress_common.h"

static stress_xslot *slots;
static _Atomic uint64_t total_ops;

static stress_blk aligned_new(int how, size_t align, size_t size) {
  void *p = NULL;
  if (size < 16)
    size = 16;
  if (how == 0) {
    if (align < sizeof(void *))
      align = sizeof(void *);
    if (hak_posix_memalign(&p, align, size) != 0)
      p = NULL;
  } else if (how == 1) {
    p = hak_aligned_alloc(align, (size + align - 1) / align * align);
  } else {
    p = hak_memalign(align, size);
  }
  stress_op('a', p, size);
  if (!p) {
    fprintf(stderr, "aligned_storm: allocation of %zu bytes aligned %zu (call %d) failed\n", size,
            align, how);
    stress_fail(STRESS_EXIT_FAIL, "aligned allocation returned NULL");
  }
  if ((uintptr_t)p % align != 0) {
    fprintf(stderr, "aligned_storm: %p is not aligned to %zu (call %d)\n", p, align, how);
    stress_fail(STRESS_EXIT_FAIL, "misaligned block");
  }
  if (hak_usable_size(p) < size) {
    fprintf(stderr, "aligned_storm: usable size %zu < %zu\n", hak_usable_size(p), size);
    stress_fail(STRESS_EXIT_FAIL, "usable size too small");
  }
  return stress_block_init(p, size);
}

static void *storm(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  char name[24];
  snprintf(name, sizeof name, "aligned-%u", id);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed * 17 + id);
  uint64_t n = 0;
  if (id == 0)
    stress_maybe_hang();
  while (!stress_time_up()) {
    uint64_t x = bench_rng_next(&r);
    size_t align = (size_t)1 << (x % 21);
    stress_blk b = aligned_new((int)((x >> 8) % 3), align,
                               stress_size(&r, stress_conf.min_size, stress_conf.max_size));
    n++;
    stress_blk old = stress_xslot_swap(&slots[bench_rng_next(&r) % stress_conf.chunks], b);
    if (old.p)
      stress_block_free(old, "aligned");
  }
  atomic_fetch_add(&total_ops, n);
  stress_unregister();
  return NULL;
}

int main(int argc, char **argv) {
  stress_parse(argc, argv, 4, 256, 2, 16, 8192, "aligned");
  stress_start();
  for (unsigned k = 0; k <= 26; k++)
    for (int how = 0; how < 3; how++) {
      stress_block_free(aligned_new(how, (size_t)1 << k, 16 + k * 8), "alignment sweep");
    }
  unsigned T = stress_conf.threads;
  double el = stress_run_over_slots(storm, &slots, "aligned final");
  printf("aligned_storm: threads=%u allocs=%llu time=%.2fs allocs/s=%.0f\n", T,
         (unsigned long long)atomic_load(&total_ops), el, atomic_load(&total_ops) / el);
  return stress_finish();
}
