/* bench_realloc: realloc-heavy workload (growing buffers, string builders).
 *
 *   bench_realloc [cycles=10000000] [slots=1024] [seed=42] [maxcap=65536]
 *
 * Each slot is a buffer that grows by appends: each cycle picks a random
 * slot; an empty one gets malloc(16..64); an occupied one is, 1 time in 16,
 * shrunk to half its size, otherwise grown by 1..64 bytes with realloc, the
 * way a naive string builder or vector append does; once it passes its cap
 * (16 B .. maxcap, log-uniform, drawn when the buffer is created) it is
 * freed. The first byte and the last byte of the kept prefix are checked
 * after every realloc and the appended bytes are written. ops = cycles.
 * Prints one line:
 *   bench_realloc: allocator=<name> cycles=N slots=N seed=N maxcap=N time=T s ops/s=R
 * Exit status: 0 ok, 1 bad arguments or out of memory, 2 contents lost. */
#include "bench_common.h"

struct slot {
  unsigned char *p;
  size_t size, cap;
  unsigned char tag;
};

static void lost(const struct slot *s, size_t off) {
  fprintf(stderr, "bench_realloc: contents lost: block %p size %zu byte %zu\n", (void *)s->p,
          s->size, off);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc > 5 || (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
    fprintf(stderr, "usage: %s [cycles=10000000] [slots=1024] [seed=42] [maxcap=65536]\n", argv[0]);
    return argc > 5 ? 1 : 0;
  }
  uint64_t cycles = bench_arg_u64(argc, argv, 1, 10000000);
  uint64_t nslots = bench_arg_u64(argc, argv, 2, 1024);
  uint64_t seed = bench_arg_u64(argc, argv, 3, 42);
  uint64_t maxcap = bench_arg_u64(argc, argv, 4, 65536);
  if (nslots == 0 || nslots > ((uint64_t)1 << 24) || maxcap < 128 || maxcap > ((uint64_t)1 << 32)) {
    fprintf(stderr, "%s: need 1 <= slots <= 2^24 and 128 <= maxcap <= 2^32\n", argv[0]);
    return 1;
  }
  struct slot *slots = calloc((size_t)nslots, sizeof *slots);
  if (!slots)
    return 1;
  bench_rng rng;
  bench_rng_seed(&rng, seed);
  unsigned capbits = 63u - (unsigned)__builtin_clzll(maxcap);

  double t0 = bench_now();
  for (uint64_t i = 0; i < cycles; i++) {
    uint64_t r = bench_rng_next(&rng);
    struct slot *s = &slots[r % nslots];
    uint64_t r2 = r >> 32;
    if (!s->p) {
      s->size = 16 + (size_t)(r2 % 49);
      s->cap = (size_t)1 << (4 + (r2 >> 8) % (capbits - 3));
      s->tag = (unsigned char)((r2 >> 16) | 1);
      s->p = hak_malloc(s->size);
      if (!s->p)
        return 1;
      memset(s->p, s->tag, s->size);
      continue;
    }
    if (s->size > s->cap) {
      if (s->p[0] != s->tag)
        lost(s, 0);
      hak_free(s->p);
      s->p = NULL;
      continue;
    }
    size_t old = s->size, keep;
    if ((r2 & 15) == 0 && old >= 32) {
      s->size = old / 2;
      keep = s->size;
    } else {
      s->size = old + 1 + (size_t)((r2 >> 4) % 64);
      keep = old;
    }
    unsigned char *q = hak_realloc(s->p, s->size);
    if (!q) {
      fprintf(stderr, "%s: realloc(%zu) returned NULL\n", argv[0], s->size);
      return 1;
    }
    s->p = q;
    if (q[0] != s->tag)
      lost(s, 0);
    if (q[keep - 1] != s->tag)
      lost(s, keep - 1);
    if (s->size > keep)
      memset(q + keep, s->tag, s->size - keep);
  }
  double secs = bench_now() - t0;
  for (size_t k = 0; k < nslots; k++)
    hak_free(slots[k].p);
  free(slots);
  printf("bench_realloc: allocator=%s cycles=%llu slots=%llu seed=%llu maxcap=%llu time=%.6f s "
         "ops/s=%.1f\n",
         bench_allocator_name(), (unsigned long long)cycles, (unsigned long long)nslots,
         (unsigned long long)seed, (unsigned long long)maxcap, secs,
         secs > 0 ? (double)cycles / secs : 0.0);
  return 0;
}
