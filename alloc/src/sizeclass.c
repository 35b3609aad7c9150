/* The size-class table: the only place block sizes are defined.
 * Classes 0..7 are 16..128 in steps of 16 (every block is 16-byte aligned);
 * above 128 each power of two (2^k, 2^(k+1)] is split into 8 classes of
 * 2^k + j * 2^(k-3), j = 1..8, so internal waste stays below 12.5%.
 * size_to_class() in internal.h is the matching lookup, with its tables
 * hak_small_lut and hak_mid_lut below (tests check them against this table
 * for every size). */
#include "internal.h"

const uint32_t hak_class_sizes[NCLS] = {
    16,    32,    48,    64,    80,    96,    112,   128,   144,   160,   176,   192,
    208,   224,   240,   256,   288,   320,   352,   384,   416,   448,   480,   512,
    576,   640,   704,   768,   832,   896,   960,   1024,  1152,  1280,  1408,  1536,
    1664,  1792,  1920,  2048,  2304,  2560,  2816,  3072,  3328,  3584,  3840,  4096,
    4608,  5120,  5632,  6144,  6656,  7168,  7680,  8192,  9216,  10240, 11264, 12288,
    13312, 14336, 15360, 16384, 18432, 20480, 22528, 24576, 26624, 28672, 30720, 32768,
    36864, 40960, 45056, 49152, 53248, 57344, 61440, 65536,
};
_Static_assert(sizeof(hak_class_sizes) / sizeof(hak_class_sizes[0]) == NCLS, "class count");

#define L(k) (uint8_t) CLASS_OF_(16u * (k))
#define L8(k) L(k), L(k + 1), L(k + 2), L(k + 3), L(k + 4), L(k + 5), L(k + 6), L(k + 7)
const uint8_t hak_small_lut[SMALL_LUT_MAX / 16 + 1] = {L8(0),  L8(8),  L8(16), L8(24), L8(32),
                                                       L8(40), L8(48), L8(56), L(64)};
_Static_assert(SMALL_LUT_MAX / 16 + 1 == 65, "lookup table size");

/* Above 1024 every class boundary is a multiple of 128: one entry per 128 B. */
#define M(k) (uint8_t) CLASS_OF_(128u * (k))
#define M8(k) M(k), M(k + 1), M(k + 2), M(k + 3), M(k + 4), M(k + 5), M(k + 6), M(k + 7)
#define M64(k)                                                                                     \
  M8(k), M8(k + 8), M8(k + 16), M8(k + 24), M8(k + 32), M8(k + 40), M8(k + 48), M8(k + 56)
const uint8_t hak_mid_lut[HAK_SMALL_MAX / 128 + 1] = {
    M64(0), M64(64), M64(128), M64(192), M64(256), M64(320), M64(384), M64(448), M(512)};
_Static_assert(HAK_SMALL_MAX / 128 + 1 == 513, "lookup table size");

/* Slices per page (see below). */
size_t class_slices(size_t cls) {
  /* enough slices for PAGE_WANT_BLOCKS blocks, at most PAGE_MAX_SLICES, but
   * at least enough for PAGE_MIN_BLOCKS: a page of few blocks fills and
   * empties often, and every such transition is a slow path (4 KiB blocks:
   * 16 -> 64 per page); pages of more slices make a short-lived thread's
   * heap spread its few blocks over more memory */
  size_t want = ((size_t)class_size(cls) * PAGE_WANT_BLOCKS + SLICE_SIZE - 1) / SLICE_SIZE;
  size_t need = ((size_t)class_size(cls) * PAGE_MIN_BLOCKS + SLICE_SIZE - 1) / SLICE_SIZE;
  size_t n = want < PAGE_MAX_SLICES ? want : PAGE_MAX_SLICES;
  n = n > need ? n : need;
  return n ? n : 1;
}

/* How many blocks a heap's cache of the class holds: TCACHE_BYTES worth,
 * at most 128 blocks and at least 32 up to 8 KiB, 16 up to 16 KiB and 4
 * above. With 16 at 2-8 KiB, bench_random_mixed's cache ran empty or full
 * often enough to cost 1.8-2.5 instructions and 0.05-0.07 L1 misses per
 * op (cachegrind at 4 and 8 KiB); the most a thread can pin in full
 * caches grows from 7.0 to 7.9 MiB. */
uint32_t class_tcache_limit(size_t cls) {
  size_t n = TCACHE_BYTES / class_size(cls);
  size_t lo = class_size(cls) > 16384 ? 4 : class_size(cls) > 8192 ? 16 : 32;
  return (uint32_t)(n < lo ? lo : n > 128 ? 128 : n);
}

size_t hak_size_class_count(void) {
  return NCLS;
}

size_t hak_size_class_size(size_t cls) {
  return cls < NCLS ? class_size(cls) : 0;
}

size_t hak_size_to_class(size_t size) {
  return size <= HAK_SMALL_MAX ? size_to_class(size) : (size_t)-1;
}
