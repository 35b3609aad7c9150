/* What the instrumented builds tell their tool of every kind of block:
 * every allocation function (malloc, calloc, realloc and reallocarray of
 * NULL, memalign, aligned_alloc and posix_memalign at alignments 16 B to
 * 1 MiB, valloc, pvalloc), at each size class's size, one less and one
 * more, and at large sizes from 64 KiB to 8 MiB; realloc growing,
 * shrinking and keeping sizes across small and large; blocks again from
 * the thread cache, after hak_trim and from the large-block cache. For
 * each block:
 *  - its requested bytes are addressable, the slack after them up to its
 *    usable size is not (a write there is reported), nor the padding
 *    before an aligned large block;
 *  - after hak_usable_size every usable byte is addressable (README, Bad
 *    input: "malloc_usable_size bytes may all be used"), and the usable
 *    size is the block's all but its redzone, which stays unaddressable
 *    (track.h: TRACK_REDZONE);
 *  - after free (hak_free, hak_free_sized, hak_free_aligned_sized) no
 *    usable byte is addressable (or the range is unmapped);
 *  - valgrind: malloc's bytes are undefined, calloc's defined (and zero),
 *    realloc's kept bytes defined and its new ones undefined.
 * The states are read without touching the bytes (asan: the shadow;
 * valgrind: VALGRIND_GET_VBITS, which reports nothing), and the usable
 * size from hakmem's metadata (hak_usable_size would expose the slack).
 * asan: run as it is (2-3 s). valgrind: the program runs itself under
 * memcheck (`-q --error-exitcode=99`) with a smaller sample of sizes (one
 * of each class boundary's three, a few alignments), which must also
 * make memcheck report nothing (10-15 s). Found (2026-11-28, helper-116):
 * an aligned block of 0..15 bytes in a large mapping had 16 bytes
 * addressable (test_asan_catches and test_valgrind_catches now check it
 * too). */
#include "hak_test.h"
#include "hak_test_internal.h"

#if defined(HAK_ASAN) && HAK_ASAN
#include <sanitizer/asan_interface.h>
#define SW_ASAN 1
#else
#define SW_ASAN 0
#endif
#if defined(HAK_VALGRIND) && HAK_VALGRIND
#include <valgrind/memcheck.h>
#define SW_VG 1
#else
#define SW_VG 0
#endif

#define MiB ((size_t)1 << 20)

static char what[160];   /* the case being checked, for the messages */
static int small_sample; /* valgrind: a smaller sample */

static int mapped(const void *p) {
  unsigned char v;
  return mincore(hak_page_start(p), 1, &v) == 0 || errno != ENOMEM;
}

/* whether byte p of a mapped page is addressable */
static int addressable_mapped(const unsigned char *p) {
#if SW_ASAN
  return !__asan_address_is_poisoned(p);
#elif SW_VG
  unsigned char vb;
  return VALGRIND_GET_VBITS(p, &vb, 1) != 3;
#else
  (void)p;
  return 1;
#endif
}

#if SW_VG
static unsigned char vbits[65536];
#endif

/* first byte of [p, p + n) not addressable, or n */
static size_t first_unaddressable(const unsigned char *p, size_t n) {
#if SW_ASAN
  void *b = __asan_region_is_poisoned((void *)p, n);
  return b ? (size_t)((const unsigned char *)b - p) : n;
#elif SW_VG
  for (size_t off = 0; off < n; off += sizeof vbits) {
    size_t k = n - off < sizeof vbits ? n - off : sizeof vbits;
    if (VALGRIND_GET_VBITS(p + off, vbits, k) == 3)
      for (size_t i = 0; i < k; i++)
        if (!mapped(p + off + i) || !addressable_mapped(p + off + i))
          return off + i;
  }
  return n;
#else
  (void)p;
  return n;
#endif
}

/* first byte of [p, p + n) addressable, or n; past the first and last 256
 * bytes of a range over 64 KiB, every 61st byte (whole ranges are
 * poisoned at once, and a byte loop over megabytes is slow under valgrind) */
static size_t first_addressable(const unsigned char *p, size_t n) {
  uintptr_t page = 1;
  int page_mapped = 0;
  for (size_t i = 0; i < n; i += (n > 65536 && i > 256 && i + 256 < n) ? 61 : 1) {
    uintptr_t here = (uintptr_t)(p + i) & ~(uintptr_t)4095;
    if (here != page) {
      page = here;
      page_mapped = mapped((void *)here);
    }
    if (page_mapped && addressable_mapped(p + i))
      return i;
  }
  return n;
}

