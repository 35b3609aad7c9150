/* Size classes: the class table, the size -> class mapping for every size up to
 * HAK_SMALL_MAX + 4096, and real allocations of every size (or, in slow
 * configurations, of every class boundary n-1, n, n+1 plus a stride): 16-byte
 * alignment, usable size == class size, the whole usable size is writable and
 * does not overlap any other live block. And each class's page geometry. */
#include "hak_test.h"

#include "hak_test_internal.h"

#define MAX_SIZE (HAK_SMALL_MAX + 4096)
#define RING 8 /* sizes whose blocks stay live while later sizes are tested */

struct live {
  unsigned char *p[2];
  size_t usable[2];
  unsigned seed[2];
};

static unsigned char ref[MAX_SIZE + 8192 + 256]; /* ref[i] = i & 0xff */
static unsigned char *want_size;                 /* sizes to allocate (1) or skip (0) */

static void check_table(void) {
  size_t n = hak_size_class_count();
  CHECK_EQ(n, HAK_NUM_CLASSES);
  if (n > HAK_NUM_CLASSES)
    n = HAK_NUM_CLASSES;
  size_t prev = 0;
  for (size_t c = 0; c < n; c++) {
    size_t cs = hak_size_class_size(c);
    CHECK_MSG(cs > prev, "class %zu size %zu not above class %zu size %zu", c, cs, c - 1, prev);
    CHECK_MSG(cs % 16 == 0, "class %zu size %zu is not a multiple of 16", c, cs);
    /* Every class is reachable: its own size maps to it. */
    CHECK_MSG(hak_size_to_class(cs) == c, "size %zu maps to class %zu, not %zu", cs,
              hak_size_to_class(cs), c);
    prev = cs;
  }
  CHECK_EQ(hak_size_class_size(0), 16);
  CHECK_EQ(hak_size_class_size(n - 1), HAK_SMALL_MAX);
  /* no class past the last: 0, not a read past the table (until 2026-11-28
   * no test asked, make test-coverage: mutant size-class-size-unbounded) */
  CHECK_EQ(hak_size_class_size(n), 0);
  CHECK_EQ(hak_size_class_size(n + 1000), 0);
  CHECK_EQ(hak_size_class_size((size_t)-1), 0);
}

/* Page geometry (class_slices, README Design): a page of each class, as a
 * block of it is carved from, holds at least PAGE_MIN_BLOCKS blocks, and
 * PAGE_WANT_BLOCKS unless that takes more than PAGE_MAX_SLICES slices, in
 * the fewest slices that do; its first malloc carves EXTEND_BYTES of it
 * (at least one block), not the whole page. A rounding slip in the minimum's slice count
 * (pages of 36 KiB blocks holding 7) passed every test (helper-69's mutant
 * class-slices-min-rounds-down, 2026-11-28). */
static bool geometry_ok(size_t size, size_t slices) {
  size_t blocks = slices * SLICE_SIZE / size;
  return blocks >= PAGE_MIN_BLOCKS && (blocks >= PAGE_WANT_BLOCKS || slices >= PAGE_MAX_SLICES);
}

static void check_geometry(void) {
  for (size_t c = 0; c < HAK_NUM_CLASSES; c++) {
    size_t size = class_size(c);
    void *p = hak_malloc(size);
    REQUIRE(p != NULL);
    hak_page_t *pg = hak_block_page(p);
    size_t n = pg->slice_count;
    CHECK_MSG(n == class_slices(c) && pg->reserved == n * SLICE_SIZE / size,
              "class %zu (%zu B): page of %zu slices, %u blocks; class_slices says %zu", c, size, n,
              pg->reserved, class_slices(c));
    CHECK_MSG(geometry_ok(size, n) && (n == 1 || !geometry_ok(size, n - 1)),
              "class %zu (%zu B): a page of %zu slices holds %zu blocks (want >= %d, and %d "
              "within %d slices, in the fewest slices)",
              c, size, n, n * SLICE_SIZE / size, PAGE_MIN_BLOCKS, PAGE_WANT_BLOCKS,
              PAGE_MAX_SLICES);
    /* a new page is carved EXTEND_BYTES at a time (at least a block): it
     * costs RSS only as it is used */
    size_t step = EXTEND_BYTES / size ? EXTEND_BYTES / size : 1;
    CHECK_MSG(atomic_load(&pg->capacity) == (step < pg->reserved ? step : pg->reserved),
              "class %zu (%zu B): a new page carved %u blocks at its first malloc, not %zu", c,
              size, atomic_load(&pg->capacity), step);
    hak_free(p);
  }
}

/* Every size 0..MAX_SIZE: smallest fitting class, waste bounds, large above SMALL_MAX. */
static void check_mapping(void) {
  size_t n = hak_size_class_count();
  for (size_t size = 0; size <= MAX_SIZE; size++) {
    size_t c = hak_size_to_class(size);
    if (size > HAK_SMALL_MAX) {
      CHECK_MSG(c == (size_t)-1, "size %zu > HAK_SMALL_MAX maps to class %zu", size, c);
      continue;
    }
    if (!CHECK_MSG(c < n, "size %zu maps to class %zu of %zu", size, c, n))
      continue;
    size_t cs = hak_size_class_size(c);
    CHECK_MSG(cs >= size, "size %zu: class %zu holds only %zu", size, c, cs);
    CHECK_MSG(c == 0 || hak_size_class_size(c - 1) < size,
              "size %zu: class %zu (%zu) chosen but class %zu (%zu) fits", size, c, cs, c - 1,
              hak_size_class_size(c - 1));
    if (size == 0) {
      CHECK_MSG(cs == 16, "size 0: class size %zu, expected 16", cs);
    } else if (size <= 128) {
      CHECK_MSG(cs - size < 16, "size %zu: class size %zu wastes %zu >= 16 bytes", size, cs,
                cs - size);
    } else {
      CHECK_MSG((cs - size) * 8 <= size, "size %zu: class size %zu wastes more than 12.5%%", size,
                cs);
    }
  }
}

