/* The size-class table: the only place block sizes are defined.
 * Classes 0..7 are 16..128 in steps of 16 (every block is 16-byte aligned);
 * above 128 each power of two (2^k, 2^(k+1)] is split into 8 classes of
 * 2^k + j * 2^(k-3), j = 1..8, so internal waste stays below 12.5%.
 * size_to_class() in internal.h is the matching lookup, with its tables
 * hak_small_lut and hak_mid_lut below (tests check them against this table
 * for every size), and hak_class_magic, each class's ceil(2^64 / size) for
 * free's divisibility test (slice_is_block_start). */
#include "internal.h"

/* clang-format off */
#define CLASS_SIZES(X)                                                                             \
  X(16)    X(32)    X(48)    X(64)    X(80)    X(96)    X(112)   X(128)                            \
  X(144)   X(160)   X(176)   X(192)   X(208)   X(224)   X(240)   X(256)                            \
  X(288)   X(320)   X(352)   X(384)   X(416)   X(448)   X(480)   X(512)                            \
  X(576)   X(640)   X(704)   X(768)   X(832)   X(896)   X(960)   X(1024)                           \
  X(1152)  X(1280)  X(1408)  X(1536)  X(1664)  X(1792)  X(1920)  X(2048)                           \
  X(2304)  X(2560)  X(2816)  X(3072)  X(3328)  X(3584)  X(3840)  X(4096)                           \
  X(4608)  X(5120)  X(5632)  X(6144)  X(6656)  X(7168)  X(7680)  X(8192)                           \
  X(9216)  X(10240) X(11264) X(12288) X(13312) X(14336) X(15360) X(16384)                          \
  X(18432) X(20480) X(22528) X(24576) X(26624) X(28672) X(30720) X(32768)                          \
  X(36864) X(40960) X(45056) X(49152) X(53248) X(57344) X(61440) X(65536)
/* clang-format on */
#define SIZE_OF(n) n,
#define MAGIC_OF(n) UINT64_MAX / (n) + 1,
const uint32_t hak_class_sizes[NCLS] = {CLASS_SIZES(SIZE_OF)};
const uint64_t hak_class_magic[NCLS] = {CLASS_SIZES(MAGIC_OF)};
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
