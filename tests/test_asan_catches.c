/* In the asan configuration hakmem poisons free blocks, the slack between the
 * requested and the block size, and unused page memory; hak_usable_size(p)
 * unpoisons the whole usable size. This checks the shadow state directly and
 * that real misuse in forked children produces an AddressSanitizer report:
 * a write one byte past a hak_malloc(40) block (inside its usable size),
 * writes just past a block whose request fills its usable size and just
 * before one, small (the neighbour live) and large (into its redzone, or
 * the 64 bytes between its header and its start),
 * reads after hak_free (also after another thread's, the remote-free path),
 * writes into never-allocated parts of a page or
 * before an aligned large block (between its header and its start) or
 * a segment's first block (the header slice's unused bytes), or
 * past an aligned block of 0..15 bytes in a large mapping.
 * LeakSanitizer: C library blocks only hakmem blocks point to are no leak,
 * and a large block's root region goes with it (freed or shrunk in place by
 * another thread). A control child that uses blocks correctly must exit 0
 * with no report. */
#include "hak_test_internal.h"

#if defined(HAK_ASAN) && HAK_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>

#define MiB ((size_t)1 << 20)

static int poisoned(const void *p) {
  return __asan_address_is_poisoned(p);
}

/* First byte in [p+from, p+to) whose poisoning differs from `want`, or SIZE_MAX. */
static size_t first_not(const unsigned char *p, size_t from, size_t to, int want) {
  for (size_t i = from; i < to; i++) {
    if (!!poisoned(p + i) != want)
      return i;
  }
  return SIZE_MAX;
}

#define CHECK_RANGE(p, from, to, want, what)                                                       \
  CHECK_MSG(first_not((p), (from), (to), (want)) == SIZE_MAX,                                      \
            "%s: byte %zu of block %p is %spoisoned", (what),                                      \
            first_not((p), (from), (to), (want)), (void *)(p), (want) ? "not " : "")

/* Every block is sized for its request and a 16-byte redzone (track.h):
 * malloc(40) takes a 64-byte block, of which 48 bytes are usable, the last
 * 16 poisoned while it is live, whatever hak_usable_size exposes. */