#if SW_VG
/* bytes of [p, p + n) with some undefined bit (*fully: all undefined) */
static size_t undefined_bytes(const unsigned char *p, size_t n, size_t *fully) {
  size_t u = 0, f = 0;
  for (size_t off = 0; off < n; off += sizeof vbits) {
    size_t k = n - off < sizeof vbits ? n - off : sizeof vbits;
    if (VALGRIND_GET_VBITS(p + off, vbits, k) != 1)
      return SIZE_MAX;
    for (size_t i = 0; i < k; i++) {
      u += vbits[i] != 0;
      f += vbits[i] == 0xff;
    }
  }
  if (fully)
    *fully = f;
  return u;
}
#endif

/* the usable size from the metadata, without exposing the slack */
static size_t usable_of(void *p) {
  void *base = ptr_segment_base(p);
  if (registry_kind(base) == REG_SMALL)
    return class_size(ptr_slice_entry(base, p)->cls);
  hak_large_t *lg = registry_large(p);
  return lg ? large_usable(lg) : 0;
}

static size_t large_offset_of(void *p) {
  void *base = ptr_segment_base(p);
  if (registry_kind(base) == REG_SMALL)
    return 0;
  hak_large_t *lg = registry_large(p);
  return lg ? lg->offset : 0;
}

enum { DEF_ANY = -1, DEF_UNDEFINED = 0, DEF_ZERO = 1 };

/* a block handed out for n bytes; def: what memcheck must think of them */
static void check_new(unsigned char *p, size_t n, size_t align, int def) {
  REQUIRE(p != NULL);
  CHECK_MSG((uintptr_t)p % align == 0, "%s: %p not %zu-aligned", what, (void *)p, align);
  size_t u = usable_of(p);
  size_t bad = first_unaddressable(p, n);
  CHECK_MSG(bad == n, "%s: requested byte %zu of %zu is not addressable", what, bad, n);
  if (n < u) {
    size_t a = first_addressable(p + n, u - n);
    CHECK_MSG(a == u - n, "%s: slack byte %zu (usable %zu) is addressable", what, n + a, u);
  }
  size_t off = large_offset_of(p);
  if (off > LARGE_HDR) { /* an aligned large block: padding after its header */
    size_t a = first_addressable(p - off + LARGE_HDR, off - LARGE_HDR);
    CHECK_MSG(a == off - LARGE_HDR, "%s: padding byte %zu before the block is addressable", what,
              off - LARGE_HDR - a);
  }
#if SW_VG
  size_t fully = 0, und = undefined_bytes(p, n, &fully);
  if (def == DEF_ZERO)
    CHECK_MSG(und == 0, "%s: %zu of calloc's %zu bytes undefined", what, und, n);
  if (def == DEF_UNDEFINED)
    CHECK_MSG(fully == n, "%s: %zu of malloc's %zu bytes defined", what, n - fully, n);
#endif
  if (def == DEF_ZERO) {
    size_t nz = hak_find_not_byte(p, n, 0);
    CHECK_MSG(nz == SIZE_MAX, "%s: calloc's byte %zu of %zu is not zero", what, nz, n);
  }
}

/* hak_usable_size: every usable byte addressable, and written */
/* The block's last TRACK_REDZONE bytes (track.h) are not the program's:
 * the usable size leaves them out, and they stay unaddressable. */
static size_t check_usable(unsigned char *p, size_t n) {
  size_t block = usable_of(p);
  size_t u = hak_usable_size(p);
  CHECK_MSG(u >= n, "%s: usable size %zu < %zu", what, u, n);
  size_t bad = first_unaddressable(p, u);
  CHECK_MSG(bad == u, "%s: after usable_size, byte %zu of %zu is not addressable", what, bad, u);
  CHECK_MSG(u == block - TRACK_REDZONE,
            "%s: usable size %zu of a %zu-byte block: not all but its "
            "%zu-byte redzone",
            what, u, block, (size_t)TRACK_REDZONE);
  if (u < block) {
    size_t a = first_addressable(p + u, block - u);
    CHECK_MSG(a == block - u, "%s: after usable_size, redzone byte %zu (usable %zu) is addressable",
              what, u + a, u);
  }
  if (bad == u)
    memset(p, 0xa5, u);
  return u;
}

