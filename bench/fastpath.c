/* fastpath: a tight loop of malloc(64) + free, for counting instructions.
 *
 *   fastpath N [pair|pingpong|empty]
 *
 * `pair` does N iterations of p = malloc(64); free(p) while one other 64 B
 * block stays allocated, so the page never empties: the steady-state fast
 * paths. `pingpong` is the same loop without the held block: each free
 * empties the page (the allocator's "page became empty" path runs every
 * time). `empty` runs the loop without the calls (the loop's own
 * instructions). scripts/bench-fastpath.sh
 * (make bench-fastpath) runs it under callgrind with two values of N and
 * divides the difference of the instruction totals by the difference of N, so
 * the constant cost (startup, the first call's initialisation, exit) cancels,
 * then subtracts the `empty` loop's per-iteration count: what remains is the
 * malloc+free pair including the calls and the argument set-up.
 * Built on the prefixed API (libhakmem.a) and, as fastpath.libc, on plain
 * malloc/free (glibc, or whatever is preloaded). */
#include "bench_common.h"

int main(int argc, char **argv) {
  uint64_t n = bench_arg_u64(argc, argv, 1, 1000000);
  const char *mode = argc > 2 ? argv[2] : "pair";
  int empty = !strcmp(mode, "empty");
  /* one warm-up pair outside the loop: first-call initialisation */
  void *w = hak_malloc(64);
  __asm__ volatile("" : : "r"(w) : "memory");
  hak_free(w);
  void *held = NULL;
  if (!strcmp(mode, "pair")) {
    held = hak_malloc(64);
    __asm__ volatile("" : : "r"(held) : "memory");
  }
  if (empty) {
    for (uint64_t i = 0; i < n; i++) {
      void *p = (void *)(uintptr_t)i;
      __asm__ volatile("" : : "r"(p) : "memory");
    }
  } else {
    for (uint64_t i = 0; i < n; i++) {
      void *p = hak_malloc(64);
      __asm__ volatile("" : : "r"(p) : "memory"); /* keep the pair from being elided */
      hak_free(p);
    }
  }
  hak_free(held);
  printf("fastpath: allocator=%s n=%llu mode=%s\n", bench_allocator_name(), (unsigned long long)n,
         mode);
  return 0;
}