static void test_shadow(void) {
  unsigned char *p = hak_malloc(40);
  REQUIRE(p != NULL);
  CHECK_RANGE(p, 0, 40, 0, "hak_malloc(40) requested bytes");
  CHECK_RANGE(p, 40, 48, 1, "hak_malloc(40) slack");
  CHECK_RANGE(p, 48, 64, 1, "hak_malloc(40) redzone");
  CHECK_EQ(hak_usable_size(p), 48);
  CHECK_RANGE(p, 0, 48, 0, "hak_malloc(40) after usable_size");
  CHECK_RANGE(p, 48, 64, 1, "hak_malloc(40) redzone after usable_size");
  hak_free(p);
  CHECK_RANGE(p, 0, 64, 1, "freed 64-byte block");

  unsigned char *q = hak_malloc(41);
  REQUIRE(q != NULL);
  CHECK_RANGE(q, 0, 41, 0, "hak_malloc(41) requested bytes");
  CHECK_RANGE(q, 41, 64, 1, "hak_malloc(41) slack and redzone");
  hak_free(q);

  /* a request that fills the usable size: the redzone right after it */
  unsigned char *e = hak_malloc(48);
  REQUIRE(e != NULL);
  CHECK_RANGE(e, 0, 48, 0, "hak_malloc(48) requested bytes");
  CHECK_RANGE(e, 48, 64, 1, "hak_malloc(48) redzone");
  CHECK_EQ(hak_usable_size(e), 48);
  CHECK_RANGE(e, 48, 64, 1, "hak_malloc(48) redzone after usable_size");
  hak_free(e);
  /* malloc(0): 16 usable bytes, as in the other builds */
  unsigned char *o = hak_malloc(0);
  REQUIRE(o != NULL);
  CHECK_RANGE(o, 0, 32, 1, "hak_malloc(0) slack and redzone");
  CHECK_EQ(hak_usable_size(o), 16);
  CHECK_RANGE(o, 16, 32, 1, "hak_malloc(0) redzone after usable_size");
  hak_free(o);

  /* realloc shrinking in place: the bytes it gives up become slack again
   * (found by the mutant asan-slack-not-poisoned, which no check killed) */
  unsigned char *s = hak_malloc(48);
  REQUIRE(s != NULL);
  unsigned char *t = hak_realloc(s, 30);
  REQUIRE(t == s); /* 30 > 48 / 2: stays in place */
  CHECK_RANGE(t, 0, 30, 0, "realloc(48 -> 30) kept bytes");
  CHECK_RANGE(t, 30, 64, 1, "realloc(48 -> 30) given-up bytes and redzone");
  hak_free(t);

  unsigned char *z = hak_calloc(3, 30);
  REQUIRE(z != NULL);
  CHECK_RANGE(z, 0, 90, 0, "calloc(3, 30)");
  CHECK_RANGE(z, 90, 112, 1, "calloc(3, 30) slack and redzone"); /* a 112-byte block */
  unsigned char *r = hak_realloc(z, 500);
  REQUIRE(r != NULL);
  CHECK_RANGE(r, 0, 500, 0, "realloc(90 -> 500)");
  CHECK_RANGE(r, 500, 576, 1, "realloc(90 -> 500) slack and redzone"); /* a 576-byte block */
  if (r != z)
    CHECK_RANGE(z, 0, 112, 1, "block freed by realloc");
  hak_free(r);

  unsigned char *a = hak_aligned_alloc(256, 100);
  REQUIRE(a != NULL);
  CHECK_RANGE(a, 0, 100, 0, "aligned_alloc(256, 100)");
  hak_free(a);

  /* An aligned block of 0..15 bytes served by a large mapping (an
   * alignment above 64 KiB): like a small block of those sizes, only the
   * requested bytes are addressable. Until 2026-11-28 the 16 bytes the
   * request was rounded up to were, on a new mapping and on a cached one
   * (a write past aligned_alloc(256 KiB, 1) went unreported). */
  hak_trim(0);
  for (int again = 0; again < 2; again++) { /* a new mapping, then the same one from the cache */
    for (size_t n = 0; n < 16; n += 15) {
      unsigned char *ta = hak_aligned_alloc(262144, n);
      REQUIRE(ta != NULL);
      CHECK_RANGE(ta, 0, n, 0, "aligned_alloc(256 KiB, n) requested bytes");
      CHECK_RANGE(ta, n, 4096, 1, "aligned_alloc(256 KiB, n) slack and redzone");
      CHECK_EQ(hak_usable_size(ta), 4096 - 16);
      CHECK_RANGE(ta, 0, 4096 - 16, 0, "aligned_alloc(256 KiB, n) after usable_size");
      CHECK_RANGE(ta, 4096 - 16, 4096, 1, "aligned_alloc(256 KiB, n) redzone after usable_size");
      hak_free(ta);
    }
  }

  unsigned char *l = hak_malloc(100000);
  REQUIRE(l != NULL);
  CHECK_RANGE(l, 0, 100000, 0, "hak_malloc(100000)");
  size_t lu = hak_usable_size(l);
  CHECK_RANGE(l, 0, lu, 0, "hak_malloc(100000) after usable_size");
  CHECK_RANGE(l, lu, lu + 16, 1, "hak_malloc(100000) redzone after usable_size");
  CHECK_EQ((uintptr_t)(l + lu + 16) & 4095, 0); /* the redzone ends the block's last page */
  CHECK_RANGE(l - 64, 0, 64, 1, "the 64 bytes before a large block"); /* after its header */
  hak_free(l);
  /* a large realloc shrinking by less than SPLIT_MIN keeps the tail of its
   * mapping as room: the bytes it gives up, tail included, are poisoned */
  unsigned char *lb = hak_malloc(300000);
  REQUIRE(lb != NULL);
  size_t lbu = hak_usable_size(lb);
  unsigned char *ls = hak_realloc(lb, 200000);
  REQUIRE(ls == lb);
  size_t lsu = hak_usable_size(ls);
  /* the rounded request: 200000, its 16-byte redzone and the 128 bytes
   * before the block (the 64 B header, 64 poisoned), in pages */
  CHECK_EQ(lsu, 200704 - 128 - 16);
  CHECK_RANGE(ls, 0, 200000, 0, "realloc(300000 -> 200000) kept bytes");
  CHECK_RANGE(ls, lsu, lbu, 1, "realloc(300000 -> 200000) kept tail of the mapping");
  unsigned char *lg = hak_realloc(ls, 290000); /* grows back into the room */
  REQUIRE(lg == ls);
  CHECK_RANGE(lg, 0, 290000, 0, "realloc(200000 -> 290000) in the kept room");
  hak_free(lg);

  /* The program's own poisoning inside its block (an arena's free chunk):
   * realloc copies every requested byte, poisoned or not, as ASan's own
   * allocator does, and usable_size exposes only the slack. Until
   * 2026-11-28 the requested size was taken for the first poisoned byte:
   * realloc copied 16 of 100 bytes and usable_size unpoisoned the chunk. */
  unsigned char *u = hak_malloc(100);
  REQUIRE(u != NULL);
  for (int i = 0; i < 100; i++)
    u[i] = (unsigned char)(i + 1);
  ASAN_POISON_MEMORY_REGION(u + 16, 16);
  unsigned char *v = hak_realloc(u, 3000);
  REQUIRE(v != NULL && v != u);
  CHECK_RANGE(v, 0, 3000, 0, "realloc(100 -> 3000) of a block with a poisoned chunk");
  size_t lost = 0;
  for (int i = 0; i < 100; i++)
    lost += v[i] != (unsigned char)(i + 1) && (i < 16 || i >= 32);
  CHECK_MSG(lost == 0, "realloc lost %zu of the 84 bytes around the program's poisoned chunk",
            lost);
  ASAN_POISON_MEMORY_REGION(v + 10, 20);
  unsigned char *w = hak_realloc(v, 20); /* shrinks into the chunk: copies 20 bytes, no report */
  REQUIRE(w != NULL);
  CHECK(w[0] == 1 && w[9] == 10);
  hak_free(w);
  unsigned char *x = hak_malloc(100);
  REQUIRE(x != NULL);
  ASAN_POISON_MEMORY_REGION(x + 16, 16);
  CHECK_EQ(hak_usable_size(x), 112);
  CHECK_RANGE(x, 16, 32, 1, "the program's poisoned chunk after usable_size");
  CHECK_RANGE(x, 32, 112, 0, "hak_malloc(100) after usable_size, past the program's chunk");
  CHECK_RANGE(x, 112, 128, 1, "hak_malloc(100) redzone after usable_size");
  hak_free(x);
  CHECK(hak_heap_check() == 0);
}

