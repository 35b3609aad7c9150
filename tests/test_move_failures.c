/* Failed page moves in large.c, injected: this program defines mremap, so
 * the static libhakmem.a calls it instead of libc's. A move (MREMAP_FIXED)
 * chosen by the test fails with ENOMEM, the way the kernel fails one when
 * the process is out of mappings. Two kernels are played:
 *  - "new" (Linux 6.11 and later, like this machine's): the failed move
 *    leaves its destination mapped, still the caller's;
 *  - "old" (before 6.11): the failed move has unmapped its destination
 *    first, and a source of several kernel mappings fails the same way
 *    (EFAULT; hakmem's probe of the kernel's behaviour sees that), and
 *    optionally another thread maps something of its own into the hole
 *    before hakmem can look ("squatter").
 * For each of the three moves (realloc moving a block, the cache cutting a
 * mapping, the cache assembling a block from several) what must hold: the
 * call still succeeds, or realloc returns NULL with ENOMEM and the block is
 * untouched; the heap check passes; no reserved range is left behind (the
 * process's mapped size); and a squatter's mapping is neither unmapped nor
 * written. */
#define _GNU_SOURCE
#include "hak_test.h"

#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define MiB ((size_t)1 << 20)
#define PG ((size_t)4096)

static bool old_kernel;         /* play a kernel before 6.11 */
static bool squat;              /* ... and map a squatter into the hole */
static int fail_in = -1;        /* the FIXED move that fails: 0 the next, -1 none */
static unsigned char *squatter; /* where the squatter went, its length */
static size_t squatter_len;

static void *real_mremap(void *old, size_t old_size, size_t new_size, int flags, void *new_addr) {
  long r = syscall(SYS_mremap, old, old_size, new_size, flags, new_addr);
  return r == -1 ? MAP_FAILED : (void *)r;
}

void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...);
void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...) {
  void *dst = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    dst = va_arg(ap, void *);
    va_end(ap);
    bool injected = fail_in == 0;
    if (fail_in >= 0)
      fail_in--;
    /* an old kernel cannot move several mappings at once (hakmem's own
     * moves never ask it to; its probe of the kernel does) */
    bool several = !injected && old_kernel && !os_one_mapping(old, old_size);
    if (injected || several) {
      if (old_kernel) {
        munmap(dst, new_size);
        if (injected && squat) {
          squatter = mmap(dst, new_size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
          if (squatter == MAP_FAILED) {
            squatter = NULL;
          } else {
            squatter_len = new_size;
            memset(squatter, 0x5A, squatter_len);
          }
        }
      }
      errno = injected ? ENOMEM : EFAULT;
      return MAP_FAILED;
    }
  }
  return real_mremap(old, old_size, new_size, flags, dst);
}

/* The mapped-size checks: not under TSan, which maps shadow for every new
 * mapping. */
static bool vm_exact;

static size_t vm_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1)
      pages = 0;
    fclose(f);
  }
  return (size_t)pages * PG;
}

static size_t bytes_not(const unsigned char *p, size_t n, unsigned char v) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i += 512)
    bad += p[i] != v;
  return bad + (n && p[n - 1] != v);
}

/* A fresh allocator state and kernel to play; the probe runs again. */
static void start(bool old, bool with_squatter) {
  hak_test_reset();
  old_kernel = old;
  squat = with_squatter;
  fail_in = -1;
  squatter = NULL;
  squatter_len = 0;
}

static const char *kernel_name(void) {
  return !old_kernel ? "new kernel" : squat ? "old kernel, squatter" : "old kernel";
}

/* The squatter (if one was placed) is still mapped and unchanged; then the
 * test gives it back. */
