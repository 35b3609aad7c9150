/* A remote free that lands between the owner's last collect of a page and
 * the page's notify request.
 *
 * When the malloc slow path finds a page with nothing free and nothing left
 * to carve, it moves the page to the full list and asks to be told about
 * remote frees (TF_NOTIFY: the next one hands its block to the heap instead
 * of pushing it). A remote free between the collect that found nothing and
 * that request pushes onto the page's stack, where the owner never looks
 * while the page is in the full list; page_find_free looks once more after
 * the request and takes such a page back. The window is a few
 * instructions, so the free is put there on cue: the slow path calls the
 * test hook (hak_test_hook, HAK_HOOK_PAGE_FULL) at that point, and the hook
 * has a second thread free a block of the page.
 *
 * Checked: the malloc that moved the page returns the block freed in the
 * window (the page went back to the front of its queue), the class took no
 * new page, and hak_heap_check finds nothing; without the second look the
 * block waits on the stack of a page in the full list, which
 * hak_heap_check names ("remote frees stranded"). Then, for the other
 * order, a free after the request: it is handed over to the heap (its
 * delayed list), not pushed. */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"

#define SZ 65536 /* a page of this class holds 8 blocks */

static void *victim;
static hak_page_t *full_page;
static atomic_int hooked;

static void *free_victim(void *arg) {
  (void)arg;
  hak_free(victim);
  return NULL;
}

static void hook(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_PAGE_FULL || arg != full_page || atomic_load(&hooked))
    return;
  atomic_store(&hooked, 1);
  /* another thread's free, finished before the notify request */
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, free_victim, NULL) == 0 && pthread_join(t, NULL) == 0);
  CHECK_MSG(tf_count(atomic_load(&full_page->thread_free)) == 1,
            "the remote free in the window did not push onto the page's stack");
}

static size_t class_pages(size_t cls) {
  struct hak_stats st;
  hak_stats(&st);
  return st.classes[cls].pages;
}

int main(void) {
  size_t cls = hak_size_to_class(SZ);
  void *keep = hak_malloc(100); /* another class: the segment stays in use */
  void *b[8];
  for (int i = 0; i < 8; i++)
    REQUIRE((b[i] = hak_malloc(SZ)) != NULL);
  full_page = ptr_page(ptr_segment_base(b[0]), b[0]);
  REQUIRE(!full_page->in_full && class_pages(cls) == 1);
  victim = b[3];
  hak_test_hook = hook;
  void *r = hak_malloc(SZ); /* the page moves to the full list: the free lands in the window */
  hak_test_hook = NULL;
  CHECK_MSG(atomic_load(&hooked), "the slow path never called the hook for the full page");
  CHECK_MSG(r == victim, "the malloc after a free in the window returned %p, not the freed %p", r,
            victim);
  CHECK_MSG(class_pages(cls) == 1, "the class took a new page (%zu pages)", class_pages(cls));
  CHECK_MSG(!full_page->in_full, "the page with a freed block stayed in the full list");
  CHECK_EQ(hak_heap_check(), 0);
  b[3] = r;

  /* the other order: the page fills again, goes to the full list with its
   * request; a remote free then hands its block over */
  void *c = hak_malloc(SZ); /* the page is full again: this one comes from a new page */
  REQUIRE(c != NULL && full_page->in_full);
  REQUIRE((atomic_load(&full_page->thread_free) & TF_MASK) == TF_NOTIFY);
  victim = b[5];
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, free_victim, NULL) == 0 && pthread_join(t, NULL) == 0);
  CHECK_MSG(tf_count(atomic_load(&full_page->thread_free)) == 0,
            "a remote free into a page that asked to be told pushed onto its stack");
  CHECK_MSG(atomic_load(&hak_tls_heap->delayed) == (uintptr_t)victim,
            "a remote free into a page that asked to be told was not handed to its heap");
  CHECK_EQ(hak_heap_check(), 0);
  b[5] = NULL;

  for (int i = 0; i < 8; i++)
    hak_free(b[i]);
  hak_free(c);
  hak_free(keep);
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