/* ---- children: misuse that must be reported --------------------------------------- */

static void write_past_requested(void *arg) {
  volatile unsigned char *p = hak_malloc(40);
  p[40] = 1; /* inside the 48-byte block, past the 40 requested bytes */
  hak_free((void *)p);
}

static void read_after_free(void *arg) {
  size_t off = (size_t)(uintptr_t)arg;
  volatile unsigned char *p = hak_malloc(100);
  p[off] = 7;
  hak_free((void *)p);
  hak_test_log("read back %d\n", p[off]);
}

/* freed by a thread that does not own it (the remote-free path) */
static void read_after_remote_free(void *arg) {
  volatile unsigned char *p = hak_malloc(100);
  p[50] = 7;
  void *blocks[1] = {(void *)p};
  hak_free_remotely(blocks, 1);
  hak_test_log("read back %d\n", p[50]);
}

static void read_after_free_large(void *arg) {
  volatile unsigned char *p = hak_malloc(200000);
  p[12345] = 7;
  hak_free((void *)p);
  /* The mapping may be gone (SEGV) or kept and poisoned (use-after-poison);
   * either way ASan must report. */
  hak_test_log("read back %d\n", p[12345]);
}

/* one byte past an aligned block of 1 byte that a large mapping serves */
static void write_past_tiny_aligned(void *arg) {
  volatile unsigned char *p = hak_aligned_alloc(262144, 1);
  p[1] = 1;
  hak_free((void *)p);
}