static void check_squatter(const char *what) {
  if (!squat)
    return;
  CHECK_MSG(squatter != NULL, "%s (%s): the injected failure placed no squatter", what,
            kernel_name());
  if (!squatter)
    return;
  unsigned char v;
  bool mapped =
      mincore(squatter, PG, &v) == 0 && mincore(squatter + squatter_len - PG, PG, &v) == 0;
  CHECK_MSG(mapped, "%s (%s): hakmem unmapped another thread's mapping at %p", what, kernel_name(),
            (void *)squatter);
  if (mapped) {
    size_t bad = bytes_not(squatter, squatter_len, 0x5A);
    CHECK_MSG(bad == 0, "%s (%s): %zu samples of another thread's mapping changed", what,
              kernel_name(), bad);
  }
  munmap(squatter, squatter_len);
  squatter = NULL;
}

/* realloc must move a 1 MiB block (a page of ours right after it stops it
 * growing in place); the move fails: NULL, ENOMEM, the block as it was,
 * and the range reserved for it given back. Then the same realloc without
 * a failure moves it. */
static void realloc_move_fails(bool old, bool with_squatter) {
  start(old, with_squatter);
  unsigned char *b = hak_malloc(MiB);
  REQUIRE(b != NULL);
  memset(b, 0x31, MiB);
  unsigned char *end = (unsigned char *)(((uintptr_t)b + MiB + PG - 1) & ~(PG - 1));
  void *stop = mmap(end, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  REQUIRE(stop == end);
  size_t vm0 = vm_bytes();
  fail_in = 0;
  errno = 0;
  void *q = hak_realloc(b, 3 * MiB);
  int e = errno;
  CHECK_MSG(q == NULL && e == ENOMEM, "realloc whose move failed (%s): returned %p, errno %d",
            kernel_name(), q, e);
  CHECK_MSG(fail_in == -1, "realloc (%s): the move was not tried", kernel_name());
  CHECK_EQ(bytes_not(b, MiB, 0x31), 0);
  CHECK_EQ(hak_usable_size(b), MiB + PG - 64);
  size_t vm1 = vm_bytes();
  CHECK_MSG(!vm_exact || vm1 <= vm0 + squatter_len,
            "realloc whose move failed (%s): %zu -> %zu bytes mapped (squatter %zu)", kernel_name(),
            vm0, vm1, squatter_len);
  check_squatter("realloc whose move failed");
  CHECK_EQ(hak_heap_check(), 0);
  unsigned char *m = hak_realloc(b, 3 * MiB);
  CHECK_MSG(m != NULL && m != b, "realloc after the failure (%s): %p from %p", kernel_name(),
            (void *)m, (void *)b);
  if (m) {
    CHECK_EQ(bytes_not(m, MiB, 0x31), 0);
    memset(m, 0x32, 3 * MiB);
    hak_free(m);
  }
  munmap(stop, PG);
  CHECK_EQ(hak_heap_check(), 0);
}

/* A 3 MiB request cuts a cached 8 MiB mapping; moving the 5 MiB tail to a
 * range of its own fails: the block is served, the tail and the range are
 * given back. */
static void split_fails(bool old, bool with_squatter) {
  start(old, with_squatter);
  unsigned char *big = hak_malloc(8 * MiB);
  REQUIRE(big != NULL);
  memset(big, 0x41, 8 * MiB);
  hak_free(big);
  size_t vm0 = vm_bytes();
  fail_in = 0;
  unsigned char *b = hak_malloc(3 * MiB);
  REQUIRE(b != NULL);
  CHECK_MSG(fail_in == -1, "split (%s): the move was not tried", kernel_name());
  CHECK_MSG(b == big, "split (%s): the cached mapping at %p was not used (got %p)", kernel_name(),
            (void *)big, (void *)b);
  memset(b, 0x42, hak_usable_size(b));
  size_t vm1 = vm_bytes();
  CHECK_MSG(!vm_exact || vm1 + 4 * MiB <= vm0 + squatter_len,
            "split whose move failed (%s): the tail or its range stayed mapped (%zu -> %zu bytes)",
            kernel_name(), vm0, vm1);
  check_squatter("split whose move failed");
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(b);
  CHECK_EQ(hak_heap_check(), 0);
}

/* A 3 MiB request finds only smaller cached mappings (2 MiB and 1.5 MiB).
 * in_place: the bigger grows in place and takes 1 MiB of the other's pages;
 * else (a page of ours after it stops that) a new range takes the bigger
 * one's pages. That move fails: the request still gets a block (fresh
 * pages where the move did not happen), whatever was not moved is given
 * back, and the cache keeps its invariants (hak_heap_check). */
static void gather_fails(bool old, bool with_squatter, bool in_place) {
  start(old, with_squatter);
  /* a 2 MiB block with the address space after it free (another mapping
   * may have gone there: then try another block) */
  unsigned char *a = NULL, *tried[8];
  void *after = MAP_FAILED;
  size_t ntried = 0, after_len = in_place ? 3 * MiB / 2 : PG;
  while (ntried < 8 && after == MAP_FAILED) {
    a = tried[ntried++] = hak_malloc(2 * MiB);
    REQUIRE(a != NULL);
    unsigned char *end = a - 64 + 2 * MiB + PG; /* a's mapping: header and whole pages */
    after = mmap(end, after_len, in_place ? PROT_NONE : PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (after != MAP_FAILED && after != end) {
      munmap(after, after_len);
      after = MAP_FAILED;
    }
  }
  REQUIRE(after != MAP_FAILED); /* the blocks tried before stay live until the end */
  unsigned char *c = hak_malloc(3 * MiB / 2);
  REQUIRE(c != NULL);
  memset(a, 0x51, 2 * MiB);
  memset(c, 0x52, 3 * MiB / 2);
  if (in_place) /* it was free: let the block grow there */
    munmap(after, after_len);
  hak_free(a);
  hak_free(c);
  size_t vm0 = vm_bytes();
  fail_in = 0;
  unsigned char *b = hak_malloc(3 * MiB);
  REQUIRE(b != NULL);
  CHECK_MSG(fail_in == -1, "gather (%s): no move was tried", kernel_name());
  memset(b, 0x53, 3 * MiB);
  CHECK_EQ(bytes_not(b, 3 * MiB, 0x53), 0);
  size_t vm1 = vm_bytes();
  /* in place: the 2 MiB mapping grew by 1 MiB and 1 MiB of the other,
   * not moved, went; else the 2 MiB mapping, not moved, went and the new
   * range is 3 MiB. Where a squatter took the hole the block is new pages
   * besides. */
  size_t most = vm0 + (in_place ? 0 : MiB) + squatter_len + 2 * PG;
  CHECK_MSG(!vm_exact || vm1 <= most,
            "gather whose move failed (%s, %s): %zu -> %zu bytes mapped (at most %zu)",
            kernel_name(), in_place ? "in place" : "new range", vm0, vm1, most);
  check_squatter(in_place ? "gather in place whose move failed"
                          : "gather into a new range whose move failed");
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(b);
  /* the cache still serves: no moves fail now */
  unsigned char *d = hak_malloc(3 * MiB);
  REQUIRE(d != NULL);
  memset(d, 0x54, 3 * MiB);
  hak_free(d);
  if (!in_place)
    munmap(after, PG);
  for (size_t i = 0; i + 1 < ntried; i++)
    hak_free(tried[i]);
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  if (!os_moves())
    hak_test_skip("hakmem moves no pages here (valgrind)");
  vm_exact = !hak_config_is("tsan");
  /* the valgrind and trace builds copy every realloc (track.h, trace.h) */
  bool realloc_moves = !hak_config_is("valgrind") && !hak_config_is("trace");
  for (int k = 0; k < 3; k++) {
    bool old = k > 0, sq = k == 2;
    if (realloc_moves)
      realloc_move_fails(old, sq);
    split_fails(old, sq);
    gather_fails(old, sq, true);
    gather_fails(old, sq, false);
  }
  return hak_test_done();
}
