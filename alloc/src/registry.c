/* The global map of the address ranges hakmem owns: one byte per 4 MiB
 * range of the 48-bit address space (64 MiB of .bss, virtual: only the
 * pages for ranges in use become resident, one 4 KiB page per 16 GiB of
 * address space). The byte says what starts in that range (REG_*), so the
 * free fast path needs one load to know both "ours" and "small segment".
 * This is the only pointer-to-owner lookup: free/realloc/usable_size use it
 * before reading any header, so a pointer hakmem does not own is recognised
 * as such and never handed to libc or another page. */
#include "internal.h"

_Atomic uint8_t hak_registry[REGISTRY_SLOTS];

void registry_set(const void *range_start, unsigned kind) {
  uintptr_t i = (uintptr_t)range_start >> SEGMENT_SHIFT;
  hak_assert(i < REGISTRY_SLOTS && ((uintptr_t)range_start & SEGMENT_MASK) == 0);
  /* Release, though no load acquires it (registry_kind says why none
   * needs to): a plain store on x86, once per segment or large range. */
  atomic_store_explicit(&hak_registry[i], (uint8_t)kind, memory_order_release);
}

/* A large block's header starts its range; a huge-aligned block starts its
 * range and keeps its header in the OS page below. */
hak_large_t *registry_large(const void *p) {
  uint8_t *base = ptr_segment_base(p);
  switch (registry_kind(p)) {
  case REG_LARGE:
    return (hak_large_t *)base;
  case REG_HUGE:
    return (hak_large_t *)(base - OS_PAGE_SIZE);
  default:
    return NULL;
  }
}
