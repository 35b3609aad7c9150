/* The remote-free stack carries its length: page->thread_free holds the top
 * block and how many blocks the stack holds, so the owner takes the stack
 * without walking it (the walk was a chain of cache misses on lines the
 * freeing threads wrote). Checked here:
 *   - remote frees count up; the top is the last block freed;
 *   - page_collect with an empty local list takes the stack as it is, and
 *     with a non-empty one appends that list behind the stack's tail;
 *   - hak_heap_check reports a count that differs from the list;
 *   - page_collect dies with a named error on a count that exceeds the
 *     page's live blocks, and on one that differs from the list it walks. */
#include "hak_test.h"

#include "hak_test_internal.h"

/* The local list of P starts with `want` (n blocks), then `rest`. */
static void check_list_head(hak_page_t *P, void **want, int n, hak_block_t *rest) {
  hak_block_t *b = P->free;
  for (int i = 0; i < n; i++) {
    CHECK_MSG(b == want[i], "local list entry %d is %p, expected %p", i, (void *)b, want[i]);
    if (!b)
      return;
    b = block_next(b);
  }
  CHECK_MSG(b == rest, "after the collected blocks the list goes on at %p, expected %p", (void *)b,
            (void *)rest);
}

/* 48 B blocks: the page's local list still holds carved blocks. */
static void test_append(void) {
  void *a[8];
  for (int i = 0; i < 8; i++)
    a[i] = hak_malloc(48);
  hak_page_t *P = hak_block_page(a[0]);
  for (int i = 1; i < 8; i++)
    REQUIRE(hak_block_page(a[i]) == P);
  REQUIRE(P->free != NULL);
  uint32_t used = P->used;
  hak_free_remotely(a, 4);
  uintptr_t tf = atomic_load(&P->thread_free);
  CHECK_EQ(tf_count(tf), 4);
  CHECK_PTR_EQ(tf_block(tf), a[3]);
  CHECK_EQ(tf & TF_MASK, TF_NONE);
  CHECK_EQ(hak_heap_check(), 0);
  hak_block_t *local = P->free;
  CHECK_EQ(page_collect(P), 4);
  void *order[4] = {a[3], a[2], a[1], a[0]};
  check_list_head(P, order, 4, local);
  CHECK_EQ(P->used, used - 4);
  CHECK_EQ(atomic_load(&P->thread_free), TF_NONE);
  CHECK_EQ(page_collect(P), 0);
  CHECK_EQ(hak_heap_check(), 0);
  for (int i = 4; i < 8; i++)
    hak_free(a[i]);
}

/* 64 KiB blocks: 8 to a page, carved one at a time, so after 8 mallocs the
 * local list is empty and the collected stack becomes the list unwalked. */
/* the last class (the request: 65536 less the redzone, hak_test.h) */
#define BIG (65536 - hak_test_redzone())
static void test_take(void) {
  void *b[8];
  for (int i = 0; i < 8; i++)
    b[i] = hak_malloc(BIG);
  hak_page_t *P = hak_block_page(b[0]);
  for (int i = 1; i < 8; i++)
    REQUIRE(hak_block_page(b[i]) == P);
  REQUIRE(P->free == NULL && !P->in_full);
  hak_free_remotely(b, 3);
  CHECK_EQ(tf_count(atomic_load(&P->thread_free)), 3);
  CHECK_EQ(hak_heap_check(), 0);
  CHECK_EQ(page_collect(P), 3);
  void *order[3] = {b[2], b[1], b[0]};
  check_list_head(P, order, 3, NULL);
  CHECK_EQ(P->used, 5);
  CHECK_EQ(hak_heap_check(), 0);
  /* the next mallocs hand them out, last freed first */
  for (int i = 2; i >= 0; i--) {
    void *p = hak_malloc(BIG);
    CHECK_PTR_EQ(p, b[i]);
    b[i] = p;
  }
  for (int i = 0; i < 8; i++)
    hak_free(b[i]);
}

/* Children: a page with `nremote` blocks on its remote stack and blocks
 * left on its local list, then its count moved by `delta`. */
static hak_page_t *corrupt_count(int nremote, long delta) {
  void *a[4];
  for (int i = 0; i < 4; i++)
    a[i] = hak_malloc(48);
  hak_page_t *P = hak_block_page(a[0]);
  if (P->free == NULL || hak_block_page(a[nremote - 1]) != P)
    _exit(5);
  hak_free_remotely(a, nremote);
  if (delta >= 0)
    atomic_fetch_add(&P->thread_free, TF_COUNT_ONE * (uintptr_t)delta);
  else
    atomic_fetch_sub(&P->thread_free, TF_COUNT_ONE * (uintptr_t)-delta);
  return P;
}

static void collect_count_too_big(void *arg) {
  page_collect(corrupt_count(1, 1000));
}

static void collect_count_short(void *arg) {
  page_collect(corrupt_count(3, -1));
}

static void check_count_short(void *arg) {
  corrupt_count(3, -1);
  size_t v = hak_heap_check();
  _exit(v > 0 ? 0 : 1);
}

static void test_corrupt(void) {
  EXPECT_ABORT(collect_count_too_big, NULL,
               "remote free count does not match the page's live blocks");
  EXPECT_ABORT(collect_count_short, NULL, "remote free list length differs from its count");
  struct hak_child c;
  REQUIRE(hak_run_child(check_count_short, NULL, 60, &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "hak_heap_check of a short count: %s; output: %.400s",
            hak_child_describe(&c, how, sizeof how), c.out ? c.out : "");
  CHECK_CONTAINS(c.out ? c.out : "", "remote free list length differs from its count");
  hak_child_free(&c);
}

int main(void) {
  RUN_SECTION(test_append);
  RUN_SECTION(test_take);
  RUN_SECTION(test_corrupt);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
