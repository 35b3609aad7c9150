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
 * delayed list), not pushed.
 *
 * Last, a notify request made while a remote free is still in its
 * hand-over of a block of the page (TF_NOTIFYING: it took the previous
 * request and will reset the state to none once its block is on the
 * heap's delayed list). page_set_notify must wait for the reset: taken for
 * a request already made, the request is lost with it, and a hand-over
 * whose block the owner drained before the reset leaves the page in the
 * full list asking nothing, its later remote frees stranded on its stack.
 * A thread O fills a page P (its request set), a thread R frees a block of
 * P and is held at HAK_HOOK_NOTIFYING; O frees a block of P locally (P
 * back in the queue), takes it again, and its next malloc moves P to the
 * full list and asks again, which must wait until R is let go (100 ms
 * later). Checked: that malloc did not return while R was held, P's
 * request stands once both are done, and a remote free into P then is
 * handed over, not pushed (with the request taken as made: the malloc
 * returned at once, P asked nothing, and the free went onto its stack).
 *
 * And an owner that exits while a hand-over of its full page is held
 * there: the exit withdraws the request, waits for the hand-over to end
 * (page_clear_notify) and only then drains the delayed list. Checked: the
 * exit did not end while the hand-over was held (100 ms), and once every
 * block is freed nothing is live and no segment is abandoned (drained
 * before the wait, mutant abandon-drains-before-notify-cleared, or not at
 * all, thread-exit-drops-delayed, the handed-over block was lost: counted
 * live for ever, its segment abandoned). test_rt_spin_wait's notify section
 * holds the same window, but only where SCHED_FIFO is allowed. */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

/* a page of this class holds 8 blocks (the request: 65536 less the redzone, hak_test.h) */
#define SZ (65536 - hak_test_redzone())

static void *victim;
static hak_page_t *full_page;
static atomic_int hooked;

static void hook(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_PAGE_FULL || arg != full_page || atomic_load(&hooked))
    return;
  atomic_store(&hooked, 1);
  /* another thread's free, finished before the notify request */
  hak_free_remotely(&victim, 1);
  CHECK_MSG(tf_count(atomic_load(&full_page->thread_free)) == 1,
            "the remote free in the window did not push onto the page's stack");
}

/* ---- the request made during a hand-over --------------------------------- */
#define BLOCKS 8 /* SZ blocks per page */
static void *d[BLOCKS + 1];
static hak_page_t *P;
static atomic_int o_filled, o_refilled, o_at_request, o_asked, o_checked, r_held, r_go, x_freed;
static void *_Atomic held_block; /* the block whose hand-over is held */

static void hook3(enum hak_hook_point where, void *arg) {
  if (where == HAK_HOOK_NOTIFYING && arg == atomic_load(&held_block)) { /* R: hand-over held */
    atomic_store(&r_held, 1);
    HAK_WAIT_FLAG_MSG(&r_go, "R was never let go");
  } else if (where == HAK_HOOK_PAGE_FULL && arg == P && atomic_load(&o_refilled)) {
    atomic_store(&o_at_request, 1); /* O, about to ask again */
  }
}

static void *thread_r(void *arg) {
  hak_free(atomic_load(&held_block));
  return arg;
}

static void *thread_o(void *arg) {
  void *keep2 = hak_malloc(100); /* another class: the segment stays in use */
  P = hak_fill_full_page(d, BLOCKS, SZ);
  REQUIRE(hak_block_page(d[BLOCKS - 1]) == P);
  atomic_store(&o_filled, 1);
  HAK_WAIT_FLAG_MSG(&r_held, "R's free never reached HAK_HOOK_NOTIFYING");
  hak_free(d[0]);
  hak_thread_cache_flush(); /* P leaves the full list, R still in its hand-over */
  REQUIRE(!P->in_full && (atomic_load(&P->thread_free) & TF_MASK) == TF_NOTIFYING);
  void *again = hak_malloc(SZ);
  REQUIRE(again == d[0]); /* P's free block: P is full again */
  atomic_store(&o_refilled, 1);
  void *next = hak_malloc(SZ); /* P to the full list: asks again */
  REQUIRE(next != NULL);
  atomic_store(&o_asked, 1);
  HAK_WAIT_FLAG_MSG(&r_go, "R was never let go");
  CHECK_MSG(P->in_full, "the page left the full list");
  CHECK_MSG((atomic_load(&P->thread_free) & TF_MASK) == TF_NOTIFY,
            "the notify request made during a hand-over was lost (state %lu)",
            (unsigned long)(atomic_load(&P->thread_free) & TF_MASK));
  atomic_store(&o_checked, 1);
  HAK_WAIT_FLAG_MSG(&x_freed, "the main thread's free never came");
  for (int i = 0; i <= BLOCKS; i++)
    if (i != 3 && i != 5) /* R's and the main thread's */
      hak_free(d[i]);
  hak_free(next);
  hak_free(keep2);
  return arg;
}