static void check_freed(unsigned char *p, size_t u) {
  size_t a = first_addressable(p, u);
  CHECK_MSG(a == u, "%s: byte %zu of %zu addressable after the free", what, a, u);
}

static void *a_malloc(size_t n, size_t a) {
  (void)a;
  return hak_malloc(n);
}
static void *a_calloc(size_t n, size_t a) {
  (void)a;
  return n % 4 == 0 && n ? hak_calloc(n / 4, 4) : hak_calloc(1, n);
}
static void *a_realloc(size_t n, size_t a) {
  (void)a;
  return hak_realloc(NULL, n);
}
static void *a_reallocarray(size_t n, size_t a) {
  (void)a;
  return hak_reallocarray(NULL, 1, n);
}
static void *a_memalign(size_t n, size_t a) {
  return hak_memalign(a, n);
}
static void *a_aligned_alloc(size_t n, size_t a) {
  return hak_aligned_alloc(a, n);
}
static void *a_posix_memalign(size_t n, size_t a) {
  void *p = NULL;
  return hak_posix_memalign(&p, a, n) == 0 ? p : NULL;
}
static void *a_valloc(size_t n, size_t a) {
  (void)a;
  return hak_valloc(n);
}
static void *a_pvalloc(size_t n, size_t a) {
  (void)a;
  return hak_pvalloc(n);
}

enum { ALIGN_NONE, ALIGN_ARG, ALIGN_PAGE, ALIGN_PAGE_ROUNDED };
static const struct api {
  const char *name;
  void *(*fn)(size_t n, size_t a);
  int def, align;
} apis[] = {
    {"malloc", a_malloc, DEF_UNDEFINED, ALIGN_NONE},
    {"calloc", a_calloc, DEF_ZERO, ALIGN_NONE},
    {"realloc(NULL)", a_realloc, DEF_UNDEFINED, ALIGN_NONE},
    {"reallocarray(NULL)", a_reallocarray, DEF_UNDEFINED, ALIGN_NONE},
    {"memalign", a_memalign, DEF_UNDEFINED, ALIGN_ARG},
    {"aligned_alloc", a_aligned_alloc, DEF_UNDEFINED, ALIGN_ARG},
    {"posix_memalign", a_posix_memalign, DEF_UNDEFINED, ALIGN_ARG},
    {"valloc", a_valloc, DEF_UNDEFINED, ALIGN_PAGE},
    {"pvalloc", a_pvalloc, DEF_UNDEFINED, ALIGN_PAGE_ROUNDED},
};

static size_t sizes[300];
static int nsizes;

/* one block of api `ap`: new, then (by `how`) usable size and free (or
 * free_sized / free_aligned_sized), then the same call again (from the
 * cache: the block just freed) */
static void one(const struct api *ap, size_t n, size_t a, int how) {
  size_t req = n, align = 16;
  if (ap->align == ALIGN_ARG)
    align = a;
  else if (ap->align != ALIGN_NONE)
    align = 4096;
  if (ap->align == ALIGN_PAGE_ROUNDED)
    req = n ? (n + 4095) & ~(size_t)4095 : 4096;
  snprintf(what, sizeof what, "%s(%zu), alignment %zu", ap->name, n, align);
  unsigned char *p = ap->fn(n, a);
  check_new(p, req, align, ap->def);
  size_t u = usable_of(p);
  if (how == 1)
    u = check_usable(p, req);
  else
    memset(p, 0x5a, req);
  if (how == 2)
    hak_free_sized(p, req);
  else if (how == 3)
    hak_free_aligned_sized(p, align, req);
  else
    hak_free(p);
  check_freed(p, u);
  snprintf(what, sizeof what, "%s(%zu), alignment %zu, again", ap->name, n, align);
  p = ap->fn(n, a);
  check_new(p, req, align, ap->def);
  hak_free(p);
}

