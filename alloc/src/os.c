/* The OS layer: every byte hakmem uses, metadata included, comes from here. */
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

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
