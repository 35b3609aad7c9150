/* bench_large: random malloc/free of large blocks (64 KiB .. 8 MiB).
 *
 *   bench_large [cycles=20000] [slots=32] [seed=42] [min=65536] [max=8388608]
 *
 * Like bench_random_mixed, over a small slot array: each cycle picks a random
 * slot; an occupied one has its block checked (first byte, one byte per
 * 4 KiB page, last byte) and freed, an empty one gets a new block whose size
 * is log-uniform in [min, max] (a power-of-two band picked uniformly, then a
 * uniform size in it), and one byte of every 4 KiB page is written, so the
 * run pays for page faults the way a program that uses its memory does: an
 * allocator that unmaps and maps again pays more than one that reuses.
 * ops = cycles. Prints one line:
 *   bench_large: allocator=<name> cycles=N slots=N seed=N size=[min,max] time=T s ops/s=R
 * Exit status: 0 ok, 1 bad arguments or out of memory, 2 pattern check failed. */
#include "bench_common.h"

#define PAGE 4096

struct slot {
  unsigned char *p;
  size_t size;
  unsigned char tag;
};

static void check(const struct slot *s) {
  for (size_t off = 0; off + 1 < s->size; off += PAGE) /* the last byte: below */
    if (s->p[off] != s->tag) {
      fprintf(stderr, "bench_large: pattern check failed: block %p size %zu byte %zu\n",
              (void *)s->p, s->size, off);
      exit(2);
    }
  if (s->p[s->size - 1] != (unsigned char)(s->tag ^ 0x5A)) {
    fprintf(stderr, "bench_large: pattern check failed: block %p size %zu last byte\n",
            (void *)s->p, s->size);
    exit(2);
  }
}

static void fill(struct slot *s) {
  for (size_t off = 0; off + 1 < s->size; off += PAGE) /* the last byte: below */
    s->p[off] = s->tag;
  s->p[s->size - 1] = (unsigned char)(s->tag ^ 0x5A);
}

static unsigned log2_floor(uint64_t v) {
  return 63u - (unsigned)__builtin_clzll(v);
}

int main(int argc, char **argv) {
  if (argc > 6 || (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
    fprintf(stderr, "usage: %s [cycles=20000] [slots=32] [seed=42] [min=65536] [max=8388608]\n",
            argv[0]);
    return argc > 6 ? 1 : 0;
  }
  uint64_t cycles = bench_arg_u64(argc, argv, 1, 20000);
  uint64_t nslots = bench_arg_u64(argc, argv, 2, 32);
  uint64_t seed = bench_arg_u64(argc, argv, 3, 42);
  uint64_t min = bench_arg_u64(argc, argv, 4, 65536);
  uint64_t max = bench_arg_u64(argc, argv, 5, 8388608);
  if (nslots == 0 || nslots > 65536 || min == 0 || max < min || max > ((uint64_t)1 << 36)) {
    fprintf(stderr, "%s: need 1 <= slots <= 65536 and 1 <= min <= max <= 2^36\n", argv[0]);
    return 1;
  }
  struct slot *slots = calloc((size_t)nslots, sizeof *slots);
  if (!slots)
    return 1;
  bench_rng rng;
  bench_rng_seed(&rng, seed);
  unsigned lo = log2_floor(min), hi = log2_floor(max);

  double t0 = bench_now();
  for (uint64_t i = 0; i < cycles; i++) {
    uint64_t r = bench_rng_next(&rng);
    struct slot *s = &slots[r % nslots];
    if (s->p) {
      check(s);
      hak_free(s->p);
      s->p = NULL;
    } else {
      uint64_t r2 = bench_rng_next(&rng);
      unsigned band = lo + (unsigned)((r2 >> 8) % (hi - lo + 1));
      uint64_t sz = ((uint64_t)1 << band) + (r2 >> 20) % ((uint64_t)1 << band);
      if (sz < min)
        sz = min;
      if (sz > max)
        sz = max;
      s->size = (size_t)sz;
      s->tag = (unsigned char)(r2 | 1);
      s->p = hak_malloc(s->size);
      if (!s->p) {
        fprintf(stderr, "%s: malloc(%zu) returned NULL\n", argv[0], s->size);
        return 1;
      }
      fill(s);
    }
  }
  double secs = bench_now() - t0;
  for (size_t k = 0; k < nslots; k++)
    if (slots[k].p) {
      check(&slots[k]);
      hak_free(slots[k].p);
    }
  free(slots);
  printf("bench_large: allocator=%s cycles=%llu slots=%llu seed=%llu size=[%llu,%llu] "
         "time=%.6f s ops/s=%.1f\n",
         bench_allocator_name(), (unsigned long long)cycles, (unsigned long long)nslots,
         (unsigned long long)seed, (unsigned long long)min, (unsigned long long)max, secs,
         secs > 0 ? (double)cycles / secs : 0.0);
  return 0;
}
