/* The OS layer: every byte hakmem uses, metadata included, comes from here. */
#define _GNU_SOURCE
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17; older headers */
#endif

/* Maps `size` bytes (a multiple of the OS page) at an address q such that
 * q + offset is aligned to `alignment` (a power of two >= the OS page):
 * over-map, then trim. */
void *os_map_aligned(size_t size, size_t alignment, size_t offset) {
  if (size > ((size_t)1 << ADDRESS_BITS) || alignment > ((size_t)1 << (ADDRESS_BITS - 2)))
    return NULL;
  size_t span = size + alignment;
  void *p =
      mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  uintptr_t base = (uintptr_t)p;
  uintptr_t aligned = ((base + offset + alignment - 1) & ~(uintptr_t)(alignment - 1)) - offset;
  if (aligned > base)
    munmap(p, aligned - base);
  uintptr_t end = base + span, want_end = aligned + size;
  if (end > want_end)
    munmap((void *)want_end, end - want_end);
  if ((want_end - 1) >> ADDRESS_BITS) { /* outside what the registry covers */
    munmap((void *)aligned, size);
    return NULL;
  }
  return (void *)aligned;
}

void os_unmap(void *p, size_t size) {
  track_unmapping(p, size);
  munmap(p, size);
}

/* Grows the mapping at p from `old` to `new` bytes in place: maps the range
 * after it if nothing is there. Not mremap: it cannot resize a range that
 * spans several mappings (large.c assembles blocks from moved pieces, each
 * its own mapping to the kernel). MAP_FIXED_NOREPLACE is only a hint before
 * Linux 4.17: a mapping placed elsewhere is given back. */
bool os_extend(void *p, size_t old, size_t new) {
  uint8_t *want = (uint8_t *)p + old;
  void *q = mmap(want, new - old, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (q == (void *)want)
    return true;
  if (q != MAP_FAILED)
    munmap(q, new - old);
  return false;
}

/* Moves the pages of [src, src + n) to [dst, dst + n), which replaces what
 * was mapped there; page tables move, nothing is copied or faulted in.
 * A range that spans several kernel mappings moves only where
 * os_moves_spans() (a failed move may have unmapped dst already). */
bool os_move(void *src, size_t n, void *dst) {
  return mremap(src, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED;
}

/* Whether mremap moves a range that spans several kernel mappings (Linux
 * 6.17 and later; before, EFAULT), probed once: a page moved next to
 * another (two mappings: moved anonymous memory never merges) moves
 * together with it. Where the probe fails, the pages it moved to may have
 * been unmapped by the kernel and mapped by another thread since: they are
 * left alone (8 KiB of address space, once). */
_Atomic int hak_moves_spans; /* 0: not probed yet, 1: yes, 2: no (tests set 2) */

bool os_moves_spans(void) {
  int k = atomic_load_explicit(&hak_moves_spans, memory_order_relaxed);
  if (k)
    return k == 1;
  size_t pg = OS_PAGE_SIZE;
  bool yes = false;
  uint8_t *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  uint8_t *b =
      mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a != MAP_FAILED && b != MAP_FAILED) {
    a[0] = b[0] = 1; /* faulted in: each gets its own anonymous-memory record */
    if (os_move(b, pg, a + pg)) {
      b = MAP_FAILED;
      yes = os_move(a, 2 * pg, a + 2 * pg);
      /* the pages, at their new place or (failed) still at their old one;
       * the range they left may be another thread's by now */
      munmap(yes ? a + 2 * pg : a, 2 * pg);
      a = MAP_FAILED;
    }
  }
  if (a != MAP_FAILED)
    munmap(a, 4 * pg);
  if (b != MAP_FAILED)
    munmap(b, pg);
  atomic_store_explicit(&hak_moves_spans, yes ? 1 : 2, memory_order_relaxed);
  return yes;
}

/* Gives the pages back; they read as zero afterwards (MADV_DONTNEED). */
void os_purge(void *p, size_t size) {
  madvise(p, size, MADV_DONTNEED);
}

/* Milliseconds of a monotonic clock (coarse: a vDSO read, no syscall). */
uint64_t os_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t os_random_seed(void) {
  uint64_t x = 0;
  const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
  if (r)
    for (int i = 0; i < 8; i++)
      x = (x << 8) | r[i];
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  x ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&ts;
  x ^= x >> 31;
  return x | 1;
}
