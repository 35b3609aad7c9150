/* A segment whose only remaining page is the kept empty page of its class
 * must be given back, even when that page still carries the full-page
 * notification bit from its time in the full list (found by review: the
 * stale bit kept such segments mapped for the life of the thread). */
#include "hak_test.h"

#include "internal.h"

/* one page of this class = 8 blocks = 8 slices (the request: 65536 less the redzone,
 * hak_test.h) */
#define SZ (65536 - hak_test_redzone())

int main(void) {
  void *fill[56];
  for (int i = 0; i < 56; i++)
    fill[i] = hak_malloc(SZ);    /* 7 pages: segment S1 nearly full */
  void *small = hak_malloc(100); /* keeps S1 in use */
  void *p[8];
  for (int i = 0; i < 8; i++)
    p[i] = hak_malloc(SZ); /* page P, in segment S2 */
  hak_segment_t *s2 = ptr_segment_base(p[0]);
  REQUIRE(s2 != ptr_segment_base(fill[0]));
  hak_page_t *P = ptr_page(s2, p[0]);
  void *q = hak_malloc(SZ); /* P is full: it goes to the full list with TF_NOTIFY */
  CHECK(P->in_full);
  CHECK_EQ(atomic_load(&P->thread_free) & TF_MASK, TF_NOTIFY);
  for (int i = 0; i < 56; i++)
    hak_free(fill[i]);
  hak_free(p[0]); /* local free: P back to its queue, the NOTIFY bit stays */
  hak_free(q);
  for (int i = 1; i < 8; i++)
    hak_free(p[i]);
  hak_thread_cache_flush(); /* the freed blocks leave the thread's cache:
                               P empty and the only page of its class */
  CHECK_MSG(atomic_load(&s2->owner) == NULL, "segment %p holding only an empty page is still owned",
            (void *)s2);
  CHECK_EQ(hak_heap_check(), 0);
  hak_free(small);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
