/* The global map of the address ranges hakmem owns: one bit per
 * segment-aligned 4 MiB range of the 48-bit address space (8 MiB of .bss,
 * only the touched pages become resident). A small segment sets the bit of
 * its range; a large block sets the bit of the range its header starts in.
 * This is the only pointer-to-owner lookup: free/realloc/usable_size use it
 * (via registry_contains) before reading any header, so a pointer hakmem does
 * not own is recognised as such and never handed to libc or another page. */
#include "internal.h"

_Atomic uint64_t hak_registry[REGISTRY_BITS / 64];

void registry_add(const void *segment_start) {
  uintptr_t i = (uintptr_t)segment_start >> SEGMENT_SHIFT;
  hak_assert(i < REGISTRY_BITS && ((uintptr_t)segment_start & SEGMENT_MASK) == 0);
  atomic_fetch_or_explicit(&hak_registry[i >> 6], (uint64_t)1 << (i & 63), memory_order_release);
}

void registry_remove(const void *segment_start) {
  uintptr_t i = (uintptr_t)segment_start >> SEGMENT_SHIFT;
  hak_assert(i < REGISTRY_BITS);
  atomic_fetch_and_explicit(&hak_registry[i >> 6], ~((uint64_t)1 << (i & 63)),
                            memory_order_release);
}
