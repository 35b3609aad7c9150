/* aligned_storm: aligned allocations of every power of two, from threads.
 *
 *   aligned_storm [--threads=N] [--chunks=N] [--duration=S] ...
 *
 * First the main thread allocates, with posix_memalign, aligned_alloc and
 * memalign, one block for every power-of-two alignment from 1 byte to
 * 64 MiB (2^26), checks alignment and usable size, fills, verifies and frees
 * it. Then `threads` threads allocate blocks of random power-of-two
 * alignments (up to 1 MiB, and one in 16 of 4 or 8 MiB: mapped on their
 * own, beside the other threads' large calls) and sizes through the three
 * calls, check them, and swap them through `chunks` shared slots (each
 * block with its owner's copy of its size and tag), so another thread
 * verifies them and gives them back in one of four ways: free, free_sized,
 * free_aligned_sized, or a realloc whose kept bytes it verifies before it
 * frees the result. */
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

/* Gives back block b, usually another thread's, the way `how` picks: free,
 * free_sized, free_aligned_sized (with the biggest alignment its address
 * has) or a realloc to a random size whose kept bytes are verified before
 * the result is freed. */
static void release_remote(stress_blk b, uint64_t how) {
  stress_block_check(b, "aligned, before its release");
  if (hak_usable_size(b.p) < b.size) {
    fprintf(stderr, "aligned_storm: %p: usable size %zu < %zu in another thread\n", b.p,
            hak_usable_size(b.p), b.size);
    stress_fail(STRESS_EXIT_FAIL, "usable size too small");
  }
  size_t n = 16 + (size_t)(how >> 8) % (2 * b.size); /* a realloc's new size */
  stress_op(how % 4 == 3 ? 'r' : 'f', b.p, how % 4 == 3 ? n : 0);
  switch (how % 4) {
  case 0:
    hak_free(b.p);
    break;
  case 1:
    hak_free_sized(b.p, b.size);
    break;
  case 2:
    hak_free_aligned_sized(b.p, (uintptr_t)b.p & -(uintptr_t)b.p, b.size);
    break;
  default: {
    unsigned char *q = (unsigned char *)hak_realloc(b.p, n);
    if (!q)
      stress_fail(STRESS_EXIT_FAIL, "hak_realloc returned NULL");
    size_t keep = n < b.size ? n : b.size;
    stress_header_check(q, b.size, b.tag, "aligned, after realloc");
    stress_verify_prefix(q + 16, keep - 16, b.size - 16, b.tag, "aligned, after realloc");
    hak_free(q);
  }
  }
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
    /* 4 and 8 MiB alignments take large_alloc's huge path (their own
     * mapping, header in the page below): until 2026-11-29 only the
     * single-threaded sweep made them, and a huge allocation that linked
     * its header without the large lock passed every TSan program
     * (huge-alloc-skips-large-lock) */
    unsigned k = (x >> 40) % 16 == 0 ? 22 + (unsigned)((x >> 44) & 1) : (unsigned)(x % 21);
    stress_blk b = aligned_new((int)((x >> 8) % 3), (size_t)1 << k,
                               stress_size(&r, stress_conf.min_size, stress_conf.max_size));
    n++;
    stress_blk old = stress_xslot_swap(&slots[bench_rng_next(&r) % stress_conf.chunks], b);
    if (old.p)
      release_remote(old, bench_rng_next(&r));
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