static void request_during_handover(void) {
  pthread_t o, r;
  hak_test_hook = hook3;
  REQUIRE(pthread_create(&o, NULL, thread_o, NULL) == 0);
  HAK_WAIT_FLAG_MSG(&o_filled, "O did not fill its page");
  atomic_store(&held_block, d[3]);
  REQUIRE(pthread_create(&r, NULL, thread_r, NULL) == 0);
  HAK_WAIT_FLAG_MSG(&o_at_request, "O's malloc never moved the page to the full list");
  hak_sleep_ms(100);
  CHECK_MSG(!atomic_load(&o_asked),
            "the notify request did not wait for a hand-over under way (TF_NOTIFYING)");
  atomic_store(&r_go, 1);
  REQUIRE(pthread_join(r, NULL) == 0);
  HAK_WAIT_FLAG_MSG(&o_checked, "O never checked its page");
  hak_test_hook = NULL;
  hak_free(d[5]); /* a remote free into the full page: handed over, not pushed */
  CHECK_MSG(tf_count(atomic_load(&P->thread_free)) == 0,
            "a remote free into a full page went onto its stack: its request was lost");
  atomic_store(&x_freed, 1);
  REQUIRE(pthread_join(o, NULL) == 0);
}

/* ---- the owner's exit during a hand-over ---------------------------------- */
static void *e[BLOCKS + 1];
static atomic_int e_filled, e_exit;

static void *thread_exiting_owner(void *arg) {
  hak_fill_full_page(e, BLOCKS, SZ);
  atomic_store(&e_filled, 1);
  HAK_WAIT_FLAG_MSG(&e_exit, "the owner was never told to exit");
  return arg; /* the exit withdraws the request: waits for the hand-over, then drains */
}

static void exit_during_handover(void) {
  pthread_t o, r;
  atomic_store(&r_held, 0);
  atomic_store(&r_go, 0);
  hak_test_hook = hook3;
  REQUIRE(pthread_create(&o, NULL, thread_exiting_owner, NULL) == 0);
  HAK_WAIT_FLAG_MSG(&e_filled, "the exiting owner did not fill its page");
  atomic_store(&held_block, e[3]);
  REQUIRE(pthread_create(&r, NULL, thread_r, NULL) == 0);
  HAK_WAIT_FLAG_MSG(&r_held, "the hand-over never reached HAK_HOOK_NOTIFYING");
  atomic_store(&e_exit, 1);
  hak_sleep_ms(100);
  CHECK_MSG(pthread_tryjoin_np(o, NULL) != 0,
            "the owner's exit did not wait for a hand-over under way (TF_NOTIFYING)");
  atomic_store(&r_go, 1);
  REQUIRE(pthread_join(r, NULL) == 0);
  pthread_join(o, NULL);
  hak_test_hook = NULL;
  for (int i = 0; i <= BLOCKS; i++)
    if (i != 3)
      hak_free(e[i]);
  CHECK_ALL_FREED("a block handed over during the owner's exit");
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
  full_page = hak_block_page(b[0]);
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
  hak_free_remotely(&victim, 1);
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

  request_during_handover();
  CHECK_EQ(hak_heap_check(), 0);
  exit_during_handover();
  CHECK_EQ(hak_heap_check(), 0);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  return hak_test_done();
}
