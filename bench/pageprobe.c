/* pageprobe: what a page costs on this machine, for make bench's metadata.
 *
 *   pageprobe [mib=64] [trials=3]
 *
 * Prints one line:
 *   pageprobe: mib=64 trials=3 touch_us=<T> moved_us=<M>
 * touch_us: microseconds per 4 KiB page at its first touch (a fresh
 *   anonymous mapping, huge pages advised off, one byte written per page:
 *   the page fault, the zeroing and the mapping).
 * moved_us: microseconds per page at the first touch after the touched
 *   mapping was moved to a new address with mremap. On bare metal and on
 *   most virtual machines the page tables move with it and this is a few
 *   nanoseconds; on some paravirtualized guests (shadow page tables) every
 *   moved page takes a fault again, about half the cost of a fresh one.
 * Each figure is the lowest of `trials` runs (a shared machine only ever
 * slows a run down). The ratios of the workloads that fault or move many
 * pages (large blocks, python, random_mixed at 4-8 KiB) depend on these
 * costs: bench-check refuses to compare a run with a baseline made on a
 * machine whose costs are far apart (scripts/bench-check.py).
 * Exit status: 0, or 1 if a mapping failed. Uses no allocator. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE ((size_t)sysconf(_SC_PAGESIZE)) /* 4 KiB on x86-64; 4, 16 or 64 KiB on aarch64 */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *map(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("pageprobe: mmap");
    exit(1);
  }
  madvise(p, n, MADV_NOHUGEPAGE); /* base pages, whatever the THP setting */
  return p;
}

/* One byte per page; seconds per page. */
static double touch(volatile char *p, size_t n, char v) {
  double t0 = now();
  for (size_t i = 0; i < n; i += PAGE)
    p[i] = v;
  return (now() - t0) / (double)(n / PAGE);
}

int main(int argc, char **argv) {
  long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 64;
  long trials = argc > 2 ? strtol(argv[2], NULL, 10) : 3;
  if (mib < 1 || mib > 4096 || trials < 1 || trials > 100) {
    fprintf(stderr, "usage: %s [mib=64 (1..4096)] [trials=3 (1..100)]\n", argv[0]);
    return 1;
  }
  size_t n = (size_t)mib << 20;
  double best_touch = 1e9, best_moved = 1e9;
  for (long t = 0; t < trials; t++) {
    char *p = map(n);
    double ft = touch(p, n, 1);
    char *dst = map(n); /* the destination: an address range of our own */
    char *q = mremap(p, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    if (q == MAP_FAILED) {
      perror("pageprobe: mremap");
      return 1;
    }
    double mt = touch(q, n, 2);
    munmap(q, n);
    best_touch = ft < best_touch ? ft : best_touch;
    best_moved = mt < best_moved ? mt : best_moved;
  }
  printf("pageprobe: mib=%ld trials=%ld touch_us=%.3f moved_us=%.3f\n", mib, trials,
         best_touch * 1e6, best_moved * 1e6);
  return 0;
}
