/* Shared helpers for hakmem's stress programs and benchmarks.
 *
 * Each program calls the prefixed API (hak_malloc, hak_free, ...). Built with
 * -DHAK_BENCH_LIBC=1 (the Makefile's build/<cfg>/stress/<name>.libc rule) the
 * same calls go to the C library's allocator instead, or to whatever
 * allocator is LD_PRELOADed over it.
 *
 * Include this header first: it needs _GNU_SOURCE for dlsym(RTLD_DEFAULT). */
#ifndef HAK_BENCH_COMMON_H
#define HAK_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(HAK_BENCH_LIBC) && HAK_BENCH_LIBC
#include <malloc.h>
/* Declarations only, before the mapping below: struct hak_stats, for the
 * stress programs' look-up of a preloaded hakmem's hak_stats (dlsym). */
#include "hakmem.h"
#define hak_malloc(n) malloc(n)
#define hak_free(p) free(p)
#define hak_calloc(c, n) calloc((c), (n))
#define hak_realloc(p, n) realloc((p), (n))
#define hak_reallocarray(p, c, n) reallocarray((p), (c), (n))
#define hak_posix_memalign(o, a, n) posix_memalign((o), (a), (n))
#define hak_aligned_alloc(a, n) aligned_alloc((a), (n))
#define hak_memalign(a, n) memalign((a), (n))
#define hak_valloc(n) valloc(n)
#define hak_pvalloc(n) pvalloc(n)
#define hak_usable_size(p) malloc_usable_size((void *)(p))
#define hak_free_sized(p, n) ((void)(n), free(p))
#define hak_free_aligned_sized(p, a, n) ((void)(a), (void)(n), free(p))
#define hak_trim(pad) malloc_trim(pad)
#define HAK_BENCH_PREFIXED 0
#else
#include "hakmem.h"
#define HAK_BENCH_PREFIXED 1
#endif

/* ---- timing ---------------------------------------------------------- */

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- xorshift64 (Marsaglia 13/7/17); never returns 0 ------------------- */

typedef struct {
  uint64_t s;
} bench_rng;

static inline void bench_rng_seed(bench_rng *r, uint64_t seed) {
  /* splitmix64 scramble so that small seeds give well-mixed states */
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  r->s = z ? z : 0x2545F4914F6CDD1Dull;
}

static inline uint64_t bench_rng_next(bench_rng *r) {
  uint64_t x = r->s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->s = x;
  return x;
}

/* ---- argument parsing -------------------------------------------------- */

/* Parses argv[i] (if present) as an unsigned integer; exits 1 on garbage. */
static inline uint64_t bench_arg_u64(int argc, char **argv, int i, uint64_t dflt) {
  if (i >= argc)
    return dflt;
  char *end = NULL;
  const char *s = argv[i];
  if (*s == '-' || *s == '\0')
    goto bad;
  unsigned long long v = strtoull(s, &end, 0);
  if (*end != '\0')
    goto bad;
  return (uint64_t)v;
bad:
  fprintf(stderr, "%s: argument %d: not a non-negative integer: '%s'\n", argv[0], i, s);
  exit(1);
}

/* ---- which allocator is serving the calls ------------------------------ */

static inline const char *bench_allocator_name(void) {
#if HAK_BENCH_PREFIXED
  return "hakmem";
#else
  /* The .libc build calls malloc; report an interposed allocator if any. */
  if (dlsym(RTLD_DEFAULT, "hak_malloc"))
    return "hakmem(preload)";
  if (dlsym(RTLD_DEFAULT, "mi_malloc"))
    return "mimalloc(preload)";
  if (dlsym(RTLD_DEFAULT, "mallocx"))
    return "jemalloc(preload)";
  if (dlsym(RTLD_DEFAULT, "tc_malloc"))
    return "tcmalloc(preload)";
  return "libc";
#endif
}

#endif /* HAK_BENCH_COMMON_H */