static void write_never_allocated(void *arg) {
  size_t off = (size_t)(uintptr_t)arg;
  /* 224 (200, its redzone) is a class nothing else in this program uses:
   * the page is fresh. */
  volatile unsigned char *p = hak_malloc(200);
  p[off] = 1;
  hak_free((void *)p);
}

/* Redzones (track.h): a block is sized for its request and 16 bytes more,
 * never the program's, so a write just past a request that fills the
 * block's usable size, or just before a block, is reported even where the
 * neighbour is live. Until 2026-11-29 hakmem's blocks had none: malloc(48)
 * took a 48-byte block, and p[48] was the next block's first byte. The
 * two neighbours: hak_test_closest_pair (hak_test.h). */

/* one byte past malloc(48), the block after it live */
static void write_past_exact(void *arg) {
  unsigned char *blocks[HAK_TEST_NEIGHBOURS], *lo, *hi;
  hak_test_closest_pair(blocks, &lo, &hi);
  ((volatile unsigned char *)lo)[48] = 0;
  hak_test_log("no report: %p [48] written, next block %p\n", (void *)lo, (void *)hi);
}

/* one byte before malloc(48), the block before it live */
static void write_before_small(void *arg) {
  unsigned char *blocks[HAK_TEST_NEIGHBOURS], *lo, *hi;
  hak_test_closest_pair(blocks, &lo, &hi);
  ((volatile unsigned char *)hi)[-1] = 0;
  hak_test_log("no report: %p [-1] written, previous block %p\n", (void *)hi, (void *)lo);
}

/* One byte past a large block whose request ends at a page's end (a
 * 4 MiB boundary), a live large block's range right after it: both placed
 * in the zone (os.c) by hand, the neighbour first. Without a redzone the
 * byte was the neighbour's header's first (addressable: no report); with
 * one, the block needs a page more, and its range goes elsewhere. */
static void write_past_page_end(void *arg) {
  size_t n;
  unsigned char *c;
  volatile unsigned char *b = hak_large_at_boundary(&n, &c);
  b[n] = 0;
  hak_test_log("no report: %p [%zu] written, next block %p\n", (void *)b, n, (void *)c);
}

/* one byte before a large block (malloc's alignment): its header was there */
static void write_before_large(void *arg) {
  volatile unsigned char *p = hak_malloc(200000);
  REQUIRE(p != NULL);
  p[-1] = 0;
  hak_test_log("no report: %p [-1] written\n", (void *)p);
  hak_free((void *)p);
}

/* A page's first block whose page is its segment's first: before it lies
 * the segment header's slice (64 KiB), of which the header uses the
 * first 9 KiB. The rest was addressable until 2026-11-29: a write one
 * byte before the first block of every segment (the process's first
 * malloc among them) went unreported, redzones or not. A live block of
 * the last class (one per slice) that starts right after the header. */
static unsigned char *segment_first_block(void) {
  for (int i = 0; i < 4096; i++) {
    unsigned char *p = hak_malloc(HAK_SMALL_MAX - hak_test_redzone());
    REQUIRE(p != NULL);
    if (((uintptr_t)p & (SEGMENT_SIZE - 1)) == SLICE_SIZE)
      return p;
  }
  REQUIRE(!"no block at its segment's first slice");
  return NULL;
}

static void write_before_segment_first(void *arg) {
  volatile unsigned char *p = segment_first_block();
  p[-1] = 0;
  hak_test_log("no report: %p [-1] written (the segment header's slice)\n", (void *)p);
}

/* A block taken whole from a cached mapping that is bigger than it: the
 * mapping's excess (kept as the block's room) must be poisoned like
 * realloc's kept tail, also when the mapping was cut off another one
 * (a 5 MiB mapping cut for 3.2 MiB: the rest, 1.8 MiB, is cached on its
 * own and then serves 1.5 MiB whole). */
