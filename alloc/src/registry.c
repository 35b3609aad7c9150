/* The global map of the address ranges hakmem owns: one bit per
 * segment-aligned 4 MiB range of the 48-bit address space (8 MiB of .bss,
 * only the touched pages become resident). A small segment sets the bit of
 * its range; a large block sets the bit of the range its header starts in.
 * This is the only pointer-to-owner lookup: free/realloc/usable_size use it
 * (via registry_contains) before reading any header, so a pointer hakmem does
 * not own is recognised as such and never handed to libc or another page. */
#include "internal.h"

_Atomic uint64_t hak_registry[REGISTRY_BITS / 64];
/* Large blocks aligned to 4 MiB or more start exactly at a range boundary,
 * so their header cannot sit at the start of the range: they are marked
 * here instead, and their header is the OS page just below the block. */
_Atomic uint64_t hak_registry_huge[REGISTRY_BITS / 64];

void registry_add(_Atomic uint64_t *map, const void *range_start) {
  uintptr_t i = (uintptr_t)range_start >> SEGMENT_SHIFT;
  hak_assert(i < REGISTRY_BITS && ((uintptr_t)range_start & SEGMENT_MASK) == 0);
  atomic_fetch_or_explicit(&map[i >> 6], (uint64_t)1 << (i & 63), memory_order_release);
}

void registry_remove(_Atomic uint64_t *map, const void *range_start) {
  uintptr_t i = (uintptr_t)range_start >> SEGMENT_SHIFT;
  hak_assert(i < REGISTRY_BITS);
  atomic_fetch_and_explicit(&map[i >> 6], ~((uint64_t)1 << (i & 63)), memory_order_release);
}

hak_large_t *large_huge_header(const void *p) {
  uintptr_t i = (uintptr_t)p >> SEGMENT_SHIFT;
  if (((uintptr_t)p & SEGMENT_MASK) || !p || i >= REGISTRY_BITS)
    return NULL;
  if (!((atomic_load_explicit(&hak_registry_huge[i >> 6], memory_order_acquire) >> (i & 63)) & 1))
    return NULL;
  return (hak_large_t *)((uint8_t *)p - OS_PAGE_SIZE);
}