static void sweep_alloc(void) {
  for (size_t i = 0; i < sizeof apis / sizeof apis[0]; i++) {
    const struct api *ap = &apis[i];
    for (int s = 0; s < nsizes; s++) {
      size_t n = sizes[s];
      if (ap->align != ALIGN_ARG) {
        one(ap, n, 16, s % 4);
        continue;
      }
      for (size_t a = 16; a <= MiB; a *= 2) {
        /* every alignment at the large sizes and 0..15; the small sizes
         * spread over the alignments (all under valgrind: one in 7) */
        int k = __builtin_ctzl(a);
        bool all = n > HAK_SMALL_MAX || n < 16;
        if (!all && s % 7 != k % 7)
          continue;
        if (small_sample && !all && (s / 7) % 4)
          continue;
        if (small_sample && all && k % 3 && a < 128 * 1024)
          continue;
        if (small_sample && n > MiB && a != 4096 && a != MiB)
          continue;
        one(ap, n, a, (s + k) % 4);
      }
    }
  }
}

/* realloc (or reallocarray) n0 -> n1 of a malloc'd or calloc'd block */
static void one_realloc(size_t n0, size_t n1, bool zeroed, bool array) {
  snprintf(what, sizeof what, "realloc%s(%s(%zu), %zu)", array ? "array" : "",
           zeroed ? "calloc" : "malloc", n0, n1);
  unsigned char *p = zeroed ? hak_calloc(1, n0) : hak_malloc(n0);
  REQUIRE(p != NULL);
  uint64_t seed = n0 * 131 + n1;
  hak_fill(p, n0, seed);
  size_t u0 = usable_of(p);
  unsigned char *q = array ? hak_reallocarray(p, 1, n1) : hak_realloc(p, n1);
  REQUIRE(q != NULL);
  size_t keep = n0 < n1 ? n0 : n1, lost = hak_pattern_mismatch(q, keep, seed);
  CHECK_MSG(lost == SIZE_MAX, "%s: kept byte %zu of %zu lost", what, lost, keep);
  check_new(q, n1, 16, DEF_ANY);
#if SW_VG
  size_t und = undefined_bytes(q, keep, NULL);
  CHECK_MSG(und == 0, "%s: %zu of the %zu kept bytes undefined", what, und, keep);
  if (n1 > n0) {
    size_t fully = 0;
    undefined_bytes(q + n0, n1 - n0, &fully);
    CHECK_MSG(fully == n1 - n0, "%s: %zu of the %zu new bytes defined", what, n1 - n0 - fully,
              n1 - n0);
  }
#endif
  if (q != p)
    check_freed(p, u0);
  size_t u = check_usable(q, n1);
  hak_free(q);
  check_freed(q, u);
}

static void sweep_realloc(void) {
  static const size_t rs[] = {1,     16,      17,     100,         1000,    4097,   30000,
                              65535, 65536,   65537,  100000,      MiB + 1, 24,     2047,
                              48000, 4 * MiB, 300000, 8 * MiB + 1, 15,      262144, 4096};
  size_t nr = sizeof rs / sizeof rs[0];
  if (small_sample)
    nr -= 6;
  for (size_t i = 0; i < nr; i++)
    for (size_t j = 0; j < nr; j++)
      one_realloc(rs[i], rs[j], (i + j) % 2, (i * j) % 5 == 1);
  /* a large block grown or shrunk in place (or moved by mremap) to a size
   * whose redzone ends 1..16 bytes past a page's end: its range takes a
   * page more than the request alone (`edge` fills whole pages) */
  size_t edge = 2 * MiB - hak_test_large_offset() - hak_test_redzone();
  static const size_t past[] = {0, 1, 8, 16, 17};
  for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
    one_realloc(MiB, edge + past[i], i % 2, false);
    one_realloc(3 * MiB, edge + past[i], i % 2, false);
  }
  for (int s = 0; s < nsizes; s++) { /* same size, and shrinks and grows by little */
    size_t n = sizes[s];
    if (!n || (small_sample && s % 3))
      continue;
    one_realloc(n, n, s % 2, false);
    one_realloc(n, n - n / 8, s % 2, false);
    one_realloc(n, n + 1, s % 2, false);
    one_realloc(n, n + n / 3, s % 2, false);
  }
}