static void write_cached_excess(void *arg) {
  unsigned char *a = hak_malloc(5 * MiB);
  memset(a, 1, 5 * MiB);
  hak_free(a);
  unsigned char *b = hak_malloc(3 * MiB + 200 * 1024);
  volatile unsigned char *c = hak_malloc(1536 * 1024);
  size_t u = hak_usable_size((void *)c);
  hak_test_log("block %p usable %zu, %p\n", (void *)c, u, (void *)b);
  c[u + 100 * 1024] = 7;
  hak_free((void *)c);
  hak_free(b);
}

/* A large block realloc shrinks in place: the bytes cut off are poisoned
 * again (only a growing realloc used to update the shadow). */
static void write_past_shrunk(void *arg) {
  unsigned char *p = hak_malloc(MiB);
  volatile unsigned char *q = hak_realloc(p, MiB - 8000);
  hak_test_log("shrunk in place: %d\n", (void *)q == (void *)p);
  q[MiB - 8000 + 10] = 1;
  hak_free((void *)q);
}

/* An aligned large block starts `alignment` bytes (a page for 4 MiB and
 * more) into its mapping, after its 64-byte header: the bytes between are
 * no block's, poisoned like a page's never-used memory (they were not). */
static void write_aligned_padding(void *arg) {
  size_t alignment = (size_t)(uintptr_t)arg;
  hak_trim(0); /* no cached mapping: a new one (a cached one's may be poisoned by its last free) */
  volatile unsigned char *p = hak_aligned_alloc(alignment, 100000);
  p[-100] = 1;
  hak_free((void *)p);
}

/* LeakSanitizer: C library blocks (ASan's allocator) reachable only
 * through hakmem blocks are not leaks. LSan scans its own blocks, globals,
 * stacks and TLS, not hakmem's mmap'd memory, unless hakmem registers it
 * as root regions (before 2026-11-28 it did not: "Direct leak of 200
 * byte(s) in 10 object(s) allocated from: strdup"). A real leak beside
 * them is still found (the check works in this child). */
struct libc_ref {
  char *name;
  struct libc_ref *next;
};
static struct libc_ref *libc_refs;
static char *volatile lost_name;

static void libc_blocks_in_hakmem(void *arg) {
  for (int i = 0; i < 40; i++) {
    /* small blocks, a large one, an aligned large one */
    struct libc_ref *n = i == 10   ? hak_malloc(200000)
                         : i == 20 ? hak_aligned_alloc(65536, 100000)
                                   : hak_malloc(sizeof *n);
    n->name = strdup("a name from the C library's malloc");
    n->next = libc_refs;
    libc_refs = n;
  }
  /* a large block realloc grows in place and one it moves (by mremap) */
  struct libc_ref *g = hak_malloc(300000);
  g->name = strdup("in a grown large block");
  g = hak_realloc(g, 600000);
  g->next = libc_refs;
  libc_refs = g;
  struct libc_ref *m = hak_malloc(300000);
  m->name = strdup("in a moved large block");
  unsigned char *in_the_way = hak_malloc(100000);
  m = hak_realloc(m, 80 * MiB);
  m->next = libc_refs;
  libc_refs = m;
  hak_free(hak_malloc(400000)); /* a free and an unmapping keep the rest registered */
  hak_trim(0);
  CHECK_MSG(__lsan_do_recoverable_leak_check() == 0,
            "LeakSanitizer reported C library blocks only hakmem blocks point to");
  if (arg) {
    lost_name = strdup("really lost");
    lost_name = NULL;
    CHECK_MSG(__lsan_do_recoverable_leak_check() != 0,
              "LeakSanitizer did not find a real leak (the check does not work here)");
  }
  hak_free(in_the_way);
}

/* LeakSanitizer, the other way: a large block's root region goes with
 * the block, by whichever thread frees or resizes it. A region left
 * registered outlives the mapping: LSan skips poisoned words, but the
 * range, once unmapped (its shadow cleared), is scanned wherever the
 * program maps memory there later, and the leaks only that memory points
 * to go unreported. Both a free into the cache and a realloc shrinking the
 * block in place (old region replaced) are done by a thread that did not
 * allocate the block. */
static void *realloc_job(void *arg) {
  return hak_realloc(arg, 200000);
}

__attribute__((noinline)) static void put_libc_name(struct libc_ref *r) {
  r->name = strdup("only the program's own mapping points here");
}