static void choose_sizes(int all) {
  want_size = calloc(MAX_SIZE + 1, 1);
  REQUIRE(want_size != NULL);
  if (all) {
    memset(want_size, 1, MAX_SIZE + 1);
    return;
  }
  size_t stride = (size_t)(61 * hak_test_slowdown() / 3) | 1;
  for (size_t s = 0; s <= 512; s++)
    want_size[s] = 1;
  for (size_t s = 0; s <= MAX_SIZE; s += stride)
    want_size[s] = 1;
  for (size_t c = 0; c < hak_size_class_count(); c++) {
    size_t cs = hak_size_class_size(c);
    for (size_t s = cs - 1; s <= cs + 1 && s <= MAX_SIZE; s++)
      want_size[s] = 1;
  }
  for (size_t s = HAK_SMALL_MAX - 16; s <= HAK_SMALL_MAX + 16; s++)
    want_size[s] = 1;
  want_size[MAX_SIZE] = 1;
}

static void retire(struct live *l) {
  for (int k = 0; k < 2; k++) {
    if (!l->p[k])
      continue;
    CHECK_MSG(memcmp(l->p[k], ref + l->seed[k], l->usable[k]) == 0,
              "block %p (usable %zu) lost its pattern while other blocks were written", l->p[k],
              l->usable[k]);
    hak_free(l->p[k]);
    l->p[k] = NULL;
  }
}

static void allocate_sizes(void) {
  struct live ring[RING];
  memset(ring, 0, sizeof ring);
  size_t checks = 0, tested = 0;
  for (size_t size = 0; size <= MAX_SIZE; size++) {
    if (!want_size[size])
      continue;
    struct live *l = &ring[tested % RING];
    retire(l);
    tested++;
    size_t c = hak_size_to_class(size);
    for (int k = 0; k < 2; k++) {
      unsigned char *p = hak_malloc(size);
      REQUIRE(p != NULL);
      CHECK_MSG(hak_is_aligned(p, 16), "hak_malloc(%zu) = %p is not 16-byte aligned", size, p);
      size_t u = hak_usable_size(p);
      CHECK_MSG(u >= size, "usable_size(hak_malloc(%zu)) = %zu", size, u);
      if (c != (size_t)-1) {
        CHECK_MSG(u == hak_size_class_size(c), "usable_size(hak_malloc(%zu)) = %zu, class size %zu",
                  size, u, hak_size_class_size(c));
      }
      if (size == 0)
        CHECK_EQ(u, 16);
      l->p[k] = p;
      l->usable[k] = u < MAX_SIZE + 8192 ? u : MAX_SIZE + 8192; /* what `ref` can cover */
      l->seed[k] = (unsigned)((size * 2 + (size_t)k) * 37 % 256);
      memcpy(p, ref + l->seed[k], u);
    }
    if (!CHECK_MSG(l->p[0] != l->p[1], "hak_malloc(%zu) returned %p twice", size, l->p[0])) {
      l->p[1] = NULL;
      continue;
    }
    /* No two live blocks overlap: check the new pair against each other and the ring. */
    for (int k = 0; k < 2; k++) {
      for (size_t r = 0; r < RING; r++) {
        for (int j = 0; j < 2; j++) {
          const struct live *o = &ring[r];
          if (!o->p[j] || (o == l && j == k))
            continue;
          int disjoint = l->p[k] + l->usable[k] <= o->p[j] || o->p[j] + o->usable[j] <= l->p[k];
          CHECK_MSG(disjoint, "block %p+%zu (size %zu) overlaps block %p+%zu", l->p[k],
                    l->usable[k], size, o->p[j], o->usable[j]);
        }
      }
    }
    /* Writing one block's whole usable size must not touch the other. */
    for (int k = 0; k < 2; k++) {
      CHECK_MSG(memcmp(l->p[k], ref + l->seed[k], l->usable[k]) == 0,
                "hak_malloc(%zu) block %p: pattern over its %zu usable bytes was clobbered", size,
                l->p[k], l->usable[k]);
    }
    if (++checks % 8192 == 0)
      CHECK_EQ(hak_heap_check(), 0);
    if (hak_test_failures() > HAK_TEST_MAX_REPORTS)
      break;
  }
  for (size_t r = 0; r < RING; r++)
    retire(&ring[r]);
  CHECK_EQ(hak_heap_check(), 0);
  printf("allocated and wrote %zu sizes (2 blocks each)\n", tested);
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
  for (size_t i = 0; i < sizeof ref; i++)
    ref[i] = (unsigned char)i;
  check_table();
  check_mapping();
  check_geometry();
  double slow = hak_test_slowdown();
  choose_sizes(slow <= 2 && hak_test_scale() >= 1);
  allocate_sizes();
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.large_blocks, 0);
  free(want_size);
  return hak_test_done();
}
