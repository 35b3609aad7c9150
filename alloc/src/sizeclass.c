/* The size-class table: the only place block sizes are defined.
 * Classes 0..7 are 16..128 in steps of 16 (every block is 16-byte aligned);
 * above 128 each power of two (2^k, 2^(k+1)] is split into 8 classes of
 * 2^k + j * 2^(k-3), j = 1..8, so internal waste stays below 12.5%.
 * size_to_class() in internal.h is the matching lookup (tests check the two
 * agree for every size). */
#include "internal.h"

#define CS(i)                                                                                      \
  ((i) < 8 ? 16u * ((i) + 1)                                                                       \
           : (1u << (7 + ((i)-8) / 8)) + (((i)-8) % 8 + 1) * (1u << (4 + ((i)-8) / 8)))
#define CS8(b) CS(b), CS(b + 1), CS(b + 2), CS(b + 3), CS(b + 4), CS(b + 5), CS(b + 6), CS(b + 7)

const uint32_t hak_class_sizes[NCLS] = {CS8(0),  CS8(8),  CS8(16), CS8(24), CS8(32),
                                        CS8(40), CS8(48), CS8(56), CS8(64), CS8(72)};

_Static_assert(CS(NCLS - 1) == HAK_SMALL_MAX, "last class must be HAK_SMALL_MAX");
_Static_assert(CS(8) == 144 && CS(15) == 256 && CS(16) == 288, "class layout");

/* Slices per page: enough for PAGE_MIN_BLOCKS blocks. */
size_t class_slices(size_t cls) {
  size_t bytes = (size_t)class_size(cls) * PAGE_MIN_BLOCKS;
  size_t n = (bytes + SLICE_SIZE - 1) / SLICE_SIZE;
  return n ? n : 1;
}

size_t hak_size_class_count(void) { return NCLS; }

size_t hak_size_class_size(size_t cls) { return cls < NCLS ? class_size(cls) : 0; }

size_t hak_size_to_class(size_t size) {
  return size <= HAK_SMALL_MAX ? size_to_class(size) : (size_t)-1;
}