static void libc_block_where_large_was(void *arg) {
  struct libc_ref *r = hak_malloc(300000);
  REQUIRE(r != NULL);
  if (arg) {
    pthread_t t;
    void *q = NULL;
    REQUIRE(pthread_create(&t, NULL, realloc_job, r) == 0);
    pthread_join(t, &q);
    REQUIRE(q == r); /* 300000 -> 200000: in place, the tail kept as room */
  }
  void *blocks[1] = {r};
  hak_free_remotely(blocks, 1); /* into the cache */
  hak_trim(0);                  /* the cached mapping unmapped */
  uintptr_t page = (uintptr_t)r & ~(uintptr_t)4095;
  struct libc_ref *own = hak_map_at((void *)page, 65536, PROT_READ | PROT_WRITE);
  REQUIRE(own != NULL);
  own = (struct libc_ref *)((char *)own + ((uintptr_t)r - page));
  put_libc_name(own);
  own = NULL;
  CHECK_MSG(__lsan_do_recoverable_leak_check() != 0,
            "LeakSanitizer did not report a C library block only the program's own mapping "
            "points to, made where a large block %swas freed: its root region is still "
            "registered",
            arg ? "shrunk in place by another thread " : "");
}

static void correct_use(void *arg) {
  unsigned char *p = hak_malloc(40);
  memset(p, 1, 40);
  size_t u = hak_usable_size(p);
  memset(p, 2, u); /* allowed after usable_size */
  p = hak_realloc(p, 3000);
  memset(p, 3, 3000);
  unsigned char *c = hak_calloc(100, 3);
  for (int i = 0; i < 300; i++)
    CHECK(c[i] == 0);
  unsigned char *al = hak_aligned_alloc(4096, 5000);
  memset(al, 4, 5000);
  unsigned char *big = hak_malloc(3 * MiB);
  memset(big, 5, 3 * MiB);
  big = hak_realloc(big, 5 * MiB);
  memset(big, 6, 5 * MiB);
  hak_free(big);
  hak_free(al);
  hak_free(c);
  hak_free(p);
  void *many[1000];
  for (int i = 0; i < 1000; i++) {
    many[i] = hak_malloc((size_t)i * 13);
    memset(many[i], i, (size_t)i * 13);
  }
  for (int i = 0; i < 1000; i++)
    hak_free(many[i]);
  CHECK(hak_heap_check() == 0);
}

/* only_leak(out, summary): out holds exactly one LeakSanitizer report,
 * and its summary is "SUMMARY: AddressSanitizer: <summary>." */
static int only_leak(const char *out, const char *summary) {
  char want[128];
  snprintf(want, sizeof want, "SUMMARY: AddressSanitizer: %s.", summary);
  const char *first = out ? strstr(out, "ERROR: LeakSanitizer") : NULL;
  return first && !strstr(first + 1, "ERROR: LeakSanitizer") && strstr(out, want);
}

static void expect_report(void (*fn)(void *), void *arg, const char *name, const char *kind,
                          const char *access) {
  struct hak_child c;
  REQUIRE(hak_run_child(fn, arg, 120, &c));
  char how[128];
  CHECK_MSG(!hak_child_exited(&c, 0) && !c.timed_out, "%s: child %s without a report", name,
            hak_child_describe(&c, how, sizeof how));
  CHECK_MSG(c.out && strstr(c.out, "AddressSanitizer") && strstr(c.out, kind) &&
                (!access || strstr(c.out, access)),
            "%s: expected an AddressSanitizer %s report (%s); child %s, stderr:\n---\n%s---", name,
            kind, access ? access : "", hak_child_describe(&c, how, sizeof how),
            c.out ? c.out : "");
  hak_child_free(&c);
}

