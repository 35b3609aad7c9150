/* bench_random_mixed: random malloc/free over a slot array.
 *
 *   bench_random_mixed [cycles=10000000] [slots=8192] [seed=42] [min=16] [max=1040]
 *
 * Each cycle picks a random slot. An occupied slot has its block's pattern
 * checked and is freed; an empty one gets a new block of min..max bytes
 * (uniform), whose first bytes and last byte are written. ops = cycles.
 * Prints one line:
 *   bench_random_mixed: allocator=<name> cycles=N slots=N seed=N size=[min,max] time=T s ops/s=R
 * Exit status: 0 ok, 1 bad arguments or out of memory, 2 pattern check failed. */
#include "bench_common.h"

#define PATTERN_HEAD 64 /* bytes memset at the start of each block */

struct slot {
  unsigned char *p;
  size_t size;
  unsigned char tag;
};

static void fail_pattern(size_t slot, const struct slot *s, size_t off, unsigned char want) {
  fprintf(stderr,
          "bench_random_mixed: pattern check failed: slot %zu block %p size %zu "
          "byte %zu is 0x%02x, expected 0x%02x\n",
          slot, (void *)s->p, s->size, off, s->p[off], want);
  exit(2);
}

static inline void check_block(size_t slot, const struct slot *s) {
  size_t n = s->size;
  if (n == 0)
    return;
  unsigned char last = (unsigned char)(s->tag ^ 0x5A);
  if (s->p[n - 1] != last)
    fail_pattern(slot, s, n - 1, last);
  if (n > 1 && s->p[0] != s->tag)
    fail_pattern(slot, s, 0, s->tag);
  size_t mid = (n - 1 < PATTERN_HEAD ? n - 1 : PATTERN_HEAD) / 2;
  if (mid > 0 && mid < n - 1 && s->p[mid] != s->tag)
    fail_pattern(slot, s, mid, s->tag);
}

static inline void fill_block(struct slot *s) {
  size_t n = s->size;
  if (n == 0)
    return;
  memset(s->p, s->tag, n < PATTERN_HEAD ? n : PATTERN_HEAD);
  s->p[n - 1] = (unsigned char)(s->tag ^ 0x5A);
}

int main(int argc, char **argv) {
  if (argc > 6 || (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
    fprintf(stderr, "usage: %s [cycles=10000000] [slots=8192] [seed=42] [min=16] [max=1040]\n",
            argv[0]);
    return argc > 6 ? 1 : 0;
  }
  uint64_t cycles = bench_arg_u64(argc, argv, 1, 10000000);
  uint64_t nslots = bench_arg_u64(argc, argv, 2, 8192);
  uint64_t seed = bench_arg_u64(argc, argv, 3, 42);
  uint64_t min = bench_arg_u64(argc, argv, 4, 16);
  uint64_t max = bench_arg_u64(argc, argv, 5, 1040);
  if (nslots == 0 || nslots > ((uint64_t)1 << 32)) {
    fprintf(stderr, "%s: slots must be in 1..2^32\n", argv[0]);
    return 1;
  }
  if (max < min || max > ((uint64_t)1 << 40)) {
    fprintf(stderr, "%s: need min <= max <= 2^40\n", argv[0]);
    return 1;
  }

  /* The slot array itself comes from the system allocator (mmap-backed
   * calloc), not from the allocator under test. */
  struct slot *slots = calloc((size_t)nslots, sizeof *slots);
  if (!slots) {
    fprintf(stderr, "%s: cannot allocate %llu slots\n", argv[0], (unsigned long long)nslots);
    return 1;
  }

  bench_rng rng;
  bench_rng_seed(&rng, seed);
  uint64_t span = max - min + 1;

  double t0 = bench_now();
  for (uint64_t i = 0; i < cycles; i++) {
    uint64_t r = bench_rng_next(&rng);
    size_t k = (size_t)(r % nslots);
    struct slot *s = &slots[k];
    if (s->p) {
      check_block(k, s);
      hak_free(s->p);
      s->p = NULL;
    } else {
      uint64_t r2 = bench_rng_next(&rng);
      s->size = (size_t)(min + r2 % span);
      s->tag = (unsigned char)(r2 >> 56);
      s->p = hak_malloc(s->size);
      if (!s->p) {
        fprintf(stderr, "%s: malloc(%zu) returned NULL at cycle %llu\n", argv[0], s->size,
                (unsigned long long)i);
        return 1;
      }
      fill_block(s);
    }
  }
  double t1 = bench_now();

  for (size_t k = 0; k < (size_t)nslots; k++) {
    if (slots[k].p) {
      check_block(k, &slots[k]);
      hak_free(slots[k].p);
    }
  }
  free(slots);

  double secs = t1 - t0;
  double ops = secs > 0 ? (double)cycles / secs : 0.0;
  printf("bench_random_mixed: allocator=%s cycles=%llu slots=%llu seed=%llu size=[%llu,%llu] "
         "time=%.6f s ops/s=%.1f\n",
         bench_allocator_name(), (unsigned long long)cycles, (unsigned long long)nslots,
         (unsigned long long)seed, (unsigned long long)min, (unsigned long long)max, secs, ops);
  return 0;
}