/* memory back from the OS or the large-block cache */
static void sweep_cached(void) {
  void *hold[NCLS];
  for (size_t c = 0; c < NCLS; c++) {
    hold[c] = hak_malloc(class_size(c));
    memset(hold[c], 1, class_size(c));
  }
  for (size_t c = 0; c < NCLS; c++)
    hak_free(hold[c]);
  hak_trim(0);
  for (size_t c = 0; c < NCLS; c++) {
    size_t n = class_size(c) - 3;
    snprintf(what, sizeof what, "malloc(%zu) after hak_trim", n);
    unsigned char *p = hak_malloc(n);
    check_new(p, n, 16, DEF_UNDEFINED);
    hak_free(p);
    snprintf(what, sizeof what, "calloc(1, %zu) after hak_trim", n);
    p = hak_calloc(1, n);
    check_new(p, n, 16, DEF_ZERO);
    hak_free(p);
  }
  /* large blocks cut from, gathered from or taken whole from cached mappings */
  static const size_t ls[] = {5 * MiB, 3 * MiB + 12345, 1536 * 1024, 70000, 9 * MiB,
                              2 * MiB, 300000,          7 * MiB + 5, 65537};
  for (int round = 0; round < 3; round++) {
    void *big[9];
    for (int i = 0; i < 9; i++) {
      big[i] = hak_malloc(ls[i]);
      REQUIRE(big[i] != NULL);
      memset(big[i], 2, ls[i]);
    }
    for (int i = 0; i < 9; i += 1 + round) {
      hak_free(big[i]);
      big[i] = NULL;
    }
    for (int i = 8; i >= 0; i--) {
      size_t n = ls[i] / (size_t)(round + 1) + 1000 * (size_t)i + 1;
      snprintf(what, sizeof what, "%s(%zu) after the large cache's round %d",
               i % 2 ? "calloc" : "malloc", n, round);
      unsigned char *p = i % 2 ? hak_calloc(1, n) : hak_malloc(n);
      check_new(p, n, 16, i % 2 ? DEF_ZERO : DEF_UNDEFINED);
      size_t u = check_usable(p, n);
      hak_free(p);
      check_freed(p, u);
    }
    for (int i = 0; i < 9; i++)
      hak_free(big[i]);
    if (round == 1)
      hak_trim(0);
  }
}

static void sweep(void) {
  nsizes = 0;
  sizes[nsizes++] = 0;
  sizes[nsizes++] = 1;
  sizes[nsizes++] = 15;
  for (size_t c = 0; c < NCLS; c++) {
    size_t s = class_size(c);
    for (size_t d = 0; d < 3; d++) /* s - 1, s, s + 1 (the next class, or large) */
      if (!small_sample || d == c % 3 || c == NCLS - 1)
        sizes[nsizes++] = s - 1 + d;
  }
  static const size_t large[] = {65536 + 4096 - 64, 100000, 262144,  MiB + 1, 4 * MiB - 1,
                                 4 * MiB + 1,       MiB,    4 * MiB, 8 * MiB, 8 * MiB + 1};
  for (size_t i = 0; i < sizeof large / sizeof large[0]; i++)
    if (!small_sample || i < 6)
      sizes[nsizes++] = large[i];
  /* blocks whose redzone ends 1..16 bytes past a page's end (edge fills
   * whole pages: hak_test.h) */
  size_t edge = 2 * MiB - hak_test_large_offset() - hak_test_redzone();
  sizes[nsizes++] = edge;
  sizes[nsizes++] = edge + 8;
  sizes[nsizes++] = edge + 16;
  REQUIRE(nsizes <= (int)(sizeof sizes / sizeof sizes[0]));
  sweep_alloc();
  sweep_realloc();
  sweep_cached();
  CHECK_EQ(hak_heap_check(), 0);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--under-valgrind") == 0) {
    small_sample = 1;
    sweep();
    return hak_test_done();
  }
  if (hak_config_is("asan")) {
    sweep();
    return hak_test_done();
  }
  if (!hak_config_is("valgrind"))
    hak_test_skip("needs the asan or valgrind configuration (this is %s)", hak_config());
  if (hak_test_under_valgrind()) { /* run by hand under memcheck */
    small_sample = 1;
    sweep();
    return hak_test_done();
  }
  if (!hak_have_program("valgrind"))
    hak_test_skip("valgrind is not installed");
  const char *self = hak_self_exe();
  REQUIRE(self != NULL);
  char *args[] = {"valgrind",         "-q", "--error-exitcode=99", "--leak-check=no", (char *)self,
                  "--under-valgrind", NULL};
  struct hak_child c;
  REQUIRE(hak_run_cmd(args, 280, &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0),
            "the sweep under memcheck: %s (99: memcheck reported an error; 1: a check "
            "failed); output:\n---\n%s---",
            hak_child_describe(&c, how, sizeof how), c.out ? c.out : "");
  hak_child_free(&c);
  return hak_test_done();
}