int main(void) {
  if (!hak_config_is("asan"))
    hak_test_skip("built with HAK_ASAN but config is %s", hak_config());
  test_shadow();
  expect_report(write_past_requested, NULL, "write past requested size", "use-after-poison",
                "WRITE of size 1");
  expect_report(write_past_tiny_aligned, NULL, "write past aligned_alloc(256 KiB, 1)",
                "use-after-poison", "WRITE of size 1");
  expect_report(read_after_free, (void *)0, "read after free (offset 0)", "use-after-poison",
                "READ of size 1");
  expect_report(read_after_free, (void *)50, "read after free (offset 50)", "use-after-poison",
                "READ of size 1");
  expect_report(read_after_remote_free, NULL, "read after a free by another thread",
                "use-after-poison", "READ of size 1");
  expect_report(read_after_free_large, NULL, "read after free of a large block", "ERROR: Address",
                "READ");
  expect_report(write_never_allocated, (void *)(208 * 5 + 3), "write to a carved, never used block",
                "use-after-poison", "WRITE of size 1");
  expect_report(write_never_allocated, (void *)20000, "write to never-carved page memory",
                "use-after-poison", "WRITE of size 1");
  expect_report(write_cached_excess, NULL, "write into a cached mapping's excess",
                "use-after-poison", "WRITE of size 1");
  expect_report(write_past_shrunk, NULL, "write past a large block shrunk in place",
                "use-after-poison", "WRITE of size 1");

  expect_report(write_past_exact, NULL, "write past malloc(48), the next block live",
                "use-after-poison", "WRITE of size 1");
  expect_report(write_before_small, NULL, "write before malloc(48), the previous block live",
                "use-after-poison", "WRITE of size 1");
  expect_report(write_past_page_end, NULL,
                "write past a large block ending at a page's end, the next range live",
                "use-after-poison", "WRITE of size 1");
  expect_report(write_before_large, NULL, "write before a large block", "use-after-poison",
                "WRITE of size 1");
  expect_report(write_before_segment_first, NULL,
                "write before a segment's first block (the header's slice)", "use-after-poison",
                "WRITE of size 1");

  expect_report(write_aligned_padding, (void *)(uintptr_t)65536,
                "write before a 64 KiB-aligned large block", "use-after-poison", "WRITE of size 1");
  expect_report(write_aligned_padding, (void *)(uintptr_t)(4 * MiB),
                "write before a 4 MiB-aligned block", "use-after-poison", "WRITE of size 1");

  struct hak_child c;
  REQUIRE(hak_run_child(libc_blocks_in_hakmem, NULL, 120, &c));
  char lhow[128];
  CHECK_MSG(hak_child_exited(&c, 0) && !strstr(c.out, "LeakSanitizer"),
            "libc blocks in hakmem blocks: child %s, stderr:\n%s",
            hak_child_describe(&c, lhow, sizeof lhow), c.out);
  hak_child_free(&c);
  /* the report names that leak and nothing else: any other report (the
   * blocks above among them) would otherwise pass for it */
  REQUIRE(hak_run_child(libc_blocks_in_hakmem, (void *)1, 120, &c));
  CHECK_MSG(hak_child_exited(&c, 0) && only_leak(c.out, "12 byte(s) leaked in 1 allocation(s)"),
            "a real leak beside them (strdup(\"really lost\"), 12 bytes, alone): child %s, "
            "stderr:\n%s",
            hak_child_describe(&c, lhow, sizeof lhow), c.out);
  hak_child_free(&c);

  for (uintptr_t shrunk = 0; shrunk < 2; shrunk++) {
    REQUIRE(hak_run_child(libc_block_where_large_was, (void *)shrunk, 120, &c));
    CHECK_MSG(hak_child_exited(&c, 0) && only_leak(c.out, "43 byte(s) leaked in 1 allocation(s)"),
              "libc block where a large block %s (put_libc_name's 43 bytes, alone): child %s, "
              "stderr:\n%s",
              shrunk ? "shrunk in place was" : "was", hak_child_describe(&c, lhow, sizeof lhow),
              c.out);
    hak_child_free(&c);
  }

  REQUIRE(hak_run_child(correct_use, NULL, 120, &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "correct use: child %s, stderr:\n%s",
            hak_child_describe(&c, how, sizeof how), c.out);
  CHECK_NOT_CONTAINS(c.out, "AddressSanitizer");
  hak_child_free(&c);
  return hak_test_done();
}

#else

int main(void) {
  hak_test_skip("needs the asan configuration (this is %s)", hak_config());
}

#endif
